// Selectors by the names users give them in requests.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "selection/isa.h"
#include "selection/selector.h"

namespace curation::selection {

// "isa" (with `isa` options) or "random". INVALID_ARGUMENT for any other name.
absl::StatusOr<std::unique_ptr<Selector>> MakeSelector(std::string_view method,
                                                       const IsaOptions& isa = {});

}  // namespace curation::selection
