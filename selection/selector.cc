#include "selection/selector.h"

#include <vector>

#include "absl/status/status.h"

namespace curation::selection {

absl::StatusOr<SelectionResult> DenseSelector::Select(const Rows& units, int64_t k,
                                                      const SelectOptions& options) const {
  if (k <= 0 || k > units.rows()) {
    return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
  }
  std::vector<float> storage;
  absl::StatusOr<MatrixView> dense = units.Decode(&storage, options.progress);
  if (!dense.ok()) return dense.status();
  return SelectDense(*dense, k, options);
}

}  // namespace curation::selection
