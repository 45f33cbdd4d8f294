#include "selection/random_selector.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/distributed.h"
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
    if (!options.row_keys.empty()) return SelectKeyed(std::move(rows), k, options);
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

 private:
  // The k rows of smallest (KeyedHash(seed, key), row): what every partition of the pool can
  // compute for its own rows, so that a merge of theirs is this.
  static absl::StatusOr<SelectionResult> SelectKeyed(std::vector<int64_t> rows, int64_t k,
                                                     const SelectOptions& options) {
    if (options.row_keys.size() != rows.size()) {
      return absl::InvalidArgumentError("row_keys must hold one key per row");
    }
    std::vector<uint64_t> hash(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) hash[i] = KeyedHash(options.seed, options.row_keys[i]);
    const auto before = [&](int64_t a, int64_t b) {
      return hash[a] < hash[b] || (hash[a] == hash[b] && a < b);
    };
    std::partial_sort(rows.begin(), rows.begin() + k, rows.end(), before);
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
