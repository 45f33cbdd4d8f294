// Tenants, their quotas and their live usage, and the admission checks that keep one team
// from starving the others. Usage is derived from the datasets at start-up and kept current
// by every write; nothing here is on disk except the tenants' quotas, kept by an
// IdentityStore (this server's RocksDB, or etcd for a cluster's members).
//
// In a cluster each member counts its own datasets and learns the others' usage from what
// they publish (IdentitySync); quotas apply to the sum. The others' part lags by up to their
// publication interval, so the cluster can overshoot a quota by what the other members admit
// within that lag (see identity_sync.h).
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
#include "server/identity_store.h"
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
  // The identity store's revision of `tenant` (0: never told), so that an older change
  // delivered late never replaces a newer one.
  int64_t revision = 0;
  // What the other members of a cluster last published for this tenant (examples,
  // stored_bytes, datasets); zeros on a single server.
  v1::TenantUsage others;

  // The tenant with this process's usage (what its metrics report).
  v1::Tenant View();
  // The tenant with the cluster's usage: this process's plus the others' published usage.
  v1::Tenant ClusterView();

 private:
  v1::Tenant ViewLocked() const;
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

  // Loads the stored tenants from `identity` (not owned; it must outlive the registry). When
  // `ensure_default` (authentication off) the default tenant is created if missing, with no
  // limits.
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> Load(IdentityStore* identity,
                                                              bool ensure_default);
  // The same over the server's own store (a single server).
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> Load(store::Store* store,
                                                              bool ensure_default);

  void set_rejection_hook(RejectionHook hook) { on_reject_ = std::move(hook); }

  // NOT_FOUND if absent.
  absl::StatusOr<std::shared_ptr<TenantState>> Find(const std::string& name) const;
  // Both store the change first and return the tenant with the cluster's usage. The
  // identity store's errors pass through (ALREADY_EXISTS, UNAVAILABLE when etcd is down).
  absl::StatusOr<v1::Tenant> Create(const v1::Tenant& tenant);
  absl::StatusOr<v1::Tenant> UpdateQuotas(const std::string& name, const v1::Quotas& quotas);
  // Every tenant, in name order, with this process's usage.
  std::vector<v1::Tenant> List() const;
  // Every tenant, in name order, with the cluster's usage.
  std::vector<v1::Tenant> ClusterList() const;

  // Changes made elsewhere (IdentitySync). ApplyTenant creates the tenant or replaces its
  // record, unless `revision` is not newer than the one held (0 always applies).
  void ApplyTenant(const v1::Tenant& tenant, int64_t revision);
  // The other members' usage of `tenant`, kept until the tenant is known if it is not yet.
  void SetOthersUsage(const std::string& tenant, const v1::TenantUsage& others);
  // This process's usage (examples, stored_bytes, datasets) of every tenant, for publication.
  std::map<std::string, v1::TenantUsage> LocalUsage() const;

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
  explicit TenantRegistry(IdentityStore* identity) : identity_(identity) {}
  absl::Status Reject(const TenantState& t, const std::string& limit, const std::string& message);
  // A new state for `tenant`, with the others' usage seen before it was known. Needs mu_.
  std::shared_ptr<TenantState> NewStateLocked(const v1::Tenant& tenant, int64_t revision);

  std::unique_ptr<IdentityStore> owned_identity_;  // for Load(store::Store*)
  IdentityStore* identity_;
  // Serialises this process's writes of tenants. Not mu_: a write may wait seconds for an
  // unreachable etcd, and every call looks its tenant up under mu_.
  std::mutex write_mu_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<TenantState>> tenants_;
  std::map<std::string, v1::TenantUsage> orphan_others_;  // others' usage of unknown tenants
  RejectionHook on_reject_;
  IngestSharing sharing_;
  std::unique_ptr<FairQueue> ingest_queue_;
  std::unique_ptr<WorkerPool> ingest_workers_;
};

}  // namespace curation::server
