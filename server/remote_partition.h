// The coordinator's side of a distributed selection: jobs::PoolPartition over
// MemberService.PartitionStep on the member holding the partition (this member too, through
// its own port, so every partition is reached one way).
//
// A partition whose member is down or restarting is retried for `retry_for`: a member
// restarted during a selection is waited for and the selection goes on. After that the step
// fails UNAVAILABLE naming the member, and so does the job: never a partial result.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "curation/cluster/v1/member.grpc.pb.h"
#include "jobs/distributed_pipeline.h"
#include "server/cluster_node.h"

namespace curation::server {

// Opens the partitions of `tenant`'s dataset `dataset` for a run of `resolved` (a
// PlanSelection'd request). FAILED_PRECONDITION if the directory holds no partitions for it.
// Each partition's pool is pinned at its first step, so the run sees one pool throughout.
absl::StatusOr<std::vector<std::unique_ptr<jobs::PoolPartition>>> OpenRemotePartitions(
    ClusterNode& node, const std::string& tenant, const std::string& dataset,
    const v1::SelectRequest& resolved,
    std::chrono::milliseconds retry_for = std::chrono::seconds(60));

}  // namespace curation::server
