#include "selection/isa.h"

#include <algorithm>
#include <chrono>
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
#include "selection/distributed.h"
#include "selection/pca.h"

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
  // A strict total order (score, then row number), so the k rows and their order are unique.
  const auto better = [&](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  // O(N) to find the k best, then O(k log k) to order them.
  if (k < static_cast<int64_t>(rows.size())) {
    std::nth_element(rows.begin(), rows.begin() + k, rows.end(), better);
  }
  rows.resize(k);
  std::sort(rows.begin(), rows.end(), better);
  return rows;
}

absl::StatusOr<IsaScores> ScoreIsa(const MatrixView& units, const IsaOptions& options,
                                   uint64_t seed, const FitProgress& progress,
                                   std::span<const uint64_t> row_keys) {
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  if (options.pca_dim < 0 || options.pca_dim > units.dim) {
    return absl::InvalidArgumentError("pca_dim must be between 0 and the rows' dimension");
  }
  if (!row_keys.empty() && static_cast<int64_t>(row_keys.size()) != units.rows) {
    return absl::InvalidArgumentError("row_keys must hold one key per row");
  }
  // The fit's last share, repeated while the rows are scored so that progress never goes back.
  double share = 0;
  const FitProgress fit_progress = !progress ? FitProgress() : [&](double done) {
    share = done;
    return progress(done);
  };
  const FitProgress score_progress =
      !progress ? FitProgress() : [&](double) { return progress(share); };
  IsaScores scores;
  // The projected rows, when there is a PCA; the mixture is fitted and scored on them.
  std::vector<float> projected;
  MatrixView rows = units;
  if (options.pca_dim > 0) {
    const Clock::time_point start = Clock::now();
    if (progress && !progress(0)) return absl::CancelledError("mixture fit cancelled");
    // A seed of its own, so that the PCA's sample is not the mixture's warm-start sample.
    absl::StatusOr<Pca> pca = Pca::Train(units, {.dim = options.pca_dim,
                                                 .sample_rows = options.pca_sample_rows,
                                                 .seed = seed ^ 0x9e3779b97f4a7c15ull});
    if (!pca.ok()) return pca.status();
    if (progress && !progress(0)) return absl::CancelledError("mixture fit cancelled");
    absl::StatusOr<std::vector<float>> applied =
        pca->Apply(units, options.mixture.threads, &scores.retained_variance, progress);
    if (!applied.ok()) return applied.status();
    projected = *std::move(applied);
    rows = MatrixView{projected.data(), units.rows, options.pca_dim};
    scores.pca_seconds = seconds_since(start);
  }

  Clock::time_point start = Clock::now();
  MixtureOptions mixture = options.mixture;
  mixture.seed = seed;
  absl::StatusOr<GaussianMixture> gmm = absl::InternalError("unset");
  if (row_keys.empty()) {
    gmm = GaussianMixture::Fit(rows, mixture, fit_progress);
  } else {
    // The rows of smallest keyed hash, smallest first, ties to the lower row.
    const int64_t m = mixture.init_sample_rows > 0
                          ? std::min<int64_t>(rows.rows, mixture.init_sample_rows)
                          : rows.rows;
    std::vector<std::pair<uint64_t, int64_t>> hashed(rows.rows);
    for (int64_t i = 0; i < rows.rows; ++i) hashed[i] = {KeyedHash(seed, row_keys[i]), i};
    std::partial_sort(hashed.begin(), hashed.begin() + m, hashed.end());
    std::vector<int64_t> sample(m);
    for (int64_t i = 0; i < m; ++i) sample[i] = hashed[i].second;
    gmm = GaussianMixture::FitWithSample(rows, sample, mixture, fit_progress);
  }
  if (!gmm.ok()) return gmm.status();
  scores.fit_seconds = seconds_since(start);

  start = Clock::now();
  scores.log_likelihoods.resize(rows.rows);
  if (absl::Status s =
          gmm->ScoreSamples(rows, scores.log_likelihoods.data(), mixture.threads, score_progress);
      !s.ok()) {
    return s;
  }
  scores.deltas = IsaDeltas(scores.log_likelihoods);
  scores.score_seconds = seconds_since(start);

  scores.fit.iterations = gmm->iterations();
  scores.fit.converged = gmm->converged();
  scores.fit.mean_log_likelihood =
      std::accumulate(scores.log_likelihoods.begin(), scores.log_likelihoods.end(), 0.0) /
      static_cast<double>(rows.rows);
  scores.fit.weights = gmm->weights();
  scores.init_iterations = gmm->init_iterations();
  scores.fit.init_iterations = scores.init_iterations;
  scores.fit.retained_variance = scores.retained_variance;
  scores.fit.fit_seconds = scores.fit_seconds;
  return scores;
}

namespace {

class IsaSelector final : public DenseSelector {
 public:
  explicit IsaSelector(IsaOptions options) : options_(std::move(options)) {}

  std::string_view name() const override { return "isa"; }

  // The mixture fits every row, so it wants them all decoded.
  absl::StatusOr<SelectionResult> SelectDense(const MatrixView& units, int64_t k,
                                              const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    absl::StatusOr<IsaScores> scores =
        ScoreIsa(units, options_, options.seed, options.progress, options.row_keys);
    if (!scores.ok()) return scores.status();
    SelectionResult result;
    result.rows = TopK(scores->deltas, k);
    result.scores.reserve(k);
    for (int64_t row : result.rows) result.scores.push_back(scores->deltas[row]);
    result.fit = std::move(scores->fit);
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
