#include "server/admin_service.h"

#include <google/protobuf/util/time_util.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/curation_service.h"
#include "server/validation.h"

namespace curation::server {
namespace {

absl::Status CheckQuotas(const v1::Quotas& q, const std::string& path) {
  if (q.max_examples() < 0) return InvalidField(path + ".max_examples", "must not be negative");
  if (q.max_stored_bytes() < 0) {
    return InvalidField(path + ".max_stored_bytes", "must not be negative");
  }
  if (q.max_datasets() < 0) return InvalidField(path + ".max_datasets", "must not be negative");
  if (q.max_concurrent_selections() < 0) {
    return InvalidField(path + ".max_concurrent_selections", "must not be negative");
  }
  if (!(q.ingest_records_per_second() >= 0) || !std::isfinite(q.ingest_records_per_second())) {
    return InvalidField(path + ".ingest_records_per_second", "must be a non-negative number");
  }
  if (!(q.ingest_burst_records() >= 0) || !std::isfinite(q.ingest_burst_records())) {
    return InvalidField(path + ".ingest_burst_records", "must be a non-negative number");
  }
  if (q.max_queued_jobs() < 0)
    return InvalidField(path + ".max_queued_jobs", "must not be negative");
  // A weight is a share of turns: beyond 1000 (or below 1/1000) one tenant would own the
  // workers, which is what quotas exist to prevent.
  if (!(q.scheduling_weight() == 0 ||
        (q.scheduling_weight() >= 1e-3 && q.scheduling_weight() <= 1e3))) {
    return InvalidField(path + ".scheduling_weight", "must be 0 (= 1) or in [0.001, 1000]");
  }
  if (!(q.max_job_seconds() >= 0) || !std::isfinite(q.max_job_seconds())) {
    return InvalidField(path + ".max_job_seconds", "must be a non-negative number");
  }
  return absl::OkStatus();
}

}  // namespace

grpc::Status AdminService::CreateTenant(grpc::ServerContext* context,
                                        const v1::CreateTenantRequest* request,
                                        v1::Tenant* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) return ToGrpc(caller.status());
  if (auto e = CheckDatasetName("tenant.name", request->tenant().name())) {
    return ToGrpc(InvalidField(e->field, e->reason));
  }
  if (absl::Status s = CheckQuotas(request->tenant().quotas(), "tenant.quotas"); !s.ok()) {
    return ToGrpc(s);
  }
  auto tenant = tenants_->Create(request->tenant());
  if (!tenant.ok()) return ToGrpc(tenant.status());
  *response = *std::move(tenant);
  return grpc::Status::OK;
}

grpc::Status AdminService::GetTenant(grpc::ServerContext* context,
                                     const v1::GetTenantRequest* request, v1::Tenant* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) return ToGrpc(caller.status());
  auto state = tenants_->Find(request->name());
  if (!state.ok()) return ToGrpc(state.status());
  *response = (*state)->ClusterView();
  return grpc::Status::OK;
}

grpc::Status AdminService::ListTenants(grpc::ServerContext* context,
                                       const v1::ListTenantsRequest* request,
                                       v1::ListTenantsResponse* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) return ToGrpc(caller.status());
  if (request->page_size() < 0) return ToGrpc(InvalidField("page_size", "must not be negative"));
  const size_t page_size = request->page_size() == 0 ? 100 : std::min(request->page_size(), 1000);
  // Tenants are few (teams, not users); the token is simply the last name listed.
  for (v1::Tenant& tenant : tenants_->ClusterList()) {
    if (!request->page_token().empty() && tenant.name() <= request->page_token()) continue;
    if (static_cast<size_t>(response->tenants_size()) == page_size) {
      response->set_next_page_token(response->tenants(response->tenants_size() - 1).name());
      break;
    }
    *response->add_tenants() = std::move(tenant);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::UpdateTenantQuotas(grpc::ServerContext* context,
                                              const v1::UpdateTenantQuotasRequest* request,
                                              v1::Tenant* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) return ToGrpc(caller.status());
  if (absl::Status s = CheckQuotas(request->quotas(), "quotas"); !s.ok()) return ToGrpc(s);
  auto tenant = tenants_->UpdateQuotas(request->name(), request->quotas());
  if (!tenant.ok()) return ToGrpc(tenant.status());
  *response = *std::move(tenant);
  return grpc::Status::OK;
}

grpc::Status AdminService::CreateToken(grpc::ServerContext* context,
                                       const v1::CreateTokenRequest* request,
                                       v1::CreateTokenResponse* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) return ToGrpc(caller.status());
  switch (request->role()) {
    case v1::ROLE_READER:
    case v1::ROLE_WRITER:
      if (request->tenant().empty()) {
        return ToGrpc(InvalidField("tenant", "required for READER and WRITER tokens"));
      }
      if (auto t = tenants_->Find(request->tenant()); !t.ok()) return ToGrpc(t.status());
      break;
    case v1::ROLE_ADMIN:
      if (!request->tenant().empty()) {
        return ToGrpc(InvalidField("tenant", "must be empty for ADMIN tokens"));
      }
      break;
    default:
      return ToGrpc(InvalidField("role", "must be ROLE_READER, ROLE_WRITER or ROLE_ADMIN"));
  }
  if (request->description().size() > 1024) {
    return ToGrpc(InvalidField("description", "at most 1024 bytes"));
  }
  auto created = auth_->CreateToken(*request);
  if (!created.ok()) return ToGrpc(created.status());
  *response = *std::move(created);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListTokens(grpc::ServerContext* context,
                                      const v1::ListTokensRequest* request,
                                      v1::ListTokensResponse* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) return ToGrpc(caller.status());
  for (v1::Token& token : auth_->ListTokens(request->tenant())) {
    *response->add_tokens() = std::move(token);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::RevokeToken(grpc::ServerContext* context,
                                       const v1::RevokeTokenRequest* request, v1::Token* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) return ToGrpc(caller.status());
  auto token = auth_->RevokeToken(request->id());
  if (!token.ok()) return ToGrpc(token.status());
  *response = *std::move(token);
  return grpc::Status::OK;
}

grpc::Status AdminService::CreateBackup(grpc::ServerContext* context,
                                        const v1::CreateBackupRequest*, v1::Backup* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) return ToGrpc(caller.status());
  if (backup_dir_.empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the server was started without --backup-dir");
  }
  auto backup = store_->CreateBackup(backup_dir_);
  if (!backup.ok()) return ToGrpc(backup.status());
  response->set_backup_id(backup->first);
  response->set_directory(backup_dir_);
  response->set_size_bytes(backup->second);
  *response->mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  return grpc::Status::OK;
}

}  // namespace curation::server
