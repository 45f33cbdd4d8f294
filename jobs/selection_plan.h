// From a SelectRequest to the selection library's SelectorSpec: defaults, validation and the
// method's unit rows. The first step of the selection pipeline (pipeline.h), shared by every
// RPC that selects, so a method means the same thing wherever it is named.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "curation/v1/curation.pb.h"
#include "selection/factory.h"
#include "selection/isa.h"

namespace curation::jobs {

// How a method wants a pair laid out as one selection row (PAIR units only).
enum class PairRows {
  kMean,    // (chosen + rejected) / 2, dim floats
  kConcat,  // [chosen, rejected], 2 * dim floats (herding: sees the preference direction)
};

struct SelectionPlan {
  // The request with every default filled in (method by dataset kind, unit, ISA and facility
  // location options), as stored in Selection.
  v1::SelectRequest resolved;
  // The method with its options and the dedup pre-filter (filter.dedup_threshold). The
  // pipeline adds the constraint (groups need the pool) and the ranking before it calls
  // selection::MakeSelector.
  selection::SelectorSpec spec;
  bool pair_units = false;
  PairRows pair_rows = PairRows::kMean;
  // The library's name of the method, e.g. "herding": metric labels and progress stages.
  std::string method_name;
};

// The number of units `budget` asks for out of a pool of `pool` units (`noun`, e.g. "pairs"):
// a count in 1..pool, or a fraction in (0, 1] rounded to the nearest count, at least 1.
// INVALID_ARGUMENT naming `field` + ".count" / ".fraction", or `field` when neither is set.
absl::StatusOr<int64_t> ResolveBudget(const v1::Budget& budget, int64_t pool,
                                      absl::string_view noun, absl::string_view field = "budget");

// Resolves and validates `request` for a dataset of `kind`. INVALID_ARGUMENT with the field
// path ("isa.pca_dim", "filter.dedup_threshold", "unit", ...) for anything out of range,
// including options given for another method and a pca_dim above `embedding_dim`. Does not
// look at the budget.
absl::StatusOr<SelectionPlan> PlanSelection(const v1::SelectRequest& request, v1::DatasetKind kind,
                                            int embedding_dim);

// The library's ISA options for resolved (PlanSelection'd) `isa` options, for callers that run
// selection::ScoreIsa themselves to report more of the fit than SelectionResult holds.
selection::IsaOptions IsaLibraryOptions(const v1::IsaOptions& isa);

}  // namespace curation::jobs
