#include "server/identity_sync.h"

#include <google/protobuf/util/message_differencer.h>

#include "common/status.h"
#include "server/telemetry.h"

namespace curation::server {

absl::StatusOr<std::unique_ptr<IdentitySync>> IdentitySync::Start(IdentityStore* identity,
                                                                  Authenticator* auth,
                                                                  TenantRegistry* tenants,
                                                                  const Options& options) {
  auto sync = std::unique_ptr<IdentitySync>(new IdentitySync(identity, tenants, options));
  if (!identity->shared()) return sync;
  IdentityStore::Changes changes;
  changes.tenant = [tenants](const v1::Tenant& tenant, int64_t revision) {
    tenants->ApplyTenant(tenant, revision);
  };
  changes.token = [auth](const storage::TokenRecord& record) { auth->ApplyToken(record); };
  changes.token_removed = [auth](const std::string& id) { auth->RemoveToken(id); };
  changes.others_usage = [tenants](const std::string& tenant, const v1::TenantUsage& others) {
    tenants->SetOthersUsage(tenant, others);
  };
  RETURN_IF_ERROR(identity->Subscribe(std::move(changes)));
  return sync;
}

IdentitySync::~IdentitySync() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  identity_->Unsubscribe();
}

void IdentitySync::StartPublishing() {
  if (!identity_->shared() || publisher_.joinable()) return;
  publisher_ = std::thread([this] { PublishLoop(); });
}

absl::Status IdentitySync::PublishNow() {
  std::lock_guard<std::mutex> lock(publish_mu_);
  absl::Status first;
  for (const auto& [tenant, usage] : tenants_->LocalUsage()) {
    auto it = published_.find(tenant);
    if (it != published_.end() &&
        google::protobuf::util::MessageDifferencer::Equals(it->second, usage)) {
      continue;
    }
    if (absl::Status s = identity_->PublishUsage(tenant, usage); !s.ok()) {
      first.Update(s);
      continue;
    }
    published_[tenant] = usage;
  }
  return first;
}

void IdentitySync::PublishLoop() {
  bool failing = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    absl::Status s = PublishNow();
    // One line when publication starts failing and one when it recovers, not one a second.
    if (!s.ok() && !failing) {
      LogEvent("warn", "cannot publish tenant usage; retrying", {{"error", s.ToString()}});
    } else if (s.ok() && failing) {
      LogEvent("info", "publishing tenant usage again");
    }
    failing = !s.ok();
    lock.lock();
    wake_.wait_for(lock, options_.publish_every, [this] { return stop_; });
  }
}

}  // namespace curation::server
