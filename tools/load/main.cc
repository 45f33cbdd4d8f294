// curation-load: drives a running curation-server with two tenants and reports what their
// clients saw.
//
// It starts nothing itself. With an admin token it creates two tenants, a writer token and a
// dataset for each, then runs two phases of --seconds each:
//   baseline    only the "interactive" tenant's clients: small IngestExamples, Select (ISA and
//               RANDOM, small budgets), GetDataset, GetExamples, ListSelections;
//   contention  the same, plus the "bulk" tenant's clients streaming large IngestStream loads
//               as fast as the bulk tenant's ingest rate limit lets them (they back off for the
//               "retry in X s" of each RESOURCE_EXHAUSTED, then resume with the first message
//               of the stream that the server had not stored).
// The interactive tenant has a second dataset that its small ingests go to, so that its
// selections and reads work on the same pool (--seed-pairs) in both phases: were the pool
// growing through the run, the contention phase's selections would cost more for that
// reason alone, and the ratio would blame the bulk tenant for it.
// It prints throughput and p50/p99 latency per RPC and phase (client side, successful calls),
// errors by code, the interactive tenant's p99 under contention over its baseline, and then
// checks through the API that every record and selection the server acknowledged exists.
//
// Exit codes: 0 everything acknowledged is there; 1 something acknowledged is missing or could
// not be checked; 2 usage or setup error. Latencies never decide the exit code: they depend on
// the machine.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flag_names.h"
#include "curation/v1/admin.grpc.pb.h"
#include "curation/v1/curation.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tools/load/stats.h"
#include "tools/load/text.h"

ABSL_FLAG(std::string, server, "", "HOST:PORT of a running curation-server (required)");
ABSL_FLAG(std::string, admin_token, "", "An admin token of the server");
ABSL_FLAG(std::string, admin_token_file, "",
          "A file holding the admin token (instead of --admin-token)");
ABSL_FLAG(int, seconds, 20, "Length of each phase (baseline, then contention), in seconds");
ABSL_FLAG(int, clients, 16,
          "Concurrent clients in the contention phase, each on its own connection");
ABSL_FLAG(int, bulk_clients, -1, "How many of --clients load for the bulk tenant (default: half)");
ABSL_FLAG(double, bulk_rate, 2000, "The bulk tenant's ingest rate limit, records/s (0: none)");
ABSL_FLAG(int, bulk_batch, 500, "Records per IngestStream message of the bulk tenant");
ABSL_FLAG(int, bulk_stream_batches, 2, "Messages per IngestStream call of the bulk tenant");
ABSL_FLAG(int, interactive_batch, 8, "Records per IngestExamples call of the interactive tenant");
ABSL_FLAG(int, seed_pairs, 400,
          "Pairs put into the interactive dataset before the baseline, so selections have a pool");
ABSL_FLAG(int, select_budget, 20, "Units per Select call");
ABSL_FLAG(int, think_ms, 50, "Pause of an interactive client between two calls");
ABSL_FLAG(std::string, prefix, "",
          "Prefix of the tenant names (default: load-<unix time>-<pid>), so runs do not collide");
ABSL_FLAG(int, wait_seconds, 60, "How long to wait for the server's health to be SERVING");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the synthetic data and of the clients' choices");
ABSL_FLAG(int, server_pid, 0,
          "If the server runs on this machine: its pid, to report the CPU time it used per phase");

namespace curation::load {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kBulk[] = "bulk";
constexpr char kInteractive[] = "interactive";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// CPU seconds (user + system) process `pid` has used so far, from /proc; NaN if unknown.
double ProcessCpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name, which may hold spaces, and ends at the last ')'.
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return std::nan("");
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i >= 14) ticks += std::strtod(field.c_str(), nullptr);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Each client its own connection, as separate processes would have: by default gRPC shares
// one TCP connection between channels with equal arguments, and a bulk client's large
// messages would then delay an interactive client's small ones inside this process.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& server) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<grpc::ClientContext> Context(const std::string& token, double timeout_seconds) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", "Bearer " + token);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  return context;
}

std::string Describe(const grpc::Status& s) {
  return absl::StrCat(CodeName(s.error_code()), ": ", s.error_message());
}

// The "retry in X s" of a rate-limit rejection, if the message has one.
std::optional<double> RetryAfter(const std::string& message) {
  const std::string retry = "retry in ";
  const size_t at = message.find(retry);
  if (at == std::string::npos) return std::nullopt;
  const char* begin = message.c_str() + at + retry.size();
  char* end = nullptr;
  const double seconds = std::strtod(begin, &end);
  if (end == begin || !std::isfinite(seconds) || seconds < 0) return std::nullopt;
  return seconds;
}

struct Tenant {
  std::string kind;  // kBulk or kInteractive
  std::string name;
  std::string token;
  std::string dataset;         // selections and reads (the interactive tenant's fixed pool)
  std::string ingest_dataset;  // where ingests go; the interactive tenant's is not `dataset`
};

// One client: its connection, its measurements, and what the server acknowledged to it.
struct Client {
  Client(int index, const std::string& server, const Tenant* tenant, uint64_t seed)
      : index(index),
        tenant(tenant),
        stub(v1::CurationService::NewStub(NewChannel(server))),
        pairs(seed),
        rng(seed ^ 0x9e3779b97f4a7c15ULL) {}

  int index;
  const Tenant* tenant;
  std::unique_ptr<v1::CurationService::Stub> stub;
  PairGenerator pairs;
  std::mt19937_64 rng;
  int64_t serial = 0;
  Recorder recorder;
  std::vector<std::string> acked_ids;  // in tenant->ingest_dataset
  std::vector<std::string> acked_selections;
  // Bulk only, per phase: records acknowledged; records of failed streams found stored (so
  // not resent, but not acknowledged by a reply either); rate-limit rejections; time spent
  // backing off.
  std::map<std::string, int64_t> records_acked;
  std::map<std::string, int64_t> records_resumed;
  std::map<std::string, int64_t> rate_limited;
  std::map<std::string, double> backoff_seconds;

  // Runs `call` and records its latency and status under (phase, tenant, rpc).
  template <typename Call>
  grpc::Status Timed(const std::string& phase, const std::string& rpc, Call&& call) {
    const auto start = Clock::now();
    grpc::Status status = call();
    recorder.Add({phase, tenant->kind, rpc}, Seconds(Clock::now() - start), status.error_code());
    return status;
  }

  std::string NextId() { return absl::StrCat(tenant->kind.substr(0, 1), index, "-", serial); }
};

// ---------------------------------------------------------------------------------------
// Setup, through the admin API.

class Setup {
 public:
  Setup(const std::string& server, std::string admin_token)
      : channel_(NewChannel(server)),
        admin_(v1::AdminService::NewStub(channel_)),
        admin_token_(std::move(admin_token)) {}

  bool WaitServing(int seconds) {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    grpc::Status last;
    while (Clock::now() < deadline) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      grpc::health::v1::HealthCheckRequest request;
      grpc::health::v1::HealthCheckResponse response;
      last = health->Check(&context, request, &response);
      if (last.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::fprintf(stderr, "curation-load: the server was not SERVING within %d s (%s)\n", seconds,
                 last.ok() ? "NOT_SERVING" : Describe(last).c_str());
    return false;
  }

  // A tenant (with the given ingest rate limit, 0 for none), a writer token and its PAIRS
  // datasets with the built-in embedder.
  std::optional<Tenant> MakeTenant(const std::string& kind, const std::string& prefix,
                                   double ingest_rate) {
    Tenant t{kind, absl::StrCat(prefix, "-", kind), "", absl::StrCat(kind, "-pairs"),
             kind == kInteractive ? absl::StrCat(kind, "-inbox") : absl::StrCat(kind, "-pairs")};
    v1::CreateTenantRequest create;
    create.mutable_tenant()->set_name(t.name);
    create.mutable_tenant()->mutable_quotas()->set_ingest_records_per_second(ingest_rate);
    v1::Tenant tenant;
    if (!Check("CreateTenant", admin_->CreateTenant(AdminContext().get(), create, &tenant))) {
      return std::nullopt;
    }
    v1::CreateTokenRequest token_request;
    token_request.set_tenant(t.name);
    token_request.set_role(v1::ROLE_WRITER);
    token_request.set_description("curation-load");
    v1::CreateTokenResponse token;
    if (!Check("CreateToken", admin_->CreateToken(AdminContext().get(), token_request, &token))) {
      return std::nullopt;
    }
    t.token = token.secret();
    auto stub = v1::CurationService::NewStub(channel_);
    for (const std::string& name : std::set<std::string>{t.dataset, t.ingest_dataset}) {
      v1::CreateDatasetRequest dataset_request;
      dataset_request.mutable_dataset()->set_name(name);
      dataset_request.mutable_dataset()->set_kind(v1::DATASET_KIND_PAIRS);
      dataset_request.mutable_dataset()->set_description("curation-load synthetic pairs");
      v1::Dataset dataset;
      if (!Check("CreateDataset",
                 stub->CreateDataset(Context(t.token, 30).get(), dataset_request, &dataset))) {
        return std::nullopt;
      }
    }
    return t;
  }

 private:
  std::unique_ptr<grpc::ClientContext> AdminContext() { return Context(admin_token_, 30); }

  static bool Check(const char* what, const grpc::Status& s) {
    if (!s.ok()) std::fprintf(stderr, "curation-load: %s failed: %s\n", what, Describe(s).c_str());
    return s.ok();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::string admin_token_;
};

// ---------------------------------------------------------------------------------------
// The clients' loops.

struct Workload {
  int bulk_batch;
  int bulk_stream_batches;
  int interactive_batch;
  int select_budget;
  std::chrono::milliseconds think;
  // Ids acknowledged before the phases (the seed pairs, in the interactive tenant's
  // `dataset`): every interactive client reads them.
  const std::vector<std::string>* seed_ids;
};

// Small ingests, selections and reads, with a short pause between calls, until `end`.
void RunInteractive(Client& c, const Workload& w, const std::string& phase, Clock::time_point end) {
  const std::string& token = c.tenant->token;
  const std::string& dataset = c.tenant->dataset;
  // Weights of IngestExamples, Select, GetDataset, GetExamples, ListSelections.
  std::discrete_distribution<int> op({3, 1, 2, 2, 2});
  while (Clock::now() < end) {
    switch (op(c.rng)) {
      case 0: {
        v1::IngestExamplesRequest request;
        request.set_dataset(c.tenant->ingest_dataset);
        for (int i = 0; i < w.interactive_batch; ++i) {
          *request.add_examples() = c.pairs.Next(c.NextId(), c.serial);
          ++c.serial;
        }
        v1::IngestExamplesResponse response;
        grpc::Status s = c.Timed(phase, "IngestExamples", [&] {
          return c.stub->IngestExamples(Context(token, 30).get(), request, &response);
        });
        if (s.ok()) {
          for (const std::string& id : response.ids()) {
            if (!id.empty()) c.acked_ids.push_back(id);
          }
        }
        break;
      }
      case 1: {
        v1::SelectRequest request;
        request.set_dataset(dataset);
        request.mutable_budget()->set_count(w.select_budget);
        request.set_method(c.rng() % 2 == 0 ? v1::SELECTION_METHOD_ISA
                                            : v1::SELECTION_METHOD_RANDOM);
        request.set_seed(c.rng());
        request.set_display_name(absl::StrCat("load ", phase, " ", c.index));
        v1::Selection selection;
        const std::string rpc =
            request.method() == v1::SELECTION_METHOD_ISA ? "Select(isa)" : "Select(random)";
        grpc::Status s = c.Timed(phase, rpc, [&] {
          return c.stub->Select(Context(token, 120).get(), request, &selection);
        });
        if (s.ok()) c.acked_selections.push_back(selection.id());
        break;
      }
      case 2: {
        v1::GetDatasetRequest request;
        request.set_name(dataset);
        v1::Dataset response;
        c.Timed(phase, "GetDataset",
                [&] { return c.stub->GetDataset(Context(token, 30).get(), request, &response); });
        break;
      }
      case 3: {
        // Ten ids the server acknowledged before the run.
        v1::GetExamplesRequest request;
        request.set_dataset(dataset);
        if (w.seed_ids->empty()) break;
        for (int i = 0; i < 10; ++i) request.add_ids((*w.seed_ids)[c.rng() % w.seed_ids->size()]);
        v1::GetExamplesResponse response;
        c.Timed(phase, "GetExamples",
                [&] { return c.stub->GetExamples(Context(token, 30).get(), request, &response); });
        break;
      }
      default: {
        v1::ListSelectionsRequest request;
        request.set_dataset(dataset);
        request.set_page_size(20);
        v1::ListSelectionsResponse response;
        c.Timed(phase, "ListSelections", [&] {
          return c.stub->ListSelections(Context(token, 30).get(), request, &response);
        });
        break;
      }
    }
    std::this_thread::sleep_for(w.think);
  }
}

// How many leading messages of a failed stream the server stored before it stopped. Each
// message is written atomically and before the next is read, so the stored ones are a prefix
// and the last id of each tells. Errs towards resending: duplicates are harmless.
size_t StoredPrefix(Client& c, const std::string& phase,
                    const std::vector<v1::IngestExamplesRequest>& stream) {
  size_t stored = 0;
  for (const v1::IngestExamplesRequest& message : stream) {
    v1::GetExamplesRequest request;
    request.set_dataset(c.tenant->ingest_dataset);
    request.add_ids(message.examples(message.examples_size() - 1).id());
    v1::GetExamplesResponse response;
    grpc::Status s = c.Timed(phase, "GetExamples(resume)", [&] {
      grpc::Status got =
          c.stub->GetExamples(Context(c.tenant->token, 30).get(), request, &response);
      // NOT_FOUND is an answer here, not a failure.
      return got.error_code() == grpc::StatusCode::NOT_FOUND ? grpc::Status::OK : got;
    });
    if (!s.ok() || response.examples_size() == 0) break;
    ++stored;
  }
  return stored;
}

// Bulk loads as fast as the rate limit allows, until `end`. After a failed stream the client
// waits as long as the server asked ("retry in X s", with jitter so that the bulk clients do
// not return in lockstep; a short pause for other errors), then resumes with the first message
// the server had not stored. Resending the whole stream instead would spend the rate limit on
// duplicates, and clients that share a tenant's bucket would starve one another.
void RunBulk(Client& c, const Workload& w, const std::string& phase, Clock::time_point end) {
  const std::string& token = c.tenant->token;
  std::vector<v1::IngestExamplesRequest> stream;
  std::uniform_real_distribution<double> jitter(1.0, 1.5);
  int rejections_in_a_row = 0;
  while (Clock::now() < end) {
    if (stream.empty()) {
      for (int b = 0; b < w.bulk_stream_batches; ++b) {
        v1::IngestExamplesRequest& message = stream.emplace_back();
        if (b == 0) message.set_dataset(c.tenant->ingest_dataset);
        for (int i = 0; i < w.bulk_batch; ++i) {
          *message.add_examples() = c.pairs.Next(c.NextId(), c.serial);
          ++c.serial;
        }
      }
    }
    v1::IngestExamplesResponse summary;
    grpc::Status s = c.Timed(phase, "IngestStream", [&] {
      auto context = Context(token, 120);
      auto writer = c.stub->IngestStream(context.get(), &summary);
      for (const auto& message : stream) {
        if (!writer->Write(message)) break;  // the server ended the call; Finish says why
      }
      writer->WritesDone();
      return writer->Finish();
    });
    if (s.ok()) {
      std::set<int64_t> rejected;
      for (const v1::RecordError& e : summary.errors()) rejected.insert(e.index());
      int64_t index = 0;
      for (const auto& message : stream) {
        for (const v1::Example& example : message.examples()) {
          if (rejected.count(index++) == 0) c.acked_ids.push_back(example.id());
        }
      }
      c.records_acked[phase] += index - static_cast<int64_t>(rejected.size());
      stream.clear();
      rejections_in_a_row = 0;
      continue;
    }
    const size_t stored = StoredPrefix(c, phase, stream);
    for (size_t k = 0; k < stored; ++k) c.records_resumed[phase] += stream[k].examples_size();
    stream.erase(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(stored));
    if (!stream.empty()) stream.front().set_dataset(c.tenant->ingest_dataset);
    double wait = 0.1;
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++c.rate_limited[phase];
      ++rejections_in_a_row;
      // The server's hint is right for a lone client; the bulk clients share one bucket, so
      // one that keeps losing the race for it waits longer each time, as gRPC's own retry
      // policy would, rather than send its large message again only to be refused.
      const double hint = RetryAfter(s.error_message()).value_or(1.0);
      wait = hint * std::ldexp(1.0, std::min(rejections_in_a_row - 1, 4)) * jitter(c.rng) + 0.005;
    }
    wait = std::min(wait, std::max(0.0, Seconds(end - Clock::now())));
    c.backoff_seconds[phase] += wait;
    std::this_thread::sleep_for(std::chrono::duration<double>(wait));
  }
}

// ---------------------------------------------------------------------------------------
// The final check: everything acknowledged is there.

struct CheckResult {
  int64_t records = 0;
  int64_t selections = 0;
  std::vector<std::string> missing;     // "dataset/id" or "selection id"
  std::vector<std::string> unverified;  // calls of the check itself that failed
};

void CheckRecords(v1::CurationService::Stub& stub, const Tenant& t, const std::string& dataset_name,
                  const std::vector<std::string>& ids, CheckResult* out) {
  std::vector<std::string> unique(ids.begin(), ids.end());
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  out->records += static_cast<int64_t>(unique.size());
  auto get = [&](const std::vector<std::string>& chunk, v1::GetExamplesResponse* response) {
    v1::GetExamplesRequest request;
    request.set_dataset(dataset_name);
    for (const std::string& id : chunk) request.add_ids(id);
    return stub.GetExamples(Context(t.token, 60).get(), request, response);
  };
  constexpr size_t kChunk = 1000;  // the server's limit per GetExamples
  for (size_t begin = 0; begin < unique.size(); begin += kChunk) {
    std::vector<std::string> chunk(unique.begin() + begin,
                                   unique.begin() + std::min(unique.size(), begin + kChunk));
    v1::GetExamplesResponse response;
    grpc::Status s = get(chunk, &response);
    if (s.ok()) {
      for (size_t i = 0; i < chunk.size(); ++i) {
        if (static_cast<int>(i) >= response.examples_size() ||
            response.examples(i).id() != chunk[i]) {
          out->missing.push_back(absl::StrCat(dataset_name, "/", chunk[i], " (wrong reply)"));
        }
      }
      continue;
    }
    if (s.error_code() != grpc::StatusCode::NOT_FOUND) {
      out->unverified.push_back(absl::StrCat("GetExamples: ", Describe(s)));
      continue;
    }
    // NOT_FOUND names only the first missing id: find every one.
    for (const std::string& id : chunk) {
      grpc::Status one = get({id}, &response);
      if (one.error_code() == grpc::StatusCode::NOT_FOUND) {
        out->missing.push_back(absl::StrCat(dataset_name, "/", id));
      } else if (!one.ok()) {
        out->unverified.push_back(absl::StrCat("GetExamples: ", Describe(one)));
      }
    }
  }
  v1::GetDatasetRequest request;
  request.set_name(dataset_name);
  v1::Dataset dataset;
  grpc::Status s = stub.GetDataset(Context(t.token, 60).get(), request, &dataset);
  if (!s.ok()) {
    out->unverified.push_back(absl::StrCat("GetDataset: ", Describe(s)));
  } else if (dataset.example_count() < static_cast<int64_t>(unique.size()) ||
             dataset.indexed_vectors() != 2 * dataset.example_count()) {
    out->missing.push_back(absl::StrFormat(
        "%s: example_count %d, indexed_vectors %d for %d acknowledged pairs", dataset_name,
        dataset.example_count(), dataset.indexed_vectors(), unique.size()));
  }
}

void CheckSelections(v1::CurationService::Stub& stub, const Tenant& t,
                     const std::vector<std::string>& ids, CheckResult* out) {
  out->selections += static_cast<int64_t>(ids.size());
  for (const std::string& id : ids) {
    v1::GetSelectionRequest request;
    request.set_id(id);
    request.set_view(v1::SELECTION_VIEW_BASIC);
    v1::Selection selection;
    grpc::Status s = stub.GetSelection(Context(t.token, 60).get(), request, &selection);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
      out->missing.push_back(absl::StrCat("selection ", id));
    } else if (!s.ok()) {
      out->unverified.push_back(absl::StrCat("GetSelection: ", Describe(s)));
    } else if (selection.id() != id || selection.dataset() != t.dataset) {
      out->missing.push_back(absl::StrCat("selection ", id, " (wrong reply)"));
    }
  }
}

// ---------------------------------------------------------------------------------------
// The report.

std::string Ms(double seconds) {
  return std::isnan(seconds) ? "-" : absl::StrFormat("%.1f", seconds * 1000);
}

void PrintReport(const Recorder& r, const std::map<std::string, double>& phase_seconds,
                 const std::vector<std::unique_ptr<Client>>& clients, double bulk_rate) {
  std::printf("\n%-11s %-12s %-16s %8s %9s %9s %9s %8s\n", "phase", "tenant", "rpc", "ok", "ok/s",
              "p50 ms", "p99 ms", "errors");
  for (const Series& s : r.AllSeries()) {
    const std::vector<double>& lat = r.Latencies(s);
    int64_t errors = 0;
    if (auto it = r.errors().find(s); it != r.errors().end()) {
      for (const auto& [code, n] : it->second) errors += n;
    }
    std::printf("%-11s %-12s %-16s %8zu %9.1f %9s %9s %8lld\n", s.phase.c_str(), s.tenant.c_str(),
                s.rpc.c_str(), lat.size(), lat.size() / phase_seconds.at(s.phase),
                Ms(Quantile(lat, 0.5)).c_str(), Ms(Quantile(lat, 0.99)).c_str(),
                static_cast<long long>(errors));
  }

  std::printf("\nerrors by code:%s\n", r.errors().empty() ? " none" : "");
  for (const auto& [s, codes] : r.errors()) {
    for (const auto& [code, n] : codes) {
      std::printf("  %-11s %-12s %-16s %-20s %lld%s\n", s.phase.c_str(), s.tenant.c_str(),
                  s.rpc.c_str(), CodeName(code).c_str(), static_cast<long long>(n),
                  s.tenant == kBulk && code == grpc::StatusCode::RESOURCE_EXHAUSTED
                      ? "  (expected: the bulk tenant's rate limit)"
                      : "");
    }
  }

  int64_t records = 0, resumed = 0, limited = 0;
  double backoff = 0;
  int bulk_clients = 0;
  for (const auto& c : clients) {
    if (c->tenant->kind != kBulk) continue;
    ++bulk_clients;
    for (const auto& [phase, n] : c->records_acked) records += n;
    for (const auto& [phase, n] : c->records_resumed) resumed += n;
    for (const auto& [phase, n] : c->rate_limited) limited += n;
    for (const auto& [phase, s] : c->backoff_seconds) backoff += s;
  }
  if (bulk_clients > 0) {
    const double seconds = phase_seconds.at("contention");
    std::printf(
        "\nbulk tenant: %lld records acknowledged and %lld more stored by streams that failed "
        "later, in %.1f s = %.0f records/s stored (rate limit %.0f/s); %lld streams "
        "rate-limited; mean back-off per bulk client %.1f s\n",
        static_cast<long long>(records), static_cast<long long>(resumed), seconds,
        (records + resumed) / seconds, bulk_rate, static_cast<long long>(limited),
        backoff / bulk_clients);
  }

  // How much the bulk tenant's load moved the interactive tenant's tail.
  std::printf("\ninteractive p99, contention / baseline:\n");
  std::vector<double> pooled[2];
  for (const Series& s : r.AllSeries()) {
    if (s.tenant != kInteractive || s.phase != "baseline") continue;
    const Series under{"contention", s.tenant, s.rpc};
    const double before = Quantile(r.Latencies(s), 0.99);
    const double after = Quantile(r.Latencies(under), 0.99);
    std::printf("  %-16s %9s -> %9s ms  x%.2f\n", s.rpc.c_str(), Ms(before).c_str(),
                Ms(after).c_str(), after / before);
    for (int p = 0; p < 2; ++p) {
      const auto& lat = r.Latencies(p == 0 ? s : under);
      pooled[p].insert(pooled[p].end(), lat.begin(), lat.end());
    }
  }
  const double before = Quantile(pooled[0], 0.99), after = Quantile(pooled[1], 0.99);
  std::printf("  %-16s %9s -> %9s ms  x%.2f\n", "all calls", Ms(before).c_str(), Ms(after).c_str(),
              after / before);
}

std::string ReadToken() {
  std::string token = absl::GetFlag(FLAGS_admin_token);
  if (const std::string path = absl::GetFlag(FLAGS_admin_token_file); !path.empty()) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    token = std::string(absl::StripAsciiWhitespace(ss.str()));
  }
  return token;
}

int Main() {
  const std::string server = absl::GetFlag(FLAGS_server);
  const std::string admin_token = ReadToken();
  const int clients_total = absl::GetFlag(FLAGS_clients);
  int bulk_clients = absl::GetFlag(FLAGS_bulk_clients);
  if (bulk_clients < 0) bulk_clients = clients_total / 2;
  const int seconds = absl::GetFlag(FLAGS_seconds);
  if (server.empty() || admin_token.empty() || clients_total < 1 || bulk_clients >= clients_total ||
      seconds < 1 || absl::GetFlag(FLAGS_bulk_batch) < 1 ||
      absl::GetFlag(FLAGS_bulk_stream_batches) < 1 || absl::GetFlag(FLAGS_interactive_batch) < 1) {
    std::fprintf(stderr, "%s\n", std::string(absl::ProgramUsageMessage()).c_str());
    return 2;
  }
  std::string prefix = absl::GetFlag(FLAGS_prefix);
  if (prefix.empty()) prefix = absl::StrCat("load-", std::time(nullptr), "-", getpid());
  const double bulk_rate = absl::GetFlag(FLAGS_bulk_rate);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);

  Setup setup(server, admin_token);
  if (!setup.WaitServing(absl::GetFlag(FLAGS_wait_seconds))) return 2;
  std::optional<Tenant> bulk = setup.MakeTenant(kBulk, prefix, bulk_rate);
  std::optional<Tenant> interactive = setup.MakeTenant(kInteractive, prefix, 0);
  if (!bulk || !interactive) return 2;

  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < clients_total; ++i) {
    const Tenant* t = i < clients_total - bulk_clients ? &*interactive : &*bulk;
    clients.push_back(std::make_unique<Client>(i, server, t, seed * 1000 + i));
  }

  // The interactive dataset's starting pool, so that the baseline's selections and reads
  // have something to work on.
  std::vector<std::string> seed_ids;
  {
    Client seeder(clients_total, server, &*interactive, seed * 1000 + clients_total);
    for (int done = 0; done < absl::GetFlag(FLAGS_seed_pairs);) {
      v1::IngestExamplesRequest request;
      request.set_dataset(interactive->dataset);
      for (int i = 0; i < 100 && done < absl::GetFlag(FLAGS_seed_pairs); ++i, ++done) {
        *request.add_examples() = seeder.pairs.Next(seeder.NextId(), seeder.serial);
        ++seeder.serial;
      }
      v1::IngestExamplesResponse response;
      grpc::Status s =
          seeder.stub->IngestExamples(Context(interactive->token, 60).get(), request, &response);
      if (!s.ok()) {
        std::fprintf(stderr, "curation-load: seeding failed: %s\n", Describe(s).c_str());
        return 2;
      }
      for (const std::string& id : response.ids()) {
        if (!id.empty()) seed_ids.push_back(id);
      }
    }
  }

  const Workload workload{absl::GetFlag(FLAGS_bulk_batch),
                          absl::GetFlag(FLAGS_bulk_stream_batches),
                          absl::GetFlag(FLAGS_interactive_batch),
                          absl::GetFlag(FLAGS_select_budget),
                          std::chrono::milliseconds(absl::GetFlag(FLAGS_think_ms)),
                          &seed_ids};
  std::printf(
      "curation-load: %s, tenants %s and %s; %d s baseline (%d interactive clients), then %d s "
      "contention (+%d bulk clients, %d x %d records a stream, rate limit %.0f records/s)\n",
      server.c_str(), interactive->name.c_str(), bulk->name.c_str(), seconds,
      clients_total - bulk_clients, seconds, bulk_clients, workload.bulk_stream_batches,
      workload.bulk_batch, bulk_rate);
  std::fflush(stdout);

  std::map<std::string, double> phase_seconds;
  const int server_pid = absl::GetFlag(FLAGS_server_pid);
  std::string server_cpu;
  for (const std::string phase : {"baseline", "contention"}) {
    const double cpu_start = server_pid > 0 ? ProcessCpuSeconds(server_pid) : 0;
    const auto start = Clock::now();
    const auto end = start + std::chrono::seconds(seconds);
    std::vector<std::thread> threads;
    for (auto& c : clients) {
      Client* client = c.get();
      if (client->tenant == &*interactive) {
        threads.emplace_back([&, client] { RunInteractive(*client, workload, phase, end); });
      } else if (phase == "contention") {
        threads.emplace_back([&, client] { RunBulk(*client, workload, phase, end); });
      }
    }
    for (auto& t : threads) t.join();
    // Calls in flight at the end still count, so the phase lasts until the last one returns.
    phase_seconds[phase] = Seconds(Clock::now() - start);
    if (server_pid > 0) {
      absl::StrAppendFormat(&server_cpu, "  %-11s %.2f CPU-seconds per second\n", phase,
                            (ProcessCpuSeconds(server_pid) - cpu_start) / phase_seconds[phase]);
    }
  }

  Recorder all;
  for (const auto& c : clients) all.Merge(c->recorder);
  PrintReport(all, phase_seconds, clients, bulk_rate);
  if (!server_cpu.empty())
    std::printf("\nserver CPU use (pid %d):\n%s", server_pid, server_cpu.c_str());

  CheckResult check;
  for (const Tenant* t : {&*bulk, &*interactive}) {
    std::vector<std::string> ids;
    std::vector<std::string> selections;
    for (const auto& c : clients) {
      if (c->tenant != t) continue;
      ids.insert(ids.end(), c->acked_ids.begin(), c->acked_ids.end());
      selections.insert(selections.end(), c->acked_selections.begin(), c->acked_selections.end());
    }
    auto stub = v1::CurationService::NewStub(NewChannel(server));
    if (t == &*interactive) CheckRecords(*stub, *t, t->dataset, seed_ids, &check);
    CheckRecords(*stub, *t, t->ingest_dataset, ids, &check);
    CheckSelections(*stub, *t, selections, &check);
  }
  std::printf("\ncheck: %lld acknowledged records and %lld acknowledged selections: ",
              static_cast<long long>(check.records), static_cast<long long>(check.selections));
  if (check.missing.empty() && check.unverified.empty()) {
    std::printf("all present\n");
    return 0;
  }
  std::printf("%zu MISSING, %zu checks failed\n", check.missing.size(), check.unverified.size());
  for (size_t i = 0; i < check.missing.size() && i < 20; ++i) {
    std::printf("  missing: %s\n", check.missing[i].c_str());
  }
  for (size_t i = 0; i < check.unverified.size() && i < 20; ++i) {
    std::printf("  check failed: %s\n", check.unverified[i].c_str());
  }
  return 1;
}

}  // namespace
}  // namespace curation::load

int main(int argc, char** argv) {
  curation::DashedFlagArgs args(argc, argv);  // --admin-token-file as well as --admin_token_file
  absl::SetProgramUsageMessage(
      "Drives a running curation-server with a bulk and an interactive tenant.\n"
      "  curation-load --server HOST:PORT --admin-token-file FILE [--seconds 20] [--clients 16]\n"
      "                [--bulk-rate 2000] [--bulk-clients N] [--bulk-batch 500] ...\n"
      "See --helpfull for every flag.");
  absl::ParseCommandLine(args.argc(), args.argv());
  return curation::load::Main();
}
