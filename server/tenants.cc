#include "server/tenants.h"

#include <google/protobuf/util/time_util.h>
#include <omp.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/auth.h"

namespace curation::server {

v1::Tenant TenantState::View() {
  std::lock_guard<std::mutex> lock(mu);
  v1::Tenant view = tenant;
  v1::TenantUsage* usage = view.mutable_usage();
  usage->set_examples(examples);
  usage->set_stored_bytes(stored_bytes);
  usage->set_datasets(datasets);
  usage->set_running_selections(running_selections);
  usage->set_queued_jobs(queued_jobs);
  return view;
}

absl::StatusOr<std::unique_ptr<TenantRegistry>> TenantRegistry::Load(store::Store* store,
                                                                     bool ensure_default) {
  auto registry = std::unique_ptr<TenantRegistry>(new TenantRegistry(store));
  registry->set_ingest_sharing(IngestSharing{});
  auto tenants = store->ListTenants();
  if (!tenants.ok()) return tenants.status();
  for (v1::Tenant& tenant : *tenants) {
    auto state = std::make_shared<TenantState>();
    state->tenant = std::move(tenant);
    registry->tenants_[state->tenant.name()] = state;
  }
  if (ensure_default && !registry->tenants_.count(kDefaultTenant)) {
    v1::Tenant tenant;
    tenant.set_name(kDefaultTenant);
    if (auto created = registry->Create(tenant); !created.ok()) return created.status();
  }
  return registry;
}

absl::StatusOr<std::shared_ptr<TenantState>> TenantRegistry::Find(const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = tenants_.find(name);
  if (it == tenants_.end())
    return absl::NotFoundError(absl::StrCat("tenant '", name, "' not found"));
  return it->second;
}

absl::StatusOr<v1::Tenant> TenantRegistry::Create(const v1::Tenant& tenant) {
  auto state = std::make_shared<TenantState>();
  state->tenant.set_name(tenant.name());
  *state->tenant.mutable_quotas() = tenant.quotas();
  *state->tenant.mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  std::unique_lock lock(mu_);
  if (absl::Status s = store_->CreateTenant(state->tenant); !s.ok()) return s;
  tenants_[tenant.name()] = state;
  lock.unlock();
  return state->View();
}

absl::StatusOr<v1::Tenant> TenantRegistry::UpdateQuotas(const std::string& name,
                                                        const v1::Quotas& quotas) {
  auto state = Find(name);
  if (!state.ok()) return state.status();
  {
    std::lock_guard<std::mutex> lock((*state)->mu);
    v1::Tenant updated = (*state)->tenant;
    *updated.mutable_quotas() = quotas;
    if (absl::Status s = store_->PutTenant(updated); !s.ok()) return s;
    (*state)->tenant = std::move(updated);
    (*state)->bucket = -1;  // a new rate starts with a full bucket
  }
  return (*state)->View();
}

std::vector<v1::Tenant> TenantRegistry::List() const {
  std::vector<std::shared_ptr<TenantState>> states;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, state] : tenants_) states.push_back(state);
  }
  std::vector<v1::Tenant> out;
  for (auto& state : states) out.push_back(state->View());
  return out;
}

void TenantRegistry::CountLoadedDataset(const std::string& tenant, int64_t examples,
                                        int64_t bytes) {
  std::unique_lock lock(mu_);
  auto& state = tenants_[tenant];
  if (state == nullptr) {
    // A dataset whose tenant record is missing (e.g. written with authentication off):
    // give it an unlimited tenant so its data stays reachable.
    state = std::make_shared<TenantState>();
    state->tenant.set_name(tenant);
    (void)store_->PutTenant(state->tenant);
  }
  std::lock_guard<std::mutex> tlock(state->mu);
  state->examples += examples;
  state->stored_bytes += bytes;
  state->datasets += 1;
}

absl::Status TenantRegistry::Reject(const TenantState& t, const std::string& limit,
                                    const std::string& message) {
  if (on_reject_) on_reject_(t.tenant.name(), limit);
  return absl::ResourceExhaustedError(message);
}

absl::Status TenantRegistry::AddStoredBytes(TenantState& t, int64_t bytes, bool enforce) {
  std::unique_lock<std::mutex> lock(t.mu);
  const v1::Quotas& q = t.tenant.quotas();
  if (enforce && bytes > 0 && q.max_stored_bytes() > 0 &&
      t.stored_bytes + t.reserved_bytes + bytes > q.max_stored_bytes()) {
    const std::string message = absl::StrCat(
        "quota max_stored_bytes of tenant '", t.tenant.name(), "' is ", q.max_stored_bytes(), "; ",
        t.stored_bytes, " are stored and this result adds ", bytes,
        ". Delete selections or datasets, or ask an admin to raise the quota.");
    lock.unlock();
    return Reject(t, "max_stored_bytes", message);
  }
  t.stored_bytes += bytes;
  return absl::OkStatus();
}

absl::Status TenantRegistry::AddStoredBytes(const std::string& tenant, int64_t bytes,
                                            bool enforce) {
  auto t = Find(tenant);
  if (!t.ok()) return absl::OkStatus();
  return AddStoredBytes(**t, bytes, enforce);
}

absl::StatusOr<IngestReservation> TenantRegistry::AdmitIngest(TenantState& t, int64_t records,
                                                              int64_t bytes) {
  std::unique_lock<std::mutex> lock(t.mu);
  const v1::Quotas& q = t.tenant.quotas();
  const std::string& name = t.tenant.name();
  if (q.max_examples() > 0 && t.examples + t.reserved_examples + records > q.max_examples()) {
    lock.unlock();
    return Reject(t, "max_examples",
                  absl::StrCat("quota max_examples of tenant '", name, "' is ", q.max_examples(),
                               "; ", t.examples, " are stored and this request adds up to ",
                               records, ". Delete data or ask an admin to raise the quota."));
  }
  if (q.max_stored_bytes() > 0 &&
      t.stored_bytes + t.reserved_bytes + bytes > q.max_stored_bytes()) {
    lock.unlock();
    return Reject(
        t, "max_stored_bytes",
        absl::StrCat("quota max_stored_bytes of tenant '", name, "' is ", q.max_stored_bytes(),
                     "; ", t.stored_bytes, " are stored and this request adds about ", bytes,
                     ". Delete data or ask an admin to raise the quota."));
  }
  if (q.ingest_records_per_second() > 0) {
    const double rate = q.ingest_records_per_second();
    // A burst below one request's size would refuse that request forever.
    const double burst =
        std::max<double>(q.ingest_burst_records() > 0 ? q.ingest_burst_records() : rate, 1.0);
    const auto now = std::chrono::steady_clock::now();
    if (t.bucket < 0) {
      t.bucket = burst;
    } else {
      t.bucket = std::min(
          burst, t.bucket + rate * std::chrono::duration<double>(now - t.bucket_time).count());
    }
    t.bucket_time = now;
    if (records > burst) {
      lock.unlock();
      return Reject(
          t, "ingest_burst_records",
          absl::StrCat("tenant '", name, "' may ingest at most ", static_cast<int64_t>(burst),
                       " records at once; split the request"));
    }
    if (t.bucket < records) {
      const double wait = (records - t.bucket) / rate;
      lock.unlock();
      return Reject(t, "ingest_records_per_second",
                    absl::StrFormat("ingest rate limit of tenant '%s' (%.0f records/s) reached; "
                                    "retry in %.2f s",
                                    name, rate, wait));
    }
    t.bucket -= records;
  }
  t.reserved_examples += records;
  t.reserved_bytes += bytes;
  return IngestReservation{records, bytes};
}

void TenantRegistry::CommitIngest(TenantState& t, const IngestReservation& r, int64_t examples,
                                  int64_t bytes) {
  std::lock_guard<std::mutex> lock(t.mu);
  t.reserved_examples -= r.examples;
  t.reserved_bytes -= r.bytes;
  t.examples += examples;
  t.stored_bytes += bytes;
}

void TenantRegistry::set_ingest_sharing(const IngestSharing& sharing) {
  sharing_ = sharing;
  sharing_.slots = std::max(1, sharing_.slots);
  sharing_.threads_per_batch = std::max(1, sharing_.threads_per_batch);
  sharing_.nice = std::clamp(sharing_.nice, 0, 19);
  ingest_queue_ = std::make_unique<FairQueue>(sharing_.slots);
  const IngestSharing s = sharing_;
  ingest_workers_ = std::make_unique<WorkerPool>(sharing_.slots, [s] {
    // Per thread on Linux; OpenMP threads this one starts inherit it.
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), s.nice);
    omp_set_num_threads(s.threads_per_batch);
  });
}

void TenantRegistry::RunIngest(const std::string& tenant, int64_t records, int64_t bytes,
                               const std::function<void()>& ingest) {
  if (records <= sharing_.queue_above_records && bytes <= sharing_.queue_above_bytes) {
    // The OpenMP thread count is a setting of this (gRPC) thread: put it back afterwards.
    const int threads = omp_get_max_threads();
    omp_set_num_threads(sharing_.threads_per_batch);
    ingest();
    omp_set_num_threads(threads);
    return;
  }
  // The turn bounds the batches on the workers to their number, so none waits there.
  auto turn = ingest_queue_->Acquire(tenant);
  ingest_workers_->Submit(ingest).wait();
}

absl::Status TenantRegistry::AdmitDataset(TenantState& t) {
  std::unique_lock<std::mutex> lock(t.mu);
  const int64_t max = t.tenant.quotas().max_datasets();
  if (max > 0 && t.datasets >= max) {
    lock.unlock();
    return Reject(t, "max_datasets",
                  absl::StrCat("quota max_datasets of tenant '", t.tenant.name(), "' is ", max,
                               "; delete a dataset or ask an admin to raise the quota"));
  }
  t.datasets += 1;
  return absl::OkStatus();
}

void TenantRegistry::ReleaseDataset(TenantState& t, int64_t examples, int64_t bytes) {
  std::lock_guard<std::mutex> lock(t.mu);
  t.datasets -= 1;
  t.examples -= examples;
  t.stored_bytes -= bytes;
}

}  // namespace curation::server
