// The gRPC face of the service: one method per RPC of curation.v1.CurationService. Each
// handler validates its request, then delegates to the catalog, the ingestor or the store, or
// submits a job to the operations (job_rpcs.cc) and waits for it or returns it; no handler
// holds a lock across a call to another component.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

#include "curation/v1/curation.grpc.pb.h"
#include "embedding/embedder.h"
#include "jobs/operations.h"
#include "jobs/scheduler.h"
#include "server/auth.h"
#include "server/catalog.h"
#include "server/ingestor.h"
#include "server/limits.h"
#include "server/telemetry.h"
#include "server/tenants.h"
#include "store/store.h"

namespace curation::server {

class CurationService final : public v1::CurationService::Service {
 public:
  // `metrics` may be null. Selections, evaluations and recommendations are operations run
  // by `scheduler`.
  CurationService(store::Store* store, const Authenticator* auth, TenantRegistry* tenants,
                  const embedding::Embedder* embedder, const Limits& limits, Metrics* metrics,
                  jobs::Scheduler* scheduler, jobs::Operations* operations);

  // Calls before this get UNAVAILABLE: the server serves health while the datasets load.
  void SetReady(Catalog* catalog);

  // On a cluster member (before serving): the internal id the cluster's directory reserved
  // for a new dataset of `tenant` named `name` on this member, and for a partition of a
  // partitioned dataset its index and the partition count, which CreateDataset then records;
  // FAILED_PRECONDITION if none is reserved here. Unset on a single server, whose CreateDataset
  // allocates ids itself and refuses CreateDatasetRequest.member and partitions above 1.
  struct Reserved {
    uint64_t internal_id = 0;
    int32_t partition = 0;
    int32_t partitions = 0;  // 0: the dataset is held whole
  };
  using ReservedId =
      std::function<absl::StatusOr<Reserved>(const std::string& tenant, const std::string& name)>;
  void SetClusterPlacement(ReservedId reserved_id) { reserved_id_ = std::move(reserved_id); }

  // On a cluster member: the examples `ids` (in that order) of `tenant`'s partitioned dataset
  // `dataset`, from whichever partitions hold them, for the call `context`; NOT_FOUND naming
  // an id no partition holds. ExportSelection reads a partitioned dataset's items through it:
  // its selections live with partition 0, their examples everywhere.
  using PartitionedReader = std::function<absl::StatusOr<std::vector<v1::Example>>(
      grpc::ServerContext* context, const std::string& tenant, const std::string& dataset,
      const std::vector<std::string>& ids)>;
  void SetPartitionedReader(PartitionedReader reader) { read_partitioned_ = std::move(reader); }

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
  // IngestStream from any reader (a cluster's router hands back the message it read to route).
  grpc::Status IngestFrom(grpc::ServerContext*,
                          grpc::ServerReaderInterface<v1::IngestExamplesRequest>*,
                          v1::IngestExamplesResponse*);
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
  // Evaluation RPCs (evaluation_rpcs.cc): the proxy of evaluation/proxy.h on the dataset's
  // index, on the selection workers and under the tenant's selection quota.
  grpc::Status EvaluateSelection(grpc::ServerContext*, const v1::EvaluateSelectionRequest*,
                                 grpc::ServerWriter<v1::EvaluateSelectionProgress>*) override;
  grpc::Status RecommendBudget(grpc::ServerContext*, const v1::RecommendBudgetRequest*,
                               grpc::ServerWriter<v1::RecommendBudgetProgress>*) override;
  // Operations (job_rpcs.cc).
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
  // Every data RPC starts here: the server must be ready and the caller must hold at least
  // `role` in a tenant.
  struct Scope {
    Caller caller;
    std::shared_ptr<TenantState> tenant;
  };
  absl::StatusOr<Scope> Enter(const grpc::ServerContext& context, v1::Role role) const;
  // The tenant's open dataset named by `field`, or INVALID_ARGUMENT / NOT_FOUND. Another
  // tenant's dataset is NOT_FOUND, exactly like a missing one.
  absl::StatusOr<std::shared_ptr<DatasetState>> FindDataset(const Scope& scope,
                                                            absl::string_view field,
                                                            const std::string& name) const;
  // The public view of a dataset, with the live index count.
  static v1::Dataset View(DatasetState& state);
  // Reads a stored selection of the scope's tenant by its public id (selection_ids.h).
  // INVALID_ARGUMENT naming `field` if the id is empty or too long; NOT_FOUND, decided before
  // anything is read, if it is malformed, forged or another tenant's.
  absl::StatusOr<v1::Selection> LoadSelection(const Scope& scope, const std::string& id,
                                              absl::string_view field = "id") const;
  // Starts `record` (its request set) as an operation of `kind` for the scope's tenant.
  // `durable`: synced before the reply (see jobs::Operations::Start).
  absl::StatusOr<jobs::Operations::Started> StartJob(const Scope& scope, v1::OperationKind kind,
                                                     const std::string& request_id,
                                                     storage::OperationRecord record,
                                                     bool durable = true);
  // StartJob, then waits for the job: `report` (may be empty) gets its progress about five
  // times a second and returns false when the client is gone. A caller that leaves (or whose
  // deadline passes) cancels the job unless it sent a request_id. Returns the done operation,
  // or its error as the status.
  using ProgressReport = std::function<bool(const v1::Progress&)>;
  absl::StatusOr<v1::Operation> RunJob(grpc::ServerContext* context, const Scope& scope,
                                       v1::OperationKind kind, const std::string& request_id,
                                       storage::OperationRecord record,
                                       const ProgressReport& report);
  // Ingests an IngestExamples batch under the tenant's quotas and rate limit; durable on
  // return. A batch whose client went away while it waited for its turn is not written
  // (CANCELLED). (IngestStream pipelines its messages itself, under the same rules.)
  absl::Status IngestAdmitted(const grpc::ServerContext& context, const Scope& scope,
                              DatasetState& dataset, const v1::IngestExamplesRequest& request,
                              v1::IngestExamplesResponse* summary);
  // Reserves room for `records` records of a request of `request_bytes` under the tenant's
  // quotas (TenantRegistry::AdmitIngest).
  absl::StatusOr<IngestReservation> ReserveIngest(const Scope& scope, DatasetState& dataset,
                                                  int64_t records, int64_t request_bytes);
  // Resolves an example id to its stored record.
  absl::StatusOr<storage::ExampleRecord> LoadExample(uint64_t dataset_id,
                                                     const std::string& id) const;

  store::Store* store_;
  const Authenticator* auth_;
  TenantRegistry* tenants_;
  std::atomic<Catalog*> catalog_{nullptr};
  const embedding::Embedder* embedder_;
  Limits limits_;
  Metrics* metrics_;
  jobs::Scheduler* scheduler_;
  jobs::Operations* operations_;
  Ingestor ingestor_;
  ReservedId reserved_id_;
  PartitionedReader read_partitioned_;
};

// absl and gRPC share the canonical status codes.
grpc::Status ToGrpc(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace curation::server
