// The diversity methods by name, and full rankings.
//
// Kept apart from factory.h (ISA and random) so that this file alone pulls in FAISS; a caller
// that wants one table of names tries MakeSelector first and this second, or the other way.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "selection/dedup.h"
#include "selection/facility_location.h"
#include "selection/herding.h"
#include "selection/kcenter.h"
#include "selection/selector.h"

namespace curation::selection {

struct DiversityOptions {
  FacilityLocationOptions facility_location;
  KCenterOptions kcenter;
  HerdingOptions herding;
  DedupOptions dedup;
};

// "facility_location", "kcenter", "herding" or "dedup" (dedup, then a seeded random draw among
// the kept rows). INVALID_ARGUMENT for any other name.
absl::StatusOr<std::unique_ptr<Selector>> MakeDiversitySelector(
    std::string_view method, const DiversityOptions& options = {});

// Every row in the method's order: Select(units, units.rows, options). For these methods the
// first k rows of the ranking are exactly Select(units, k), so a caller can store one ranking
// and serve any budget from it: facility location (kLazy, kPlain), kcenter, herding, isa
// (top-k of a fixed score) and random (a partial Fisher-Yates shuffle). Not prefix-consistent:
// stochastic-greedy facility location and quota-constrained selectors. dedup cannot rank rows
// it dropped (FAILED_PRECONDITION if there are any), though its Select(k) is a prefix of its
// Select(k' <= kept rows). Cost: lazy facility location ranks every row cheaply once its
// graph is built; kcenter and herding cost O(rows^2 * dim) for a full ranking.
absl::StatusOr<SelectionResult> RankAll(const Selector& selector, const MatrixView& units,
                                        const SelectOptions& options);

}  // namespace curation::selection
