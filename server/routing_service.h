// The cluster's face of curation.v1.CurationService: every RPC is answered here if this member
// holds the dataset it names, else forwarded to the member that does, with the caller's token
// and remaining deadline (unary and streaming alike). Lists and operation lookups, which no
// one dataset names, ask every member holding the tenant's datasets and merge the answers.
// Registered only on a cluster member; a single server registers CurationService itself.
//
// Where the answer comes from is decided by cluster::Directory (the dataset's placement); what
// the answer is stays CurationService's, on the owner: this class validates nothing a handler
// validates, except what it needs to route.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cluster/directory.h"
#include "cluster/forwarding.h"
#include "cluster/membership.h"
#include "curation/v1/curation.grpc.pb.h"
#include "server/auth.h"
#include "server/curation_service.h"
#include "server/limits.h"

namespace curation::server {

class RoutingService final : public v1::CurationService::Service {
 public:
  // `limits`: the local handlers' own, which a call spread over partitions is held to whole.
  RoutingService(CurationService* local, const Authenticator* auth, cluster::Membership* membership,
                 cluster::Directory* directory, cluster::Channels* channels, const Limits& limits)
      : local_(local),
        auth_(auth),
        membership_(membership),
        directory_(directory),
        channels_(channels),
        limits_(limits) {}

  // CurationService::PartitionedReader: examples of a partitioned dataset by id, read from
  // its partitions whether or not `context` was forwarded here.
  absl::StatusOr<std::vector<v1::Example>> ReadPartitioned(grpc::ServerContext* context,
                                                           const std::string& tenant,
                                                           const std::string& dataset,
                                                           const std::vector<std::string>& ids);

  grpc::Status CreateDataset(grpc::ServerContext*, const v1::CreateDatasetRequest*,
                             v1::Dataset*) override;
  grpc::Status GetDataset(grpc::ServerContext*, const v1::GetDatasetRequest*,
                          v1::Dataset*) override;
  grpc::Status ListDatasets(grpc::ServerContext*, const v1::ListDatasetsRequest*,
                            v1::ListDatasetsResponse*) override;
  grpc::Status DeleteDataset(grpc::ServerContext*, const v1::DeleteDatasetRequest*,
                             v1::DeleteDatasetResponse*) override;
  grpc::Status IngestExamples(grpc::ServerContext*, const v1::IngestExamplesRequest*,
                              v1::IngestExamplesResponse*) override;
  grpc::Status IngestStream(grpc::ServerContext*, grpc::ServerReader<v1::IngestExamplesRequest>*,
                            v1::IngestExamplesResponse*) override;
  grpc::Status GetExamples(grpc::ServerContext*, const v1::GetExamplesRequest*,
                           v1::GetExamplesResponse*) override;
  grpc::Status Select(grpc::ServerContext*, const v1::SelectRequest*, v1::Selection*) override;
  grpc::Status SelectStream(grpc::ServerContext*, const v1::SelectRequest*,
                            grpc::ServerWriter<v1::SelectProgress>*) override;
  grpc::Status GetSelection(grpc::ServerContext*, const v1::GetSelectionRequest*,
                            v1::Selection*) override;
  grpc::Status ListSelections(grpc::ServerContext*, const v1::ListSelectionsRequest*,
                              v1::ListSelectionsResponse*) override;
  grpc::Status ExportSelection(grpc::ServerContext*, const v1::ExportSelectionRequest*,
                               grpc::ServerWriter<v1::ExportSelectionResponse>*) override;
  grpc::Status EvaluateSelection(grpc::ServerContext*, const v1::EvaluateSelectionRequest*,
                                 grpc::ServerWriter<v1::EvaluateSelectionProgress>*) override;
  grpc::Status RecommendBudget(grpc::ServerContext*, const v1::RecommendBudgetRequest*,
                               grpc::ServerWriter<v1::RecommendBudgetProgress>*) override;
  grpc::Status StartSelect(grpc::ServerContext*, const v1::SelectRequest*, v1::Operation*) override;
  grpc::Status StartEvaluation(grpc::ServerContext*, const v1::EvaluateSelectionRequest*,
                               v1::Operation*) override;
  grpc::Status StartRecommendBudget(grpc::ServerContext*, const v1::RecommendBudgetRequest*,
                                    v1::Operation*) override;
  grpc::Status GetOperation(grpc::ServerContext*, const v1::GetOperationRequest*,
                            v1::Operation*) override;
  grpc::Status ListOperations(grpc::ServerContext*, const v1::ListOperationsRequest*,
                              v1::ListOperationsResponse*) override;
  grpc::Status CancelOperation(grpc::ServerContext*, const v1::CancelOperationRequest*,
                               v1::Operation*) override;
  grpc::Status WaitOperation(grpc::ServerContext*, const v1::WaitOperationRequest*,
                             v1::Operation*) override;

 private:
  // Where a call goes: here, another member, or nowhere (`error`).
  struct Target {
    bool local = true;
    std::string member;
    std::string address;
    std::string what;  // what the member holds, e.g. "dataset d1", for the errors
    grpc::Status error = grpc::Status::OK;
  };
  // The caller's tenant, or empty if the caller has none (the local handler then answers
  // with the precise authentication or permission error).
  std::string TenantOf(const grpc::ServerContext& context) const;
  // `what` (e.g. "dataset d1") names what the member holds, for the errors.
  // `partition_hop`: a call to one partition of a partitioned dataset, which its member
  // answers itself, so it may go out even from a call that was forwarded here (an export at
  // the selection's home reading its items from the other partitions).
  Target ToMember(const grpc::ServerContext& context, const std::string& member,
                  const std::string& what, bool partition_hop = false) const;
  Target ByDataset(grpc::ServerContext* context, const std::string& dataset);
  Target BySelectionId(grpc::ServerContext* context, const std::string& id);
  // Members holding any of the tenant's datasets, and this one.
  std::vector<std::string> MembersOf(const std::string& tenant) const;
  // Before a local write: this member must hold its lease.
  grpc::Status Writable() const;

  template <typename Req, typename Resp>
  using UnaryMethod = grpc::Status (v1::CurationService::Stub::*)(grpc::ClientContext*, const Req&,
                                                                  Resp*);
  template <typename Req, typename Resp>
  using StreamMethod = std::unique_ptr<grpc::ClientReader<Resp>> (v1::CurationService::Stub::*)(
      grpc::ClientContext*, const Req&);
  template <typename Req, typename Resp>
  grpc::Status Forward(const Target& target, grpc::ServerContext* context,
                       UnaryMethod<Req, Resp> method, const Req& request, Resp* response);
  template <typename Req, typename Resp>
  grpc::Status ForwardStream(const Target& target, grpc::ServerContext* context,
                             StreamMethod<Req, Resp> method, const Req& request,
                             grpc::ServerWriter<Resp>* writer);
  // Sends `request` (a list's page) to every other member holding the tenant's datasets and
  // hands each reply to `take` with its member. UNAVAILABLE naming a member that cannot answer
  // (`what`: what it holds, for the error).
  template <typename Req, typename Resp, typename Take>
  grpc::Status ListOthers(grpc::ServerContext* context, const std::string& tenant,
                          UnaryMethod<Req, Resp> method, const Req& request,
                          const std::string& what, Take take);
  // Finds which member holds operation `name` (asking each member of the tenant); OK with the
  // operation in `found`, NOT_FOUND, or UNAVAILABLE naming a member that could not say.
  grpc::Status LocateOperation(grpc::ServerContext* context, const std::string& name,
                               Target* target, v1::Operation* found);

  // Partitioned datasets (CreateDatasetRequest.partitions > 1). The member a client's call
  // reaches spreads it over the partitions; a call a member forwards to a partition is
  // answered by that partition alone.

  // The placement of the partitioned dataset a client's call names; nullopt for a forwarded
  // call, a dataset held whole, or one the local handler must refuse.
  std::optional<cluster::Placement> Partitioned(const grpc::ServerContext& context,
                                                const std::string& dataset);
  // Partition i of `p`: here through `local` (`write`: after Writable), else forwarded.
  template <typename Req, typename Resp>
  grpc::Status OnPartition(grpc::ServerContext* context, const cluster::Placement& p, int i,
                           UnaryMethod<Req, Resp> method,
                           grpc::Status (CurationService::*local)(grpc::ServerContext*, const Req*,
                                                                  Resp*),
                           bool write, const Req& request, Resp* response);
  grpc::Status CreatePartitioned(grpc::ServerContext* context,
                                 const v1::CreateDatasetRequest& request, const std::string& tenant,
                                 const std::vector<std::string>& members, v1::Dataset* response);
  grpc::Status GetPartitioned(grpc::ServerContext* context, const cluster::Placement& p,
                              v1::Dataset* response);
  grpc::Status DeletePartitioned(grpc::ServerContext* context, const cluster::Placement& p,
                                 v1::DeleteDatasetResponse* response);
  // Ingests `request`'s examples, split by partition, adding the outcome to `response` with
  // the caller's indexes offset by `first_index`. `report_ids` as IngestExamples.
  grpc::Status IngestPartitioned(grpc::ServerContext* context, const cluster::Placement& p,
                                 const v1::IngestExamplesRequest& request, int64_t first_index,
                                 bool report_ids, v1::IngestExamplesResponse* response);
  grpc::Status IngestStreamPartitioned(grpc::ServerContext* context, const cluster::Placement& p,
                                       v1::IngestExamplesRequest first,
                                       grpc::ServerReader<v1::IngestExamplesRequest>* reader,
                                       v1::IngestExamplesResponse* response);
  grpc::Status GetExamplesPartitioned(grpc::ServerContext* context, const cluster::Placement& p,
                                      const v1::GetExamplesRequest& request,
                                      v1::GetExamplesResponse* response);

  CurationService* local_;
  const Authenticator* auth_;
  cluster::Membership* membership_;
  cluster::Directory* directory_;
  cluster::Channels* channels_;
  const Limits limits_;
};

}  // namespace curation::server
