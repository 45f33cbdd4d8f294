#include "selection/factory.h"

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/isa.h"
#include "selection/random_selector.h"

namespace curation::selection {

absl::StatusOr<std::unique_ptr<Selector>> MakeSelector(std::string_view method,
                                                       const IsaOptions& isa) {
  if (method == "isa") return MakeIsaSelector(isa);
  if (method == "random") return MakeRandomSelector();
  return absl::InvalidArgumentError("unknown selection method \"" + std::string(method) +
                                    "\" (known: isa, random)");
}

}  // namespace curation::selection
