#include "selection/diversity.h"

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace curation::selection {

absl::StatusOr<std::unique_ptr<Selector>> MakeDiversitySelector(std::string_view method,
                                                                const DiversityOptions& options) {
  if (method == "facility_location") return MakeFacilityLocationSelector(options.facility_location);
  if (method == "kcenter") return MakeKCenterSelector(options.kcenter);
  if (method == "herding") return MakeHerdingSelector(options.herding);
  if (method == "dedup") return MakeDedupSelector(options.dedup);
  return absl::InvalidArgumentError("unknown selection method \"" + std::string(method) +
                                    "\" (known: facility_location, kcenter, herding, dedup)");
}

absl::StatusOr<SelectionResult> RankAll(const Selector& selector, const MatrixView& units,
                                        const SelectOptions& options) {
  return selector.Select(units, units.rows, options);
}

}  // namespace curation::selection
