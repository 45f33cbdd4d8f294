#include "jobs/pipeline.h"

#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "jobs/partition_pool.h"
#include "selection/factory.h"

namespace curation::jobs {
namespace {

const char* UnitNoun(bool pair_units) { return pair_units ? "pairs" : "examples"; }

// Unicode code points of UTF-8 text (bytes that do not continue a sequence).
int64_t CodePoints(const std::string& text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

// The length ExampleFilter's bounds apply to: prompt plus completion, or prompt plus the
// longer completion of a pair.
int64_t TextChars(const v1::Example& ex) {
  if (ex.has_pair()) {
    return CodePoints(ex.pair().prompt()) +
           std::max(CodePoints(ex.pair().chosen()), CodePoints(ex.pair().rejected()));
  }
  return CodePoints(ex.unpaired().prompt()) + CodePoints(ex.unpaired().completion());
}

bool KeepExample(const v1::Example& ex, const v1::ExampleFilter& filter) {
  for (const auto& [key, value] : filter.metadata_equals()) {
    auto it = ex.metadata().find(key);
    if (it == ex.metadata().end() || it->second != value) return false;
  }
  if (filter.min_chars() > 0 || filter.max_chars() > 0) {
    const int64_t chars = TextChars(ex);
    if (filter.min_chars() > 0 && chars < filter.min_chars()) return false;
    if (filter.max_chars() > 0 && chars > filter.max_chars()) return false;
  }
  return true;
}

// What the filter and the stratification know about each example of a unit matrix, by its
// position in the index (UnitMatrix::example).
struct ExampleFacts {
  std::vector<uint8_t> keep;     // passes the metadata and length filters
  std::vector<int32_t> stratum;  // stratify_by value's id, by first appearance in the pool
  int32_t strata = 0;
};

// One sequential pass over the dataset's example rows, for the examples in `units` only.
absl::StatusOr<ExampleFacts> ReadExampleFacts(const PoolSource& source,
                                              const index::UnitMatrix& units,
                                              const v1::ExampleFilter& filter,
                                              const std::string& stratify_by, JobControl& control) {
  const int64_t examples = units.example.back() + 1;
  std::vector<int64_t> seq_of(examples);
  for (int64_t r = 0; r < units.rows; ++r) seq_of[units.example[r]] = units.seq[r];
  ExampleFacts facts;
  facts.keep.assign(examples, 1);
  facts.stratum.assign(examples, 0);
  std::map<std::string, int32_t> strata;
  int32_t missing = -1;  // examples without the key: one stratum of their own
  int64_t next = 0;
  bool gap = false;
  absl::Status s = source.store->ForEachExample(
      source.dataset_id, [&](int64_t seq, const storage::ExampleRecord& record) {
        // Rows past the pool have larger seqs and end the scan.
        if (next >= examples) return false;
        if ((next & 4095) == 0 && control.stopped()) return false;
        if (seq < seq_of[next]) return true;
        if (seq > seq_of[next]) {
          gap = true;
          return false;
        }
        const v1::Example& ex = record.example();
        facts.keep[next] = KeepExample(ex, filter);
        if (!stratify_by.empty()) {
          auto it = ex.metadata().find(stratify_by);
          if (it == ex.metadata().end()) {
            if (missing < 0) missing = facts.strata++;
            facts.stratum[next] = missing;
          } else {
            auto [entry, inserted] = strata.emplace(it->second, facts.strata);
            if (inserted) ++facts.strata;
            facts.stratum[next] = entry->second;
          }
        }
        ++next;
        return true;
      });
  RETURN_IF_ERROR(s);
  if (control.stopped()) return control.stop_reason();
  if (gap || next != examples) {
    return absl::DataLossError("the dataset's index and stored examples disagree");
  }
  return facts;
}

bool UsesRowKeys(const std::string& method) {
  return method == "random" || method == "isa" || method == "dedup";
}

index::UnitLayout Layout(const SelectionPlan& plan) {
  if (!plan.pair_units) return index::UnitLayout::kVectors;
  return plan.pair_rows == PairRows::kConcat ? index::UnitLayout::kPairConcat
                                             : index::UnitLayout::kPairMean;
}

}  // namespace

absl::StatusOr<index::UnitMatrix> BuildPoolUnits(const SelectionPlan& plan,
                                                 const PoolSource& source,
                                                 const std::string& dataset) {
  index::UnitMatrix units = source.index->Units(Layout(plan), source.pool_seq);
  if (units.rows == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", dataset, "' has no examples yet"));
  }
  return units;
}

selection::GroupConstraint MakeGroups(const v1::Constraints& c, std::span<const int8_t> labels,
                                      std::span<const int32_t> strata_of, int32_t strata) {
  const bool by_label = c.balance_labels();
  const bool by_stratum = !c.stratify_by().empty();
  if (!by_stratum) strata = 1;
  selection::GroupConstraint constraint;
  constraint.group.reserve(labels.size());
  std::vector<int64_t> sizes(2 * strata, 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    const int32_t label = by_label ? (labels[i] == index::kDesirable ? 0 : 1) : 0;
    const int32_t stratum = by_stratum ? strata_of[i] : 0;
    constraint.group.push_back(label * strata + stratum);
    ++sizes[label * strata + stratum];
  }
  if (by_label && c.desirable_share() > 0) {
    // The requested label split, and within each label the pool's split between strata.
    const double share[2] = {c.desirable_share(), 1 - c.desirable_share()};
    constraint.shares.assign(2 * strata, 0);
    for (int l = 0; l < 2; ++l) {
      int64_t label_size = 0;
      for (int32_t s = 0; s < strata; ++s) label_size += sizes[l * strata + s];
      for (int32_t s = 0; s < strata; ++s) {
        constraint.shares[l * strata + s] =
            label_size == 0 ? 0
                            : share[l] * static_cast<double>(sizes[l * strata + s]) /
                                  static_cast<double>(label_size);
      }
      // A label with no rows keeps its share, so that quotas fail on its capacity rather than
      // silently giving its rows to the other label.
      if (label_size == 0) constraint.shares[l * strata] = share[l];
    }
  }
  return constraint;
}

v1::Selection MakeSelection(const SelectionPlan& plan, const v1::SelectRequest& request,
                            int64_t pool, int64_t filtered_out, int64_t k,
                            std::span<const SelectedUnit> units,
                            const std::optional<selection::MixtureFitSummary>& fit,
                            std::chrono::steady_clock::time_point started) {
  const v1::SelectRequest& resolved = plan.resolved;
  v1::Selection selection;
  selection.set_dataset(request.dataset());
  selection.set_display_name(request.display_name());
  selection.set_seed(request.seed());
  selection.set_method(resolved.method());
  selection.set_unit(resolved.unit());
  if (resolved.has_isa()) *selection.mutable_isa() = resolved.isa();
  if (resolved.has_facility_location()) {
    *selection.mutable_facility_location() = resolved.facility_location();
  }
  if (resolved.has_filter()) *selection.mutable_filter() = resolved.filter();
  if (resolved.has_constraints()) *selection.mutable_constraints() = resolved.constraints();
  *selection.mutable_requested_budget() = request.budget();

  v1::SelectionSummary* summary = selection.mutable_summary();
  summary->set_pool_size(pool);
  summary->set_filtered_out(filtered_out);
  summary->set_selected_count(k);
  summary->set_ranked(resolved.ranking());
  // Statistics of the selection (the first k items); kcenter's first score is +infinity,
  // which is kept on the item but left out of the summary so that it stays finite.
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  int64_t finite = 0;
  const int64_t items = static_cast<int64_t>(units.size());
  for (int64_t i = 0; i < items; ++i) {
    const SelectedUnit& unit = units[i];
    const double score = unit.score + 0.0;  // no "-0" for ISA's Delta at l' = 0
    v1::SelectedItem* item = selection.add_items();
    item->set_example_id(unit.id);
    item->set_score(score);
    item->set_side(unit.side < 0 ? v1::SIDE_UNSPECIFIED
                                 : (unit.side == 0 ? v1::SIDE_CHOSEN : v1::SIDE_REJECTED));
    if (i >= k) continue;
    if (std::isfinite(score)) {
      sum += score;
      lo = std::min(lo, score);
      hi = std::max(hi, score);
      ++finite;
    }
    if (!plan.pair_units) {
      if (unit.label == index::kDesirable) {
        summary->set_desirable_count(summary->desirable_count() + 1);
      } else {
        summary->set_undesirable_count(summary->undesirable_count() + 1);
      }
    }
  }
  if (finite > 0) {
    summary->set_min_score(lo);
    summary->set_max_score(hi);
    summary->set_mean_score(sum / static_cast<double>(finite));
  }
  if (fit) {
    v1::MixtureFit* out = summary->mutable_fit();
    out->set_iterations(fit->iterations);
    out->set_converged(fit->converged);
    out->set_mean_log_likelihood(fit->mean_log_likelihood);
    for (double w : fit->weights) out->add_weights(w);
    out->set_init_iterations(fit->init_iterations);
    out->set_retained_variance(fit->retained_variance);
    out->set_fit_seconds(fit->fit_seconds);
  }
  summary->set_duration_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return selection;
}

absl::StatusOr<v1::Selection> BuildSelection(const SelectionPlan& plan,
                                             const v1::SelectRequest& request,
                                             const PoolSource& source, JobControl& control,
                                             absl::string_view budget_field,
                                             double progress_share) {
  const auto started = std::chrono::steady_clock::now();
  const v1::SelectRequest& resolved = plan.resolved;
  const bool pair_units = plan.pair_units;
  control.SetStage(absl::StrCat(plan.method_name, ": building the pool"));
  ASSIGN_OR_RETURN(index::UnitMatrix units, BuildPoolUnits(plan, source, request.dataset()));

  // Metadata and length filters and strata need the example rows: one scan, only if asked.
  const v1::ExampleFilter& filter = resolved.filter();
  const v1::Constraints& constraints = resolved.constraints();
  const bool row_filter =
      !filter.metadata_equals().empty() || filter.min_chars() > 0 || filter.max_chars() > 0;
  std::optional<ExampleFacts> facts;
  if (row_filter || !constraints.stratify_by().empty()) {
    ASSIGN_OR_RETURN(facts,
                     ReadExampleFacts(source, units, filter, constraints.stratify_by(), control));
  }
  // pool_rows[i] is the unit row of pool row i; the method sees that subset of the rows when
  // the filter removed any.
  std::vector<int64_t> pool_rows;
  pool_rows.reserve(units.rows);
  for (int64_t r = 0; r < units.rows; ++r) {
    if (!row_filter || facts->keep[units.example[r]]) pool_rows.push_back(r);
  }
  const int64_t pool = static_cast<int64_t>(pool_rows.size());
  if (pool == 0) {
    return absl::FailedPreconditionError(absl::StrCat("filter: none of the ", units.rows, " ",
                                                      UnitNoun(pair_units), " passes the filter"));
  }
  const selection::Rows rows = pool < units.rows ? units.values.Subset(pool_rows) : units.values;
  ASSIGN_OR_RETURN(const int64_t k,
                   ResolveBudget(request.budget(), pool, UnitNoun(pair_units), budget_field));

  selection::SelectorSpec spec = plan.spec;
  if (constraints.balance_labels() || !constraints.stratify_by().empty()) {
    std::vector<int8_t> labels(pool);
    std::vector<int32_t> strata_of;
    if (facts) strata_of.resize(pool);
    for (int64_t i = 0; i < pool; ++i) {
      labels[i] = units.label[pool_rows[i]];
      if (facts) strata_of[i] = facts->stratum[units.example[pool_rows[i]]];
    }
    spec.constraint = MakeGroups(constraints, labels, strata_of, facts ? facts->strata : 1);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<selection::Selector> selector, selection::MakeSelector(spec));

  control.SetStage(absl::StrCat(plan.method_name, " on ", pool, " ", UnitNoun(pair_units)));
  selection::SelectOptions options;
  options.seed = request.seed();
  options.progress = control.Range(0, progress_share);
  // The methods that draw rows draw them by the units' keyed hashes, so that a partitioned
  // dataset's distributed form draws the same ones (selection/distributed.h).
  std::vector<uint64_t> keys;
  if (UsesRowKeys(plan.method_name)) {
    std::vector<uint64_t> all = UnitKeys(*source.index, units);
    keys.reserve(pool);
    for (int64_t r : pool_rows) keys.push_back(all[r]);
    options.row_keys = keys;
  }
  absl::StatusOr<selection::SelectionResult> result = selector->Select(rows, k, options);
  if (!result.ok()) return control.Outcome(result.status());
  if (control.stopped()) return control.stop_reason();

  const int64_t items = static_cast<int64_t>(result->rows.size());
  std::vector<int64_t> positions(items);
  for (int64_t i = 0; i < items; ++i) positions[i] = units.example[pool_rows[result->rows[i]]];
  std::vector<std::string> ids = source.index->ExampleIds(positions);
  std::vector<SelectedUnit> selected(items);
  for (int64_t i = 0; i < items; ++i) {
    const int64_t row = pool_rows[result->rows[i]];
    selected[i] = {std::move(ids[i]), units.side[row], units.label[row], result->scores[i]};
  }
  return MakeSelection(plan, request, pool, units.rows - pool, k, selected, result->fit, started);
}

}  // namespace curation::jobs
