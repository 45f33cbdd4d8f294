#include "selection/isa.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace curation::selection {

std::vector<double> IsaDeltas(std::span<const double> log_likelihoods) {
  std::vector<double> delta(log_likelihoods.size(), 0.0);
  if (log_likelihoods.empty()) return delta;
  const auto [lo, hi] = std::minmax_element(log_likelihoods.begin(), log_likelihoods.end());
  const double range = *hi - *lo;
  // The paper's scaling divides by zero when every row is equally likely; taking l' = 0 keeps
  // Delta defined (all 0) and leaves the choice to the tie-break, i.e. row order.
  if (!(range > 0) || !std::isfinite(range)) return delta;
  const double min = *lo;
  for (size_t i = 0; i < delta.size(); ++i) {
    const double scaled = (log_likelihoods[i] - min) / range;
    // -p log p with p = exp(l') and log p = l' exactly, rather than log(exp(l')).
    delta[i] = -std::exp(scaled) * scaled;
  }
  return delta;
}

std::vector<int64_t> TopK(std::span<const double> scores, int64_t k) {
  std::vector<int64_t> rows(scores.size());
  std::iota(rows.begin(), rows.end(), 0);
  const auto better = [&](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::partial_sort(rows.begin(), rows.begin() + k, rows.end(), better);
  rows.resize(k);
  return rows;
}

namespace {

class IsaSelector final : public Selector {
 public:
  explicit IsaSelector(IsaOptions options) : options_(std::move(options)) {}

  std::string_view name() const override { return "isa"; }

  absl::StatusOr<SelectionResult> Select(const MatrixView& units, int64_t k,
                                         const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    MixtureOptions mixture = options_.mixture;
    mixture.seed = options.seed;
    absl::StatusOr<GaussianMixture> gmm = GaussianMixture::Fit(units, mixture, options.progress);
    if (!gmm.ok()) return gmm.status();

    std::vector<double> ll(units.rows);
    gmm->ScoreSamples(units, ll.data());
    const std::vector<double> delta = IsaDeltas(ll);

    SelectionResult result;
    result.rows = TopK(delta, k);
    result.scores.reserve(k);
    for (int64_t row : result.rows) result.scores.push_back(delta[row]);
    MixtureFitSummary& fit = result.fit.emplace();
    fit.iterations = gmm->iterations();
    fit.converged = gmm->converged();
    fit.mean_log_likelihood = std::accumulate(ll.begin(), ll.end(), 0.0) / units.rows;
    fit.weights = gmm->weights();
    return result;
  }

 private:
  const IsaOptions options_;
};

}  // namespace

std::unique_ptr<Selector> MakeIsaSelector(IsaOptions options) {
  return std::make_unique<IsaSelector>(std::move(options));
}

}  // namespace curation::selection
