// The selection pipeline: the one place that turns a SelectRequest into a Selection, whichever
// RPC asks (Select, SelectStream, StartSelect, the `select` of EvaluateSelection) and the one
// that composes the method for RecommendBudget's learning curve.
//
//   plan (selection_plan.h) -> pool (the dataset's units as of the job's submission, the
//   metadata and length filters, the facts constraints need) -> budget -> one selector from
//   selection::MakeSelector (method + dedup + constraints + ranking) -> run -> result.
//
// Transport-free: no gRPC here. The pool comes from the dataset's in-memory index and, only
// when a filter or stratification needs texts or metadata, one scan of its stored examples.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "curation/v1/curation.pb.h"
#include "index/vector_index.h"
#include "jobs/job_control.h"
#include "jobs/selection_plan.h"
#include "selection/constraints.h"
#include "store/store.h"

namespace curation::jobs {

// Where a pool comes from: one dataset's index and store, as of a submission.
struct PoolSource {
  const index::VectorIndex* index = nullptr;
  const store::Store* store = nullptr;
  uint64_t dataset_id = 0;
  // Only examples with seq < pool_seq are in the pool, so that a job run again after a restart
  // sees the dataset as it was when it was submitted.
  int64_t pool_seq = INT64_MAX;
};

// The rows of a dataset's index as the method wants them (UnitLayout from the plan), cut at
// source.pool_seq, read in place (index::VectorIndex::Units). FAILED_PRECONDITION if the pool
// is empty.
absl::StatusOr<index::UnitMatrix> BuildPoolUnits(const SelectionPlan& plan,
                                                 const PoolSource& source,
                                                 const std::string& dataset);

// The groups of `constraints` over pool rows: label (0 desirable, 1 undesirable) and/or
// stratum, as label * strata + stratum; `labels[i]` is row i's index::kDesirable/kUndesirable
// and `strata_of[i]` its stratum (empty without stratify_by).
selection::GroupConstraint MakeGroups(const v1::Constraints& constraints,
                                      std::span<const int8_t> labels,
                                      std::span<const int32_t> strata_of, int32_t strata);

// A selected unit as a Selection item shows it.
struct SelectedUnit {
  std::string id;
  int side = -1;   // -1 whole pair or example, 0 chosen, 1 rejected
  int label = -1;  // index::kDesirable / kUndesirable / kNoLabel
  double score = 0;
};

// The Selection of `units` (in selection order; the first k are the selection, any after
// them the rest of a ranking) that `plan` made for `request` out of `pool` units, after
// `filtered_out` were filtered out: the request's resolved options, the items and the summary,
// with the run's duration since `started`.
v1::Selection MakeSelection(const SelectionPlan& plan, const v1::SelectRequest& request,
                            int64_t pool, int64_t filtered_out, int64_t k,
                            std::span<const SelectedUnit> units,
                            const std::optional<selection::MixtureFitSummary>& fit,
                            std::chrono::steady_clock::time_point started);

// Makes the selection `plan` describes for `request` (its budget, seed, display name) on the
// source's pool. Not stored: the result has every field of a Selection but id and
// create_time. Progress and stops go through `control`. Errors: INVALID_ARGUMENT for a budget
// outside the pool (field path "budget..." with `budget_field` as prefix), FAILED_PRECONDITION
// for an empty pool or a filter that keeps nothing, DATA_LOSS if the index and the store
// disagree, the method's own errors, and the stop's reason. The method's progress fills
// [0, progress_share] of control's fraction.
absl::StatusOr<v1::Selection> BuildSelection(const SelectionPlan& plan,
                                             const v1::SelectRequest& request,
                                             const PoolSource& source, JobControl& control,
                                             absl::string_view budget_field = "budget",
                                             double progress_share = 1);

}  // namespace curation::jobs
