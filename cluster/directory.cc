#include "cluster/directory.h"

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cluster/membership.h"
#include "common/status.h"

namespace curation::cluster {
namespace {

constexpr char kNextIdKey[] = "/curation/next_dataset_id";

std::optional<Placement> Parse(const KeyValue& kv) {
  Placement p;
  if (!FromJson(kv.value, &p.record).ok()) return std::nullopt;
  p.mod_revision = kv.mod_revision;
  return p;
}

}  // namespace

std::string PlacementKey(const std::string& tenant, const std::string& name) {
  return absl::StrCat(tenant, "/", name);
}

absl::StatusOr<std::unique_ptr<Directory>> Directory::Open(EtcdClient* etcd) {
  std::unique_ptr<Directory> d(new Directory(etcd));
  RETURN_IF_ERROR(d->Load());
  return d;
}

Directory::~Directory() { watch_.reset(); }

absl::StatusOr<int64_t> Directory::ReadAll() {
  int64_t revision = 0;
  ASSIGN_OR_RETURN(std::vector<KeyValue> kvs, etcd_->GetPrefix(kDatasetsPrefix, &revision));
  std::map<std::string, Placement> by_key;
  std::map<uint64_t, std::string> key_by_id;
  for (const KeyValue& kv : kvs) {
    if (auto p = Parse(kv)) {
      const std::string key = kv.key.substr(std::string(kDatasetsPrefix).size());
      key_by_id[p->record.internal_id()] = key;
      by_key[key] = *std::move(p);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  by_key_ = std::move(by_key);
  key_by_id_ = std::move(key_by_id);
  return revision;
}

absl::Status Directory::Load() {
  ASSIGN_OR_RETURN(const int64_t revision, ReadAll());
  watch_ = etcd_->WatchPrefix(
      kDatasetsPrefix, revision + 1,
      [this](const std::vector<WatchEvent>& events) {
        for (const WatchEvent& e : events) {
          const std::string key = e.kv.key.substr(std::string(kDatasetsPrefix).size());
          if (e.type == WatchEvent::Type::kDelete) {
            Forget(key, e.kv.mod_revision);
          } else {
            Apply(key, Parse(e.kv));
          }
        }
      },
      [this](const absl::Status& s) {
        // Compacted past what we saw: re-read the whole directory.
        if (absl::IsOutOfRange(s)) (void)ReadAll();
      });
  return absl::OkStatus();
}

void Directory::Forget(const std::string& key, int64_t mod_revision) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  // An entry newer than the removal (a later write, applied already) stays.
  if (it != by_key_.end() && it->second.mod_revision <= mod_revision) {
    key_by_id_.erase(it->second.record.internal_id());
    by_key_.erase(it);
  }
}

void Directory::Apply(const std::string& key, const std::optional<Placement>& placement) {
  if (!placement) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    if (it->second.mod_revision > placement->mod_revision) return;  // stale event
    key_by_id_.erase(it->second.record.internal_id());
  }
  by_key_[key] = *placement;
  key_by_id_[placement->record.internal_id()] = key;
}

std::optional<Placement> Directory::Find(const std::string& tenant, const std::string& name) {
  const std::string key = PlacementKey(tenant, name);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_key_.find(key);
    if (it != by_key_.end()) return it->second;
  }
  auto kv = etcd_->Get(kDatasetsPrefix + key);
  if (!kv.ok() || !kv->has_value()) return std::nullopt;
  auto p = Parse(**kv);
  Apply(key, p);
  return p;
}

absl::StatusOr<std::optional<Placement>> Directory::Fetch(const std::string& tenant,
                                                          const std::string& name) {
  const std::string key = PlacementKey(tenant, name);
  ASSIGN_OR_RETURN(std::optional<KeyValue> kv, etcd_->Get(kDatasetsPrefix + key));
  if (!kv) return std::optional<Placement>();
  auto p = Parse(*kv);
  Apply(key, p);
  return p;
}

std::optional<Placement> Directory::FindByInternalId(uint64_t internal_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = key_by_id_.find(internal_id);
  if (it == key_by_id_.end()) return std::nullopt;
  return by_key_.at(it->second);
}

std::vector<Placement> Directory::List(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Placement> out;
  const std::string prefix = tenant + "/";
  for (auto it = by_key_.lower_bound(prefix);
       it != by_key_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    out.push_back(it->second);
  }
  return out;
}

std::vector<Placement> Directory::All() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Placement> out;
  for (const auto& [key, p] : by_key_) out.push_back(p);
  return out;
}

absl::StatusOr<uint64_t> Directory::AllocateInternalId() {
  while (true) {
    ASSIGN_OR_RETURN(std::optional<KeyValue> kv, etcd_->Get(kNextIdKey));
    uint64_t next = 1;
    if (kv && !absl::SimpleAtoi(kv->value, &next)) {
      return absl::DataLossError(absl::StrCat(kNextIdKey, " holds ", kv->value));
    }
    ASSIGN_OR_RETURN(bool wrote,
                     etcd_->PutIf(kNextIdKey, std::to_string(next + 1), kv ? kv->mod_revision : 0));
    if (wrote) return next;
  }
}

absl::Status Directory::ReserveInternalIdsThrough(uint64_t id) {
  while (true) {
    ASSIGN_OR_RETURN(std::optional<KeyValue> kv, etcd_->Get(kNextIdKey));
    uint64_t next = 1;
    if (kv && !absl::SimpleAtoi(kv->value, &next)) {
      return absl::DataLossError(absl::StrCat(kNextIdKey, " holds ", kv->value));
    }
    if (next > id) return absl::OkStatus();
    ASSIGN_OR_RETURN(bool wrote,
                     etcd_->PutIf(kNextIdKey, std::to_string(id + 1), kv ? kv->mod_revision : 0));
    if (wrote) return absl::OkStatus();
  }
}

absl::StatusOr<Placement> Directory::Reserve(
    const std::string& tenant, const std::string& name, const std::string& member,
    uint64_t internal_id, const std::vector<storage::PartitionPlacement>& partitions) {
  storage::PlacementRecord record;
  record.set_tenant(tenant);
  record.set_name(name);
  record.set_member(member);
  record.set_internal_id(internal_id);
  for (const storage::PartitionPlacement& p : partitions) *record.add_partitions() = p;
  record.set_state(storage::PlacementRecord::CREATING);
  record.set_update_unix_ms(NowUnixMs());
  const std::string key = kDatasetsPrefix + PlacementKey(tenant, name);
  std::optional<KeyValue> current;
  const std::string value = ToJson(record);
  ASSIGN_OR_RETURN(bool wrote, etcd_->PutIf(key, value, 0, 0, &current));
  // A retried write whose first reply was lost meets itself.
  if (!wrote && current && current->value == value) wrote = true;
  if (!wrote) {
    // Taken, whatever its state. One being created may have been made and acknowledged by its
    // creator; one being deleted may yet be restored (its delete failed): only the holding
    // member settles either (ClusterNode's sweep).
    auto held = current ? Parse(*current) : std::nullopt;
    if (held) Apply(PlacementKey(tenant, name), held);
    return absl::AlreadyExistsError(
        held && held->record.state() == storage::PlacementRecord::DELETING
            ? absl::StrCat("dataset ", name, " is being deleted; retry shortly")
            : absl::StrCat("dataset ", name, " exists"));
  }
  ASSIGN_OR_RETURN(std::optional<KeyValue> kv, etcd_->Get(key));
  auto p = kv ? Parse(*kv) : std::nullopt;
  if (!p || p->record.SerializeAsString() != record.SerializeAsString()) {
    return absl::AbortedError(absl::StrCat("dataset ", name, " changed while being created"));
  }
  Apply(PlacementKey(tenant, name), p);
  return *p;
}

absl::StatusOr<Placement> Directory::Update(const Placement& placement,
                                            const storage::PlacementRecord& updated) {
  storage::PlacementRecord record = updated;
  record.set_update_unix_ms(NowUnixMs());
  const std::string key = PlacementKey(record.tenant(), record.name());
  std::optional<KeyValue> current;
  const std::string value = ToJson(record);
  ASSIGN_OR_RETURN(bool wrote,
                   etcd_->PutIf(kDatasetsPrefix + key, value, placement.mod_revision, 0, &current));
  // A retried write whose first reply was lost meets itself.
  if (!wrote && current && current->value == value) wrote = true;
  if (!wrote) {
    if (current) Apply(key, Parse(*current));
    return absl::AbortedError(
        absl::StrCat("dataset ", record.name(), "'s placement changed meanwhile; retry"));
  }
  ASSIGN_OR_RETURN(std::optional<KeyValue> kv, etcd_->Get(kDatasetsPrefix + key));
  auto p = kv ? Parse(*kv) : std::nullopt;
  if (!p || p->record.SerializeAsString() != record.SerializeAsString()) {
    return absl::AbortedError(
        absl::StrCat("dataset ", record.name(), "'s placement changed meanwhile; retry"));
  }
  Apply(key, p);
  return *p;
}

absl::Status Directory::Remove(const Placement& placement) {
  const std::string key = PlacementKey(placement.record.tenant(), placement.record.name());
  ASSIGN_OR_RETURN(bool deleted, etcd_->DeleteIf(kDatasetsPrefix + key, placement.mod_revision));
  if (!deleted) {
    return absl::AbortedError(
        absl::StrCat("dataset ", placement.record.name(), "'s placement changed meanwhile"));
  }
  Forget(key, placement.mod_revision);
  return absl::OkStatus();
}

absl::Status Directory::Claim(const storage::PlacementRecord& claimed) {
  storage::PlacementRecord record = claimed;
  record.set_state(storage::PlacementRecord::READY);
  record.set_update_unix_ms(NowUnixMs());
  const std::string key = PlacementKey(record.tenant(), record.name());
  std::optional<KeyValue> current;
  ASSIGN_OR_RETURN(bool wrote, etcd_->PutIf(kDatasetsPrefix + key, ToJson(record), 0, 0, &current));
  if (!wrote && current) {
    auto held = Parse(*current);
    if (!held) return absl::DataLossError("malformed placement of " + key);
    Apply(key, held);
    if (held->record.member() == record.member() &&
        held->record.internal_id() == record.internal_id()) {
      if (held->record.state() == storage::PlacementRecord::READY) return absl::OkStatus();
      // Our own create or delete that a crash interrupted: the store says the dataset is here.
      return Update(*held, record).status();
    }
    return absl::AlreadyExistsError(absl::StrCat("dataset ", key, " is placed on member ",
                                                 held->record.member(), " (internal id ",
                                                 held->record.internal_id(), ")"));
  }
  ASSIGN_OR_RETURN(std::optional<KeyValue> kv, etcd_->Get(kDatasetsPrefix + key));
  if (kv) Apply(key, Parse(*kv));
  return absl::OkStatus();
}

}  // namespace curation::cluster
