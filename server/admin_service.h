// The gRPC face of curation.v1.AdminService: tenants, tokens, quotas and backups. Every call
// needs an admin token.
#pragma once

#include <string>

#include "curation/v1/admin.grpc.pb.h"
#include "server/auth.h"
#include "server/cluster_node.h"
#include "server/tenants.h"
#include "store/store.h"

namespace curation::server {

class AdminService final : public v1::AdminService::Service {
 public:
  // `backup_dir` empty: CreateBackup answers FAILED_PRECONDITION.
  AdminService(store::Store* store, Authenticator* auth, TenantRegistry* tenants,
               std::string backup_dir)
      : store_(store), auth_(auth), tenants_(tenants), backup_dir_(std::move(backup_dir)) {}

  grpc::Status CreateTenant(grpc::ServerContext*, const v1::CreateTenantRequest*,
                            v1::Tenant*) override;
  grpc::Status GetTenant(grpc::ServerContext*, const v1::GetTenantRequest*, v1::Tenant*) override;
  grpc::Status ListTenants(grpc::ServerContext*, const v1::ListTenantsRequest*,
                           v1::ListTenantsResponse*) override;
  grpc::Status UpdateTenantQuotas(grpc::ServerContext*, const v1::UpdateTenantQuotasRequest*,
                                  v1::Tenant*) override;
  grpc::Status CreateToken(grpc::ServerContext*, const v1::CreateTokenRequest*,
                           v1::CreateTokenResponse*) override;
  grpc::Status ListTokens(grpc::ServerContext*, const v1::ListTokensRequest*,
                          v1::ListTokensResponse*) override;
  grpc::Status RevokeToken(grpc::ServerContext*, const v1::RevokeTokenRequest*,
                           v1::Token*) override;
  grpc::Status CreateBackup(grpc::ServerContext*, const v1::CreateBackupRequest*,
                            v1::Backup*) override;
  // Cluster RPCs (cluster_admin_rpcs.cc): FAILED_PRECONDITION unless SetCluster was called.
  grpc::Status ListMembers(grpc::ServerContext*, const v1::ListMembersRequest*,
                           v1::ListMembersResponse*) override;
  grpc::Status MoveDataset(grpc::ServerContext*, const v1::MoveDatasetRequest*,
                           v1::MoveDatasetResponse*) override;

  // On a cluster member, before serving.
  void SetCluster(ClusterNode* cluster) { cluster_ = cluster; }

 private:
  store::Store* store_;
  Authenticator* auth_;
  TenantRegistry* tenants_;
  const std::string backup_dir_;
  ClusterNode* cluster_ = nullptr;
};

}  // namespace curation::server
