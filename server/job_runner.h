// The service's jobs: what Select, EvaluateSelection and RecommendBudget do once the
// scheduler runs them. The jobs::JobRunner the operations call: it checks a request against
// the catalog (Prepare), runs it through the selection pipeline and the proxy (Run), commits
// a selection with its operation in one write, and fills a stored operation's result back in
// (Expand). No gRPC here: handlers validate roles, submit and translate.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "jobs/distributed_pipeline.h"
#include "jobs/operations.h"
#include "server/catalog.h"
#include "server/telemetry.h"
#include "server/tenants.h"
#include "store/store.h"

namespace curation::server {

class ServiceJobRunner final : public jobs::JobRunner {
 public:
  // `metrics` may be null. Stored selections count against their tenant's storage in
  // `tenants`.
  ServiceJobRunner(store::Store* store, TenantRegistry* tenants, Metrics* metrics)
      : store_(store), tenants_(tenants), metrics_(metrics) {}
  // Set once the datasets are loaded; Prepare answers UNAVAILABLE before.
  void SetCatalog(Catalog* catalog) { catalog_.store(catalog); }

  // On a cluster: opens the partitions of a partitioned dataset (tenant, name) for a run of a
  // resolved request. Jobs on a dataset held here as partition 0 of several run over them
  // (jobs/distributed_pipeline.h). Set before jobs run; never on a single server.
  using PartitionOpener =
      std::function<absl::StatusOr<std::vector<std::unique_ptr<jobs::PoolPartition>>>(
          const std::string& tenant, const std::string& dataset,
          const v1::SelectRequest& resolved)>;
  void SetPartitionOpener(PartitionOpener opener) { open_partitions_ = std::move(opener); }

  absl::StatusOr<jobs::JobCost> Prepare(storage::OperationRecord* record) override;
  absl::StatusOr<bool> Run(storage::OperationRecord* record, jobs::JobControl& control,
                           const std::function<void(storage::OperationRecord*)>& succeed) override;
  absl::Status Expand(const storage::OperationRecord& record, v1::Operation* op) override;

 private:
  // The dataset an operation was submitted against: NOT_FOUND if it is gone (or was deleted
  // and created again, which makes another dataset).
  absl::StatusOr<std::shared_ptr<DatasetState>> Dataset(const storage::OperationRecord& record,
                                                        absl::string_view field,
                                                        const std::string& name) const;
  absl::StatusOr<jobs::JobCost> PrepareSelect(storage::OperationRecord* record);
  absl::StatusOr<jobs::JobCost> PrepareEvaluate(storage::OperationRecord* record);
  absl::StatusOr<jobs::JobCost> PrepareRecommend(storage::OperationRecord* record);
  absl::StatusOr<bool> RunSelect(storage::OperationRecord* record, jobs::JobControl& control,
                                 const std::function<void(storage::OperationRecord*)>& succeed);
  struct OpenedPartitions {
    std::vector<std::unique_ptr<jobs::PoolPartition>> owned;
    std::vector<jobs::PoolPartition*> parts;
  };
  absl::StatusOr<OpenedPartitions> OpenPartitions(const storage::OperationRecord& record,
                                                  const std::string& dataset,
                                                  const v1::SelectRequest& resolved) const;
  // The selection of a partitioned dataset (held here as partition 0), over its partitions.
  absl::StatusOr<v1::Selection> SelectOverPartitions(const storage::OperationRecord& record,
                                                     const jobs::SelectionPlan& plan,
                                                     const v1::SelectRequest& request,
                                                     jobs::JobControl& control,
                                                     absl::string_view budget_field = "budget",
                                                     double progress_share = 1);
  absl::Status RunEvaluate(storage::OperationRecord* record, jobs::JobControl& control);
  absl::Status RunRecommend(storage::OperationRecord* record, jobs::JobControl& control);

  store::Store* store_;
  TenantRegistry* tenants_;
  Metrics* metrics_;
  std::atomic<Catalog*> catalog_{nullptr};
  PartitionOpener open_partitions_;
};

}  // namespace curation::server
