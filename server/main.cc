// curation-server: the long-running service. Opens (or creates) the RocksDB store in
// --data-dir, rebuilds every dataset's vector index from it, and serves curation.v1 plus the
// standard health and reflection services until SIGTERM or SIGINT.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "embedding/embedder.h"
#include "server/catalog.h"
#include "server/curation_service.h"
#include "store/store.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "HOST:PORT to serve gRPC on (port 0 picks one)");
ABSL_FLAG(std::string, data_dir, "curation-data", "RocksDB directory, created if missing");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound port here once serving (for scripts and tests)");
ABSL_FLAG(bool, sync_writes, true,
          "fsync the WAL before acknowledging a write (survives power loss, not only crashes)");
ABSL_FLAG(int64_t, max_message_bytes, 64 << 20, "Largest gRPC message accepted or sent");
ABSL_FLAG(int64_t, max_records_per_request, 10'000, "Most examples in one ingest message");
ABSL_FLAG(int64_t, max_text_bytes, 1 << 20, "Longest prompt or completion, in bytes");
ABSL_FLAG(int, grace_period_seconds, 20,
          "On SIGTERM, how long in-flight calls may run before they are cancelled");

namespace {

int g_signal_pipe[2] = {-1, -1};

int Run() {
  using curation::server::Catalog;
  using curation::server::CurationService;
  using curation::server::Limits;
  using curation::store::Store;

  // SIGTERM and SIGINT may land on any thread (libraries start their own), so the handler
  // only writes the signal number to a pipe; a normal thread reads it and drains.
  if (pipe(g_signal_pipe) != 0) {
    std::perror("curation-server: pipe");
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = [](int sig) {
    const char byte = static_cast<char>(sig);
    (void)!write(g_signal_pipe[1], &byte, 1);
  };
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  const auto started = std::chrono::steady_clock::now();
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  auto store = Store::Open(data_dir, Store::Options{.sync = absl::GetFlag(FLAGS_sync_writes)});
  if (!store.ok()) {
    std::fprintf(stderr, "curation-server: %s\n", store.status().ToString().c_str());
    return 1;
  }
  auto catalog = Catalog::Load(store->get());
  if (!catalog.ok()) {
    std::fprintf(stderr, "curation-server: loading datasets: %s\n",
                 catalog.status().ToString().c_str());
    return 1;
  }
  auto embedder = curation::embedding::MakeBuiltinEmbedder();

  Limits limits;
  limits.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  limits.max_records_per_request = absl::GetFlag(FLAGS_max_records_per_request);
  limits.max_text_bytes = absl::GetFlag(FLAGS_max_text_bytes);
  CurationService service(store->get(), catalog->get(), embedder.get(), limits);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(limits.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(limits.max_message_bytes));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "curation-server: cannot listen on %s\n",
                 absl::GetFlag(FLAGS_listen).c_str());
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);

  const double ready_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::fprintf(stderr,
               "curation-server: serving on port %d (data %s, %lld datasets, ready in %.2f s)\n",
               port, data_dir.c_str(), static_cast<long long>((*catalog)->size()), ready_s);
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    // Written whole under a temporary name, so a reader never sees a partial port.
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::rename(tmp.c_str(), path.c_str());
  }

  std::thread stopper([&] {
    char byte = 0;
    while (read(g_signal_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    const int sig = byte;
    std::fprintf(stderr, "curation-server: signal %d, draining\n", sig);
    server->GetHealthCheckService()->SetServingStatus(false);
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(absl::GetFlag(FLAGS_grace_period_seconds)));
  });
  server->Wait();
  stopper.join();
  server.reset();
  store->reset();  // flushes the WAL and closes RocksDB
  std::fprintf(stderr, "curation-server: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Flags are documented as --data-dir, the convention of command-line tools; absl spells
  // them --data_dir. Accept both by rewriting the name part of every --flag.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> rewritten;
  for (std::string& arg : args) {
    if (arg.rfind("--", 0) == 0) {
      for (size_t i = 2; i < arg.size() && arg[i] != '='; ++i) {
        if (arg[i] == '-') arg[i] = '_';
      }
    }
    rewritten.push_back(arg.data());
  }
  argv = rewritten.data();
  absl::SetProgramUsageMessage(
      "curation-server --listen HOST:PORT --data-dir DIR\n"
      "Serves the curation.v1 gRPC API over a RocksDB store.");
  absl::ParseCommandLine(argc, argv);
  return Run();
}
