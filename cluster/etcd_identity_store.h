// Tenants, tokens and tenant usage shared by a cluster's members through etcd.
//
// Keys (values are JSON, protobuf's mapping with the .proto field names, so `etcdctl get
// --prefix /curation/` reads them):
//   /curation/tenants/<name>             curation.v1.Tenant (usage cleared)
//   /curation/tokens/<id>                curation.storage.TokenRecord (SHA-256 of the secret)
//   /curation/usage/<tenant>/<member>    curation.v1.TenantUsage: examples, stored_bytes and
//                                        datasets that member holds for the tenant
//   /curation/identity-seed              which member copied its RocksDB's tenants in
//
// A tenant is created with a transaction that requires its key to be absent, so two members
// creating one name give ALREADY_EXISTS to one of them. Every failure to reach etcd is
// UNAVAILABLE and names etcd; authentication meanwhile works from the copy each member holds.
// Usage keys have no lease: a member that is down still holds its data, and its usage keeps
// counting. A member removed for good leaves its keys behind: delete
// /curation/usage/<tenant>/<member> for each tenant (etcdctl del), and the others forget it.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/etcd_client.h"
#include "server/identity_store.h"
#include "store/store.h"

namespace curation::cluster {

inline constexpr char kTenantsPrefix[] = "/curation/tenants/";
inline constexpr char kTokensPrefix[] = "/curation/tokens/";
inline constexpr char kUsagePrefix[] = "/curation/usage/";
inline constexpr char kIdentitySeedKey[] = "/curation/identity-seed";

class EtcdIdentityStore final : public server::IdentityStore {
 public:
  // `etcd` is not owned and must outlive the store. `member` names this member in usage keys.
  EtcdIdentityStore(EtcdClient* etcd, std::string member)
      : etcd_(etcd), member_(std::move(member)) {}
  ~EtcdIdentityStore() override { Unsubscribe(); }

  absl::StatusOr<int64_t> CreateTenant(const v1::Tenant& tenant) override;
  absl::StatusOr<int64_t> PutTenant(const v1::Tenant& tenant) override;
  absl::StatusOr<std::vector<v1::Tenant>> ListTenants() override;
  absl::StatusOr<int64_t> PutToken(const storage::TokenRecord& record) override;
  absl::StatusOr<std::vector<storage::TokenRecord>> ListTokens() override;
  bool shared() const override { return true; }
  // Reads the three prefixes, delivers what they hold, and watches each from the revision it
  // was read at. A watch that reports OUT_OF_RANGE (etcd compacted past where it was) reads
  // its prefix again and delivers it whole. This member's own usage keys are never
  // delivered.
  absl::Status Subscribe(Changes changes) override;
  void Unsubscribe() override;
  absl::Status PublishUsage(const std::string& tenant, const v1::TenantUsage& usage) override;

  // Copies the tenants and tokens of `store` into etcd, each only if its key is absent, when
  // the cluster holds none yet (a single server turned cluster member). One member seeds: the
  // first to claim kIdentitySeedKey, which resumes at its next start if it stopped halfway.
  // Returns how many records it wrote.
  absl::StatusOr<int64_t> SeedFrom(store::Store* store);

  const std::string& member() const { return member_; }

 private:
  enum class Kind { kTenants, kTokens, kUsage };
  static const char* PrefixOf(Kind kind);
  // Reads the prefix of `kind` and delivers all of it; the revision it was read at.
  absl::StatusOr<int64_t> Resync(Kind kind);
  void OnEvents(Kind kind, const std::vector<WatchEvent>& events);
  void OnError(Kind kind, const absl::Status& status);
  // Delivers puts and deletes of `kind`'s keys. Needs deliver_mu_.
  void ApplyLocked(Kind kind, const std::vector<WatchEvent>& events);
  // Records one member's usage of a tenant (nullopt: its key went) and delivers the new sum
  // of the others. Needs deliver_mu_.
  void SetUsageLocked(const std::string& tenant, const std::string& member,
                      const v1::TenantUsage* usage);
  void DeliverOthersLocked(const std::string& tenant);

  EtcdClient* const etcd_;
  const std::string member_;
  std::mutex watches_mu_;  // guards watches_
  std::vector<std::unique_ptr<Watch>> watches_;
  std::atomic<bool> stopping_{false};
  // Serialises deliveries from the three watches' threads; never held while calling etcd
  // from a write, so a write never waits for a delivery.
  std::mutex deliver_mu_;
  Changes changes_;
  std::map<std::string, std::map<std::string, v1::TenantUsage>> usage_;  // tenant -> member
};

// What main() calls in cluster mode: an identity store over `etcd` for the member `member`
// (1-128 bytes, no '/'), after seeding it from `seed_from` (may be null) as SeedFrom does.
// INVALID_ARGUMENT for a bad member name; UNAVAILABLE naming etcd if it cannot be reached.
// The wiring, in order:
//   identity = MakeEtcdIdentityStore(node->etcd(), node->name(), store)   (single server:
//              server::MakeLocalIdentityStore(store))
//   auth = Authenticator::Load(identity, ...); tenants = TenantRegistry::Load(identity, ...)
//   sync = server::IdentitySync::Start(identity, auth, tenants)     (watches; no-op if local)
//   ... Catalog::Load counts the datasets ...  sync->StartPublishing()
//   at shutdown: sync.reset() before the EtcdClient, auth and tenants go; identity after them.
absl::StatusOr<std::unique_ptr<EtcdIdentityStore>> MakeEtcdIdentityStore(EtcdClient* etcd,
                                                                         const std::string& member,
                                                                         store::Store* seed_from);

}  // namespace curation::cluster
