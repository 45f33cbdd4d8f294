#include "server/identity_store.h"

#include "common/status.h"

namespace curation::server {
namespace {

class LocalIdentityStore final : public IdentityStore {
 public:
  explicit LocalIdentityStore(store::Store* store) : store_(store) {}

  absl::StatusOr<int64_t> CreateTenant(const v1::Tenant& tenant) override {
    RETURN_IF_ERROR(store_->CreateTenant(tenant));
    return 0;
  }
  absl::StatusOr<int64_t> PutTenant(const v1::Tenant& tenant) override {
    RETURN_IF_ERROR(store_->PutTenant(tenant));
    return 0;
  }
  absl::StatusOr<std::vector<v1::Tenant>> ListTenants() override { return store_->ListTenants(); }
  absl::StatusOr<int64_t> PutToken(const storage::TokenRecord& record) override {
    RETURN_IF_ERROR(store_->PutToken(record));
    return 0;
  }
  absl::StatusOr<std::vector<storage::TokenRecord>> ListTokens() override {
    return store_->ListTokens();
  }
  bool shared() const override { return false; }
  absl::Status Subscribe(Changes) override { return absl::OkStatus(); }
  void Unsubscribe() override {}
  absl::Status PublishUsage(const std::string&, const v1::TenantUsage&) override {
    return absl::OkStatus();
  }

 private:
  store::Store* store_;
};

}  // namespace

std::unique_ptr<IdentityStore> MakeLocalIdentityStore(store::Store* store) {
  return std::make_unique<LocalIdentityStore>(store);
}

}  // namespace curation::server
