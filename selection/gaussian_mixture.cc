#include "selection/gaussian_mixture.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// Sums over dimensions use 2 x kLanes independent partial sums, combined in a fixed order.
// The lanes are a GCC/Clang vector type, which each clone lowers to its own registers (one
// AVX-512, two AVX2 or four SSE2 registers per vector) with the same per-lane arithmetic, so
// every clone rounds alike and results do not depend on which one the CPU picked.
constexpr int kLanes = 8;
typedef double DoubleLanes __attribute__((vector_size(kLanes * sizeof(double))));

// Rows are split into chunks whose number depends only on the row count. Each chunk writes its
// own partial sums and those are added in chunk order, so sums are identical for any thread
// count. The cap bounds the memory the partial sums take (kMaxChunks * 2 * K * dim doubles).
constexpr int64_t kMinChunkRows = 512;
constexpr int64_t kMaxChunks = 256;

// Rows EmChunk widens and scores before accumulating them; 16 rows of 256 float64 fit in L1.
constexpr int64_t kRowBlock = 16;

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

#define CURATION_INLINE [[gnu::always_inline]] inline

// memcpy keeps the loads free of alignment and aliasing assumptions; it compiles to plain
// unaligned vector loads.
CURATION_INLINE DoubleLanes Load(const double* p) {
  DoubleLanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

CURATION_INLINE void Store(double* p, DoubleLanes v) { std::memcpy(p, &v, sizeof v); }

CURATION_INLINE double CombineLanes(DoubleLanes a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// Rows are widened to float64 once and then read by every component's loop.
CURATION_INLINE void Widen(const float* x, int64_t dim, double* out) {
  for (int64_t d = 0; d < dim; ++d) out[d] = x[d];
}

// sum_d (x_d - mu_d)^2 * w_d, or sum_d (x_d - mu_d)^2 without w. Two accumulators halve the
// add latency chain.
template <bool kWeighted>
CURATION_INLINE double SquaredDistance(const double* x, const double* mu, const double* w,
                                       int64_t dim) {
  DoubleLanes acc0 = {};
  DoubleLanes acc1 = {};
  int64_t d = 0;
  for (; d + 2 * kLanes <= dim; d += 2 * kLanes) {
    const DoubleLanes t0 = Load(x + d) - Load(mu + d);
    const DoubleLanes t1 = Load(x + d + kLanes) - Load(mu + d + kLanes);
    if constexpr (kWeighted) {
      acc0 += t0 * t0 * Load(w + d);
      acc1 += t1 * t1 * Load(w + d + kLanes);
    } else {
      acc0 += t0 * t0;
      acc1 += t1 * t1;
    }
  }
  if (d + kLanes <= dim) {
    const DoubleLanes t = Load(x + d) - Load(mu + d);
    acc0 += kWeighted ? t * t * Load(w + d) : t * t;
    d += kLanes;
  }
  for (; d < dim; ++d) {
    const double t = x[d] - mu[d];
    acc1[d % kLanes] += kWeighted ? t * t * w[d] : t * t;
  }
  return CombineLanes(acc0 + acc1);
}

// s1 += r * (x - mu); s2 += r * (x - mu)^2 unless s2 is null.
CURATION_INLINE void AccumulateShifted(const double* x, const double* mu, double r, int64_t dim,
                                       double* s1, double* s2) {
  int64_t d = 0;
  if (s2 == nullptr) {
    for (; d + kLanes <= dim; d += kLanes) {
      Store(s1 + d, Load(s1 + d) + r * (Load(x + d) - Load(mu + d)));
    }
    for (; d < dim; ++d) s1[d] += r * (x[d] - mu[d]);
    return;
  }
  for (; d + kLanes <= dim; d += kLanes) {
    const DoubleLanes t = Load(x + d) - Load(mu + d);
    const DoubleLanes rt = r * t;
    Store(s1 + d, Load(s1 + d) + rt);
    Store(s2 + d, Load(s2 + d) + rt * t);
  }
  for (; d < dim; ++d) {
    const double t = x[d] - mu[d];
    const double rt = r * t;
    s1[d] += rt;
    s2[d] += rt * t;
  }
}

// The parameters the E step needs, as flat arrays.
struct Model {
  int k;
  int64_t dim;
  const double* means;       // k x dim
  const double* precisions;  // k x dim
  const double* log_norm;    // k
};

// Returns log p(x) = logsumexp_k log(w_k N(x | mu_k, var_k)) and leaves the responsibilities
// p(k | x) in resp[0..k), each computed once from the same exponentials.
CURATION_INLINE double RowLogProb(const double* x, const Model& m, double* resp) {
  double max = -std::numeric_limits<double>::infinity();
  for (int c = 0; c < m.k; ++c) {
    resp[c] = m.log_norm[c] -
              0.5 * SquaredDistance<true>(x, m.means + c * m.dim, m.precisions + c * m.dim, m.dim);
    max = std::max(max, resp[c]);
  }
  double sum = 0;
  for (int c = 0; c < m.k; ++c) sum += resp[c] = std::exp(resp[c] - max);
  for (int c = 0; c < m.k; ++c) resp[c] /= sum;
  return max + std::log(sum);
}

// The hot loops get AVX-512 and AVX2 clones chosen at load time; the baseline clone keeps the
// binary portable. None uses FMA (the target is built with -ffp-contract=off), so all round
// alike.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define CURATION_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CURATION_HOT
#endif

// Partial sums of one E step over rows [begin, end), laid out as
// [sum log p(x)] [mass_k] [sum r_k (x - mu_k)] [sum r_k (x - mu_k)^2].
CURATION_HOT void EmChunk(const MatrixView& x, const Model& m, int64_t begin, int64_t end,
                          double* acc) {
  const int64_t dim = m.dim;
  double* ll = acc;
  double* mass = acc + 1;
  double* s1 = mass + m.k;
  double* s2 = s1 + m.k * dim;
  std::vector<double> row_resp(m.k);
  // A block of widened rows and their responsibilities (component-major). Accumulating a
  // block at a time keeps the s1/s2 lanes in registers across its rows instead of storing and
  // reloading them per row; each element still sums its rows in row order.
  std::vector<double> rows(kRowBlock * dim);
  std::vector<double> resp(m.k * kRowBlock);
  for (int64_t b0 = begin; b0 < end; b0 += kRowBlock) {
    const int64_t nb = std::min<int64_t>(kRowBlock, end - b0);
    for (int64_t i = 0; i < nb; ++i) {
      double* row = &rows[i * dim];
      Widen(x.row(b0 + i), dim, row);
      *ll += RowLogProb(row, m, row_resp.data());
      for (int c = 0; c < m.k; ++c) resp[c * kRowBlock + i] = row_resp[c];
    }
    for (int c = 0; c < m.k; ++c) {
      const double* r = &resp[c * kRowBlock];
      const double* mu = m.means + c * dim;
      double* c1 = s1 + c * dim;
      double* c2 = s2 + c * dim;
      for (int64_t i = 0; i < nb; ++i) mass[c] += r[i];
      // A zero responsibility adds exact zeros, so no row needs skipping.
      int64_t d = 0;
      for (; d + 2 * kLanes <= dim; d += 2 * kLanes) {
        const DoubleLanes mu0 = Load(mu + d);
        const DoubleLanes mu1 = Load(mu + d + kLanes);
        DoubleLanes a10 = Load(c1 + d), a11 = Load(c1 + d + kLanes);
        DoubleLanes a20 = Load(c2 + d), a21 = Load(c2 + d + kLanes);
        for (int64_t i = 0; i < nb; ++i) {
          const double* row = &rows[i * dim + d];
          const DoubleLanes t0 = Load(row) - mu0;
          const DoubleLanes t1 = Load(row + kLanes) - mu1;
          const DoubleLanes rt0 = r[i] * t0;
          const DoubleLanes rt1 = r[i] * t1;
          a10 += rt0;
          a11 += rt1;
          a20 += rt0 * t0;
          a21 += rt1 * t1;
        }
        Store(c1 + d, a10);
        Store(c1 + d + kLanes, a11);
        Store(c2 + d, a20);
        Store(c2 + d + kLanes, a21);
      }
      for (; d < dim; ++d) {
        for (int64_t i = 0; i < nb; ++i) {
          const double t = rows[i * dim + d] - mu[d];
          const double rt = r[i] * t;
          c1[d] += rt;
          c2[d] += rt * t;
        }
      }
    }
  }
}

CURATION_HOT void ScoreChunk(const MatrixView& x, const Model& m, int64_t begin, int64_t end,
                             double* out) {
  std::vector<double> resp(m.k);
  std::vector<double> row(m.dim);
  for (int64_t i = begin; i < end; ++i) {
    Widen(x.row(i), m.dim, row.data());
    out[i] = RowLogProb(row.data(), m, resp.data());
  }
}

// sum_d x_d * y_d.
CURATION_INLINE double Dot(const double* x, const double* y, int64_t dim) {
  DoubleLanes acc0 = {};
  DoubleLanes acc1 = {};
  int64_t d = 0;
  for (; d + 2 * kLanes <= dim; d += 2 * kLanes) {
    acc0 += Load(x + d) * Load(y + d);
    acc1 += Load(x + d + kLanes) * Load(y + d + kLanes);
  }
  if (d + kLanes <= dim) {
    acc0 += Load(x + d) * Load(y + d);
    d += kLanes;
  }
  for (; d < dim; ++d) acc1[d % kLanes] += x[d] * y[d];
  return CombineLanes(acc0 + acc1);
}

// One Lloyd assignment over rows [begin, end). Each row goes to the centre maximising
// x.c - |c|^2/2 (the nearest one; ties to the lower index), which costs one dot product per
// centre instead of a distance, as sklearn does with its GEMM. Writes [label changes]
// [count_k] and then either [sum x] (a round) or, with `shifted`, [sum (x - c_k)]
// [sum (x - c_k)^2] about the centres, which seed EM's variances without cancellation.
CURATION_HOT void LloydChunk(const MatrixView& x, int k, const double* centers,
                             const double* half_norms, int64_t begin, int64_t end, bool shifted,
                             int32_t* labels, double* acc) {
  const int64_t dim = x.dim;
  double* changes = acc;
  double* count = acc + 1;
  double* s1 = count + k;
  double* s2 = s1 + k * dim;
  std::vector<double> row(dim);
  for (int64_t i = begin; i < end; ++i) {
    Widen(x.row(i), dim, row.data());
    int best = 0;
    double best_score = Dot(row.data(), centers, dim) - half_norms[0];
    for (int c = 1; c < k; ++c) {
      const double score = Dot(row.data(), centers + c * dim, dim) - half_norms[c];
      if (score > best_score) {
        best_score = score;
        best = c;
      }
    }
    if (labels[i] != best) {
      labels[i] = best;
      *changes += 1;
    }
    count[best] += 1;
    double* sum = s1 + best * dim;
    if (shifted) {
      AccumulateShifted(row.data(), centers + best * dim, 1.0, dim, sum, s2 + best * dim);
      continue;
    }
    int64_t d = 0;
    for (; d + kLanes <= dim; d += kLanes) Store(sum + d, Load(sum + d) + Load(row.data() + d));
    for (; d < dim; ++d) sum[d] += row[d];
  }
}

CURATION_HOT void DistanceChunk(const MatrixView& x, const double* center, int64_t begin,
                                int64_t end, double* out) {
  std::vector<double> row(x.dim);
  for (int64_t i = begin; i < end; ++i) {
    Widen(x.row(i), x.dim, row.data());
    out[i] = SquaredDistance<false>(row.data(), center, nullptr, x.dim);
  }
}

// Below this many chunks a pass is too short to repay waking the thread team, which on a
// loaded machine can cost more than the pass itself.
constexpr int64_t kMinParallelChunks = 4;

// Runs fn(chunk, begin, end) for every chunk, in parallel.
template <typename Fn>
void ForEachChunk(const Chunks& chunks, Fn&& fn) {
#pragma omp parallel for schedule(dynamic, 1) \
    num_threads(chunks.threads) if (chunks.count >= kMinParallelChunks)
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
        std::vector<double> row(dim);
        for (int64_t i = b; i < e; ++i) {
          Widen(x.row(i), dim, row.data());
          AccumulateShifted(row.data(), origin.data(), 1.0, dim, acc, acc + dim);
        }
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
// Returns the buffer of LloydChunk's final pass followed by the centres. Reports `done` to
// `progress` after every round so that a long initialisation can be cancelled too.
absl::StatusOr<std::vector<double>> KMeans(const MatrixView& x, int k, std::vector<double> centers,
                                           int max_iter, double tol, const Chunks& chunks,
                                           const FitProgress& progress, double done,
                                           std::vector<double>& scratch) {
  const int64_t dim = x.dim;
  // -1 makes the first round count every row as changed.
  std::vector<int32_t> labels(x.rows, -1);
  std::vector<double> half_norms(k);
  const auto update_norms = [&] {
    for (int c = 0; c < k; ++c) {
      half_norms[c] = 0.5 * Dot(&centers[c * dim], &centers[c * dim], dim);
    }
  };
  update_norms();
  for (int iter = 0; iter < max_iter; ++iter) {
    const std::vector<double> acc =
        ReduceChunks(chunks, 1 + k + k * dim, scratch, [&](int64_t b, int64_t e, double* a) {
          LloydChunk(x, k, centers.data(), half_norms.data(), b, e, false, labels.data(), a);
        });
    double shift = 0;
    for (int c = 0; c < k; ++c) {
      const double count = acc[1 + c];
      // An empty cluster keeps its centre; EM's mass floor copes with it.
      if (count == 0) continue;
      for (int64_t d = 0; d < dim; ++d) {
        const double updated = acc[1 + k + c * dim + d] / count;
        const double delta = updated - centers[c * dim + d];
        centers[c * dim + d] = updated;
        shift += delta * delta;
      }
    }
    update_norms();
    if (progress && !progress(done)) return absl::CancelledError("mixture fit cancelled");
    if (acc[0] == 0 || shift <= tol) break;
  }
  std::vector<double> final_pass =
      ReduceChunks(chunks, 1 + k + 2 * k * dim, scratch, [&](int64_t b, int64_t e, double* a) {
        LloydChunk(x, k, centers.data(), half_norms.data(), b, e, true, labels.data(), a);
      });
  final_pass.insert(final_pass.end(), centers.begin(), centers.end());
  return final_pass;
}

// The M step from responsibility mass, and sums of r (x - ref) and r (x - ref)^2 about
// reference points `ref` (k x dim): new mean = ref + s1/mass, new variance =
// s2/mass - (s1/mass)^2 + reg_covar. Shifting by a reference close to the mean keeps the
// subtraction well conditioned.
absl::Status MStep(int k, int64_t dim, const double* mass, const double* s1, const double* s2,
                   const double* ref, const MixtureOptions& options, std::vector<double>& weights,
                   std::vector<double>& means, std::vector<double>& variances) {
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
    log_norm_[c] = std::log(weights_[c]) - 0.5 * (static_cast<double>(dim_) * log_two_pi + log_det);
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
      absl::StatusOr<std::vector<double>> km =
          KMeans(x, k, KMeansPlusPlus(x, k, chunks, rng), options.kmeans_max_iter, kmeans_tol,
                 chunks, progress, init * options.max_iter / total_iters, scratch);
      if (!km.ok()) return km.status();
      const double* count = km->data() + 1;
      const double* s1 = count + k;
      const double* s2 = s1 + k * dim;
      const double* centers = s2 + k * dim;
      if (absl::Status s =
              MStep(k, dim, count, s1, s2, centers, options, g.weights_, g.means_, g.variances_);
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
      const std::vector<double> acc = ReduceChunks(
          chunks, width, scratch, [&](int64_t b, int64_t e, double* a) { EmChunk(x, m, b, e, a); });
      lower_bound = acc[0] / static_cast<double>(n);
      const double* mass = acc.data() + 1;
      const double* s1 = mass + k;
      const double* s2 = s1 + k * dim;
      const std::vector<double> ref = g.means_;
      if (absl::Status s =
              MStep(k, dim, mass, s1, s2, ref.data(), options, g.weights_, g.means_, g.variances_);
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
