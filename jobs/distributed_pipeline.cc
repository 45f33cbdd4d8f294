#include "jobs/distributed_pipeline.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace curation::jobs {

absl::StatusOr<v1::Selection> BuildDistributedSelection(const SelectionPlan& plan,
                                                        const v1::SelectRequest& request,
                                                        std::span<PoolPartition* const> partitions,
                                                        JobControl& control,
                                                        absl::string_view budget_field,
                                                        double progress_share) {
  const auto started = std::chrono::steady_clock::now();
  const v1::SelectRequest& resolved = plan.resolved;
  const v1::ExampleFilter& filter = resolved.filter();
  if (!filter.metadata_equals().empty() || filter.min_chars() > 0 || filter.max_chars() > 0) {
    return InvalidField("filter",
                        "metadata and length filters do not run on a partitioned dataset "
                        "(filter.dedup_threshold does)");
  }
  if (resolved.constraints().balance_labels() || !resolved.constraints().stratify_by().empty()) {
    return InvalidField("constraints",
                        "constraints do not run on a partitioned dataset (herding on EXAMPLE "
                        "units balances labels by default: choose PAIR units or a method)");
  }
  if (resolved.ranking()) {
    return InvalidField("ranking", "rankings are not made on a partitioned dataset");
  }
  const char* noun = plan.pair_units ? "pairs" : "examples";
  control.SetStage(absl::StrCat(plan.method_name, ": sizing ", partitions.size(), " partitions"));
  int64_t pool = 0;
  for (PoolPartition* p : partitions) {
    ASSIGN_OR_RETURN(const selection::PartitionSummary summary, p->Summarize());
    pool += summary.rows;
  }
  if (pool == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", request.dataset(), "' has no examples yet"));
  }
  ASSIGN_OR_RETURN(const int64_t k, ResolveBudget(request.budget(), pool, noun, budget_field));

  control.SetStage(absl::StrCat(plan.method_name, " on ", pool, " ", noun, " in ",
                                partitions.size(), " partitions"));
  selection::SelectOptions options;
  options.seed = request.seed();
  options.progress = control.Range(0, progress_share);
  std::vector<selection::Partition*> parts(partitions.begin(), partitions.end());
  absl::StatusOr<selection::DistributedResult> result =
      selection::SelectDistributed(plan.spec, parts, k, options);
  // The library names the options it lacks as the request spells them ("isa.pca_dim").
  if (!result.ok()) return control.Outcome(result.status());
  if (control.stopped()) return control.stop_reason();

  std::vector<SelectedUnit> units;
  units.reserve(result->rows.size());
  for (size_t i = 0; i < result->rows.size(); ++i) {
    const selection::PartitionRow& row = result->rows[i];
    ASSIGN_OR_RETURN(SelectedUnit unit, partitions[row.partition]->Unit(row.row));
    unit.score = result->scores[i];
    units.push_back(std::move(unit));
  }
  v1::Selection selection = MakeSelection(plan, request, pool, 0, k, units, result->fit, started);
  v1::DistributedRun* run = selection.mutable_summary()->mutable_distributed();
  run->set_partitions(static_cast<int32_t>(partitions.size()));
  run->set_rounds(result->rounds);
  run->set_bytes_from_partitions(result->bytes_from_partitions);
  run->set_bytes_to_partitions(result->bytes_to_partitions);
  return selection;
}

namespace {

class InProcessDistributedSelector final : public selection::Selector {
 public:
  InProcessDistributedSelector(selection::SelectorSpec spec, std::vector<int> partition_of_row,
                               std::vector<uint64_t> keys, int partitions)
      : spec_(std::move(spec)),
        partition_of_row_(std::move(partition_of_row)),
        keys_(std::move(keys)),
        partitions_(partitions) {}

  std::string_view name() const override { return spec_.method; }

  absl::StatusOr<selection::SelectionResult> Select(
      const selection::Rows& units, int64_t k,
      const selection::SelectOptions& options) const override {
    if (units.rows() != static_cast<int64_t>(partition_of_row_.size())) {
      return absl::InternalError("rows and their partitions disagree");
    }
    std::vector<std::vector<int64_t>> rows_of(partitions_);
    for (int64_t r = 0; r < units.rows(); ++r) rows_of[partition_of_row_[r]].push_back(r);
    std::vector<std::unique_ptr<selection::Partition>> owned;
    std::vector<selection::Partition*> parts;
    for (int p = 0; p < partitions_; ++p) {
      std::vector<uint64_t> keys;
      keys.reserve(rows_of[p].size());
      for (int64_t r : rows_of[p]) keys.push_back(keys_[r]);
      owned.push_back(
          selection::MakeLocalPartition(units.Subset(rows_of[p]), std::move(keys), spec_));
      parts.push_back(owned.back().get());
    }
    ASSIGN_OR_RETURN(selection::DistributedResult result,
                     selection::SelectDistributed(spec_, parts, k, options));
    selection::SelectionResult out;
    out.rows.reserve(result.rows.size());
    for (const selection::PartitionRow& row : result.rows) {
      out.rows.push_back(rows_of[row.partition][row.row]);
    }
    out.scores = std::move(result.scores);
    out.fit = std::move(result.fit);
    return out;
  }

 private:
  const selection::SelectorSpec spec_;
  const std::vector<int> partition_of_row_;
  const std::vector<uint64_t> keys_;
  const int partitions_;
};

}  // namespace

std::unique_ptr<selection::Selector> MakeInProcessDistributedSelector(
    selection::SelectorSpec spec, std::vector<int> partition_of_row, std::vector<uint64_t> keys,
    int partitions) {
  return std::make_unique<InProcessDistributedSelector>(
      std::move(spec), std::move(partition_of_row), std::move(keys), partitions);
}

}  // namespace curation::jobs
