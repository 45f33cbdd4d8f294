// The selection pipeline (pipeline.h) for a dataset partitioned over cluster members: the
// same plan and the same Selection out, with the method run by selection::SelectDistributed
// over the partitions instead of over one pool. The coordinator (the member holding partition
// 0) runs it as the job of whichever RPC asked, so one path builds every selection of a
// partitioned dataset too.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "curation/v1/curation.pb.h"
#include "jobs/job_control.h"
#include "jobs/pipeline.h"
#include "jobs/selection_plan.h"
#include "selection/distributed.h"

namespace curation::jobs {

// A partition as the coordinator's pipeline sees it: the library's steps, the units behind
// the rows those steps returned, and for the proxy the partition's pairs.
class PoolPartition : public selection::Partition {
 public:
  // The member holding the partition, for messages.
  virtual const std::string& member() const = 0;
  // The unit of a row some step of this run returned (score 0). NOT_FOUND for any other row.
  virtual absl::StatusOr<SelectedUnit> Unit(int64_t row) const = 0;
  // Every pair of the partition's pool (PAIRS datasets): ids, and [chosen, rejected] float32
  // vectors, 2 x dim per pair, appended to the outputs.
  virtual absl::Status GatherPairs(std::vector<std::string>* ids, std::vector<float>* values,
                                   int* dim) = 0;
};

// Makes the selection `plan` describes for `request` over the union of `partitions`, as
// BuildSelection does on one pool (same errors, same Selection fields; summary.pool_size is
// the sum over partitions). INVALID_ARGUMENT naming the field for what the distributed forms
// do not run: filters ("filter"), constraints ("constraints"), rankings ("ranking"), and the
// library's own refusals (e.g. "isa.pca_dim"); UNAVAILABLE naming the member when a partition
// cannot answer.
absl::StatusOr<v1::Selection> BuildDistributedSelection(const SelectionPlan& plan,
                                                        const v1::SelectRequest& request,
                                                        std::span<PoolPartition* const> partitions,
                                                        JobControl& control,
                                                        absl::string_view budget_field = "budget",
                                                        double progress_share = 1);

// The distributed form of `spec` as a Selector over rows held in one process: row i belongs to
// partition partition_of_row[i] (of `partitions`) and has key keys[i]; Select splits the rows
// it is given by partition and runs SelectDistributed over them, returning row numbers of
// its input. It selects exactly what the service selects over partitions holding those rows,
// for the proxy's learning curve on a partitioned dataset (whose pool is the proxy's, not the
// dataset's). Select's input must have partition_of_row.size() rows.
std::unique_ptr<selection::Selector> MakeInProcessDistributedSelector(
    selection::SelectorSpec spec, std::vector<int> partition_of_row, std::vector<uint64_t> keys,
    int partitions);

}  // namespace curation::jobs
