#include "cluster/etcd_identity_store.h"

#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/telemetry.h"

namespace curation::cluster {
namespace {

// Names etcd in every error, so that an admin who gets UNAVAILABLE knows what to fix.
absl::Status EtcdError(const absl::Status& status, const std::string& what) {
  return absl::Status(status.code(), absl::StrCat("etcd: ", what, ": ", status.message()));
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  // Only fails on messages that are not well-formed protos, which ours always are.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

// Unknown fields are ignored: a member of a newer version may write fields this one lacks.
absl::Status FromJson(const std::string& json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(json, message, options);
  if (!status.ok()) return absl::InvalidArgumentError(std::string(status.message()));
  return absl::OkStatus();
}

std::string TenantKey(const std::string& name) { return absl::StrCat(kTenantsPrefix, name); }
std::string TokenKey(const std::string& id) { return absl::StrCat(kTokensPrefix, id); }

// "/curation/usage/<tenant>/<member>" -> (tenant, member); tenant names hold no '/'.
bool ParseUsageKey(const std::string& key, std::string* tenant, std::string* member) {
  if (!absl::StartsWith(key, kUsagePrefix)) return false;
  const std::string rest = key.substr(sizeof(kUsagePrefix) - 1);
  const size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size()) return false;
  *tenant = rest.substr(0, slash);
  *member = rest.substr(slash + 1);
  return true;
}

void LogBadValue(const std::string& key, const absl::Status& status) {
  server::LogEvent("warn", "ignoring an etcd value that does not parse",
                   {{"key", key}, {"error", status.ToString()}});
}

}  // namespace

const char* EtcdIdentityStore::PrefixOf(Kind kind) {
  switch (kind) {
    case Kind::kTenants:
      return kTenantsPrefix;
    case Kind::kTokens:
      return kTokensPrefix;
    case Kind::kUsage:
      return kUsagePrefix;
  }
  return "";
}

absl::StatusOr<int64_t> EtcdIdentityStore::CreateTenant(const v1::Tenant& tenant) {
  v1::Tenant stored = tenant;
  stored.clear_usage();
  const std::string json = ToJson(stored);
  std::optional<KeyValue> current;
  auto wrote = etcd_->PutIf(TenantKey(tenant.name()), json, /*expected=*/0, 0, &current);
  if (!wrote.ok()) {
    return EtcdError(wrote.status(), absl::StrCat("creating tenant '", tenant.name(), "'"));
  }
  // A retry inside PutIf can find its own first attempt, whose reply was lost; the value
  // (with its create_time in nanoseconds) tells ours from another member's.
  if (!*wrote && !(current.has_value() && current->value == json)) {
    return absl::AlreadyExistsError(absl::StrCat("tenant '", tenant.name(), "' already exists"));
  }
  // PutIf does not say which revision it wrote at. 0 orders our creation before any change
  // the watch brings, which is right: the watch delivers this very write next, or a newer one.
  return 0;
}

absl::StatusOr<int64_t> EtcdIdentityStore::PutTenant(const v1::Tenant& tenant) {
  v1::Tenant stored = tenant;
  stored.clear_usage();
  auto revision = etcd_->Put(TenantKey(tenant.name()), ToJson(stored));
  if (!revision.ok()) {
    return EtcdError(revision.status(), absl::StrCat("storing tenant '", tenant.name(), "'"));
  }
  return *revision;
}

absl::StatusOr<std::vector<v1::Tenant>> EtcdIdentityStore::ListTenants() {
  auto kvs = etcd_->GetPrefix(kTenantsPrefix);
  if (!kvs.ok()) return EtcdError(kvs.status(), "listing tenants");
  std::vector<v1::Tenant> out;
  for (const KeyValue& kv : *kvs) {
    v1::Tenant tenant;
    if (absl::Status s = FromJson(kv.value, &tenant); !s.ok()) {
      LogBadValue(kv.key, s);
      continue;
    }
    out.push_back(std::move(tenant));
  }
  return out;
}

absl::StatusOr<int64_t> EtcdIdentityStore::PutToken(const storage::TokenRecord& record) {
  auto revision = etcd_->Put(TokenKey(record.token().id()), ToJson(record));
  if (!revision.ok()) {
    return EtcdError(revision.status(), absl::StrCat("storing token '", record.token().id(), "'"));
  }
  return *revision;
}

absl::StatusOr<std::vector<storage::TokenRecord>> EtcdIdentityStore::ListTokens() {
  auto kvs = etcd_->GetPrefix(kTokensPrefix);
  if (!kvs.ok()) return EtcdError(kvs.status(), "listing tokens");
  std::vector<storage::TokenRecord> out;
  for (const KeyValue& kv : *kvs) {
    storage::TokenRecord record;
    if (absl::Status s = FromJson(kv.value, &record); !s.ok()) {
      LogBadValue(kv.key, s);
      continue;
    }
    out.push_back(std::move(record));
  }
  return out;
}

absl::Status EtcdIdentityStore::PublishUsage(const std::string& tenant,
                                             const v1::TenantUsage& usage) {
  v1::TenantUsage stored;
  stored.set_examples(usage.examples());
  stored.set_stored_bytes(usage.stored_bytes());
  stored.set_datasets(usage.datasets());
  auto revision = etcd_->Put(absl::StrCat(kUsagePrefix, tenant, "/", member_), ToJson(stored));
  if (!revision.ok()) {
    return EtcdError(revision.status(), absl::StrCat("publishing the usage of '", tenant, "'"));
  }
  return absl::OkStatus();
}

absl::Status EtcdIdentityStore::Subscribe(Changes changes) {
  {
    std::lock_guard<std::mutex> lock(deliver_mu_);
    changes_ = std::move(changes);
  }
  std::vector<std::unique_ptr<Watch>> watches;
  for (Kind kind : {Kind::kTenants, Kind::kTokens, Kind::kUsage}) {
    auto revision = Resync(kind);
    if (!revision.ok()) return revision.status();  // `watches` end here
    watches.push_back(etcd_->WatchPrefix(
        PrefixOf(kind), *revision + 1,
        [this, kind](const std::vector<WatchEvent>& events) { OnEvents(kind, events); },
        [this, kind](const absl::Status& status) { OnError(kind, status); }));
  }
  std::lock_guard<std::mutex> lock(watches_mu_);
  for (auto& watch : watches) watches_.push_back(std::move(watch));
  return absl::OkStatus();
}

void EtcdIdentityStore::Unsubscribe() {
  stopping_ = true;
  std::vector<std::unique_ptr<Watch>> watches;
  {
    std::lock_guard<std::mutex> lock(watches_mu_);
    watches.swap(watches_);
  }
  // Destroying a watch joins its thread, which may be waiting for deliver_mu_: not held here.
  watches.clear();
}

absl::StatusOr<int64_t> EtcdIdentityStore::Resync(Kind kind) {
  int64_t revision = 0;
  auto kvs = etcd_->GetPrefix(PrefixOf(kind), &revision);
  if (!kvs.ok()) return EtcdError(kvs.status(), absl::StrCat("reading ", PrefixOf(kind)));
  std::lock_guard<std::mutex> lock(deliver_mu_);
  if (kind == Kind::kUsage) {
    // Keys absent from the listing went while the watch could not see them: start afresh,
    // and tell every tenant whose sum may have changed.
    std::set<std::string> tenants;
    for (const auto& [tenant, members] : usage_) tenants.insert(tenant);
    usage_.clear();
    for (const KeyValue& kv : *kvs) {
      std::string tenant, member;
      v1::TenantUsage usage;
      if (!ParseUsageKey(kv.key, &tenant, &member) || member == member_) continue;
      if (absl::Status s = FromJson(kv.value, &usage); !s.ok()) {
        LogBadValue(kv.key, s);
        continue;
      }
      usage_[tenant][member] = usage;
      tenants.insert(tenant);
    }
    for (const std::string& tenant : tenants) DeliverOthersLocked(tenant);
    return revision;
  }
  std::vector<WatchEvent> events;
  for (const KeyValue& kv : *kvs) events.push_back(WatchEvent{WatchEvent::Type::kPut, kv});
  ApplyLocked(kind, events);
  return revision;
}

void EtcdIdentityStore::OnEvents(Kind kind, const std::vector<WatchEvent>& events) {
  std::lock_guard<std::mutex> lock(deliver_mu_);
  if (stopping_) return;
  ApplyLocked(kind, events);
}

void EtcdIdentityStore::OnError(Kind kind, const absl::Status& status) {
  if (!absl::IsOutOfRange(status)) return;  // the watch resumes where it was by itself
  // The watch resumed from now and missed changes: read the prefix whole. etcd answered just
  // now, so a few quick tries suffice; past them, the next compaction error tries again.
  for (int attempt = 0; attempt < 5 && !stopping_; ++attempt) {
    if (Resync(kind).ok()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  server::LogEvent("warn", "could not re-read etcd after a compaction; changes may be missed",
                   {{"prefix", PrefixOf(kind)}});
}

void EtcdIdentityStore::ApplyLocked(Kind kind, const std::vector<WatchEvent>& events) {
  for (const WatchEvent& event : events) {
    const KeyValue& kv = event.kv;
    const bool put = event.type == WatchEvent::Type::kPut;
    switch (kind) {
      case Kind::kTenants: {
        // A tenant is never deleted by the service; a key an operator deleted leaves the
        // tenant as it was, with its data.
        if (!put || !changes_.tenant) break;
        v1::Tenant tenant;
        if (absl::Status s = FromJson(kv.value, &tenant); !s.ok()) {
          LogBadValue(kv.key, s);
          break;
        }
        if (tenant.name() != kv.key.substr(sizeof(kTenantsPrefix) - 1)) {
          LogBadValue(kv.key, absl::InvalidArgumentError("the name differs from the key's"));
          break;
        }
        changes_.tenant(tenant, kv.mod_revision);
        break;
      }
      case Kind::kTokens: {
        if (!put) {
          if (changes_.token_removed)
            changes_.token_removed(kv.key.substr(sizeof(kTokensPrefix) - 1));
          break;
        }
        if (!changes_.token) break;
        storage::TokenRecord record;
        if (absl::Status s = FromJson(kv.value, &record); !s.ok()) {
          LogBadValue(kv.key, s);
          break;
        }
        if (record.token().id() != kv.key.substr(sizeof(kTokensPrefix) - 1)) {
          LogBadValue(kv.key, absl::InvalidArgumentError("the id differs from the key's"));
          break;
        }
        changes_.token(record);
        break;
      }
      case Kind::kUsage: {
        std::string tenant, member;
        if (!ParseUsageKey(kv.key, &tenant, &member) || member == member_) break;
        if (!put) {
          SetUsageLocked(tenant, member, nullptr);
          break;
        }
        v1::TenantUsage usage;
        if (absl::Status s = FromJson(kv.value, &usage); !s.ok()) {
          LogBadValue(kv.key, s);
          break;
        }
        SetUsageLocked(tenant, member, &usage);
        break;
      }
    }
  }
}

void EtcdIdentityStore::SetUsageLocked(const std::string& tenant, const std::string& member,
                                       const v1::TenantUsage* usage) {
  if (usage == nullptr) {
    auto it = usage_.find(tenant);
    if (it == usage_.end()) return;
    it->second.erase(member);
  } else {
    usage_[tenant][member] = *usage;
  }
  DeliverOthersLocked(tenant);
}

void EtcdIdentityStore::DeliverOthersLocked(const std::string& tenant) {
  v1::TenantUsage sum;
  if (auto it = usage_.find(tenant); it != usage_.end()) {
    for (const auto& [member, usage] : it->second) {
      sum.set_examples(sum.examples() + usage.examples());
      sum.set_stored_bytes(sum.stored_bytes() + usage.stored_bytes());
      sum.set_datasets(sum.datasets() + usage.datasets());
    }
    if (it->second.empty()) usage_.erase(it);
  }
  if (changes_.others_usage) changes_.others_usage(tenant, sum);
}

absl::StatusOr<int64_t> EtcdIdentityStore::SeedFrom(store::Store* store) {
  ASSIGN_OR_RETURN(std::vector<v1::Tenant> tenants, store->ListTenants());
  ASSIGN_OR_RETURN(std::vector<storage::TokenRecord> tokens, store->ListTokens());
  if (tenants.empty() && tokens.empty()) return 0;
  const std::string claim = absl::StrCat("seeding by ", member_);
  auto marker = etcd_->Get(kIdentitySeedKey);
  if (!marker.ok()) return EtcdError(marker.status(), "reading the seed marker");
  if (marker->has_value()) {
    // Done, or another member's; only a seed this member began and did not finish resumes.
    if ((*marker)->value != claim) return 0;
  } else {
    for (const char* prefix : {kTenantsPrefix, kTokensPrefix}) {
      auto kvs = etcd_->GetPrefix(prefix);
      if (!kvs.ok()) return EtcdError(kvs.status(), absl::StrCat("reading ", prefix));
      if (!kvs->empty()) return 0;  // the cluster has its own
    }
    std::optional<KeyValue> current;
    auto claimed = etcd_->PutIf(kIdentitySeedKey, claim, 0, 0, &current);
    if (!claimed.ok()) return EtcdError(claimed.status(), "claiming the seed marker");
    if (!*claimed && !(current.has_value() && current->value == claim)) return 0;  // another's
  }
  int64_t written = 0;
  // Never overwrite: a key present is newer than this member's copy.
  for (v1::Tenant& tenant : tenants) {
    tenant.clear_usage();
    auto wrote = etcd_->PutIf(TenantKey(tenant.name()), ToJson(tenant), 0);
    if (!wrote.ok()) return EtcdError(wrote.status(), "seeding tenants");
    written += *wrote;
  }
  for (const storage::TokenRecord& record : tokens) {
    auto wrote = etcd_->PutIf(TokenKey(record.token().id()), ToJson(record), 0);
    if (!wrote.ok()) return EtcdError(wrote.status(), "seeding tokens");
    written += *wrote;
  }
  auto done = etcd_->Put(kIdentitySeedKey, absl::StrCat("done by ", member_));
  if (!done.ok()) return EtcdError(done.status(), "marking the seed done");
  server::LogEvent("info", "seeded etcd with this member's tenants and tokens",
                   {{"member", member_}, {"written", std::to_string(written)}});
  return written;
}

absl::StatusOr<std::unique_ptr<EtcdIdentityStore>> MakeEtcdIdentityStore(EtcdClient* etcd,
                                                                         const std::string& member,
                                                                         store::Store* seed_from) {
  if (member.empty() || member.size() > 128 || member.find('/') != std::string::npos) {
    return InvalidField("member", "must be 1 to 128 bytes without '/'");
  }
  auto identity = std::make_unique<EtcdIdentityStore>(etcd, member);
  if (seed_from != nullptr) {
    if (auto seeded = identity->SeedFrom(seed_from); !seeded.ok()) return seeded.status();
  }
  return identity;
}

}  // namespace curation::cluster
