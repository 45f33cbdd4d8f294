// A Gaussian mixture fitted by expectation-maximisation, the density model behind ISA.
//
// Semantics follow scikit-learn's GaussianMixture (1.2) closely enough that a user can check
// one against the other: the same model and per-row score (log p(x)), the same convergence
// test (change of the mean log-likelihood below `tol`), the same `reg_covar` treatment, the
// same initialisation recipes. What differs on purpose:
//   - inputs are float32 and are never copied whole; sums over rows are accumulated in
//     float64 (see "Precision" below);
//   - the random draws (k-means++ seeding, samples) are our own, so a fit does not start from
//     the same point as scikit-learn's for the same `random_state` and may end in another
//     local optimum;
//   - by default a large matrix is initialised on a sample ("warm start", see
//     MixtureOptions::init_sample_rows); EM then runs on every row until the same
//     convergence test holds.
// As in scikit-learn, an iteration is an E step then an M step, so the returned parameters are
// one M step newer than lower_bound() (the mean log-likelihood the last E step found); the
// mean of ScoreSamples over the rows fitted is at least lower_bound().
//
// Precision. kDiag and kSpherical run in float64 throughout, with summation orders fixed by
// the row count alone. kFull's EM iterations compute their O(N d^2) products (the E step's
// triangular products, the M step's scatter matrices) in float32 over blocks of rows, each
// block's result added into float64 totals; this perturbs the fitted covariances by about 1e-7
// of their scale, below what float32 inputs already carry. Scores (ScoreSamples, and so ISA's
// ranking) are always computed in float64, and agree with scikit-learn's to about 1e-15.
//
// Cost per EM iteration, N rows of dimension d, K components: diag/spherical O(N d K), about
// one pass over the matrix; full O(N d^2 K), on AVX-512 kernels where the CPU has them and on
// BLAS otherwise, with two savings that change no result beyond rounding: the heaviest
// component's scatter matrix is the total scatter minus the others', and a component's
// quadratic form is cut short once it proves the component's density at least e^50 times
// smaller than another's (its share of log p(x) and of the M step is then below float64's
// resolution).
//
// Threads: the passes over the rows run on up to MixtureOptions::threads threads, started for
// each pass and joined at its end (none spins between passes, which matters on a shared
// machine). kFull holds OpenBLAS to one thread while it calls it (see SerialBlas in
// mixture_internal.h).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/selector.h"

namespace curation::selection {
namespace internal {
class Cancel;
}  // namespace internal

enum class Covariance {
  // One variance per component and dimension.
  kDiag,
  // One variance per component, shared by all dimensions (sklearn's "spherical": the mean of
  // the diagonal variances, reg_covar included).
  kSpherical,
  // A full covariance matrix per component (sklearn's "full").
  kFull,
};

enum class MixtureInit {
  // sklearn's init_params="kmeans", its default: k-means++ seeding (greedy, 2 + ln K trials
  // per centre) refined by Lloyd rounds, one k-means run (sklearn's KMeans n_init=1); every
  // row's hard label then seeds the first M step.
  kKMeans,
  // sklearn's init_params="k-means++": the k-means++ seeds alone. Component k starts at seed
  // row k with covariance reg_covar * I and equal weights (sklearn starts its weights at 1/N
  // each, which gives the same responsibilities), so the first E step assigns every row to its
  // nearest seed. Cheaper than kKMeans, usually a few more EM iterations.
  kKMeansPlusPlus,
};

struct MixtureOptions {
  int components = 2;
  Covariance covariance = Covariance::kDiag;
  MixtureInit init = MixtureInit::kKMeans;
  // EM stops after this many iterations even if not converged.
  int max_iter = 100;
  // Converged once the mean log-likelihood per row changes by less than this between two
  // iterations (sklearn's tol; an absolute change, in nats).
  double tol = 1e-3;
  // Added to every variance (the diagonal of every covariance) after each M step, so that
  // constant dimensions and single-row components keep a finite density.
  double reg_covar = 1e-6;
  // Independent initialisations (each with its own k-means++ draws, all on the same sample);
  // the fit with the largest final lower bound is kept, the first one on ties.
  int n_init = 1;
  // Cap on the Lloyd rounds of kKMeans.
  int kmeans_max_iter = 300;
  // Warm start. When the matrix has more than 2 * init_sample_rows rows, the initialisation
  // (kKMeans or kKMeansPlusPlus, and then EM with the same tol and max_iter until it converges)
  // runs on a uniform random sample of init_sample_rows rows, and EM on all rows starts from
  // that fit. This replaces the many early EM iterations, which move parameters a long way and
  // need no more than a sample to do so, by iterations on 1/10 or less of the data, and in
  // our measurements reaches an equal or higher likelihood than initialising on all rows.
  // 0 initialises on all rows, scikit-learn's recipe exactly.
  int64_t init_sample_rows = 16384;
  // Seeds the sample and the k-means++ draws. Same seed, data and options give the same fit.
  uint64_t seed = 0;
  // Threads for the fit; 0 takes omp_get_max_threads() (all CPUs, or OMP_NUM_THREADS). The
  // result does not depend on it.
  int threads = 0;
};

// Called with the share of the fit done, in [0, 1]: after every EM iteration on all rows, and
// during initialisation after the k-means++ seeding, every k-means round and every EM
// iteration on the warm-start sample (with the share unchanged). In between, with the share
// unchanged, every few milliseconds (at most) between the chunks of rows of every pass and
// between the components' factorisations of kFull's M step, so that a stop takes effect well
// within a second even when one iteration takes many. Always on the thread that called Fit.
// Returning false stops the fit, which then returns CANCELLED.
using FitProgress = std::function<bool(double done)>;

// A diagonal or spherical Gaussian mixture's parameters (GaussianMixture's layout), and the
// point E steps take their sums about.
struct MixtureParameters {
  Covariance covariance = Covariance::kDiag;
  std::vector<double> weights;      // K
  std::vector<double> means;        // K x dim
  std::vector<double> covariances;  // K x dim variances
  // dim values (empty: the origin). EM's sums are taken about a point near the data's mean
  // so that its sums of squares do not cancel; a fit puts its own here.
  std::vector<double> center;
};

// One E step's sufficient statistics over some rows, to be summed over parts of a pool.
struct MixtureStatistics {
  int64_t rows = 0;
  double log_likelihood = 0;    // sum over rows of log p(x)
  std::vector<double> resp;     // K: sum of responsibilities
  std::vector<double> resp_x;   // K x dim: sum of resp * (x - center)
  std::vector<double> resp_x2;  // K x dim: sum of resp * (x - center)^2
};

// The E step of EM (diagonal or spherical) on the rows of `x` under `params`, as a fit's own
// passes compute it (in float32 over blocks of rows, summed in float64 in an order fixed by
// x.rows). Zero statistics for no rows. INVALID_ARGUMENT for kFull, parameters FromParameters
// rejects or a dimension or center that does not match; CANCELLED if `progress` (asked between
// chunks of rows, with share 0) returns false.
absl::StatusOr<MixtureStatistics> MixtureEStep(const MatrixView& x, const MixtureParameters& params,
                                               int threads = 0,
                                               const FitProgress& progress = nullptr);

// Adds `from` into *into (an empty *into takes from's shape). INVALID_ARGUMENT if the shapes
// differ.
absl::Status AddMixtureStatistics(const MixtureStatistics& from, MixtureStatistics* into);

class GaussianMixture {
 public:
  // Fits a mixture to the rows of `x`. Returns INVALID_ARGUMENT for bad options, an empty
  // matrix, more components than rows, or non-finite inputs; FAILED_PRECONDITION if a
  // variance collapses to <= 0 or a covariance is not positive definite (only possible with
  // reg_covar == 0, or a reg_covar too small for the data's scale); CANCELLED if `progress`
  // returns false. The result is bit-identical for the same inputs and options whatever the
  // thread count; kDiag and kSpherical also whatever the SIMD width the CPU offers (across
  // machines only libm's exp/log may differ), kFull only on CPUs that run the same kernels
  // (AVX-512 or not; and the same BLAS build without).
  //
  // Peak extra memory beyond `x`: the warm-start sample (init_sample_rows rows), the per-chunk
  // partial sums (at most 256 x (1 + K + 2 K d) doubles) and, for kFull, O(threads * 512 * d +
  // 16 K d^2) floats and doubles.
  static absl::StatusOr<GaussianMixture> Fit(const MatrixView& x, const MixtureOptions& options,
                                             const FitProgress& progress = nullptr);

  // Fit with the warm-start sample given: the rows sample_rows[0], [1], ... of x in that
  // order (not drawn, and used whatever x.rows is against init_sample_rows). The
  // initialisation and EM run on them, then EM on all rows from that fit. ISA uses it with
  // the rows of smallest keyed hash, which a distributed pool can gather (distributed.h).
  // Errors as Fit's, and INVALID_ARGUMENT for sample rows out of range or fewer than
  // components.
  static absl::StatusOr<GaussianMixture> FitWithSample(const MatrixView& x,
                                                       std::span<const int64_t> sample_rows,
                                                       const MixtureOptions& options,
                                                       const FitProgress& progress = nullptr);

  // The E step over all rows of a pool that lives elsewhere: the summed statistics of every
  // row under the given parameters (whose center the sums are about).
  using StatisticsFn =
      std::function<absl::StatusOr<MixtureStatistics>(const MixtureParameters& params)>;

  // FitWithSample for a pool of `rows` rows that are not in one matrix: the initialisation
  // and EM on `sample` as FitWithSample does, then EM from that fit with every iteration's E
  // step from `all_rows` (diag and spherical only), the same convergence test and M step.
  // Given the same sample and statistics it returns FitWithSample's parameters up to the
  // rounding of the sums' order. Errors as Fit's, INVALID_ARGUMENT for kFull or statistics
  // whose shape or row count do not match, and all_rows' errors as they are.
  static absl::StatusOr<GaussianMixture> FitFromSample(const MatrixView& sample, int64_t rows,
                                                       const StatisticsFn& all_rows,
                                                       const MixtureOptions& options,
                                                       const FitProgress& progress = nullptr);

  // The parameters, for FromParameters or an E step elsewhere (center left empty).
  MixtureParameters parameters() const;

  // Builds a mixture from given parameters, e.g. to compare scores with another library.
  // `means` is row-major, components x dim. `covariances` is laid out as sklearn's
  // covariances_ for the type, row-major: kDiag components x dim variances; kSpherical
  // components x dim with every row constant (accepted for symmetry with kDiag);
  // kFull components x dim x dim symmetric positive definite matrices. Weights must be
  // non-negative and sum to 1 (within 1e-9); variances positive and finite. INVALID_ARGUMENT
  // otherwise (including a covariance whose Cholesky factorisation fails).
  static absl::StatusOr<GaussianMixture> FromParameters(std::vector<double> weights,
                                                        std::vector<double> means,
                                                        std::vector<double> covariances,
                                                        Covariance covariance);

  // Writes log p(x) for every row of `x` into out[0 .. x.rows), as sklearn's score_samples,
  // in float64. Requires x.dim == dim(). Uses log-sum-exp, so rows far from every component
  // get a large negative but finite score. Each row's score depends only on that row. Runs on
  // `threads` threads (0: as MixtureOptions::threads); thread-safe.
  void ScoreSamples(const MatrixView& x, double* out, int threads = 0) const;

  // As above, calling `progress` (with share 0) between blocks of rows, every few milliseconds
  // at most, so a long scoring (full covariances, many rows) can be cancelled: CANCELLED once
  // it returns false, with out[] then only partly written. Called on the calling thread only.
  absl::Status ScoreSamples(const MatrixView& x, double* out, int threads,
                            const FitProgress& progress) const;

  int components() const { return components_; }
  int64_t dim() const { return dim_; }
  Covariance covariance() const { return covariance_; }
  const std::vector<double>& weights() const { return weights_; }
  // components x dim, row-major.
  const std::vector<double>& means() const { return means_; }
  // components x dim, row-major: the variances of each dimension (for kFull the diagonals of
  // the covariance matrices; for kSpherical each row repeats one variance).
  const std::vector<double>& variances() const { return variances_; }
  // As FromParameters takes them: variances() for kDiag and kSpherical, components x dim x dim
  // for kFull.
  const std::vector<double>& covariances() const {
    return covariance_ == Covariance::kFull ? covariances_ : variances_;
  }

  // How the fit ended (zero/false/0 for a mixture built by FromParameters). iterations()
  // counts EM iterations on all rows (sklearn's n_iter_); init_iterations() counts Lloyd
  // rounds and EM iterations on the warm-start sample, summed over n_init.
  int iterations() const { return iterations_; }
  int init_iterations() const { return init_iterations_; }
  bool converged() const { return converged_; }
  // The mean log-likelihood per row that the last E step found, before the last M step
  // (sklearn's lower_bound_). For kFull that E step ran in float32: about 1e-6 relative.
  double lower_bound() const { return lower_bound_; }

 private:
  friend class MixtureFitter;
  friend absl::StatusOr<MixtureStatistics> MixtureEStep(const MatrixView& x,
                                                        const MixtureParameters& params,
                                                        int threads, const FitProgress& progress);
  GaussianMixture() = default;

  static absl::StatusOr<GaussianMixture> BestOfInits(
      int n_init, const std::function<absl::StatusOr<GaussianMixture>(int init)>& fit_once);
  static absl::StatusOr<GaussianMixture> FitImpl(const MatrixView& x, const MixtureOptions& options,
                                                 const FitProgress& progress,
                                                 const std::span<const int64_t>* sample_rows);

  // Recomputes the cached precisions and per-component constants from the parameters.
  // Fails (FAILED_PRECONDITION) if a full covariance is not positive definite, CANCELLED if
  // `cancel` (asked between the components' factorisations) says stop.
  absl::Status Prepare(internal::Cancel* cancel = nullptr);

  // ScoreSamples, skipping the rest of the rows once `cancel` (if any) says stop.
  void ScoreRows(const MatrixView& x, double* out, int threads, internal::Cancel* cancel) const;

  int components_ = 0;
  int64_t dim_ = 0;
  Covariance covariance_ = Covariance::kDiag;
  std::vector<double> weights_;
  std::vector<double> means_;
  std::vector<double> variances_;
  std::vector<double> covariances_;  // kFull only
  int iterations_ = 0;
  int init_iterations_ = 0;
  bool converged_ = false;
  double lower_bound_ = 0;

  // Per component: log(weight_k) - (dim log(2 pi) + log det S_k) / 2.
  std::vector<double> log_norm_;
  // kDiag/kSpherical: 1 / var_kd, components x dim.
  std::vector<double> precisions_;
  // kFull: L_k^-1 (row-major, lower triangular) where S_k = L_k L_k^T, components x dim x dim.
  std::vector<double> inverse_cholesky_;
};

}  // namespace curation::selection
