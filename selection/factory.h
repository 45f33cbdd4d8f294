// Selectors by the names users give them in requests, composed with the dedup pre-filter,
// per-group quotas and full rankings the way faiss::index_factory composes indexes: one spec
// in, one Selector out, so every caller (the server, the evaluation tools, the benchmarks)
// gets the same composition in the same order.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "selection/constraints.h"
#include "selection/facility_location.h"
#include "selection/herding.h"
#include "selection/isa.h"
#include "selection/kcenter.h"
#include "selection/selector.h"

namespace curation::selection {

struct SelectorSpec {
  std::string method;  // "isa", "random", "herding", "facility_location", "kcenter", "dedup"
  IsaOptions isa;      // used by "isa" only
  FacilityLocationOptions facility_location;  // "facility_location" only
  KCenterOptions kcenter;                     // "kcenter" only
  HerdingOptions herding;                     // "herding" only
  // > 0: near-duplicate rows (cosine >= threshold) are grouped first and only the earliest
  // row of a group can be chosen (the dedup pre-filter). For "dedup" itself it is the method's
  // threshold (default 0.95 when 0) and is not applied twice.
  double dedup_threshold = 0;
  // Per-group quotas (label balance, strata) around the method; nullopt = none.
  std::optional<GroupConstraint> constraint;
  // Select(units, k) returns the method's order over every row it can rank (every row; with
  // the dedup pre-filter or "dedup", every kept row), of which the first k are the selection;
  // FAILED_PRECONDITION if fewer than k rows can be ranked (e.g. after dedup: "only N rows are
  // left after dedup"). INVALID_ARGUMENT with constraints or stochastic facility location
  // (not prefix-consistent).
  bool ranking = false;
};

// Builds the selector `spec` describes, composed inside out as the server has always run it:
// the method; wrapped in the dedup pre-filter when dedup_threshold > 0 (not for "dedup", which
// is that filter followed by a seeded random draw); the constraint's quotas around that; and
// for a ranking, a selector whose Select(units, k) returns RankAll of the above, or with dedup
// the method's order over the kept rows (dedup cannot rank the rows it drops). Each stage's
// progress share and cancellation pass through. INVALID_ARGUMENT naming the unknown method and
// the known ones, for a dedup_threshold outside [0, 1], and for a ranking that cannot be one
// (see SelectorSpec::ranking). Option ranges of the methods are checked when Select runs.
absl::StatusOr<std::unique_ptr<Selector>> MakeSelector(const SelectorSpec& spec);

// MakeSelector({.method = method}): the method with its default options, nothing around it.
absl::StatusOr<std::unique_ptr<Selector>> MakeSelector(std::string_view method);

// Every row in the method's order: Select(units, units.rows(), options). For these methods the
// first k rows of the ranking are exactly Select(units, k), so a caller can store one ranking
// and serve any budget from it: facility location (kLazy, kPlain), kcenter, herding, isa
// (top-k of a fixed score) and random (a partial Fisher-Yates shuffle). Not prefix-consistent:
// stochastic-greedy facility location and quota-constrained selectors. dedup cannot rank rows
// it dropped (FAILED_PRECONDITION if there are any; SelectorSpec::ranking ranks the kept rows
// instead). Cost: lazy facility location ranks every row cheaply once its graph is built;
// kcenter and herding cost O(rows^2 * dim) for a full ranking.
absl::StatusOr<SelectionResult> RankAll(const Selector& selector, const Rows& units,
                                        const SelectOptions& options);

}  // namespace curation::selection
