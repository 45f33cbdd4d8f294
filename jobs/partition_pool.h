// A partition's side of a distributed selection: its pool, built exactly as one node's
// (pipeline.h's BuildPoolUnits), with the unit ids the coordinator needs for the rows a step
// returns and the stable keys (common/stable_hash.h's UnitKey) random selection and ISA's
// sample order by. Transport-free: the server's MemberService.PartitionStep translates the
// wire to these calls.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "index/vector_index.h"
#include "jobs/pipeline.h"
#include "jobs/selection_plan.h"
#include "selection/distributed.h"

namespace curation::jobs {

// The keys of a unit matrix's rows: UnitKey(example id, side), ids from `index`.
std::vector<uint64_t> UnitKeys(const index::VectorIndex& index, const index::UnitMatrix& units);

class PartitionPool {
 public:
  // The pool `plan` makes of `source` (its pool_seq bounds it), and the library partition
  // over it with plan.spec as the local method. FAILED_PRECONDITION for a filter or
  // constraints (not distributed); an empty pool is a pool of 0 rows, not an error.
  static absl::StatusOr<std::shared_ptr<PartitionPool>> Open(const SelectionPlan& plan,
                                                             const PoolSource& source);

  selection::Partition& partition() const { return *partition_; }
  const index::UnitMatrix& units() const { return units_; }
  int64_t pool_seq() const { return pool_seq_; }
  // The example ids of rows (pool row numbers), and their sides and labels.
  std::vector<std::string> Ids(std::span<const int64_t> rows) const;

 private:
  PartitionPool() = default;

  const index::VectorIndex* index_ = nullptr;
  index::UnitMatrix units_;
  int64_t pool_seq_ = 0;
  std::unique_ptr<selection::Partition> partition_;
};

}  // namespace curation::jobs
