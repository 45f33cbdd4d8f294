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
#include "store/store.h"

namespace curation::server {

struct TenantState {
  std::mutex mu;
  v1::Tenant tenant;  // name, quotas, create_time; usage is below
  int64_t examples = 0;
  int64_t stored_bytes = 0;
  int64_t datasets = 0;
  int32_t running_selections = 0;
  // Admitted but not yet written, so concurrent requests cannot overshoot a quota together.
  int64_t reserved_examples = 0;
  int64_t reserved_bytes = 0;
  // Ingest token bucket.
  double bucket = -1;  // < 0: not started (full)
  std::chrono::steady_clock::time_point bucket_time;

  v1::Tenant View();
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

  // A dataset slot; RESOURCE_EXHAUSTED at the quota. Release it if the creation fails.
  absl::Status AdmitDataset(TenantState& t);
  void ReleaseDataset(TenantState& t, int64_t examples, int64_t bytes);

  // A running-selection slot, held for the selection's duration.
  class SelectionSlot {
   public:
    explicit SelectionSlot(std::shared_ptr<TenantState> t) : t_(std::move(t)) {}
    ~SelectionSlot();
    SelectionSlot(const SelectionSlot&) = delete;
    SelectionSlot& operator=(const SelectionSlot&) = delete;

   private:
    std::shared_ptr<TenantState> t_;
  };
  absl::StatusOr<std::unique_ptr<SelectionSlot>> AdmitSelection(std::shared_ptr<TenantState> t);

 private:
  explicit TenantRegistry(store::Store* store) : store_(store) {}
  absl::Status Reject(const TenantState& t, const std::string& limit, const std::string& message);

  store::Store* store_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<TenantState>> tenants_;
  RejectionHook on_reject_;
};

}  // namespace curation::server
