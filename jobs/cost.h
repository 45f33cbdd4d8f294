// What a job will take, estimated from its plan and the pool's shape before it runs, so the
// scheduler can refuse or hold it before it allocates anything (scheduler.h). The figures are
// upper-leaning models of each method's working set (the input matrix, the method's own
// arrays, library workspace), not measurements; bench/README.md compares them with peaks.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "jobs/scheduler.h"
#include "jobs/selection_plan.h"

namespace curation::jobs {

// The pool a job will see: unit rows and floats per row (after the plan's layout).
struct PoolShape {
  int64_t rows = 0;
  int64_t dim = 0;
};

// A selection of `k` units (every unit for a ranking) from `pool`, filters and constraints
// included.
JobCost EstimateSelection(const SelectionPlan& plan, const PoolShape& pool, int64_t k);

// The proxy on a pairs dataset of `pairs` pairs of `dim`-d vectors: the subset, 2 * seeds
// random baselines and the full pool (EvaluateSelection), or `points` budgets of the curve
// plus `random_fits` random fits (RecommendBudget). `selection` is added when a method runs
// first.
JobCost EstimateEvaluation(int64_t pairs, int64_t dim, int64_t fits, const JobCost& selection);

// Settings that no pool can make sense of, refused before anything runs: a full covariance
// needs at least as many rows per component as dimensions, or every component's covariance
// is singular and only reg_covar holds it up. INVALID_ARGUMENT with the field path.
absl::Status CheckDegenerate(const SelectionPlan& plan, const PoolShape& pool,
                             absl::string_view field_prefix = "");

}  // namespace curation::jobs
