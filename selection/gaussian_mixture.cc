#include "selection/gaussian_mixture.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numbers>
#include <optional>
#include <random>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/cancel.h"
#include "selection/mixture_internal.h"
#include "selection/mixture_lanes.h"
#include "selection/rng.h"

namespace curation::selection {
namespace {

using internal::MixtureStats;

using internal::CombineLanes;
using internal::DoubleLanes;
using internal::kLanes;
using internal::Load;
using internal::Store;

// Rows are split into chunks whose number depends only on the row count. Each chunk writes its
// own partial sums and those are added in chunk order, so sums are identical for any thread
// count. The cap bounds the memory the partial sums take (kMaxChunks * 2 * K * dim doubles).
constexpr int64_t kMinChunkRows = 512;
constexpr int64_t kMaxChunks = 256;

// Rows DiagStatsChunk widens and scores before accumulating them; 16 rows of 256 float64 fit
// in L1.
constexpr int64_t kRowBlock = 16;

// Responsibilities below this are taken as 0 in the M step's float32 sums (see
// DiagStatsChunk): below float32's resolution of any sum a row with a real share adds to.
constexpr double kNegligible = 1e-20;

// sklearn adds this to every component's responsibility mass, so an empty component gets a
// tiny weight and a finite mean instead of a division by zero.
constexpr double kMassFloor = 10 * std::numeric_limits<double>::epsilon();

struct Chunks {
  int64_t rows;
  int64_t count;
  int threads;  // at least 1 (0 in the constructor takes DefaultThreads())

  explicit Chunks(int64_t n, int threads = 0)
      : rows(n),
        count(std::clamp<int64_t>((n + kMinChunkRows - 1) / kMinChunkRows, 1, kMaxChunks)),
        threads(threads > 0 ? threads : internal::DefaultThreads()) {}
  int64_t begin(int64_t c) const { return c * rows / count; }
  int64_t end(int64_t c) const { return (c + 1) * rows / count; }
};

// Rows are widened to float64 once and then read by every component's loop.
CURATION_INLINE void Widen(const float* x, int64_t dim, double* out) {
  for (int64_t d = 0; d < dim; ++d) out[d] = x[d];
}

// x - c in float64. EM works on centred rows so that its sums of squares, taken about the
// data's mean rather than the origin, do not cancel.
CURATION_INLINE void WidenCentred(const float* x, const double* c, int64_t dim, double* out) {
  for (int64_t d = 0; d < dim; ++d) out[d] = x[d] - c[d];
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

// s1 += x; s2 += x^2.
CURATION_INLINE void AccumulateMoments(const double* x, int64_t dim, double* s1, double* s2) {
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes) {
    const DoubleLanes t = Load(x + d);
    Store(s1 + d, Load(s1 + d) + t);
    Store(s2 + d, Load(s2 + d) + t * t);
  }
  for (; d < dim; ++d) {
    s1[d] += x[d];
    s2[d] += x[d] * x[d];
  }
}

// The parameters the diagonal E step needs, as flat arrays.
struct DiagModel {
  int k;
  int64_t dim;
  const double* means;       // k x dim, in the coordinates of the rows scored
  const double* precisions;  // k x dim
  const double* log_norm;    // k
};

// Returns log p(x) = logsumexp_k log(w_k N(x | mu_k, var_k)) and leaves the responsibilities
// p(k | x) in resp[0..k), each computed once from the same exponentials.
CURATION_INLINE double RowLogProb(const double* x, const DiagModel& m, double* resp) {
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

// The diagonal E step's parameters in float32, relative to the centre c the pass works about.
struct DiagModel32 {
  int k;
  int64_t dim;
  const float* offsets;     // k x dim: mu - c
  const float* precisions;  // k x dim: 1 / var
  const double* log_norm;   // k
};

// EM's passes run in float32, 16 lanes (sixteen AVX-512, two AVX2 or four SSE2 registers' worth
// per vector type, the same arithmetic in every clone), twice the elements per instruction of
// float64. Precision: a row's quadratic form sums float32 terms over at most 2 x 16 lanes per
// dimension block, then in float64 (relative error about 1e-7, which moves a responsibility by
// as little); the M step's sums run over a block of 16 rows in float32 before float64 takes
// over. Scores (ScoreChunk) stay float64.
constexpr int kFloatLanes = 16;
typedef float FloatLanes16 __attribute__((vector_size(kFloatLanes * sizeof(float))));

CURATION_INLINE FloatLanes16 LoadF(const float* p) {
  FloatLanes16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

CURATION_INLINE void StoreF(float* p, FloatLanes16 v) { std::memcpy(p, &v, sizeof v); }

typedef double DoubleLanes16 __attribute__((vector_size(kFloatLanes * sizeof(double))));

// Adds the 16 lanes of `v`, widened, to out[0 .. 16).
CURATION_INLINE void AddWidened(FloatLanes16 v, double* out) {
  DoubleLanes16 o;
  std::memcpy(&o, out, sizeof o);
  o += __builtin_convertvector(v, DoubleLanes16);
  std::memcpy(out, &o, sizeof o);
}

// sum_d (t_d - o_d)^2 p_d with float32 lanes, their sum in float64 in a fixed order.
CURATION_INLINE double QuadFormF(const float* t, const float* o, const float* p, int64_t dim) {
  FloatLanes16 acc0 = {};
  FloatLanes16 acc1 = {};
  int64_t d = 0;
  for (; d + 2 * kFloatLanes <= dim; d += 2 * kFloatLanes) {
    const FloatLanes16 u0 = LoadF(t + d) - LoadF(o + d);
    const FloatLanes16 u1 = LoadF(t + d + kFloatLanes) - LoadF(o + d + kFloatLanes);
    acc0 += u0 * u0 * LoadF(p + d);
    acc1 += u1 * u1 * LoadF(p + d + kFloatLanes);
  }
  if (d + kFloatLanes <= dim) {
    const FloatLanes16 u = LoadF(t + d) - LoadF(o + d);
    acc0 += u * u * LoadF(p + d);
    d += kFloatLanes;
  }
  for (; d < dim; ++d) {
    const float u = t[d] - o[d];
    acc1[d % kFloatLanes] += u * u * p[d];
  }
  const DoubleLanes16 wide =
      __builtin_convertvector(acc0, DoubleLanes16) + __builtin_convertvector(acc1, DoubleLanes16);
  double sum = 0;
  for (int l = 0; l < kFloatLanes; ++l) sum += wide[l];
  return sum;
}

// Partial sums of one statistics pass over rows [begin, end), about `center`, laid out as
// [sum log p(x)] [mass_k] [sum r_k (x - c)] [sum r_k (x - c)^2]. Responsibilities come from an
// E step with `m` or, when m is null, from `labels`. Component `derived` is left out of the
// sums (its mass is still counted).
CURATION_HOT void DiagStatsChunk(const MatrixView& x, const float* center, const DiagModel32* m,
                                 const int32_t* labels, int k, int derived, int64_t begin,
                                 int64_t end, double* acc) {
  const int64_t dim = x.dim;
  double* ll = acc;
  double* mass = acc + 1;
  double* s1 = mass + k;
  double* s2 = s1 + k * dim;
  std::vector<double> logp(k);
  // A block of centred rows and their responsibilities (component-major). Accumulating a
  // block at a time keeps the s1/s2 lanes in registers across its rows instead of storing and
  // reloading them per row; each element still sums its rows in row order.
  std::vector<float> rows(kRowBlock * dim);
  std::vector<float> resp(k * kRowBlock);
  for (int64_t b0 = begin; b0 < end; b0 += kRowBlock) {
    const int64_t nb = std::min<int64_t>(kRowBlock, end - b0);
    for (int64_t i = 0; i < nb; ++i) {
      float* row = &rows[i * dim];
      const float* xi = x.row(b0 + i);
      for (int64_t d = 0; d < dim; ++d) row[d] = xi[d] - center[d];
      if (m != nullptr) {
        double max = -std::numeric_limits<double>::infinity();
        for (int c = 0; c < k; ++c) {
          logp[c] = m->log_norm[c] -
                    0.5 * QuadFormF(row, m->offsets + c * dim, m->precisions + c * dim, dim);
          max = std::max(max, logp[c]);
        }
        double sum = 0;
        for (int c = 0; c < k; ++c) sum += logp[c] = std::exp(logp[c] - max);
        *ll += max + std::log(sum);
        // Responsibilities so small that their products with the row would be subnormal (a
        // hundred times slower to compute) add nothing the sums could hold.
        for (int c = 0; c < k; ++c) {
          const double r = logp[c] / sum;
          resp[c * kRowBlock + i] = r < kNegligible ? 0.0f : static_cast<float>(r);
        }
      } else {
        for (int c = 0; c < k; ++c) resp[c * kRowBlock + i] = labels[b0 + i] == c ? 1.0f : 0.0f;
      }
    }
    for (int c = 0; c < k; ++c) {
      const float* r = &resp[c * kRowBlock];
      for (int64_t i = 0; i < nb; ++i) mass[c] += r[i];
      if (c == derived) continue;
      double* c1 = s1 + c * dim;
      double* c2 = s2 + c * dim;
      // A zero responsibility adds exact zeros, so no row needs skipping.
      int64_t d = 0;
      for (; d + kFloatLanes <= dim; d += kFloatLanes) {
        FloatLanes16 a1 = {}, a2 = {};
        for (int64_t i = 0; i < nb; ++i) {
          const FloatLanes16 t = LoadF(&rows[i * dim + d]);
          const FloatLanes16 rt = r[i] * t;
          a1 += rt;
          a2 += rt * t;
        }
        AddWidened(a1, c1 + d);
        AddWidened(a2, c2 + d);
      }
      for (; d < dim; ++d) {
        float a1 = 0, a2 = 0;
        for (int64_t i = 0; i < nb; ++i) {
          const float t = rows[i * dim + d];
          const float rt = r[i] * t;
          a1 += rt;
          a2 += rt * t;
        }
        c1[d] += a1;
        c2[d] += a2;
      }
    }
  }
}

CURATION_HOT void ScoreChunk(const MatrixView& x, const DiagModel& m, int64_t begin, int64_t end,
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
// [count_k] [sum x].
CURATION_HOT void LloydChunk(const MatrixView& x, int k, const double* centers,
                             const double* half_norms, int64_t begin, int64_t end, int32_t* labels,
                             double* acc) {
  const int64_t dim = x.dim;
  double* changes = acc;
  double* count = acc + 1;
  double* s1 = count + k;
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

// Runs fn(chunk, begin, end) for every chunk, in parallel. With `cancel`, asks it before each
// chunk and skips the chunks left once it says stop (the caller then checks cancel->stopped()
// and discards the pass), so a pass over many rows stops within a chunk per thread.
template <typename Fn>
void ForEachChunk(const Chunks& chunks, Fn&& fn, internal::Cancel* cancel = nullptr) {
  const int threads = chunks.count >= kMinParallelChunks ? chunks.threads : 1;
  internal::ParallelFor(chunks.count, threads, [&](int, int64_t c) {
    if (cancel != nullptr && cancel->Stop()) return;
    fn(c, chunks.begin(c), chunks.end(c));
  });
}

// Runs fn(begin, end, acc) with a zeroed `width`-double buffer per chunk, then returns the
// buffers summed in chunk order. `cancel` as ForEachChunk's (the sums are then partial).
template <typename Fn>
std::vector<double> ReduceChunks(const Chunks& chunks, size_t width, std::vector<double>& scratch,
                                 Fn&& fn, internal::Cancel* cancel = nullptr) {
  scratch.assign(chunks.count * width, 0.0);
  ForEachChunk(
      chunks, [&](int64_t c, int64_t b, int64_t e) { fn(b, e, &scratch[c * width]); }, cancel);
  std::vector<double> total(scratch.begin(), scratch.begin() + width);
  for (int64_t c = 1; c < chunks.count; ++c) {
    const double* part = &scratch[c * width];
    for (size_t j = 0; j < width; ++j) total[j] += part[j];
  }
  return total;
}

// What one pass over the input finds: whether it is finite, its mean (EM's centre) and the
// mean over dimensions of the per-dimension variance (sklearn's scale for the k-means
// tolerance).
struct InputScan {
  bool finite = true;
  std::vector<double> mean;
  double mean_variance = 0;
};

// Sums are taken relative to the first row to limit cancellation. Partial if `cancel` stops it.
InputScan ScanInput(const MatrixView& x, const Chunks& chunks, std::vector<double>& scratch,
                    internal::Cancel* cancel) {
  const int64_t dim = x.dim;
  std::vector<double> origin(x.row(0), x.row(0) + dim);
  const std::vector<double> sums = ReduceChunks(
      chunks, 1 + 2 * dim, scratch,
      [&](int64_t b, int64_t e, double* acc) {
        const float* p = x.row(b);
        const float* stop = x.row(e);
        bool ok = true;
        for (; p < stop; ++p) ok &= std::isfinite(*p);
        if (!ok) {
          acc[0] = 1;
          return;
        }
        std::vector<double> row(dim);
        for (int64_t i = b; i < e; ++i) {
          WidenCentred(x.row(i), origin.data(), dim, row.data());
          AccumulateMoments(row.data(), dim, acc + 1, acc + 1 + dim);
        }
      },
      cancel);
  InputScan scan;
  if (sums[0] != 0) {
    scan.finite = false;
    return scan;
  }
  const double n = static_cast<double>(x.rows);
  scan.mean.resize(dim);
  double total = 0;
  for (int64_t d = 0; d < dim; ++d) {
    const double shift = sums[1 + d] / n;
    scan.mean[d] = origin[d] + shift;
    total += std::max(0.0, sums[1 + dim + d] / n - shift * shift);
  }
  scan.mean_variance = total / static_cast<double>(dim);
  return scan;
}

// Greedy k-means++ seeding as in sklearn: each new centre is the best (lowest total potential)
// of 2 + floor(ln k) candidates drawn with probability proportional to the squared distance
// to the nearest centre chosen so far. Returns the seed rows, or nothing once `cancel` says
// stop (it is asked between the chunks of every pass).
std::vector<int64_t> KMeansPlusPlus(const MatrixView& x, int k, const Chunks& chunks,
                                    std::mt19937_64& rng, internal::Cancel* cancel) {
  const int64_t n = x.rows;
  const int64_t dim = x.dim;
  std::vector<int64_t> seeds;
  seeds.push_back(static_cast<int64_t>(BoundedDraw(rng, n)));
  std::vector<double> center(x.row(seeds[0]), x.row(seeds[0]) + dim);
  std::vector<double> closest(n);
  ForEachChunk(
      chunks,
      [&](int64_t, int64_t b, int64_t e) { DistanceChunk(x, center.data(), b, e, closest.data()); },
      cancel);
  if (cancel->stopped()) return {};
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  std::vector<double> cumulative(n);
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
      std::copy(x.row(row), x.row(row) + dim, center.begin());
      ForEachChunk(
          chunks,
          [&](int64_t, int64_t b, int64_t e) {
            DistanceChunk(x, center.data(), b, e, candidate_closest.data());
            for (int64_t i = b; i < e; ++i) {
              candidate_closest[i] = std::min(candidate_closest[i], closest[i]);
            }
          },
          cancel);
      if (cancel->stopped()) return {};
      double candidate_potential = 0;
      for (int64_t i = 0; i < n; ++i) candidate_potential += candidate_closest[i];
      if (candidate_potential < best_potential) {
        best_potential = candidate_potential;
        best_row = row;
        best_closest.swap(candidate_closest);
      }
    }
    seeds.push_back(best_row);
    closest.swap(best_closest);
  }
  return seeds;
}

// Lloyd rounds from the seed rows until the labels stop changing, the total squared centre
// shift falls to `tol`, or max_iter rounds; then one more assignment, so that every label names
// the nearest final centre (as sklearn's KMeans.labels_ do). Returns the labels. Calls
// `progress` after every round so that a long initialisation can be cancelled too.
absl::StatusOr<std::vector<int32_t>> KMeans(const MatrixView& x, int k,
                                            const std::vector<int64_t>& seeds, int max_iter,
                                            double tol, const Chunks& chunks,
                                            const std::function<bool()>& progress,
                                            internal::Cancel* cancel,
                                            std::vector<double>& scratch) {
  const int64_t dim = x.dim;
  std::vector<double> centers(k * dim);
  for (int c = 0; c < k; ++c) {
    std::copy(x.row(seeds[c]), x.row(seeds[c]) + dim, centers.begin() + c * dim);
  }
  // -1 makes the first round count every row as changed.
  std::vector<int32_t> labels(x.rows, -1);
  std::vector<double> half_norms(k);
  const auto update_norms = [&] {
    for (int c = 0; c < k; ++c) {
      half_norms[c] = 0.5 * Dot(&centers[c * dim], &centers[c * dim], dim);
    }
  };
  update_norms();
  const size_t width = 1 + k + k * dim;
  const auto assign = [&] {
    return ReduceChunks(
        chunks, width, scratch,
        [&](int64_t b, int64_t e, double* a) {
          LloydChunk(x, k, centers.data(), half_norms.data(), b, e, labels.data(), a);
        },
        cancel);
  };
  const auto cancelled = [] { return absl::CancelledError("mixture fit cancelled"); };
  for (int iter = 0; iter < max_iter; ++iter) {
    const std::vector<double> acc = assign();
    if (cancel->stopped()) return cancelled();
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
    if (!progress()) return cancelled();
    if (acc[0] == 0 || shift <= tol) break;
  }
  assign();
  if (cancel->stopped()) return cancelled();
  return labels;
}

absl::Status ValidateOptions(const MatrixView& x, const MixtureOptions& o) {
  if (o.covariance != Covariance::kDiag && o.covariance != Covariance::kSpherical &&
      o.covariance != Covariance::kFull) {
    return absl::InvalidArgumentError("unknown covariance type");
  }
  if (o.init != MixtureInit::kKMeans && o.init != MixtureInit::kKMeansPlusPlus) {
    return absl::InvalidArgumentError("unknown initialisation");
  }
  if (o.components < 1) return absl::InvalidArgumentError("components must be >= 1");
  if (o.max_iter < 1) return absl::InvalidArgumentError("max_iter must be >= 1");
  if (o.n_init < 1) return absl::InvalidArgumentError("n_init must be >= 1");
  if (o.kmeans_max_iter < 0) return absl::InvalidArgumentError("kmeans_max_iter must be >= 0");
  if (o.threads < 0) return absl::InvalidArgumentError("threads must be >= 0");
  if (o.init_sample_rows < 0 || (o.init_sample_rows > 0 && o.init_sample_rows < o.components)) {
    return absl::InvalidArgumentError("init_sample_rows must be 0 or at least components");
  }
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

// Runs the initialisations and EM of one Fit call. One Data per matrix EM runs on: all rows,
// and the warm-start sample if there is one.
class MixtureFitter {
 public:
  struct Data {
    Data(MatrixView view, int threads) : x(view), chunks(view.rows, threads) {}

    MatrixView x;
    Chunks chunks;
    // sum over rows of (x - c) and of its square (diag: per dimension; full: the upper
    // triangle of the outer product), set by the first pass that accumulates every component.
    bool have_totals = false;
    std::vector<double> total1;
    std::vector<double> total2;
    internal::FullScratch full_scratch;
  };

  // `center` is the point EM's sums are taken about (the data's mean), `kmeans_scale` the mean
  // per-dimension variance that scales the k-means tolerance (sklearn's tol = 1e-4 of it).
  MixtureFitter(const MixtureOptions& options, internal::Cancel& cancel, std::vector<double> center,
                double kmeans_scale)
      : o_(options),
        cancel_(cancel),
        center32_(center.begin(), center.end()),
        center_(center32_.begin(), center32_.end()),
        kmeans_tol_(1e-4 * kmeans_scale),
        total_iterations_(static_cast<double>(options.n_init) * options.max_iter) {}

  // The share of the fit done before initialisation `init`.
  double ShareBefore(int init) const { return init * o_.max_iter / total_iterations_; }

  // Fits from one initialisation; `done` is the share of the whole fit reached before it.
  absl::StatusOr<GaussianMixture> FitOnce(Data& all, Data* sample, std::mt19937_64& rng,
                                          double done) {
    Data& init_data = sample != nullptr ? *sample : all;
    GaussianMixture g;
    g.components_ = o_.components;
    g.dim_ = all.x.dim;
    g.covariance_ = o_.covariance;
    if (absl::Status s = Initialise(init_data, rng, done, g); !s.ok()) return s;
    if (sample != nullptr) {
      int iterations = 0;
      if (absl::Status s = Em(*sample, done, /*report=*/false, g, iterations); !s.ok()) return s;
      g.init_iterations_ += iterations;
      g.converged_ = false;
      // The sample's buffers for full covariances (megabytes) are not needed on all rows.
      sample->full_scratch = {};
    }
    int iterations = 0;
    if (absl::Status s = Em(all, done, /*report=*/true, g, iterations); !s.ok()) return s;
    g.iterations_ = iterations;
    return g;
  }

  // FitOnce with a sample and EM on all rows through `all_rows` (GaussianMixture::FitFromSample).
  absl::StatusOr<GaussianMixture> FitOnceFromSample(Data& sample, int64_t rows,
                                                    const GaussianMixture::StatisticsFn& all_rows,
                                                    std::mt19937_64& rng, double done) {
    GaussianMixture g;
    g.components_ = o_.components;
    g.dim_ = sample.x.dim;
    g.covariance_ = o_.covariance;
    if (absl::Status s = Initialise(sample, rng, done, g); !s.ok()) return s;
    int iterations = 0;
    if (absl::Status s = Em(sample, done, /*report=*/false, g, iterations); !s.ok()) return s;
    g.init_iterations_ += iterations;
    g.converged_ = false;
    iterations = 0;
    if (absl::Status s = EmFromStatistics(rows, all_rows, done, g, iterations); !s.ok()) return s;
    g.iterations_ = iterations;
    return g;
  }

 private:
  int k() const { return o_.components; }
  bool full() const { return o_.covariance == Covariance::kFull; }

  // Reports `done` to the caller's progress callback; false once it has said stop. Between
  // reports, the passes over the rows and the M step's factorisations ask cancel_ too.
  bool Report(double done) { return cancel_.Report(done); }

  // Sets g's parameters from k-means labels or k-means++ seeds on `data`.
  absl::Status Initialise(Data& data, std::mt19937_64& rng, double done, GaussianMixture& g) {
    std::vector<int64_t> seeds = KMeansPlusPlus(data.x, k(), data.chunks, rng, &cancel_);
    if (cancel_.stopped() || !Report(done)) return absl::CancelledError("mixture fit cancelled");
    MixtureStats stats;
    if (o_.init == MixtureInit::kKMeansPlusPlus) {
      // One-hot responsibilities on the seed rows alone, as sklearn's init_params="k-means++";
      // equal weights instead of sklearn's 1/N each, which give the same E step.
      const int64_t dim = data.x.dim;
      stats.mass.assign(k(), 1.0);
      stats.s1.assign(k() * dim, 0.0);
      stats.s2.assign(full() ? k() * dim * dim : k() * dim, 0.0);
      for (int c = 0; c < k(); ++c) {
        const float* row = data.x.row(seeds[c]);
        for (int64_t a = 0; a < dim; ++a) {
          const double ta = row[a] - center_[a];
          stats.s1[c * dim + a] = ta;
          if (!full()) {
            stats.s2[c * dim + a] = ta * ta;
            continue;
          }
          for (int64_t b = a; b < dim; ++b) {
            stats.s2[(c * dim + a) * dim + b] = ta * (row[b] - center_[b]);
          }
        }
      }
      return MStep(data, stats, g);
    }
    absl::StatusOr<std::vector<int32_t>> labels = KMeans(
        data.x, k(), seeds, o_.kmeans_max_iter, kmeans_tol_, data.chunks,
        [&] {
          ++g.init_iterations_;
          return Report(done);
        },
        &cancel_, scratch_);
    if (!labels.ok()) return labels.status();
    Pass(data, nullptr, labels->data(), stats);
    if (cancel_.stopped()) return absl::CancelledError("mixture fit cancelled");
    return MStep(data, stats, g);
  }

  // EM from g's parameters until converged or max_iter iterations, each an E step and an M
  // step, as sklearn's fit: g ends with the parameters of the last M step, and lower_bound_
  // the mean log-likelihood its E step found. With `report`, every iteration reports its
  // share of the fit.
  absl::Status Em(Data& data, double done, bool report, GaussianMixture& g, int& iterations) {
    double previous = -std::numeric_limits<double>::infinity();
    MixtureStats stats;
    g.converged_ = false;
    for (int iter = 1; iter <= o_.max_iter; ++iter) {
      Pass(data, &g, nullptr, stats);
      if (cancel_.stopped()) return absl::CancelledError("mixture fit cancelled");
      // Finite rows always have a finite log-likelihood (log-sum-exp of finite terms), so this
      // is where a warm-started fit, which scanned only its sample, finds bad values.
      if (!std::isfinite(stats.ll)) {
        return absl::InvalidArgumentError(
            "input matrix contains NaN or infinite values (the log-likelihood is not finite)");
      }
      const double lower_bound = stats.ll / static_cast<double>(data.x.rows);
      if (absl::Status s = MStep(data, stats, g); !s.ok()) return s;
      iterations = iter;
      g.lower_bound_ = lower_bound;
      const double share = report ? done + iter / total_iterations_ : done;
      if (!Report(share)) return absl::CancelledError("mixture fit cancelled");
      if (std::abs(lower_bound - previous) < o_.tol) {
        g.converged_ = true;
        break;
      }
      previous = lower_bound;
    }
    return absl::OkStatus();
  }

  // Em with each E step's statistics from `all_rows` (summed elsewhere, about center_): the
  // same iteration, M step and convergence test.
 public:
  absl::Status EmFromStatistics(int64_t rows, const GaussianMixture::StatisticsFn& all_rows,
                                double done, GaussianMixture& g, int& iterations) {
    const int64_t dim = g.dim_;
    // MStep reads only the shape of the data when no component is derived.
    Data shape(MatrixView{nullptr, rows, dim}, 1);
    double previous = -std::numeric_limits<double>::infinity();
    g.converged_ = false;
    for (int iter = 1; iter <= o_.max_iter; ++iter) {
      MixtureParameters params = g.parameters();
      params.center = center_;
      absl::StatusOr<MixtureStatistics> summed = all_rows(params);
      if (!summed.ok()) return summed.status();
      if (summed->rows != rows || summed->resp.size() != static_cast<size_t>(k()) ||
          summed->resp_x.size() != static_cast<size_t>(k() * dim) ||
          summed->resp_x2.size() != static_cast<size_t>(k() * dim)) {
        return absl::InvalidArgumentError(
            "mixture statistics do not match the pool's rows, components or dimension");
      }
      if (!std::isfinite(summed->log_likelihood)) {
        return absl::InvalidArgumentError(
            "input matrix contains NaN or infinite values (the log-likelihood is not finite)");
      }
      const double lower_bound = summed->log_likelihood / static_cast<double>(rows);
      MixtureStats stats;
      stats.ll = summed->log_likelihood;
      stats.mass = std::move(summed->resp);
      stats.s1 = std::move(summed->resp_x);
      stats.s2 = std::move(summed->resp_x2);
      if (absl::Status s = MStep(shape, stats, g); !s.ok()) return s;
      iterations = iter;
      g.lower_bound_ = lower_bound;
      if (!Report(done + iter / total_iterations_)) {
        return absl::CancelledError("mixture fit cancelled");
      }
      if (std::abs(lower_bound - previous) < o_.tol) {
        g.converged_ = true;
        break;
      }
      previous = lower_bound;
    }
    return absl::OkStatus();
  }

 private:
  // One statistics pass over `data`: an E step with g, or hard `labels`. Once the totals are
  // known the heaviest component's sums are derived from them instead of accumulated.
  void Pass(Data& data, const GaussianMixture* g, const int32_t* labels, MixtureStats& stats) {
    const int64_t dim = data.x.dim;
    int derived = -1;
    if (data.have_totals && g != nullptr) {
      derived = static_cast<int>(std::max_element(g->weights_.begin(), g->weights_.end()) -
                                 g->weights_.begin());
    }
    if (full()) {
      internal::FullModel model;
      if (g != nullptr) {
        model = {k(), dim, g->means_.data(), g->inverse_cholesky_.data(), g->log_norm_.data()};
      }
      internal::FullStatsPass(data.x, center_.data(), k(), g != nullptr ? &model : nullptr, labels,
                              derived, data.chunks.threads, &data.full_scratch, &stats, &cancel_);
    } else {
      // The E step runs on centred rows, so it takes the means relative to the centre.
      std::vector<float> offsets, precisions;
      DiagModel32 model{};
      if (g != nullptr) {
        offsets.resize(k() * dim);
        precisions.resize(k() * dim);
        for (int c = 0; c < k(); ++c) {
          for (int64_t d = 0; d < dim; ++d) {
            offsets[c * dim + d] = static_cast<float>(g->means_[c * dim + d] - center_[d]);
            precisions[c * dim + d] = static_cast<float>(g->precisions_[c * dim + d]);
          }
        }
        model = {k(), dim, offsets.data(), precisions.data(), g->log_norm_.data()};
      }
      const size_t width = 1 + k() + 2 * k() * dim;
      std::vector<double> acc = ReduceChunks(
          data.chunks, width, scratch_,
          [&](int64_t b, int64_t e, double* a) {
            DiagStatsChunk(data.x, center32_.data(), g != nullptr ? &model : nullptr, labels, k(),
                           derived, b, e, a);
          },
          &cancel_);
      stats.ll = acc[0];
      stats.mass.assign(acc.begin() + 1, acc.begin() + 1 + k());
      stats.s1.assign(acc.begin() + 1 + k(), acc.begin() + 1 + k() + k() * dim);
      stats.s2.assign(acc.begin() + 1 + k() + k() * dim, acc.end());
      stats.derived = derived;
    }
    if (derived < 0 && !data.have_totals && !cancel_.stopped()) {
      const size_t w1 = dim;
      const size_t w2 = stats.s2.size() / k();
      data.total1.assign(w1, 0.0);
      data.total2.assign(w2, 0.0);
      for (int c = 0; c < k(); ++c) {
        for (size_t j = 0; j < w1; ++j) data.total1[j] += stats.s1[c * w1 + j];
        for (size_t j = 0; j < w2; ++j) data.total2[j] += stats.s2[c * w2 + j];
      }
      data.have_totals = true;
    }
  }

  // The M step: weights, means and covariances from the statistics, plus reg_covar.
  absl::Status MStep(const Data& data, MixtureStats& stats, GaussianMixture& g) {
    const int64_t dim = data.x.dim;
    const size_t w2 = stats.s2.size() / k();
    if (stats.derived >= 0) {
      // Row responsibilities sum to 1, so the derived component's sums are the totals minus
      // the others'. It is the heaviest component, so the subtraction loses at most a few bits.
      const int j = stats.derived;
      for (int64_t a = 0; a < dim; ++a) {
        double s = data.total1[a];
        for (int c = 0; c < k(); ++c) {
          if (c != j) s -= stats.s1[c * dim + a];
        }
        stats.s1[j * dim + a] = s;
      }
      for (size_t a = 0; a < w2; ++a) {
        double s = data.total2[a];
        for (int c = 0; c < k(); ++c) {
          if (c != j) s -= stats.s2[c * w2 + a];
        }
        stats.s2[j * w2 + a] = s;
      }
    }
    g.weights_.assign(k(), 0);
    g.means_.assign(k() * dim, 0);
    g.variances_.assign(k() * dim, 0);
    if (full()) g.covariances_.assign(k() * dim * dim, 0);
    double total_mass = 0;
    for (int c = 0; c < k(); ++c) total_mass += stats.mass[c] + kMassFloor;
    for (int c = 0; c < k(); ++c) {
      const double nk = stats.mass[c] + kMassFloor;
      g.weights_[c] = nk / total_mass;
      // Sums are about the centre c: mean = c + s1/nk and covariance = s2/nk - (s1/nk)^2, which
      // does not cancel as long as the component's mean is not far from the data's.
      std::vector<double> shift(dim);
      for (int64_t a = 0; a < dim; ++a) {
        shift[a] = stats.s1[c * dim + a] / nk;
        g.means_[c * dim + a] = center_[a] + shift[a];
      }
      if (full()) {
        if (cancel_.Stop()) return absl::CancelledError("mixture fit cancelled");
        double* cov = &g.covariances_[c * dim * dim];
        const double* s2 = &stats.s2[c * w2];
        for (int64_t a = 0; a < dim; ++a) {
          for (int64_t b = a; b < dim; ++b) {
            const double v = s2[a * dim + b] / nk - shift[a] * shift[b];
            cov[a * dim + b] = v;
            cov[b * dim + a] = v;
          }
          cov[a * dim + a] += o_.reg_covar;
          g.variances_[c * dim + a] = cov[a * dim + a];
        }
        continue;
      }
      double spherical = 0;
      for (int64_t a = 0; a < dim; ++a) {
        const int64_t j = c * dim + a;
        g.variances_[j] = std::max(0.0, stats.s2[j] / nk - shift[a] * shift[a]) + o_.reg_covar;
        spherical += g.variances_[j];
      }
      if (o_.covariance == Covariance::kSpherical) {
        std::fill_n(g.variances_.begin() + c * dim, dim, spherical / static_cast<double>(dim));
      }
    }
    for (double v : g.variances_) {
      if (!(v > 0) || !std::isfinite(v)) {
        return absl::FailedPreconditionError(
            "a mixture component has zero variance in some dimension; use reg_covar > 0");
      }
    }
    return g.Prepare(&cancel_);
  }

  const MixtureOptions& o_;
  internal::Cancel& cancel_;
  // The point sums are taken about, rounded to float32 (any point near the data's mean serves),
  // so that the float32 passes and the float64 M step use the very same one.
  const std::vector<float> center32_;
  const std::vector<double> center_;
  const double kmeans_tol_;
  const double total_iterations_;
  std::vector<double> scratch_;
};

absl::Status GaussianMixture::Prepare(internal::Cancel* cancel) {
  const double log_two_pi = std::log(2 * std::numbers::pi);
  log_norm_.resize(components_);
  const int64_t dim = dim_;
  if (covariance_ == Covariance::kFull) {
    inverse_cholesky_.resize(components_ * dim * dim);
    precisions_.clear();
    for (int c = 0; c < components_; ++c) {
      // A factorisation of a large covariance takes tens of milliseconds; K of them, far more.
      if (cancel != nullptr && cancel->Stop()) {
        return absl::CancelledError("mixture fit cancelled");
      }
      absl::StatusOr<double> log_det = internal::InverseCholesky(&covariances_[c * dim * dim], dim,
                                                                 &inverse_cholesky_[c * dim * dim]);
      if (!log_det.ok()) return log_det.status();
      log_norm_[c] =
          std::log(weights_[c]) - 0.5 * (static_cast<double>(dim) * log_two_pi + *log_det);
    }
    return absl::OkStatus();
  }
  precisions_.resize(variances_.size());
  for (int c = 0; c < components_; ++c) {
    double log_det = 0;
    for (int64_t d = 0; d < dim; ++d) {
      const double v = variances_[c * dim + d];
      precisions_[c * dim + d] = 1 / v;
      log_det += std::log(v);
    }
    log_norm_[c] = std::log(weights_[c]) - 0.5 * (static_cast<double>(dim) * log_two_pi + log_det);
  }
  return absl::OkStatus();
}

absl::StatusOr<GaussianMixture> GaussianMixture::FromParameters(std::vector<double> weights,
                                                                std::vector<double> means,
                                                                std::vector<double> covariances,
                                                                Covariance covariance) {
  if (covariance != Covariance::kDiag && covariance != Covariance::kSpherical &&
      covariance != Covariance::kFull) {
    return absl::InvalidArgumentError("unknown covariance type");
  }
  const size_t k = weights.size();
  if (k == 0 || means.empty() || means.size() % k != 0) {
    return absl::InvalidArgumentError("need k > 0 weights and k x dim means");
  }
  const int64_t dim = static_cast<int64_t>(means.size() / k);
  const size_t expected = covariance == Covariance::kFull ? k * dim * dim : k * dim;
  if (covariances.size() != expected) {
    return absl::InvalidArgumentError(covariance == Covariance::kFull
                                          ? "full covariances must be k x dim x dim"
                                          : "variances must be k x dim, as the means");
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
  GaussianMixture g;
  g.components_ = static_cast<int>(k);
  g.dim_ = dim;
  g.covariance_ = covariance;
  if (covariance == Covariance::kFull) {
    for (size_t c = 0; c < k; ++c) {
      const double* cov = &covariances[c * dim * dim];
      for (int64_t a = 0; a < dim; ++a) {
        for (int64_t b = a; b < dim; ++b) {
          const double u = cov[a * dim + b], l = cov[b * dim + a];
          if (!std::isfinite(u) || std::abs(u - l) > 1e-9 * (std::abs(u) + std::abs(l))) {
            return absl::InvalidArgumentError("covariances must be finite and symmetric");
          }
        }
        g.variances_.push_back(cov[a * dim + a]);
      }
    }
    g.covariances_ = std::move(covariances);
  } else {
    for (double v : covariances) {
      if (!(v > 0) || !std::isfinite(v)) {
        return absl::InvalidArgumentError("variances must be finite and positive");
      }
    }
    if (covariance == Covariance::kSpherical) {
      for (size_t c = 0; c < k; ++c) {
        const auto first = covariances.begin() + c * dim;
        if (std::any_of(first, first + dim, [&](double v) { return v != *first; })) {
          return absl::InvalidArgumentError("spherical variances must be constant per component");
        }
      }
    }
    g.variances_ = std::move(covariances);
  }
  g.weights_ = std::move(weights);
  g.means_ = std::move(means);
  if (absl::Status s = g.Prepare(); !s.ok()) return absl::InvalidArgumentError(s.message());
  return g;
}

void GaussianMixture::ScoreSamples(const MatrixView& x, double* out, int threads) const {
  ScoreRows(x, out, threads, nullptr);
}

absl::Status GaussianMixture::ScoreSamples(const MatrixView& x, double* out, int threads,
                                           const FitProgress& progress) const {
  internal::Cancel cancel(progress);
  ScoreRows(x, out, threads, &cancel);
  if (cancel.stopped()) return absl::CancelledError("mixture scoring cancelled");
  return absl::OkStatus();
}

void GaussianMixture::ScoreRows(const MatrixView& x, double* out, int threads,
                                internal::Cancel* cancel) const {
  if (x.rows <= 0) return;
  if (covariance_ == Covariance::kFull) {
    const internal::FullModel m{components_, dim_, means_.data(), inverse_cholesky_.data(),
                                log_norm_.data()};
    internal::FullScoreSamples(x, m, threads, out, cancel);
    return;
  }
  const DiagModel m{components_, dim_, means_.data(), precisions_.data(), log_norm_.data()};
  ForEachChunk(
      Chunks(x.rows, threads), [&](int64_t, int64_t b, int64_t e) { ScoreChunk(x, m, b, e, out); },
      cancel);
}

absl::StatusOr<GaussianMixture> GaussianMixture::Fit(const MatrixView& x,
                                                     const MixtureOptions& options,
                                                     const FitProgress& progress) {
  return FitImpl(x, options, progress, nullptr);
}

absl::StatusOr<GaussianMixture> GaussianMixture::FitWithSample(const MatrixView& x,
                                                               std::span<const int64_t> sample_rows,
                                                               const MixtureOptions& options,
                                                               const FitProgress& progress) {
  for (int64_t row : sample_rows) {
    if (row < 0 || row >= x.rows) return absl::InvalidArgumentError("sample row out of range");
  }
  if (static_cast<int64_t>(sample_rows.size()) < options.components) {
    return absl::InvalidArgumentError(
        "the warm-start sample needs at least as many rows as components");
  }
  return FitImpl(x, options, progress, &sample_rows);
}

// Runs `fit_once(init)` for init = 0 .. n_init - 1 and keeps the best fit by sklearn's rule
// (the first, unless a later one has a strictly larger bound), with every init's iterations
// counted.
absl::StatusOr<GaussianMixture> GaussianMixture::BestOfInits(
    int n_init, const std::function<absl::StatusOr<GaussianMixture>(int init)>& fit_once) {
  std::optional<GaussianMixture> best;
  int init_iterations = 0;
  for (int init = 0; init < n_init; ++init) {
    absl::StatusOr<GaussianMixture> g = fit_once(init);
    if (!g.ok()) return g.status();
    init_iterations += g->init_iterations_;
    if (!best || g->lower_bound_ > best->lower_bound_) best = std::move(*g);
  }
  best->init_iterations_ = init_iterations;
  return std::move(*best);
}

absl::StatusOr<GaussianMixture> GaussianMixture::FitImpl(
    const MatrixView& x, const MixtureOptions& options, const FitProgress& progress,
    const std::span<const int64_t>* given_sample) {
  if (absl::Status s = ValidateOptions(x, options); !s.ok()) return s;
  internal::Cancel cancel(progress);
  MixtureFitter::Data all(x, options.threads);
  std::mt19937_64 rng(options.seed);
  std::vector<double> scratch;

  // The warm-start sample, copied once and shared by every initialisation. Then the centre and
  // the k-means scale come from the sample, so the whole matrix is first read by EM (whose
  // first E step checks it is finite) rather than by a pass of its own.
  std::vector<float> sample_rows;
  std::optional<MixtureFitter::Data> sample;
  if (given_sample != nullptr ||
      (options.init_sample_rows > 0 && x.rows > 2 * options.init_sample_rows)) {
    const std::vector<int64_t> rows =
        given_sample != nullptr ? std::vector<int64_t>(given_sample->begin(), given_sample->end())
                                : internal::SampleRows(x.rows, options.init_sample_rows, rng);
    sample_rows.resize(rows.size() * x.dim);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::copy(x.row(rows[i]), x.row(rows[i]) + x.dim, sample_rows.begin() + i * x.dim);
    }
    const MatrixView view{sample_rows.data(), static_cast<int64_t>(rows.size()), x.dim};
    sample.emplace(view, options.threads);
  }
  InputScan scan =
      ScanInput(sample ? sample->x : x, sample ? sample->chunks : all.chunks, scratch, &cancel);
  if (cancel.stopped()) return absl::CancelledError("mixture fit cancelled");
  if (!scan.finite) {
    return absl::InvalidArgumentError("input matrix contains NaN or infinite values");
  }

  MixtureFitter fitter(options, cancel, std::move(scan.mean), scan.mean_variance);
  return BestOfInits(options.n_init, [&](int init) {
    return fitter.FitOnce(all, sample ? &*sample : nullptr, rng, fitter.ShareBefore(init));
  });
}

absl::StatusOr<GaussianMixture> GaussianMixture::FitFromSample(const MatrixView& sample,
                                                               int64_t rows,
                                                               const StatisticsFn& all_rows,
                                                               const MixtureOptions& options,
                                                               const FitProgress& progress) {
  if (absl::Status s = ValidateOptions(sample, options); !s.ok()) return s;
  if (options.covariance == Covariance::kFull) {
    return absl::InvalidArgumentError(
        "EM over summed statistics needs diag or spherical covariances");
  }
  if (rows < sample.rows) {
    return absl::InvalidArgumentError("the pool has fewer rows than its warm-start sample");
  }
  internal::Cancel cancel(progress);
  MixtureFitter::Data data(sample, options.threads);
  std::mt19937_64 rng(options.seed);
  std::vector<double> scratch;
  InputScan scan = ScanInput(data.x, data.chunks, scratch, &cancel);
  if (cancel.stopped()) return absl::CancelledError("mixture fit cancelled");
  if (!scan.finite) {
    return absl::InvalidArgumentError("input matrix contains NaN or infinite values");
  }
  MixtureFitter fitter(options, cancel, std::move(scan.mean), scan.mean_variance);
  return BestOfInits(options.n_init, [&](int init) {
    return fitter.FitOnceFromSample(data, rows, all_rows, rng, fitter.ShareBefore(init));
  });
}

MixtureParameters GaussianMixture::parameters() const {
  MixtureParameters p;
  p.covariance = covariance_;
  p.weights = weights_;
  p.means = means_;
  p.covariances = covariances();
  return p;
}

absl::StatusOr<MixtureStatistics> MixtureEStep(const MatrixView& x, const MixtureParameters& params,
                                               int threads, const FitProgress& progress) {
  if (params.covariance == Covariance::kFull) {
    return absl::InvalidArgumentError("an E step's statistics need diag or spherical covariances");
  }
  absl::StatusOr<GaussianMixture> g = GaussianMixture::FromParameters(
      params.weights, params.means, params.covariances, params.covariance);
  if (!g.ok()) return g.status();
  const int k = g->components();
  const int64_t dim = g->dim();
  MixtureStatistics stats;
  stats.rows = x.rows;
  stats.resp.assign(k, 0.0);
  stats.resp_x.assign(k * dim, 0.0);
  stats.resp_x2.assign(k * dim, 0.0);
  if (x.rows == 0) return stats;
  if (x.dim != dim) {
    return absl::InvalidArgumentError("mixture parameters do not match the rows' dimension");
  }
  if (!params.center.empty() && static_cast<int64_t>(params.center.size()) != dim) {
    return absl::InvalidArgumentError("the mixture's center must have the rows' dimension");
  }
  // As MixtureFitter::Pass: the E step on rows centred in float32, about the float32 centre.
  std::vector<float> center32(dim, 0.0f);
  std::vector<double> center(dim, 0.0);
  for (int64_t d = 0; d < dim && !params.center.empty(); ++d) {
    center32[d] = static_cast<float>(params.center[d]);
    center[d] = center32[d];
  }
  std::vector<float> offsets(k * dim), precisions(k * dim);
  for (int c = 0; c < k; ++c) {
    for (int64_t d = 0; d < dim; ++d) {
      offsets[c * dim + d] = static_cast<float>(g->means_[c * dim + d] - center[d]);
      precisions[c * dim + d] = static_cast<float>(g->precisions_[c * dim + d]);
    }
  }
  const DiagModel32 model{k, dim, offsets.data(), precisions.data(), g->log_norm_.data()};
  internal::Cancel cancel(progress);
  std::vector<double> scratch;
  const size_t width = 1 + k + 2 * k * dim;
  const std::vector<double> acc = ReduceChunks(
      Chunks(x.rows, threads), width, scratch,
      [&](int64_t b, int64_t e, double* a) {
        DiagStatsChunk(x, center32.data(), &model, nullptr, k, /*derived=*/-1, b, e, a);
      },
      &cancel);
  if (cancel.stopped()) return absl::CancelledError("mixture E step cancelled");
  stats.log_likelihood = acc[0];
  std::copy(acc.begin() + 1, acc.begin() + 1 + k, stats.resp.begin());
  std::copy(acc.begin() + 1 + k, acc.begin() + 1 + k + k * dim, stats.resp_x.begin());
  std::copy(acc.begin() + 1 + k + k * dim, acc.end(), stats.resp_x2.begin());
  return stats;
}

absl::Status AddMixtureStatistics(const MixtureStatistics& from, MixtureStatistics* into) {
  if (into->resp.empty() && into->resp_x.empty() && into->rows == 0) {
    const int64_t rows = into->rows;
    *into = from;
    into->rows += rows;
    return absl::OkStatus();
  }
  if (from.resp.size() != into->resp.size() || from.resp_x.size() != into->resp_x.size() ||
      from.resp_x2.size() != into->resp_x2.size()) {
    return absl::InvalidArgumentError("mixture statistics of different shapes");
  }
  into->rows += from.rows;
  into->log_likelihood += from.log_likelihood;
  for (size_t i = 0; i < from.resp.size(); ++i) into->resp[i] += from.resp[i];
  for (size_t i = 0; i < from.resp_x.size(); ++i) into->resp_x[i] += from.resp_x[i];
  for (size_t i = 0; i < from.resp_x2.size(); ++i) into->resp_x2[i] += from.resp_x2[i];
  return absl::OkStatus();
}

namespace internal {

int DefaultThreads() { return std::max(1, omp_get_max_threads()); }

std::vector<int64_t> SampleRows(int64_t n, int64_t count, std::mt19937_64& rng) {
  std::unordered_set<int64_t> chosen;
  chosen.reserve(count);
  std::vector<int64_t> rows;
  rows.reserve(count);
  for (int64_t j = n - count; j < n; ++j) {
    const int64_t t = static_cast<int64_t>(BoundedDraw(rng, static_cast<uint64_t>(j) + 1));
    const int64_t pick = chosen.insert(t).second ? t : j;
    if (pick == j) chosen.insert(j);
    rows.push_back(pick);
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

}  // namespace internal
}  // namespace curation::selection
