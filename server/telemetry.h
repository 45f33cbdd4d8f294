// What operators see: Prometheus metrics (scraped from --metrics-listen at /metrics) and one
// JSON log line per RPC and per server event on stderr.
//
// Label sets stay bounded: RPC methods are those the server serves (any other path is
// "unknown"), codes are gRPC's 17, tenants
// are created by admins, and limits and outcomes are fixed words.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/auth.h"
#include "server/catalog.h"
#include "server/tenants.h"
#include "store/store.h"

namespace curation::server {

// One JSON object on one line of stderr: {"ts", "level", "msg", ...fields}, written with one
// write() so that concurrent lines never interleave.
// Every value (and msg) longer than kMaxLogValueBytes is cut to that many bytes plus its
// length: values may come from callers (ids, paths, error messages quoting them), and a log
// line must not grow with a request.
void LogEvent(const std::string& level, const std::string& msg,
              const std::vector<std::pair<std::string, std::string>>& fields = {});
inline constexpr size_t kMaxLogValueBytes = 1024;
std::string TruncateForLog(absl::string_view value);

class Metrics {
 public:
  // Figures read at scrape time come from these; any may be null.
  Metrics(store::Store* store, TenantRegistry* tenants);
  ~Metrics();

  // Serves /metrics on `address` (HOST:PORT). Throws nothing; returns false on failure.
  bool Serve(const std::string& address);
  // The port actually bound (for --metrics-listen with port 0).
  int port() const;
  // Datasets and vectors are read from the catalog once it is loaded.
  // The scrape thread reads it, hence atomic.
  void SetCatalog(const Catalog* catalog) { catalog_.store(catalog); }

  void RecordRpc(const std::string& method, int code, double seconds);
  void RecordIngest(int64_t accepted, int64_t duplicates, int64_t rejected);
  void RecordSelection(const std::string& method, double seconds);
  void RecordQuotaRejection(const std::string& tenant, const std::string& limit);
  // Jobs (selections, evaluations, recommendations) through the scheduler: how long each
  // waited for a worker and ran, by tenant and kind; refusals by tenant and reason; and the
  // current queued and running jobs per tenant.
  void RecordJobStart(const std::string& tenant, const std::string& kind, double wait_seconds);
  void RecordJobEnd(const std::string& tenant, const std::string& kind, int code,
                    double run_seconds);
  void RecordJobRefusal(const std::string& tenant, const std::string& reason);
  void SetJobLoad(const std::string& tenant, int queued, int running);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  class LiveFigures;  // RocksDB, tenants and process figures computed at scrape time

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<LiveFigures> live_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::atomic<const Catalog*> catalog_{nullptr};
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Histogram>& rpc_seconds_;
  prometheus::Family<prometheus::Counter>& ingested_;
  prometheus::Family<prometheus::Histogram>& selection_seconds_;
  prometheus::Family<prometheus::Counter>& quota_rejections_;
  prometheus::Family<prometheus::Histogram>& job_wait_seconds_;
  prometheus::Family<prometheus::Histogram>& job_run_seconds_;
  prometheus::Family<prometheus::Counter>& jobs_ended_;
  prometheus::Family<prometheus::Counter>& job_refusals_;
  prometheus::Family<prometheus::Gauge>& jobs_;
};

// Counts, times and logs every RPC. The tenant in the log comes from the token (resolved
// again here, which costs one hash lookup), the request id from "x-request-id" metadata or a
// fresh one, and is echoed back to the client in the initial metadata.
class TelemetryInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  TelemetryInterceptorFactory(Metrics* metrics, const Authenticator* auth)
      : metrics_(metrics), auth_(auth) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics* metrics_;
  const Authenticator* auth_;
};

}  // namespace curation::server
