#include "jobs/partition_pool.h"

#include "absl/strings/str_cat.h"
#include "common/stable_hash.h"
#include "common/status.h"

namespace curation::jobs {

std::vector<uint64_t> UnitKeys(const index::VectorIndex& index, const index::UnitMatrix& units) {
  const std::vector<std::string> ids = index.ExampleIds(units.example);
  std::vector<uint64_t> keys(units.rows);
  for (int64_t r = 0; r < units.rows; ++r) keys[r] = UnitKey(ids[r], units.side[r]);
  return keys;
}

absl::StatusOr<std::shared_ptr<PartitionPool>> PartitionPool::Open(const SelectionPlan& plan,
                                                                   const PoolSource& source) {
  const v1::ExampleFilter& filter = plan.resolved.filter();
  const v1::Constraints& constraints = plan.resolved.constraints();
  if (!filter.metadata_equals().empty() || filter.min_chars() > 0 || filter.max_chars() > 0 ||
      constraints.balance_labels() || !constraints.stratify_by().empty()) {
    return absl::FailedPreconditionError(
        "metadata and length filters and constraints do not run on a partitioned dataset");
  }
  std::shared_ptr<PartitionPool> pool(new PartitionPool());
  pool->index_ = source.index;
  pool->pool_seq_ = source.pool_seq;
  auto units = BuildPoolUnits(plan, source, "");
  if (units.ok()) {
    pool->units_ = *std::move(units);
  } else if (absl::IsFailedPrecondition(units.status())) {
    // A partition may hold none of a small dataset's examples: a pool of no rows.
    pool->units_ = index::UnitMatrix{};
  } else {
    return units.status();
  }
  std::vector<uint64_t> keys = UnitKeys(*source.index, pool->units_);
  pool->partition_ = selection::MakeLocalPartition(pool->units_.values, std::move(keys), plan.spec);
  return pool;
}

std::vector<std::string> PartitionPool::Ids(std::span<const int64_t> rows) const {
  std::vector<int64_t> positions;
  positions.reserve(rows.size());
  for (int64_t r : rows) positions.push_back(units_.example[r]);
  return index_->ExampleIds(positions);
}

}  // namespace curation::jobs
