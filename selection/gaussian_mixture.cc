#include "selection/gaussian_mixture.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/rng.h"

namespace curation::selection {
namespace {

// Sums over dimensions use this many independent partial sums, combined in a fixed order.
// That lets the compiler vectorise the reduction at any SIMD width while every build gets the
// same rounding, so results do not depend on whether the AVX2 or the baseline clone ran.
constexpr int kLanes = 8;

// Rows are split into chunks whose number depends only on the row count. Each chunk writes its
// own partial sums and those are added in chunk order, so sums are identical for any thread
// count. The cap bounds the memory the partial sums take (kMaxChunks * 2 * K * dim doubles).
constexpr int64_t kMinChunkRows = 512;
constexpr int64_t kMaxChunks = 256;

// sklearn adds this to every component's responsibility mass, so an empty component gets a
// tiny weight and a finite mean instead of a division by zero.
constexpr double kMassFloor = 10 * std::numeric_limits<double>::epsilon();

struct Chunks {
  int64_t rows;
  int64_t count;
  int threads;  // 0: OpenMP's default

  explicit Chunks(int64_t n, int threads = 0)
      : rows(n),
        count(std::clamp<int64_t>((n + kMinChunkRows - 1) / kMinChunkRows, 1, kMaxChunks)),
        threads(threads > 0 ? threads : omp_get_max_threads()) {}
  int64_t begin(int64_t c) const { return c * rows / count; }
  int64_t end(int64_t c) const { return (c + 1) * rows / count; }
};

double CombineLanes(const double* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// sum_d (x_d - mu_d)^2 * w_d.
inline double WeightedSquaredDistance(const float* x, const double* mu, const double* w,
                                      int64_t dim) {
  double acc[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const double t = static_cast<double>(x[d + j]) - mu[d + j];
      acc[j] += t * t * w[d + j];
    }
  }
  for (; d < dim; ++d) {
    const double t = static_cast<double>(x[d]) - mu[d];
    acc[d % kLanes] += t * t * w[d];
  }
  return CombineLanes(acc);
}

// sum_d (x_d - mu_d)^2.
inline double SquaredDistance(const float* x, const double* mu, int64_t dim) {
  double acc[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const double t = static_cast<double>(x[d + j]) - mu[d + j];
      acc[j] += t * t;
    }
  }
  for (; d < dim; ++d) {
    const double t = static_cast<double>(x[d]) - mu[d];
    acc[d % kLanes] += t * t;
  }
  return CombineLanes(acc);
}

// s1 += r * (x - mu); s2 += r * (x - mu)^2 (s2 may be null).
inline void AccumulateShifted(const float* x, const double* mu, double r, int64_t dim,
                              double* s1, double* s2) {
  if (s2 == nullptr) {
    for (int64_t d = 0; d < dim; ++d) s1[d] += r * (static_cast<double>(x[d]) - mu[d]);
    return;
  }
  for (int64_t d = 0; d < dim; ++d) {
    const double t = static_cast<double>(x[d]) - mu[d];
    const double rt = r * t;
    s1[d] += rt;
    s2[d] += rt * t;
  }
}

// The parameters the E step needs, as flat arrays.
struct Model {
  int k;
  int64_t dim;
  const double* means;      // k x dim
  const double* precisions;  // k x dim
  const double* log_norm;   // k
};

// Writes log(w_k N(x | mu_k, var_k)) into logp[0..k) and returns log p(x) by log-sum-exp.
inline double RowLogProbs(const float* x, const Model& m, double* logp) {
  double max = -std::numeric_limits<double>::infinity();
  for (int c = 0; c < m.k; ++c) {
    logp[c] = m.log_norm[c] -
              0.5 * WeightedSquaredDistance(x, m.means + c * m.dim, m.precisions + c * m.dim,
                                            m.dim);
    max = std::max(max, logp[c]);
  }
  double sum = 0;
  for (int c = 0; c < m.k; ++c) sum += std::exp(logp[c] - max);
  return max + std::log(sum);
}

// The hot loops get an AVX2 clone chosen at load time; the baseline clone keeps the binary
// portable. Neither uses FMA (the target is built with -ffp-contract=off), so both round alike.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define CURATION_HOT __attribute__((target_clones("avx2", "default")))
#else
#define CURATION_HOT
#endif

// Partial sums of one E step over rows [begin, end), laid out as
// [sum log p(x)] [mass_k] [sum r_k (x - mu_k)] [sum r_k (x - mu_k)^2].
CURATION_HOT void EmChunk(const MatrixView& x, const Model& m, int64_t begin, int64_t end,
                          double* acc) {
  double* ll = acc;
  double* mass = acc + 1;
  double* s1 = mass + m.k;
  double* s2 = s1 + m.k * m.dim;
  std::vector<double> logp(m.k);
  for (int64_t i = begin; i < end; ++i) {
    const float* row = x.row(i);
    const double lse = RowLogProbs(row, m, logp.data());
    *ll += lse;
    for (int c = 0; c < m.k; ++c) {
      const double r = std::exp(logp[c] - lse);
      // Exactly zero responsibilities are common for separated components; skipping them
      // changes no sum.
      if (r == 0) continue;
      mass[c] += r;
      AccumulateShifted(row, m.means + c * m.dim, r, m.dim, s1 + c * m.dim, s2 + c * m.dim);
    }
  }
}

CURATION_HOT void ScoreChunk(const MatrixView& x, const Model& m, int64_t begin, int64_t end,
                             double* out) {
  std::vector<double> logp(m.k);
  for (int64_t i = begin; i < end; ++i) out[i] = RowLogProbs(x.row(i), m, logp.data());
}

// One Lloyd round over rows [begin, end): assigns each row to its nearest centre (ties to the
// lower index) and writes [label changes] [count_k] [sum (x - c_k)] [sum (x - c_k)^2 if
// with_squares].
CURATION_HOT void LloydChunk(const MatrixView& x, int k, const double* centers, int64_t begin,
                             int64_t end, bool with_squares, int32_t* labels, double* acc) {
  const int64_t dim = x.dim;
  double* changes = acc;
  double* count = acc + 1;
  double* s1 = count + k;
  double* s2 = s1 + k * dim;
  for (int64_t i = begin; i < end; ++i) {
    const float* row = x.row(i);
    int best = 0;
    double best_d = SquaredDistance(row, centers, dim);
    for (int c = 1; c < k; ++c) {
      const double d = SquaredDistance(row, centers + c * dim, dim);
      if (d < best_d) {
        best_d = d;
        best = c;
      }
    }
    if (labels[i] != best) {
      labels[i] = best;
      *changes += 1;
    }
    count[best] += 1;
    AccumulateShifted(row, centers + best * dim, 1.0, dim, s1 + best * dim,
                      with_squares ? s2 + best * dim : nullptr);
  }
}

CURATION_HOT void DistanceChunk(const MatrixView& x, const double* center, int64_t begin,
                                int64_t end, double* out) {
  for (int64_t i = begin; i < end; ++i) out[i] = SquaredDistance(x.row(i), center, x.dim);
}

// Below this many chunks a pass is too short to repay waking the thread team, which on a
// loaded machine can cost more than the pass itself.
constexpr int64_t kMinParallelChunks = 4;

// Runs fn(chunk, begin, end) for every chunk, in parallel.
template <typename Fn>
void ForEachChunk(const Chunks& chunks, Fn&& fn) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(chunks.threads) \
    if (chunks.count >= kMinParallelChunks)
  for (int64_t c = 0; c < chunks.count; ++c) fn(c, chunks.begin(c), chunks.end(c));
}

// Runs fn(chunk, begin, end, acc) with a zeroed `width`-double buffer per chunk, then returns
// the buffers summed in chunk order.
template <typename Fn>
std::vector<double> ReduceChunks(const Chunks& chunks, size_t width, std::vector<double>& scratch,
                                 Fn&& fn) {
  scratch.assign(chunks.count * width, 0.0);
  ForEachChunk(chunks, [&](int64_t c, int64_t b, int64_t e) { fn(b, e, &scratch[c * width]); });
  std::vector<double> total(scratch.begin(), scratch.begin() + width);
  for (int64_t c = 1; c < chunks.count; ++c) {
    const double* part = &scratch[c * width];
    for (size_t j = 0; j < width; ++j) total[j] += part[j];
  }
  return total;
}

absl::Status CheckFinite(const MatrixView& x, const Chunks& chunks) {
  std::vector<char> bad(chunks.count, 0);
  ForEachChunk(chunks, [&](int64_t c, int64_t b, int64_t e) {
    const float* p = x.row(b);
    const float* stop = x.row(e);
    bool ok = true;
    for (; p < stop; ++p) ok &= std::isfinite(*p);
    bad[c] = !ok;
  });
  if (std::find(bad.begin(), bad.end(), 1) != bad.end()) {
    return absl::InvalidArgumentError("input matrix contains NaN or infinite values");
  }
  return absl::OkStatus();
}

// Mean over dimensions of the per-dimension variance of the data, sklearn's scale for the
// k-means tolerance. Sums are taken relative to the first row to limit cancellation.
double MeanColumnVariance(const MatrixView& x, const Chunks& chunks, std::vector<double>& scratch) {
  const int64_t dim = x.dim;
  std::vector<double> origin(x.row(0), x.row(0) + dim);
  const std::vector<double> sums =
      ReduceChunks(chunks, 2 * dim, scratch, [&](int64_t b, int64_t e, double* acc) {
        for (int64_t i = b; i < e; ++i) AccumulateShifted(x.row(i), origin.data(), 1.0, dim, acc,
                                                          acc + dim);
      });
  const double n = static_cast<double>(x.rows);
  double total = 0;
  for (int64_t d = 0; d < dim; ++d) {
    const double mean = sums[d] / n;
    total += std::max(0.0, sums[dim + d] / n - mean * mean);
  }
  return total / static_cast<double>(dim);
}

// Greedy k-means++ seeding as in sklearn: each new centre is the best (lowest total potential)
// of 2 + floor(ln k) candidates drawn with probability proportional to the squared distance
// to the nearest centre chosen so far.
std::vector<double> KMeansPlusPlus(const MatrixView& x, int k, const Chunks& chunks,
                                   std::mt19937_64& rng) {
  const int64_t n = x.rows;
  const int64_t dim = x.dim;
  std::vector<double> centers(k * dim);
  auto set_center = [&](int c, int64_t row) {
    std::copy(x.row(row), x.row(row) + dim, centers.begin() + c * dim);
  };
  set_center(0, static_cast<int64_t>(BoundedDraw(rng, n)));
  std::vector<double> closest(n);
  ForEachChunk(chunks, [&](int64_t, int64_t b, int64_t e) {
    DistanceChunk(x, centers.data(), b, e, closest.data());
  });
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  std::vector<double> cumulative(n);
  std::vector<double> candidate_center(dim);
  std::vector<double> candidate_closest(n);
  std::vector<double> best_closest(n);
  for (int c = 1; c < k; ++c) {
    double running = 0;
    for (int64_t i = 0; i < n; ++i) cumulative[i] = running += closest[i];
    const double potential = running;
    double best_potential = std::numeric_limits<double>::infinity();
    int64_t best_row = 0;
    for (int t = 0; t < trials; ++t) {
      const double target = UniformDraw(rng) * potential;
      const int64_t row = std::min<int64_t>(
          std::lower_bound(cumulative.begin(), cumulative.end(), target) - cumulative.begin(),
          n - 1);
      std::copy(x.row(row), x.row(row) + dim, candidate_center.begin());
      ForEachChunk(chunks, [&](int64_t, int64_t b, int64_t e) {
        DistanceChunk(x, candidate_center.data(), b, e, candidate_closest.data());
        for (int64_t i = b; i < e; ++i) {
          candidate_closest[i] = std::min(candidate_closest[i], closest[i]);
        }
      });
      double candidate_potential = 0;
      for (int64_t i = 0; i < n; ++i) candidate_potential += candidate_closest[i];
      if (candidate_potential < best_potential) {
        best_potential = candidate_potential;
        best_row = row;
        best_closest.swap(candidate_closest);
      }
    }
    set_center(c, best_row);
    closest.swap(best_closest);
  }
  return centers;
}

// Lloyd rounds from `centers` until the labels stop changing, the total squared centre shift
// falls to `tol`, or max_iter rounds; then one more assignment whose counts, means and
// variances (about the final centres) seed EM, as sklearn's hard-label initialisation does.
// Returns the buffer of LloydChunk's final pass.
std::vector<double> KMeans(const MatrixView& x, int k, std::vector<double> centers, int max_iter,
                           double tol, const Chunks& chunks, std::vector<double>& scratch) {
  const int64_t dim = x.dim;
  // -1 makes the first round count every row as changed.
  std::vector<int32_t> labels(x.rows, -1);
  const size_t width = 1 + k + 2 * k * dim;
  for (int iter = 0; iter < max_iter; ++iter) {
    const std::vector<double> acc =
        ReduceChunks(chunks, width, scratch, [&](int64_t b, int64_t e, double* a) {
          LloydChunk(x, k, centers.data(), b, e, false, labels.data(), a);
        });
    double shift = 0;
    for (int c = 0; c < k; ++c) {
      const double count = acc[1 + c];
      // An empty cluster keeps its centre; EM's mass floor copes with it.
      if (count == 0) continue;
      for (int64_t d = 0; d < dim; ++d) {
        const double delta = acc[1 + k + c * dim + d] / count;
        centers[c * dim + d] += delta;
        shift += delta * delta;
      }
    }
    if (acc[0] == 0 || shift <= tol) break;
  }
  std::vector<double> final_pass =
      ReduceChunks(chunks, width, scratch, [&](int64_t b, int64_t e, double* a) {
        LloydChunk(x, k, centers.data(), b, e, true, labels.data(), a);
      });
  // Callers want sums about the centres they are given back, so append the centres.
  final_pass.insert(final_pass.end(), centers.begin(), centers.end());
  return final_pass;
}

// The M step from responsibility mass, and sums of r (x - ref) and r (x - ref)^2 about
// reference points `ref` (k x dim): new mean = ref + s1/mass, new variance =
// s2/mass - (s1/mass)^2 + reg_covar. Shifting by a reference close to the mean keeps the
// subtraction well conditioned.
absl::Status MStep(int k, int64_t dim, const double* mass, const double* s1,
                   const double* s2, const double* ref, const MixtureOptions& options,
                   std::vector<double>& weights, std::vector<double>& means,
                   std::vector<double>& variances) {
  weights.assign(k, 0);
  means.assign(k * dim, 0);
  variances.assign(k * dim, 0);
  double total_mass = 0;
  for (int c = 0; c < k; ++c) total_mass += mass[c] + kMassFloor;
  for (int c = 0; c < k; ++c) {
    const double nk = mass[c] + kMassFloor;
    weights[c] = nk / total_mass;
    double spherical = 0;
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t j = c * dim + d;
      const double shift = s1[j] / nk;
      means[j] = ref[j] + shift;
      variances[j] = std::max(0.0, s2[j] / nk - shift * shift) + options.reg_covar;
      spherical += variances[j];
    }
    if (options.covariance == Covariance::kSpherical) {
      std::fill_n(variances.begin() + c * dim, dim, spherical / static_cast<double>(dim));
    }
  }
  for (double v : variances) {
    if (!(v > 0) || !std::isfinite(v)) {
      return absl::FailedPreconditionError(
          "a mixture component has zero variance in some dimension; use reg_covar > 0");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const MatrixView& x, const MixtureOptions& o) {
  if (o.covariance == Covariance::kFull) {
    return absl::UnimplementedError("full covariance mixtures are not implemented");
  }
  if (o.covariance != Covariance::kDiag && o.covariance != Covariance::kSpherical) {
    return absl::InvalidArgumentError("unknown covariance type");
  }
  if (o.components < 1) return absl::InvalidArgumentError("components must be >= 1");
  if (o.max_iter < 1) return absl::InvalidArgumentError("max_iter must be >= 1");
  if (o.n_init < 1) return absl::InvalidArgumentError("n_init must be >= 1");
  if (o.kmeans_max_iter < 0) return absl::InvalidArgumentError("kmeans_max_iter must be >= 0");
  if (!(o.tol >= 0) || !std::isfinite(o.tol)) {
    return absl::InvalidArgumentError("tol must be finite and >= 0");
  }
  if (!(o.reg_covar >= 0) || !std::isfinite(o.reg_covar)) {
    return absl::InvalidArgumentError("reg_covar must be finite and >= 0");
  }
  if (x.rows <= 0 || x.dim <= 0 || x.data == nullptr) {
    return absl::InvalidArgumentError("the matrix must have at least one row and one column");
  }
  if (x.rows < o.components) {
    return absl::InvalidArgumentError("a mixture needs at least as many rows as components");
  }
  return absl::OkStatus();
}

}  // namespace

void GaussianMixture::Prepare() {
  const double log_two_pi = std::log(2 * std::numbers::pi);
  precisions_.resize(variances_.size());
  log_norm_.resize(components_);
  for (int c = 0; c < components_; ++c) {
    double log_det = 0;
    for (int64_t d = 0; d < dim_; ++d) {
      const double v = variances_[c * dim_ + d];
      precisions_[c * dim_ + d] = 1 / v;
      log_det += std::log(v);
    }
    log_norm_[c] =
        std::log(weights_[c]) - 0.5 * (static_cast<double>(dim_) * log_two_pi + log_det);
  }
}

absl::StatusOr<GaussianMixture> GaussianMixture::FromParameters(std::vector<double> weights,
                                                                std::vector<double> means,
                                                                std::vector<double> variances,
                                                                Covariance covariance) {
  if (covariance != Covariance::kDiag && covariance != Covariance::kSpherical) {
    return absl::UnimplementedError("only diag and spherical mixtures are implemented");
  }
  const size_t k = weights.size();
  if (k == 0 || means.empty() || means.size() % k != 0 || variances.size() != means.size()) {
    return absl::InvalidArgumentError(
        "need k > 0 weights and k x dim means and variances of the same shape");
  }
  double sum = 0;
  for (double w : weights) {
    if (!(w >= 0) || !std::isfinite(w)) {
      return absl::InvalidArgumentError("weights must be finite and non-negative");
    }
    sum += w;
  }
  if (std::abs(sum - 1) > 1e-9) return absl::InvalidArgumentError("weights must sum to 1");
  for (double m : means) {
    if (!std::isfinite(m)) return absl::InvalidArgumentError("means must be finite");
  }
  for (double v : variances) {
    if (!(v > 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError("variances must be finite and positive");
    }
  }
  GaussianMixture g;
  g.components_ = static_cast<int>(k);
  g.dim_ = static_cast<int64_t>(means.size() / k);
  if (covariance == Covariance::kSpherical) {
    for (size_t c = 0; c < k; ++c) {
      const auto first = variances.begin() + c * g.dim_;
      if (std::any_of(first, first + g.dim_, [&](double v) { return v != *first; })) {
        return absl::InvalidArgumentError("spherical variances must be constant per component");
      }
    }
  }
  g.covariance_ = covariance;
  g.weights_ = std::move(weights);
  g.means_ = std::move(means);
  g.variances_ = std::move(variances);
  g.Prepare();
  return g;
}

void GaussianMixture::ScoreSamples(const MatrixView& x, double* out) const {
  if (x.rows <= 0) return;
  const Model m{components_, dim_, means_.data(), precisions_.data(), log_norm_.data()};
  ForEachChunk(Chunks(x.rows), [&](int64_t, int64_t b, int64_t e) { ScoreChunk(x, m, b, e, out); });
}

absl::StatusOr<GaussianMixture> GaussianMixture::Fit(const MatrixView& x,
                                                     const MixtureOptions& options,
                                                     const FitProgress& progress) {
  if (absl::Status s = ValidateOptions(x, options); !s.ok()) return s;
  if (options.threads < 0) return absl::InvalidArgumentError("threads must be >= 0");
  const Chunks chunks(x.rows, options.threads);
  if (absl::Status s = CheckFinite(x, chunks); !s.ok()) return s;

  const int k = options.components;
  const int64_t dim = x.dim;
  const int64_t n = x.rows;
  std::vector<double> scratch;
  const double kmeans_tol = 1e-4 * MeanColumnVariance(x, chunks, scratch);
  std::mt19937_64 rng(options.seed);
  const double total_iters = static_cast<double>(options.n_init) * options.max_iter;

  GaussianMixture best;
  double best_lower_bound = -std::numeric_limits<double>::infinity();
  bool have_best = false;
  for (int init = 0; init < options.n_init; ++init) {
    GaussianMixture g;
    g.components_ = k;
    g.dim_ = dim;
    g.covariance_ = options.covariance;
    {
      std::vector<double> km = KMeans(x, k, KMeansPlusPlus(x, k, chunks, rng),
                                      options.kmeans_max_iter, kmeans_tol, chunks, scratch);
      const double* count = km.data() + 1;
      const double* s1 = count + k;
      const double* s2 = s1 + k * dim;
      const double* centers = s2 + k * dim;
      if (absl::Status s = MStep(k, dim, count, s1, s2, centers, options, g.weights_,
                                 g.means_, g.variances_);
          !s.ok()) {
        return s;
      }
      g.Prepare();
    }

    double lower_bound = -std::numeric_limits<double>::infinity();
    const size_t width = 1 + k + 2 * k * dim;
    for (int iter = 1; iter <= options.max_iter; ++iter) {
      const double previous = lower_bound;
      const Model m{k, dim, g.means_.data(), g.precisions_.data(), g.log_norm_.data()};
      const std::vector<double> acc =
          ReduceChunks(chunks, width, scratch,
                       [&](int64_t b, int64_t e, double* a) { EmChunk(x, m, b, e, a); });
      lower_bound = acc[0] / static_cast<double>(n);
      const double* mass = acc.data() + 1;
      const double* s1 = mass + k;
      const double* s2 = s1 + k * dim;
      const std::vector<double> ref = g.means_;
      if (absl::Status s = MStep(k, dim, mass, s1, s2, ref.data(), options, g.weights_,
                                 g.means_, g.variances_);
          !s.ok()) {
        return s;
      }
      g.Prepare();
      g.iterations_ = iter;
      if (progress && !progress((init * options.max_iter + iter) / total_iters)) {
        return absl::CancelledError("mixture fit cancelled");
      }
      if (std::abs(lower_bound - previous) < options.tol) {
        g.converged_ = true;
        break;
      }
    }
    g.lower_bound_ = lower_bound;
    // sklearn's rule: keep the first init unless a later one has a strictly larger bound.
    if (!have_best || lower_bound > best_lower_bound) {
      best = std::move(g);
      best_lower_bound = lower_bound;
      have_best = true;
    }
  }
  return best;
}

}  // namespace curation::selection
