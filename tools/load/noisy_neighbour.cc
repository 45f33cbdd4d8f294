// curation-noisy-neighbour: how much one tenant's heavy jobs slow another tenant's small calls.
//
// Against a running curation-server with authentication on, it creates two tenants, "quiet"
// and "noisy", with a writer token and a dataset each: the quiet one small (--quiet-pairs),
// the noisy one large (--noisy-pairs synthetic pairs, or the pairs of --pairs-file through the
// built-in embedder). Then two phases of --seconds each:
//   alone       the quiet tenant's clients call Select (RANDOM, 10 items) and GetDataset in a
//               loop, with --think-ms between calls;
//   contention  the same, while the noisy tenant's clients run back to back whole-pool
//               k-center rankings (SelectStream with ranking) and EvaluateSelection of
//               k-center selections, each a job as heavy as the server allows.
// It prints p50 and p99 of each quiet RPC in each phase (client side, successful calls) and
// the contention / alone ratio of p99: the figure the fair scheduler is judged by. At the end
// it cancels the noisy calls (their jobs stop within about a second).
//
// Exit codes: 0 the run completed; 1 a quiet call failed; 2 usage or setup error. Latencies
// never decide the exit code.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "common/flag_names.h"
#include "curation/v1/admin.grpc.pb.h"
#include "curation/v1/curation.grpc.pb.h"
#include "formats/record_reader.h"
#include "tools/load/stats.h"
#include "tools/load/text.h"

ABSL_FLAG(std::string, server, "", "HOST:PORT of a running curation-server (required)");
ABSL_FLAG(std::string, admin_token_file, "", "File holding an admin token of the server");
ABSL_FLAG(int, seconds, 20, "Length of each phase, in seconds");
ABSL_FLAG(int, quiet_clients, 2, "Clients of the quiet tenant");
ABSL_FLAG(int, noisy_clients, 3, "Clients of the noisy tenant (rankings and evaluations)");
ABSL_FLAG(int, quiet_pairs, 400, "Pairs of the quiet tenant's dataset");
ABSL_FLAG(int, noisy_pairs, 55'000, "Synthetic pairs of the noisy tenant's dataset");
ABSL_FLAG(std::string, pairs_file, "",
          "Real pairs for the noisy tenant instead (JSONL/JSONL.gz/JSON; at most --noisy-pairs)");
ABSL_FLAG(int, think_ms, 20, "Pause of a quiet client between two calls");
ABSL_FLAG(std::string, prefix, "", "Tenant and dataset name prefix (default: from the time)");

namespace curation::load {
namespace {

using Clock = std::chrono::steady_clock;

std::unique_ptr<grpc::ClientContext> As(const std::string& token,
                                        std::chrono::seconds deadline = std::chrono::seconds(60)) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->AddMetadata("authorization", "Bearer " + token);
  c->set_deadline(std::chrono::system_clock::now() + deadline);
  return c;
}

int Fail(const std::string& what, const grpc::Status& s) {
  std::fprintf(stderr, "curation-noisy-neighbour: %s: %s\n", what.c_str(),
               s.error_message().c_str());
  return 2;
}

struct Setup {
  std::string quiet_token, noisy_token, quiet_dataset, noisy_dataset;
};

int Prepare(v1::CurationService::Stub& stub, v1::AdminService::Stub& admin,
            const std::string& admin_token, Setup* out) {
  std::string prefix = absl::GetFlag(FLAGS_prefix);
  if (prefix.empty())
    prefix = absl::StrFormat("nn%d-", static_cast<int>(std::time(nullptr) % 100000));
  for (const char* role : {"quiet", "noisy"}) {
    const std::string tenant = prefix + role;
    v1::CreateTenantRequest create;
    create.mutable_tenant()->set_name(tenant);
    v1::Tenant t;
    grpc::Status s = admin.CreateTenant(As(admin_token).get(), create, &t);
    if (!s.ok()) return Fail("create tenant " + tenant, s);
    v1::CreateTokenRequest token;
    token.set_tenant(tenant);
    token.set_role(v1::ROLE_WRITER);
    v1::CreateTokenResponse secret;
    s = admin.CreateToken(As(admin_token).get(), token, &secret);
    if (!s.ok()) return Fail("create token", s);
    (std::string(role) == "quiet" ? out->quiet_token : out->noisy_token) = secret.secret();
    v1::CreateDatasetRequest dataset;
    dataset.mutable_dataset()->set_name(prefix + role);
    v1::Dataset d;
    s = stub.CreateDataset(As(secret.secret()).get(), dataset, &d);
    if (!s.ok()) return Fail("create dataset", s);
    (std::string(role) == "quiet" ? out->quiet_dataset : out->noisy_dataset) = prefix + role;
  }
  auto ingest = [&](const std::string& token, const std::string& dataset,
                    const std::vector<v1::Example>& examples) -> int {
    for (size_t from = 0; from < examples.size(); from += 2000) {
      v1::IngestExamplesRequest request;
      request.set_dataset(dataset);
      for (size_t i = from; i < std::min(examples.size(), from + 2000); ++i) {
        *request.add_examples() = examples[i];
      }
      v1::IngestExamplesResponse reply;
      grpc::Status s =
          stub.IngestExamples(As(token, std::chrono::seconds(600)).get(), request, &reply);
      if (!s.ok()) return Fail("ingest into " + dataset, s);
    }
    return 0;
  };
  PairGenerator gen(7);
  std::vector<v1::Example> quiet;
  for (int i = 0; i < absl::GetFlag(FLAGS_quiet_pairs); ++i) {
    quiet.push_back(gen.Next("q" + std::to_string(i), i));
  }
  if (int rc = ingest(out->quiet_token, out->quiet_dataset, quiet); rc != 0) return rc;
  std::vector<v1::Example> noisy;
  const int limit = absl::GetFlag(FLAGS_noisy_pairs);
  if (const std::string file = absl::GetFlag(FLAGS_pairs_file); !file.empty()) {
    auto reader = formats::RecordReader::Open(file);
    if (!reader.ok())
      return Fail("open " + file, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                               std::string(reader.status().message())));
    formats::Record r;
    while (static_cast<int>(noisy.size()) < limit) {
      auto more = (*reader)->Next(&r);
      if (!more.ok() || !*more) break;
      if (r.chosen == r.rejected || absl::StripAsciiWhitespace(r.chosen).empty() ||
          absl::StripAsciiWhitespace(r.rejected).empty()) {
        continue;
      }
      v1::Example e;
      e.mutable_pair()->set_prompt(r.prompt);
      e.mutable_pair()->set_chosen(r.chosen);
      e.mutable_pair()->set_rejected(r.rejected);
      noisy.push_back(std::move(e));
    }
  } else {
    for (int i = 0; i < limit; ++i) noisy.push_back(gen.Next("n" + std::to_string(i), i));
  }
  std::printf("setup: quiet dataset %zu pairs, noisy dataset %zu pairs\n", quiet.size(),
              noisy.size());
  return ingest(out->noisy_token, out->noisy_dataset, noisy);
}

// The noisy tenant: heavy jobs back to back until `stop`; each call is cancellable.
void Noisy(v1::CurationService::Stub& stub, const Setup& setup, int client, std::atomic<bool>& stop,
           std::mutex& mu, std::vector<grpc::ClientContext*>& live, std::atomic<int>& calls) {
  for (int round = 0; !stop.load(); ++round) {
    auto context = As(setup.noisy_token, std::chrono::seconds(3600));
    {
      std::lock_guard<std::mutex> lock(mu);
      live.push_back(context.get());
    }
    v1::SelectRequest select;
    select.set_dataset(setup.noisy_dataset);
    select.set_method(v1::SELECTION_METHOD_KCENTER);
    select.set_seed(client * 1000 + round);
    select.mutable_budget()->set_fraction(0.01);
    if ((client + round) % 2 == 0) {
      select.set_ranking(true);  // the whole pool's order
      auto stream = stub.SelectStream(context.get(), select);
      v1::SelectProgress progress;
      while (stream->Read(&progress)) {
      }
      stream->Finish();
    } else {
      v1::EvaluateSelectionRequest evaluate;
      *evaluate.mutable_select() = select;
      auto stream = stub.EvaluateSelection(context.get(), evaluate);
      v1::EvaluateSelectionProgress progress;
      while (stream->Read(&progress)) {
      }
      stream->Finish();
    }
    ++calls;
    std::lock_guard<std::mutex> lock(mu);
    live.erase(std::find(live.begin(), live.end(), context.get()));
  }
}

// The quiet tenant: small calls until `until`, measured into `recorder`.
void Quiet(v1::CurationService::Stub& stub, const Setup& setup, const std::string& phase,
           Clock::time_point until, Recorder* recorder) {
  const auto think = std::chrono::milliseconds(absl::GetFlag(FLAGS_think_ms));
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; Clock::now() < until; ++i) {
    const auto begin = Clock::now();
    grpc::Status s;
    std::string rpc;
    if (i % 2 == 0) {
      rpc = "Select (RANDOM, 10)";
      v1::SelectRequest select;
      select.set_dataset(setup.quiet_dataset);
      select.set_method(v1::SELECTION_METHOD_RANDOM);
      select.set_seed(rng());
      select.mutable_budget()->set_count(10);
      v1::Selection reply;
      s = stub.Select(As(setup.quiet_token).get(), select, &reply);
    } else {
      rpc = "GetDataset";
      v1::GetDatasetRequest get;
      get.set_name(setup.quiet_dataset);
      v1::Dataset reply;
      s = stub.GetDataset(As(setup.quiet_token).get(), get, &reply);
    }
    recorder->Add({phase, "quiet", rpc},
                  std::chrono::duration<double>(Clock::now() - begin).count(), s.error_code());
    std::this_thread::sleep_for(think);
  }
}

Recorder RunQuiet(v1::CurationService::Stub& stub, const Setup& setup, const std::string& phase) {
  const auto until = Clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_seconds));
  const int n = absl::GetFlag(FLAGS_quiet_clients);
  std::vector<Recorder> recorders(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] { Quiet(stub, setup, phase, until, &recorders[i]); });
  }
  for (auto& t : threads) t.join();
  Recorder all;
  for (const auto& r : recorders) all.Merge(r);
  return all;
}

int Run() {
  const std::string address = absl::GetFlag(FLAGS_server);
  if (address.empty() || absl::GetFlag(FLAGS_admin_token_file).empty()) {
    std::fprintf(stderr,
                 "curation-noisy-neighbour: --server and --admin-token-file are required\n");
    return 2;
  }
  std::ifstream in(absl::GetFlag(FLAGS_admin_token_file));
  std::string admin_token;
  std::getline(in, admin_token);
  admin_token = std::string(absl::StripAsciiWhitespace(admin_token));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Separate channels: one connection's flow control must not couple the tenants.
  auto quiet_channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  args.SetString("noisy", "1");
  auto noisy_channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  auto stub = v1::CurationService::NewStub(quiet_channel);
  auto noisy_stub = v1::CurationService::NewStub(noisy_channel);
  auto admin = v1::AdminService::NewStub(quiet_channel);
  Setup setup;
  if (int rc = Prepare(*stub, *admin, admin_token, &setup); rc != 0) return rc;

  std::printf("phase alone: %d quiet clients for %d s\n", absl::GetFlag(FLAGS_quiet_clients),
              absl::GetFlag(FLAGS_seconds));
  Recorder alone = RunQuiet(*stub, setup, "alone");

  std::atomic<bool> stop{false};
  std::atomic<int> noisy_calls{0};
  std::mutex mu;
  std::vector<grpc::ClientContext*> live;
  std::vector<std::thread> noisy;
  for (int i = 0; i < absl::GetFlag(FLAGS_noisy_clients); ++i) {
    noisy.emplace_back([&, i] { Noisy(*noisy_stub, setup, i, stop, mu, live, noisy_calls); });
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the noisy jobs are running
  std::printf(
      "phase contention: the same, with %d noisy clients running k-center rankings "
      "and evaluations back to back\n",
      absl::GetFlag(FLAGS_noisy_clients));
  Recorder contention = RunQuiet(*stub, setup, "contention");
  stop = true;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (grpc::ClientContext* c : live) c->TryCancel();
  }
  for (auto& t : noisy) t.join();

  std::printf("\n%-22s %-11s %8s %10s %10s\n", "quiet RPC", "phase", "calls", "p50 ms", "p99 ms");
  int failures = 0;
  std::map<std::string, double> p99_alone;
  for (const Recorder* r : {&alone, &contention}) {
    for (const Series& s : r->AllSeries()) {
      const auto& lat = r->Latencies(s);
      const double p50 = Quantile(lat, 0.5) * 1e3, p99 = Quantile(lat, 0.99) * 1e3;
      std::printf("%-22s %-11s %8zu %10.2f %10.2f", s.rpc.c_str(), s.phase.c_str(), lat.size(), p50,
                  p99);
      if (s.phase == "alone") p99_alone[s.rpc] = p99;
      if (s.phase == "contention" && p99_alone.count(s.rpc)) {
        std::printf("   p99 ratio %.2fx", p99 / p99_alone[s.rpc]);
      }
      std::printf("\n");
    }
    for (const auto& [series, codes] : r->errors()) {
      for (const auto& [code, n] : codes) {
        std::printf("  errors: %s %s %s: %lld\n", series.phase.c_str(), series.rpc.c_str(),
                    CodeName(code).c_str(), static_cast<long long>(n));
        failures += static_cast<int>(n);
      }
    }
  }
  std::printf("noisy tenant: %d heavy calls finished during the run (the rest were cancelled)\n",
              noisy_calls.load());
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace curation::load

int main(int argc, char** argv) {
  curation::DashedFlagArgs args(argc, argv);
  absl::SetProgramUsageMessage(
      "curation-noisy-neighbour --server HOST:PORT --admin-token-file FILE [--seconds 20]\n"
      "A quiet tenant's p99 alone and while a noisy tenant runs heavy jobs.");
  absl::ParseCommandLine(args.argc(), args.argv());
  return curation::load::Run();
}
