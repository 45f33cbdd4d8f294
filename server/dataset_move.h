// Moving a dataset between members (AdminService.MoveDataset), on the member that holds it:
// freeze it (writes answer UNAVAILABLE, reads go on), stream its rows to the destination's
// MemberService.ImportDataset, switch its directory entry to the destination in one etcd
// transaction, then delete the local copy. Any failure before the switch unfreezes it here
// and drops the destination's copy: the dataset is never held by two members in the
// directory, and nothing acknowledged is lost (no write lands between the freeze and the
// switch).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "curation/cluster/v1/member.grpc.pb.h"
#include "curation/v1/admin.pb.h"
#include "jobs/partition_pool.h"
#include "server/auth.h"
#include "server/cluster_node.h"

namespace curation::server {

// Moves `tenant`/`dataset`, held here, to member `to`. `call` is the admin's call, whose token
// the destination checks. INVALID_ARGUMENT for an unknown or unhealthy destination or this
// member itself; FAILED_PRECONDITION while it has queued or running operations; UNAVAILABLE if
// etcd or the destination fails (nothing changed then).
absl::StatusOr<v1::MoveDatasetResponse> MoveDataset(ClusterNode& node,
                                                    const grpc::ServerContext& call,
                                                    const std::string& tenant,
                                                    const std::string& dataset,
                                                    const std::string& to);

// The receiving side: MemberService over this member's store and catalog.
class MemberService final : public cluster::v1::MemberService::Service {
 public:
  MemberService(ClusterNode* node, const Authenticator* auth) : node_(node), auth_(auth) {}

  grpc::Status ImportDataset(grpc::ServerContext*,
                             grpc::ServerReader<cluster::v1::ImportDatasetRequest>*,
                             cluster::v1::ImportDatasetResponse*) override;
  grpc::Status DropDataset(grpc::ServerContext*, const cluster::v1::DropDatasetRequest*,
                           cluster::v1::DropDatasetResponse*) override;
  // partition_steps.cc
  grpc::Status PartitionStep(grpc::ServerContext*, const cluster::v1::PartitionStepRequest*,
                             cluster::v1::PartitionStepResponse*) override;

 private:
  static constexpr size_t kCachedPools = 4;
  struct CachedPoolEntry {
    std::string key;  // internal id, pool seq and the resolved request
    std::shared_ptr<jobs::PartitionPool> pool;
    std::chrono::steady_clock::time_point last_use;
  };
  std::shared_ptr<jobs::PartitionPool> CachedPool(const std::string& key);
  void KeepPool(const std::string& key, std::shared_ptr<jobs::PartitionPool> pool);

  ClusterNode* node_;
  const Authenticator* auth_;
  std::mutex pools_mu_;
  std::vector<CachedPoolEntry> pools_;
};

}  // namespace curation::server
