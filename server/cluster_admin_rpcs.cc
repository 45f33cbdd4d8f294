// AdminService's cluster RPCs: the members, and moving a dataset between them.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/admin_service.h"
#include "server/curation_service.h"
#include "server/dataset_move.h"
#include "server/validation.h"

namespace curation::server {
namespace {

grpc::Status NotACluster() {
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      "this server is not a cluster member (start it with --cluster-etcd)");
}

}  // namespace

grpc::Status AdminService::ListMembers(grpc::ServerContext* context,
                                       const v1::ListMembersRequest* request,
                                       v1::ListMembersResponse* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) {
    return ToGrpc(caller.status());
  }
  if (cluster_ == nullptr) return NotACluster();
  for (v1::Member& m : cluster_->ListMembers()) *response->add_members() = std::move(m);
  return grpc::Status::OK;
}

grpc::Status AdminService::MoveDataset(grpc::ServerContext* context,
                                       const v1::MoveDatasetRequest* request,
                                       v1::MoveDatasetResponse* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) {
    return ToGrpc(caller.status());
  }
  if (cluster_ == nullptr) return NotACluster();
  // Tenant names follow the rule of dataset names.
  if (auto e = CheckDatasetName("tenant", request->tenant())) {
    return ToGrpc(InvalidField(e->field, e->reason));
  }
  if (auto e = CheckDatasetName("dataset", request->dataset())) {
    return ToGrpc(InvalidField(e->field, e->reason));
  }
  if (request->to_member().empty()) return ToGrpc(InvalidField("to_member", "required"));
  if (request->to_member().size() > kMaxMemberName) {
    return ToGrpc(InvalidField("to_member", absl::StrCat("at most ", kMaxMemberName, " bytes")));
  }
  auto placement = cluster_->directory()->Find(request->tenant(), request->dataset());
  if (!placement) {
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("tenant ", request->tenant(), " has no dataset ", request->dataset()));
  }
  if (placement->record.partitions_size() > 0) {
    return grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        absl::StrCat("dataset ", request->dataset(), " has ", placement->record.partitions_size(),
                     " partitions; only a dataset held whole moves"));
  }
  // A forwarded move is answered here, whatever the answer (see RoutingService).
  if (cluster::IsForwarded(*context)) {
    context->AddTrailingMetadata(cluster::kAnsweredByTrailer, cluster_->name());
  }
  const std::string& owner = placement->record.member();
  if (owner != cluster_->name()) {
    // The holder moves it; forwarded once, like every call.
    if (cluster::IsForwarded(*context)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("dataset ", request->dataset(), " is now held by member ",
                                       owner, "; retry"));
    }
    auto record = cluster_->membership()->Find(owner);
    if (!record) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("dataset ", request->dataset(), " is held by member ", owner,
                                       ", which is down; a dataset moves only from a "
                                       "running member"));
    }
    auto stub = v1::AdminService::NewStub(cluster_->channels()->Get(record->address()));
    auto forwarded = cluster_->channels()->ForwardContext(*context);
    grpc::Status s = stub->MoveDataset(forwarded.get(), *request, response);
    return cluster::ForwardFailure(s, *forwarded, "dataset " + request->dataset(), owner,
                                   record->address());
  }
  auto moved = server::MoveDataset(*cluster_, *context, request->tenant(), request->dataset(),
                                   request->to_member());
  if (!moved.ok()) return ToGrpc(moved.status());
  *response = *std::move(moved);
  return grpc::Status::OK;
}

}  // namespace curation::server
