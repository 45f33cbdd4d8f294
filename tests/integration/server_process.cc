#include "tests/integration/server_process.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/scratch_dir.h"

namespace curation::testing {
namespace fs = std::filesystem;

std::string MakeTempDir(const std::string& name) { return ScratchDir(name); }

std::string TestDataPath(const std::string& file) {
  return std::string(CURATION_TEST_DATA) + "/" + file;
}

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path,
            const std::string& err_path) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(out, 1);
    dup2(err, 2);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

std::unique_ptr<ServerProcess> ServerProcess::Start(
    const std::string& data_dir, const std::vector<std::string>& flags,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  const std::string port_file = data_dir + ".port";
  fs::remove(port_file);
  std::vector<std::string> argv = {
      CURATION_SERVER_BIN, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
      "--port-file",       port_file};
  bool auth_flag = false;
  for (const auto& f : flags) auth_flag |= f.rfind("--auth", 0) == 0;
  if (!auth_flag) argv.push_back("--auth=false");
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto server = std::unique_ptr<ServerProcess>(new ServerProcess());
  server->credentials_ = std::move(credentials);
  server->pid_ = Spawn(argv, data_dir + ".out", data_dir + ".log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(port_file)) {
    int status = 0;
    if (waitpid(server->pid_, &status, WNOHANG) == server->pid_) {
      server->pid_ = -1;
      throw std::runtime_error("curation-server exited at start-up: " +
                               ReadFile(data_dir + ".log"));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("curation-server did not start: " + ReadFile(data_dir + ".log"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  server->address_ = "127.0.0.1:" + std::to_string(std::stoi(ReadFile(port_file)));
  // The port file is written once listening; the datasets may still be loading.
  if (server->WaitServing(std::chrono::seconds(120))) return server;
  throw std::runtime_error("curation-server did not become SERVING: " +
                           ReadFile(data_dir + ".log"));
}

bool ServerProcess::WaitServing(std::chrono::seconds timeout) const {
  auto channel = grpc::CreateChannel(address_, credentials_);
  auto health = grpc::health::v1::Health::NewStub(channel);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    context.set_wait_for_ready(true);
    grpc::Status s = health->Check(&context, request, &response);
    if (s.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Signal(SIGKILL);
}

std::unique_ptr<v1::CurationService::Stub> ServerProcess::Stub() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  return v1::CurationService::NewStub(grpc::CreateCustomChannel(address_, credentials_, args));
}

int ServerProcess::Signal(int signal) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

CommandResult RunCli(const std::string& server, const std::vector<std::string>& args) {
  const std::string dir = MakeTempDir("cli");
  std::vector<std::string> argv = {CURATION_CLI_BIN, "--server", server};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = Spawn(argv, dir + "/out", dir + "/err");
  int status = 0;
  waitpid(pid, &status, 0);
  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadFile(dir + "/out");
  result.err = ReadFile(dir + "/err");
  return result;
}

}  // namespace curation::testing
