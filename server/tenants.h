// Tenants, their quotas and their live usage, and the admission checks that keep one team
// from starving the others. Usage is derived from the datasets at start-up and kept current
// by every write; nothing here is on disk except the tenants' quotas.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "absl/status/statusor.h"
#include "curation/v1/admin.pb.h"
#include "server/fair_queue.h"
#include "server/worker_pool.h"
#include "store/store.h"

namespace curation::server {

struct TenantState {
  std::mutex mu;
  v1::Tenant tenant;  // name, quotas, create_time; usage is below
  int64_t examples = 0;
  int64_t stored_bytes = 0;
  int64_t datasets = 0;
  int32_t running_selections = 0;  // running jobs, kept by the job scheduler's hooks
  int32_t queued_jobs = 0;
  // Admitted but not yet written, so concurrent requests cannot overshoot a quota together.
  int64_t reserved_examples = 0;
  int64_t reserved_bytes = 0;
  // Ingest token bucket.
  double bucket = -1;  // < 0: not started (full)
  std::chrono::steady_clock::time_point bucket_time;

  v1::Tenant View();
};

// How the ingests of all tenants share the process's cores. Embedding is the costly step of
// an ingest; left alone, every large batch would fan out over every core at once, and a
// tenant streaming many of them would take the CPU from the others' small calls.
struct IngestSharing {
  // Batches of more than this many records wait for a turn in a FairQueue: at most `slots`
  // of them embed at once, handed round-robin to the tenants that wait. Smaller batches (an
  // interactive client's) skip the queue: they embed in milliseconds, and waiting behind a
  // large batch would cost them far more than they take from it.
  int64_t queue_above_records = 64;
  // ... or of more than this many bytes (the request's size): a few records of megabyte
  // texts embed for as long as thousands of short ones, and must not run on the gRPC thread
  // at full priority.
  int64_t queue_above_bytes = 1 << 20;
  int slots = 1;
  // Cores one batch embeds on (OpenMP threads), queued or not. The rest stay free for reads,
  // selections and other tenants.
  int threads_per_batch = 1;
  // Queued batches run on `slots` worker threads at this nice value (0..19): on a busy
  // machine the kernel then runs other calls first, and on an idle one bulk loads still get
  // every free core. Lowering a thread's priority needs no privilege; raising it back would,
  // hence the dedicated threads.
  int nice = 10;
};

// Room taken for an ingest until it is written or abandoned.
struct IngestReservation {
  int64_t examples = 0;
  int64_t bytes = 0;
};

class TenantRegistry {
 public:
  // Called with (tenant, limit name) each time a quota or rate limit refuses a request.
  using RejectionHook = std::function<void(const std::string& tenant, const std::string& limit)>;

  // Loads the stored tenants. When `ensure_default` (authentication off) the default tenant
  // is created if missing, with no limits.
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> Load(store::Store* store,
                                                              bool ensure_default);

  void set_rejection_hook(RejectionHook hook) { on_reject_ = std::move(hook); }

  // NOT_FOUND if absent.
  absl::StatusOr<std::shared_ptr<TenantState>> Find(const std::string& name) const;
  absl::StatusOr<v1::Tenant> Create(const v1::Tenant& tenant);
  absl::StatusOr<v1::Tenant> UpdateQuotas(const std::string& name, const v1::Quotas& quotas);
  std::vector<v1::Tenant> List() const;

  // Start-up: counts an existing dataset into its tenant's usage.
  void CountLoadedDataset(const std::string& tenant, int64_t examples, int64_t bytes);

  // Admits an ingest of `records` records of about `bytes` bytes: takes them from the rate
  // bucket and reserves room under the examples and bytes quotas. RESOURCE_EXHAUSTED, naming
  // the limit and when to retry, if any would be exceeded; nothing is taken then.
  absl::StatusOr<IngestReservation> AdmitIngest(TenantState& t, int64_t records, int64_t bytes);
  // Turns a reservation into usage: `examples` and `bytes` were actually stored.
  void CommitIngest(TenantState& t, const IngestReservation& r, int64_t examples, int64_t bytes);

  // Set once before serving.
  void set_ingest_sharing(const IngestSharing& sharing);
  const IngestSharing& ingest_sharing() const { return sharing_; }
  // Runs `ingest`, the ingest of a batch of `records` records and `bytes` bytes of `tenant`,
  // under the sharing rules above and returns when it has: on this thread if the batch is
  // small in both, else on an ingest worker once the tenant's turn has come.
  void RunIngest(const std::string& tenant, int64_t records, int64_t bytes,
                 const std::function<void()>& ingest);

  // Counts `bytes` of stored results (selections, operations) into the tenant's stored_bytes.
  // With `enforce`, RESOURCE_EXHAUSTED naming max_stored_bytes if they would not fit, and
  // nothing is counted; negative `bytes` (results deleted or expired) are never refused.
  absl::Status AddStoredBytes(TenantState& t, int64_t bytes, bool enforce);
  // As AddStoredBytes on the tenant named `tenant`; a missing tenant counts nothing.
  absl::Status AddStoredBytes(const std::string& tenant, int64_t bytes, bool enforce);

  // A dataset slot; RESOURCE_EXHAUSTED at the quota. Release it if the creation fails.
  absl::Status AdmitDataset(TenantState& t);
  void ReleaseDataset(TenantState& t, int64_t examples, int64_t bytes);

 private:
  explicit TenantRegistry(store::Store* store) : store_(store) {}
  absl::Status Reject(const TenantState& t, const std::string& limit, const std::string& message);

  store::Store* store_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<TenantState>> tenants_;
  RejectionHook on_reject_;
  IngestSharing sharing_;
  std::unique_ptr<FairQueue> ingest_queue_;
  std::unique_ptr<WorkerPool> ingest_workers_;
};

}  // namespace curation::server
