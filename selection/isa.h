// ISA (Information Sampling for Alignment), Algorithm 1 of Khera, Ghosh and Dutta,
// arXiv:2411.10545, implemented exactly as written (see PRODUCT.md):
//
//   l(x)     = log p(x) under a Gaussian mixture fitted to all rows (2 components by default)
//   l'(x)    = (l(x) - min l) / (max l - min l)
//   p(x)     = exp(l'(x))                      (not renormalised)
//   Delta(x) = H(X) - H'(x) = -p(x) log p(x) = -exp(l'(x)) l'(x)
//
// and keep the k rows with the largest Delta. Delta falls monotonically from 0 (at l' = 0) to
// -e (at l' = 1), so ISA as written keeps the k least likely rows. Improvements on it are
// separate, differently named methods.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "selection/gaussian_mixture.h"
#include "selection/selector.h"

namespace curation::selection {

struct IsaOptions {
  // The paper's mixture; its covariance type is unstated, diagonal is what fits in memory at
  // embedding sizes. MixtureOptions::seed is ignored: Select uses SelectOptions::seed.
  MixtureOptions mixture;
  // Projects the rows onto their leading pca_dim principal components before the fit, for
  // 4,096-d inputs where a full covariance is out of reach; 0 fits the rows as they are.
  // Requires pca_dim <= the rows' dimension. l(x) is then the density of the projection.
  int64_t pca_dim = 0;
  // Rows the PCA is trained on (a uniform sample, seeded by SelectOptions::seed); 0 takes
  // AutoPcaSampleRows(pca_dim). Every row is projected.
  int64_t pca_sample_rows = 0;
};

// Everything ISA's Select computes before it takes the top k, for callers that want more than
// the selected rows (every row's score, the fitted mixture, timings).
struct IsaScores {
  std::vector<double> log_likelihoods;  // l(x), one per row
  std::vector<double> deltas;           // Delta(x), one per row (IsaDeltas of the above)
  MixtureFitSummary fit;                // as SelectionResult::fit (repeats the three below)
  int init_iterations = 0;              // GaussianMixture::init_iterations()
  double retained_variance = 1;         // the share of the rows' variance the PCA kept
  double pca_seconds = 0;               // wall time: training the PCA and projecting the rows
  double fit_seconds = 0;               // wall time: the mixture fit
  double score_seconds = 0;             // wall time: log-likelihoods and Deltas
};

// The PCA (if any), the mixture fit on every row, l(x) and Delta(x) for every row, as Select
// computes them for `seed`. `progress` is called as GaussianMixture::Fit documents (also before,
// during and after the PCA's projection, with share 0, and while the rows are scored, with the
// fit's last share), every few milliseconds at most between blocks of rows, so a stop takes
// effect within a block. Errors as MakeIsaSelector's Select, plus INVALID_ARGUMENT
// for a pca_dim above the rows' dimension.
//
// With `row_keys` (one per row, SelectOptions::row_keys; INVALID_ARGUMENT otherwise) the
// warm-start sample is the min(rows, init_sample_rows) rows (every row when init_sample_rows
// is 0) of smallest KeyedHash(seed, key), in that order, whatever the row count
// (GaussianMixture::FitWithSample): the sample a distributed pool gathers, so that
// SelectDistributed fits the same mixture.
absl::StatusOr<IsaScores> ScoreIsa(const MatrixView& units, const IsaOptions& options,
                                   uint64_t seed, const FitProgress& progress = nullptr,
                                   std::span<const uint64_t> row_keys = {});

// Delta for every row from its log-likelihood, in O(N). If max l == min l (or the range is not
// a positive finite number), every l' is taken as 0, so every Delta is 0 and selection falls
// back to row order. Requires every l to be finite.
std::vector<double> IsaDeltas(std::span<const double> log_likelihoods);

// The rows of the k largest scores, best first; equal scores go to the smaller row number
// first, so the order is total and reproducible. O(N + k log k). Requires
// 0 < k <= scores.size().
std::vector<int64_t> TopK(std::span<const double> scores, int64_t k);

// The "isa" selector: ScoreIsa, then TopK of the Deltas. Scores are Delta (<= 0, larger is
// selected first; ties to the smaller row number). After the fit, scoring is O(N d) for l and
// O(N) for Delta. SelectionResult::fit reports the mixture fit: EM iterations on all rows,
// converged or not, mean_log_likelihood the mean of l under the final parameters, the weights,
// and ScoreIsa's init_iterations, retained_variance and fit_seconds, so that no caller needs
// ScoreIsa to report a fit in full.
// SelectOptions::progress is called as ScoreIsa documents (at least once per EM iteration and
// during initialisation) and cancels the selection when it returns false. Returns the fit's
// errors: INVALID_ARGUMENT for fewer rows than components, non-finite inputs or a pca_dim
// above the rows' dimension; FAILED_PRECONDITION for a singular covariance (see
// GaussianMixture::Fit); CANCELLED.
std::unique_ptr<Selector> MakeIsaSelector(IsaOptions options = {});

}  // namespace curation::selection
