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
#include "common/status.h"
#include "server/auth.h"

namespace curation::server {
namespace {

// "N are stored", with the other members' part when a cluster shares the quota.
std::string Stored(int64_t here, int64_t others) {
  if (others == 0) return absl::StrCat(here, " are stored");
  return absl::StrCat(here + others, " are stored (", others, " on other members)");
}

}  // namespace

v1::Tenant TenantState::View() {
  std::lock_guard<std::mutex> lock(mu);
  return ViewLocked();
}

v1::Tenant TenantState::ViewLocked() const {
  v1::Tenant view = tenant;
  v1::TenantUsage* usage = view.mutable_usage();
  usage->set_examples(examples);
  usage->set_stored_bytes(stored_bytes);
  usage->set_datasets(datasets);
  usage->set_running_selections(running_selections);
  usage->set_queued_jobs(queued_jobs);
  return view;
}

v1::Tenant TenantState::ClusterView() {
  std::lock_guard<std::mutex> lock(mu);
  v1::Tenant view = ViewLocked();
  v1::TenantUsage* usage = view.mutable_usage();
  usage->set_examples(usage->examples() + others.examples());
  usage->set_stored_bytes(usage->stored_bytes() + others.stored_bytes());
  usage->set_datasets(usage->datasets() + others.datasets());
  return view;
}

absl::StatusOr<std::unique_ptr<TenantRegistry>> TenantRegistry::Load(store::Store* store,
                                                                     bool ensure_default) {
  std::unique_ptr<IdentityStore> identity = MakeLocalIdentityStore(store);
  ASSIGN_OR_RETURN(auto registry, Load(identity.get(), ensure_default));
  registry->owned_identity_ = std::move(identity);
  return registry;
}

absl::StatusOr<std::unique_ptr<TenantRegistry>> TenantRegistry::Load(IdentityStore* identity,
                                                                     bool ensure_default) {
  auto registry = std::unique_ptr<TenantRegistry>(new TenantRegistry(identity));
  registry->set_ingest_sharing(IngestSharing{});
  ASSIGN_OR_RETURN(std::vector<v1::Tenant> tenants, identity->ListTenants());
  for (v1::Tenant& tenant : tenants) {
    auto state = std::make_shared<TenantState>();
    state->tenant = std::move(tenant);
    state->tenant.clear_usage();
    registry->tenants_[state->tenant.name()] = state;
  }
  if (ensure_default && !registry->tenants_.count(kDefaultTenant)) {
    v1::Tenant tenant;
    tenant.set_name(kDefaultTenant);
    auto created = registry->Create(tenant);
    // Another member of a cluster may have created it since the list: it is known soon.
    if (!created.ok() && !absl::IsAlreadyExists(created.status())) return created.status();
    if (!created.ok()) registry->ApplyTenant(tenant, 0);
  }
  return registry;
}

std::shared_ptr<TenantState> TenantRegistry::NewStateLocked(const v1::Tenant& tenant,
                                                            int64_t revision) {
  auto state = std::make_shared<TenantState>();
  state->tenant = tenant;
  state->tenant.clear_usage();
  state->revision = revision;
  if (auto it = orphan_others_.find(tenant.name()); it != orphan_others_.end()) {
    state->others = it->second;
    orphan_others_.erase(it);
  }
  return state;
}

absl::StatusOr<std::shared_ptr<TenantState>> TenantRegistry::Find(const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = tenants_.find(name);
  if (it == tenants_.end())
    return absl::NotFoundError(absl::StrCat("tenant '", name, "' not found"));
  return it->second;
}

absl::StatusOr<v1::Tenant> TenantRegistry::Create(const v1::Tenant& tenant) {
  v1::Tenant record;
  record.set_name(tenant.name());
  *record.mutable_quotas() = tenant.quotas();
  *record.mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  std::lock_guard<std::mutex> write(write_mu_);
  ASSIGN_OR_RETURN(const int64_t revision, identity_->CreateTenant(record));
  std::shared_ptr<TenantState> state;
  {
    std::unique_lock lock(mu_);
    auto& slot = tenants_[tenant.name()];
    // A cluster's watch may have brought our own creation in already.
    if (slot == nullptr) slot = NewStateLocked(record, revision);
    state = slot;
  }
  return state->ClusterView();
}

absl::StatusOr<v1::Tenant> TenantRegistry::UpdateQuotas(const std::string& name,
                                                        const v1::Quotas& quotas) {
  ASSIGN_OR_RETURN(std::shared_ptr<TenantState> state, Find(name));
  std::lock_guard<std::mutex> write(write_mu_);
  v1::Tenant updated;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    updated = state->tenant;
  }
  *updated.mutable_quotas() = quotas;
  // Not under the tenant's lock: its admission checks must not wait for etcd.
  ASSIGN_OR_RETURN(const int64_t revision, identity_->PutTenant(updated));
  ApplyTenant(updated, revision);
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->bucket = -1;  // an admin's update starts the rate afresh, whatever changed
  }
  return state->ClusterView();
}

void TenantRegistry::ApplyTenant(const v1::Tenant& tenant, int64_t revision) {
  std::shared_ptr<TenantState> state;
  {
    std::unique_lock lock(mu_);
    auto& slot = tenants_[tenant.name()];
    if (slot == nullptr) {
      slot = NewStateLocked(tenant, revision);
      return;
    }
    state = slot;
  }
  std::lock_guard<std::mutex> lock(state->mu);
  if (revision != 0 && revision <= state->revision) return;
  const bool new_rate =
      tenant.quotas().ingest_records_per_second() !=
          state->tenant.quotas().ingest_records_per_second() ||
      tenant.quotas().ingest_burst_records() != state->tenant.quotas().ingest_burst_records();
  // The name stays as it is: it never changes, and Reject reads it without the lock.
  *state->tenant.mutable_quotas() = tenant.quotas();
  *state->tenant.mutable_create_time() = tenant.create_time();
  state->revision = revision;
  if (new_rate) state->bucket = -1;  // a new rate starts with a full bucket
}

void TenantRegistry::SetOthersUsage(const std::string& tenant, const v1::TenantUsage& others) {
  std::shared_ptr<TenantState> state;
  {
    std::unique_lock lock(mu_);
    auto it = tenants_.find(tenant);
    if (it == tenants_.end()) {
      orphan_others_[tenant] = others;
      return;
    }
    state = it->second;
  }
  std::lock_guard<std::mutex> lock(state->mu);
  state->others = others;
}

std::map<std::string, v1::TenantUsage> TenantRegistry::LocalUsage() const {
  std::vector<std::shared_ptr<TenantState>> states;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, state] : tenants_) states.push_back(state);
  }
  std::map<std::string, v1::TenantUsage> out;
  for (auto& state : states) {
    std::lock_guard<std::mutex> lock(state->mu);
    v1::TenantUsage& usage = out[state->tenant.name()];
    usage.set_examples(state->examples);
    usage.set_stored_bytes(state->stored_bytes);
    usage.set_datasets(state->datasets);
  }
  return out;
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

std::vector<v1::Tenant> TenantRegistry::ClusterList() const {
  std::vector<std::shared_ptr<TenantState>> states;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, state] : tenants_) states.push_back(state);
  }
  std::vector<v1::Tenant> out;
  for (auto& state : states) out.push_back(state->ClusterView());
  return out;
}

void TenantRegistry::CountLoadedDataset(const std::string& tenant, int64_t examples,
                                        int64_t bytes) {
  std::unique_lock lock(mu_);
  auto& state = tenants_[tenant];
  if (state == nullptr) {
    // A dataset whose tenant record is missing (e.g. written with authentication off):
    // give it an unlimited tenant so its data stays reachable. Created, never put: in a
    // cluster another member may hold the real record, which then arrives by the watch.
    v1::Tenant record;
    record.set_name(tenant);
    state = NewStateLocked(record, 0);
    (void)identity_->CreateTenant(record);
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
      t.stored_bytes + t.others.stored_bytes() + t.reserved_bytes + bytes > q.max_stored_bytes()) {
    const std::string message = absl::StrCat(
        "quota max_stored_bytes of tenant '", t.tenant.name(), "' is ", q.max_stored_bytes(), "; ",
        Stored(t.stored_bytes, t.others.stored_bytes()), " and this result adds ", bytes,
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
  if (q.max_examples() > 0 &&
      t.examples + t.others.examples() + t.reserved_examples + records > q.max_examples()) {
    lock.unlock();
    return Reject(
        t, "max_examples",
        absl::StrCat("quota max_examples of tenant '", name, "' is ", q.max_examples(), "; ",
                     Stored(t.examples, t.others.examples()), " and this request adds up to ",
                     records, ". Delete data or ask an admin to raise the quota."));
  }
  if (q.max_stored_bytes() > 0 &&
      t.stored_bytes + t.others.stored_bytes() + t.reserved_bytes + bytes > q.max_stored_bytes()) {
    lock.unlock();
    return Reject(
        t, "max_stored_bytes",
        absl::StrCat("quota max_stored_bytes of tenant '", name, "' is ", q.max_stored_bytes(),
                     "; ", Stored(t.stored_bytes, t.others.stored_bytes()),
                     " and this request adds about ", bytes,
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
  if (max > 0 && t.datasets + t.others.datasets() >= max) {
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
