// Where tenants and tokens persist, and how changes made elsewhere reach this process.
//
// A single server keeps them in its own RocksDB (LocalIdentityStore, nothing ever changes
// elsewhere). Members of a cluster share them through etcd (cluster/etcd_identity_store.h):
// a token created on one member works on every member, and each member publishes its
// tenants' usage so that quotas hold for the cluster's total.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "curation/storage/records.pb.h"
#include "curation/v1/admin.pb.h"
#include "store/store.h"

namespace curation::server {

// Thread-safe. Writes return a revision: a number that grows with every change of the
// record, so that a writer can order its own result against changes delivered to
// Subscribe's callbacks meanwhile; 0 where the store has no other writers (local).
class IdentityStore {
 public:
  // What Subscribe delivers, each on a thread of the store's, never concurrently with
  // itself. Every callback may be empty.
  struct Changes {
    // A tenant created or its quotas changed, as stored now (usage cleared).
    std::function<void(const v1::Tenant& tenant, int64_t revision)> tenant;
    // A token created or revoked.
    std::function<void(const storage::TokenRecord& record)> token;
    // A token record deleted outright (by an operator): it must stop authenticating.
    std::function<void(const std::string& token_id)> token_removed;
    // The sum of the usage the other members last published for `tenant` (examples,
    // stored_bytes and datasets; zeros when none has any).
    std::function<void(const std::string& tenant, const v1::TenantUsage& others)> others_usage;
  };

  virtual ~IdentityStore() = default;

  // ALREADY_EXISTS if a tenant of that name exists (anywhere in the cluster).
  virtual absl::StatusOr<int64_t> CreateTenant(const v1::Tenant& tenant) = 0;
  // Creates or replaces (the usage field is not stored).
  virtual absl::StatusOr<int64_t> PutTenant(const v1::Tenant& tenant) = 0;
  virtual absl::StatusOr<std::vector<v1::Tenant>> ListTenants() = 0;
  // Creates or replaces the token of `record.token().id()`.
  virtual absl::StatusOr<int64_t> PutToken(const storage::TokenRecord& record) = 0;
  virtual absl::StatusOr<std::vector<storage::TokenRecord>> ListTokens() = 0;

  // Whether other processes share this store: only then do Subscribe's callbacks ever run
  // and is usage worth publishing.
  virtual bool shared() const = 0;
  // Starts delivering changes made elsewhere (and, once, everything as stored now, so that
  // nothing written between the callers' Load and this call is missed). At most once.
  virtual absl::Status Subscribe(Changes changes) = 0;
  // Stops the deliveries; when it returns, no callback runs or will run. Idempotent.
  virtual void Unsubscribe() = 0;
  // Publishes this process's own usage of `tenant` for the others' admission checks.
  virtual absl::Status PublishUsage(const std::string& tenant, const v1::TenantUsage& usage) = 0;
};

// Today's single-server behaviour over the server's RocksDB store (not owned).
std::unique_ptr<IdentityStore> MakeLocalIdentityStore(store::Store* store);

}  // namespace curation::server
