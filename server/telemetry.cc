#include "server/telemetry.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"

namespace curation::server {

std::string TruncateForLog(absl::string_view value) {
  if (value.size() <= kMaxLogValueBytes) return std::string(value);
  return absl::StrCat(value.substr(0, kMaxLogValueBytes), "...(", value.size(), " bytes)");
}

namespace {

// gRPC and absl share the canonical codes, and absl can name them.
std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help, double value) {
  prometheus::MetricFamily family{name, help, prometheus::MetricType::Gauge, {}};
  prometheus::ClientMetric metric;
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
  return family;
}

// The label of an RPC path: the path of a method this binary serves (its own services,
// health, reflection), else "unknown". The path is the caller's to choose, even without a
// token, so labelling by it raw would let anyone add series to /metrics without bound.
std::string MethodLabel(const std::string& path) {
  // "/package.Service/Method" -> "package.Service.Method", the descriptor's full name.
  if (path.size() < 4 || path.size() > 256 || path[0] != '/') return "unknown";
  const size_t slash = path.find('/', 1);
  if (slash == std::string::npos || slash == 1 || slash + 1 == path.size() ||
      path.find('/', slash + 1) != std::string::npos) {
    return "unknown";
  }
  const std::string full = path.substr(1, slash - 1) + "." + path.substr(slash + 1);
  const auto* method = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(full);
  return method != nullptr ? path : "unknown";
}

const double kProcessStart = [] {
  return static_cast<double>(absl::ToUnixMillis(absl::Now())) / 1000.0;
}();

}  // namespace

void LogEvent(const std::string& level, const std::string& msg,
              const std::vector<std::pair<std::string, std::string>>& fields) {
  nlohmann::ordered_json line;
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line["level"] = level;
  line["msg"] = TruncateForLog(msg);
  for (const auto& [key, value] : fields) line[key] = TruncateForLog(value);
  const std::string text =
      line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  // One write per line, so lines from several threads never interleave.
  (void)!write(STDERR_FILENO, text.data(), text.size());
}

class Metrics::LiveFigures : public prometheus::Collectable {
 public:
  LiveFigures(store::Store* store, TenantRegistry* tenants, const Metrics* owner)
      : store_(store), tenants_(tenants), owner_(owner) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    if (store_ != nullptr) {
      out.push_back(Gauge("curation_rocksdb_live_sst_bytes", "Bytes of live SST files.",
                          store_->GetIntProperty("rocksdb.live-sst-files-size")));
      out.push_back(Gauge("curation_rocksdb_memtable_bytes", "Bytes in all memtables.",
                          store_->GetIntProperty("rocksdb.cur-size-all-mem-tables")));
      out.push_back(Gauge("curation_rocksdb_pending_compaction_bytes",
                          "Estimated bytes compaction still has to rewrite.",
                          store_->GetIntProperty("rocksdb.estimate-pending-compaction-bytes")));
      // Durability of acknowledged ingests rests on these (besides synced writes).
      prometheus::MetricFamily syncs{"curation_wal_syncs_total",
                                     "Explicit fsyncs of the RocksDB WAL before a reply.",
                                     prometheus::MetricType::Counter,
                                     {}};
      prometheus::ClientMetric m;
      m.counter.value = static_cast<double>(store_->wal_syncs());
      syncs.metric.push_back(std::move(m));
      out.push_back(std::move(syncs));
    }
    if (tenants_ != nullptr) {
      prometheus::MetricFamily examples{"curation_tenant_examples",
                                        "Examples stored per tenant (pairs count once).",
                                        prometheus::MetricType::Gauge,
                                        {}};
      prometheus::MetricFamily bytes{"curation_tenant_stored_bytes",
                                     "Bytes of text and vectors stored per tenant.",
                                     prometheus::MetricType::Gauge,
                                     {}};
      prometheus::MetricFamily datasets{
          "curation_tenant_datasets", "Datasets per tenant.", prometheus::MetricType::Gauge, {}};
      for (const v1::Tenant& t : tenants_->List()) {
        prometheus::ClientMetric m;
        m.label = {{"tenant", t.name()}};
        m.gauge.value = static_cast<double>(t.usage().examples());
        examples.metric.push_back(m);
        m.gauge.value = static_cast<double>(t.usage().stored_bytes());
        bytes.metric.push_back(m);
        m.gauge.value = static_cast<double>(t.usage().datasets());
        datasets.metric.push_back(m);
      }
      out.push_back(std::move(examples));
      out.push_back(std::move(bytes));
      out.push_back(std::move(datasets));
    }
    const Catalog* catalog = owner_->catalog_.load();
    out.push_back(Gauge("curation_ready", "1 once every dataset is loaded and served.",
                        catalog != nullptr ? 1 : 0));
    // Most of a large server's memory, and what its datasets' encodings decide.
    if (catalog != nullptr) {
      out.push_back(Gauge("curation_vector_memory_bytes",
                          "Bytes of encoded vectors held in memory by all datasets' indexes.",
                          static_cast<double>(catalog->VectorMemoryBytes())));
    }
    AppendProcess(&out);
    return out;
  }

 private:
  // The standard process_* figures, from /proc/self.
  static void AppendProcess(std::vector<prometheus::MetricFamily>* out) {
    std::ifstream stat("/proc/self/stat");
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const size_t close = content.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(content.substr(close + 2));
      std::vector<std::string> f;
      for (std::string x; fields >> x;) f.push_back(x);
      if (f.size() > 22) {
        const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
        const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
        prometheus::MetricFamily cpu_family{"process_cpu_seconds_total",
                                            "Total user and system CPU time spent in seconds.",
                                            prometheus::MetricType::Counter,
                                            {}};
        prometheus::ClientMetric m;
        m.counter.value = cpu;
        cpu_family.metric.push_back(m);
        out->push_back(std::move(cpu_family));
        out->push_back(Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                             std::stod(f[20])));
        out->push_back(Gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                             std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE))));
      }
    }
    std::error_code ec;
    double fds = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      ++fds;
    }
    out->push_back(Gauge("process_open_fds", "Number of open file descriptors.", fds));
    out->push_back(Gauge("process_start_time_seconds",
                         "Start time of the process since unix epoch in seconds.", kProcessStart));
  }

  store::Store* store_;
  TenantRegistry* tenants_;
  const Metrics* owner_;
};

Metrics::Metrics(store::Store* store, TenantRegistry* tenants)
    : registry_(std::make_shared<prometheus::Registry>()),
      rpcs_(prometheus::BuildCounter()
                .Name("curation_rpc_requests_total")
                .Help("RPCs handled, by method and gRPC status code.")
                .Register(*registry_)),
      rpc_seconds_(prometheus::BuildHistogram()
                       .Name("curation_rpc_duration_seconds")
                       .Help("RPC latency from the first metadata to the status, by method.")
                       .Register(*registry_)),
      ingested_(prometheus::BuildCounter()
                    .Name("curation_ingested_records_total")
                    .Help("Records received for ingestion, by outcome.")
                    .Register(*registry_)),
      selection_seconds_(prometheus::BuildHistogram()
                             .Name("curation_selection_duration_seconds")
                             .Help("Time to compute a selection, by method.")
                             .Register(*registry_)),
      quota_rejections_(prometheus::BuildCounter()
                            .Name("curation_quota_rejections_total")
                            .Help("Requests refused by a quota or rate limit, by tenant and limit.")
                            .Register(*registry_)),
      job_wait_seconds_(prometheus::BuildHistogram()
                            .Name("curation_job_wait_seconds")
                            .Help("Time a job waited for a worker, by tenant and kind.")
                            .Register(*registry_)),
      job_run_seconds_(prometheus::BuildHistogram()
                           .Name("curation_job_run_seconds")
                           .Help("Time a job ran on a worker, by tenant and kind.")
                           .Register(*registry_)),
      jobs_ended_(prometheus::BuildCounter()
                      .Name("curation_jobs_total")
                      .Help("Jobs that ran, by tenant, kind and gRPC status code.")
                      .Register(*registry_)),
      job_refusals_(prometheus::BuildCounter()
                        .Name("curation_job_refusals_total")
                        .Help("Jobs refused at admission, by tenant and reason.")
                        .Register(*registry_)),
      jobs_(prometheus::BuildGauge()
                .Name("curation_jobs")
                .Help("Jobs queued and running now, by tenant and state.")
                .Register(*registry_)) {
  live_ = std::make_shared<LiveFigures>(store, tenants, this);
}

Metrics::~Metrics() = default;

bool Metrics::Serve(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    LogEvent("error", "cannot serve metrics", {{"address", address}, {"error", e.what()}});
    return false;
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(live_);
  return true;
}

int Metrics::port() const {
  if (exposer_ == nullptr) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports[0];
}

void Metrics::RecordRpc(const std::string& method, int code, double seconds) {
  rpcs_.Add({{"method", method}, {"code", CodeName(code)}}).Increment();
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
  rpc_seconds_.Add({{"method", method}}, kBuckets).Observe(seconds);
}

void Metrics::RecordIngest(int64_t accepted, int64_t duplicates, int64_t rejected) {
  if (accepted > 0) ingested_.Add({{"outcome", "accepted"}}).Increment(accepted);
  if (duplicates > 0) ingested_.Add({{"outcome", "duplicate"}}).Increment(duplicates);
  if (rejected > 0) ingested_.Add({{"outcome", "rejected"}}).Increment(rejected);
}

void Metrics::RecordSelection(const std::string& method, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
  selection_seconds_.Add({{"method", method}}, kBuckets).Observe(seconds);
}

void Metrics::RecordQuotaRejection(const std::string& tenant, const std::string& limit) {
  quota_rejections_.Add({{"tenant", tenant}, {"limit", limit}}).Increment();
}

namespace {

const prometheus::Histogram::BucketBoundaries& JobBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
  return kBuckets;
}

}  // namespace

void Metrics::RecordJobStart(const std::string& tenant, const std::string& kind,
                             double wait_seconds) {
  job_wait_seconds_.Add({{"tenant", tenant}, {"kind", kind}}, JobBuckets()).Observe(wait_seconds);
}

void Metrics::RecordJobEnd(const std::string& tenant, const std::string& kind, int code,
                           double run_seconds) {
  job_run_seconds_.Add({{"tenant", tenant}, {"kind", kind}}, JobBuckets()).Observe(run_seconds);
  jobs_ended_.Add({{"tenant", tenant}, {"kind", kind}, {"code", std::to_string(code)}}).Increment();
}

void Metrics::RecordJobRefusal(const std::string& tenant, const std::string& reason) {
  job_refusals_.Add({{"tenant", tenant}, {"reason", reason}}).Increment();
}

void Metrics::SetJobLoad(const std::string& tenant, int queued, int running) {
  jobs_.Add({{"tenant", tenant}, {"state", "queued"}}).Set(queued);
  jobs_.Add({{"tenant", tenant}, {"state", "running"}}).Set(running);
}

namespace {

// gRPC creates an interceptor on one of its threads, runs its hooks on others and destroys it
// on yet another, one step at a time: each step starts after the previous one's Proceed().
// That ordering lives in libgrpc++'s completion queues, which ThreadSanitizer cannot see (Debian
// does not build gRPC with it), so it would report our own members as raced. These calls state
// the ordering gRPC guarantees; they compile to nothing outside TSan builds.
#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
inline void HandOffAcquire(void* p) { __tsan_acquire(p); }
inline void HandOffRelease(void* p) { __tsan_release(p); }
#else
inline void HandOffAcquire(void*) {}
inline void HandOffRelease(void*) {}
#endif

class TelemetryInterceptor : public grpc::experimental::Interceptor {
 public:
  TelemetryInterceptor(grpc::experimental::ServerRpcInfo* info, Metrics* metrics,
                       const Authenticator* auth)
      : method_(info->method()), label_(MethodLabel(method_)), metrics_(metrics), auth_(auth) {
    HandOffRelease(this);
  }
  ~TelemetryInterceptor() override { HandOffAcquire(this); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    HandOffAcquire(this);
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      start_ = std::chrono::steady_clock::now();
      for (const auto& [key, value] : *methods->GetRecvInitialMetadata()) {
        if (key == "x-request-id") request_id_.assign(value.data(), value.size());
        // The first, as Authenticator reads it; a call with more than one is refused there
        // and logged without a tenant here.
        if (key == "authorization" && authorizations_++ == 0) {
          authorization_.assign(value.data(), value.size());
        }
      }
      if (request_id_.empty() || request_id_.size() > 128) {
        static std::atomic<uint64_t> counter{0};
        request_id_ = absl::StrFormat(
            "%x-%x", static_cast<uint64_t>(absl::ToUnixMicros(absl::Now())), counter.fetch_add(1));
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("x-request-id", request_id_);
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(methods->GetSendStatus());
    }
    HandOffRelease(this);
    methods->Proceed();
  }

 private:
  void Finish(const grpc::Status& status) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const int code = static_cast<int>(status.error_code());
    if (metrics_ != nullptr) metrics_->RecordRpc(label_, code, seconds);
    // Health probes arrive every few seconds from orchestrators; they are counted, not logged.
    if (method_.rfind("/grpc.health.", 0) == 0) return;
    std::string tenant;
    std::string token_id;
    if (auth_ != nullptr && authorizations_ <= 1) {
      if (auto caller = auth_->Resolve(authorization_); caller.ok()) {
        tenant = caller->tenant.empty() ? "(admin)" : caller->tenant;
        token_id = caller->token_id;
      }
    }
    std::vector<std::pair<std::string, std::string>> fields = {
        {"request_id", request_id_}, {"tenant", tenant},
        {"token_id", token_id},      {"method", method_},
        {"code", CodeName(code)},    {"duration_ms", absl::StrFormat("%.3f", seconds * 1000)}};
    if (!status.ok()) fields.emplace_back("error", status.error_message());
    LogEvent(status.ok() ? "info" : "warn", "rpc", fields);
  }

  const std::string method_;
  const std::string label_;  // method_ if this server serves it, else "unknown"
  Metrics* metrics_;
  const Authenticator* auth_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::string request_id_;
  std::string authorization_;
  int authorizations_ = 0;
};

}  // namespace

grpc::experimental::Interceptor* TelemetryInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new TelemetryInterceptor(info, metrics_, auth_);
}

}  // namespace curation::server
