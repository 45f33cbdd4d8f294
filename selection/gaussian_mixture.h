// A Gaussian mixture fitted by expectation-maximisation, the density model behind ISA.
//
// Semantics follow scikit-learn's GaussianMixture (1.2) closely enough that a user can check
// one against the other: the same convergence test (change of the mean log-likelihood below
// `tol`), the same `reg_covar` treatment, and the same definition of a per-row score (log p(x)).
// What differs on purpose:
//   - inputs are float32, every sum is accumulated in float64;
//   - the initial responsibilities come from our own seeded k-means++ seeding and Lloyd rounds
//     (sklearn's init_params="kmeans" recipe, with our random draws), so a fit does not start
//     from the same point as scikit-learn's for the same `random_state` and may end in another
//     local optimum;
//   - the E step computes sum_d (x_d - mu_d)^2 / var_d directly rather than expanding it, which
//     avoids cancellation for data far from the origin.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/selector.h"

namespace curation::selection {

enum class Covariance {
  // One variance per component and dimension.
  kDiag,
  // One variance per component, shared by all dimensions (sklearn's "spherical": the mean of
  // the diagonal variances, reg_covar included).
  kSpherical,
  // A full covariance matrix per component. Not implemented yet: Fit returns UNIMPLEMENTED.
  kFull,
};

struct MixtureOptions {
  int components = 2;
  Covariance covariance = Covariance::kDiag;
  // EM stops after this many iterations (one E step and one M step each) even if not converged.
  int max_iter = 100;
  // Converged once the mean log-likelihood per row changes by less than this between two
  // iterations.
  double tol = 1e-3;
  // Added to every variance after each M step, so that constant dimensions and single-row
  // components keep a finite density.
  double reg_covar = 1e-6;
  // Independent initialisations; the fit with the largest final lower bound is kept.
  int n_init = 1;
  // Cap on the Lloyd rounds that refine the k-means++ seeding before EM starts.
  int kmeans_max_iter = 300;
  // Seeds the k-means++ draws. Same seed, data and options give the same fit.
  uint64_t seed = 0;
  // OpenMP threads for the fit; 0 takes OpenMP's default. The fit does not depend on it.
  int threads = 0;
};

// Called after every EM iteration with the share of the fit done, in [0, 1] (and after every
// k-means round of the initialisation, with the share unchanged). Returning false stops the
// fit, which then returns CANCELLED.
using FitProgress = std::function<bool(double done)>;

class GaussianMixture {
 public:
  // Fits a mixture to the rows of `x`. Returns INVALID_ARGUMENT for bad options, an empty
  // matrix, more components than rows, or non-finite inputs; UNIMPLEMENTED for kFull;
  // FAILED_PRECONDITION if a variance collapses to <= 0 (only possible with reg_covar == 0);
  // CANCELLED if `progress` returns false. Rows are processed in parallel with OpenMP. The
  // result is bit-identical for the same inputs and options whatever the thread count or the
  // SIMD width the CPU offers; across machines only libm's exp/log may differ.
  static absl::StatusOr<GaussianMixture> Fit(const MatrixView& x, const MixtureOptions& options,
                                             const FitProgress& progress = nullptr);

  // Builds a mixture from given parameters, e.g. to compare scores with another library.
  // `means` and `variances` are row-major, components x dim. For kSpherical every row of
  // `variances` must be constant. Weights must be non-negative and sum to 1 (within 1e-9);
  // variances must be positive and finite. INVALID_ARGUMENT otherwise.
  static absl::StatusOr<GaussianMixture> FromParameters(std::vector<double> weights,
                                                        std::vector<double> means,
                                                        std::vector<double> variances,
                                                        Covariance covariance);

  // Writes log p(x) for every row of `x` into out[0 .. x.rows), as sklearn's score_samples.
  // Requires x.dim == dim(). Uses log-sum-exp, so rows far from every component get a large
  // negative but finite score.
  void ScoreSamples(const MatrixView& x, double* out) const;

  int components() const { return components_; }
  int64_t dim() const { return dim_; }
  Covariance covariance() const { return covariance_; }
  const std::vector<double>& weights() const { return weights_; }
  // components x dim, row-major. For kSpherical each row repeats one variance.
  const std::vector<double>& means() const { return means_; }
  const std::vector<double>& variances() const { return variances_; }

  // How the fit ended (zero/false/0 for a mixture built by FromParameters).
  int iterations() const { return iterations_; }
  bool converged() const { return converged_; }
  // The mean log-likelihood per row at the start of the last iteration (sklearn's
  // lower_bound_); the final parameters are one M step newer.
  double lower_bound() const { return lower_bound_; }

 private:
  GaussianMixture() = default;

  // Recomputes the cached precisions and per-component constants from the parameters.
  void Prepare();

  int components_ = 0;
  int64_t dim_ = 0;
  Covariance covariance_ = Covariance::kDiag;
  std::vector<double> weights_;
  std::vector<double> means_;
  std::vector<double> variances_;
  int iterations_ = 0;
  bool converged_ = false;
  double lower_bound_ = 0;

  // log(weight_k) - (dim log(2 pi) + sum_d log var_kd) / 2, and 1 / var_kd.
  std::vector<double> log_norm_;
  std::vector<double> precisions_;
};

}  // namespace curation::selection
