#include "selection/random_selector.h"

#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/rng.h"

namespace curation::selection {
namespace {

class RandomSelector final : public Selector {
 public:
  std::string_view name() const override { return "random"; }

  absl::StatusOr<SelectionResult> Select(const Rows& units, int64_t k,
                                         const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows()) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    std::vector<int64_t> rows(units.rows());
    std::iota(rows.begin(), rows.end(), 0);
    std::mt19937_64 rng(options.seed);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t j = i + static_cast<int64_t>(BoundedDraw(rng, units.rows() - i));
      std::swap(rows[i], rows[j]);
    }
    rows.resize(k);
    SelectionResult result;
    result.rows = std::move(rows);
    result.scores.assign(k, 0.0);
    return result;
  }
};

}  // namespace

std::unique_ptr<Selector> MakeRandomSelector() { return std::make_unique<RandomSelector>(); }

}  // namespace curation::selection
