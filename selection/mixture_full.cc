// Full-covariance Gaussian mixture passes, and the PCA's projection kernel.
//
// Rows are processed in blocks whose size depends only on the dimension. Per block and
// component, the E step needs q = |(x - mu) L^-T|^2 for every row (L the covariance's Cholesky
// factor), a triangular matrix product; the M step needs the scatter matrix
// sum_i r_i (x_i - c)(x_i - c)^T, a rank-B update. Blocks are grouped into a fixed number of
// strands that run in parallel (ParallelFor); each strand adds its blocks into float64 totals
// in order, and the strands' totals are added in order, so sums do not depend on the thread
// count.
//
// Two implementations of the products: AVX-512 kernels (register-blocked, fused with the
// squared norms, packed triangular operand), used when the CPU has AVX-512; and single-
// threaded CBLAS calls (strmm/ssyrk/dtrmm) otherwise. Debian's OpenBLAS 0.3.21 does not
// recognise recent Xeons and runs its AVX2 kernels there, at about half the speed of ours.
// The two round differently, so a kFull fit is reproducible on one machine, not across CPUs.
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/cancel.h"
#include "selection/mixture_internal.h"
#include "selection/mixture_lanes.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CURATION_HAVE_AVX512_KERNELS 1
#endif

// LAPACK (OpenBLAS's), Fortran calling convention; single-character arguments need no hidden
// length here, as FAISS also assumes.
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda,
             int* info);
}

namespace curation::selection::internal {
namespace {

// Rows per block: enough for the products to run near peak, few enough that a block and its
// products stay in a core's L2 cache, and that float32 sums over a block lose no more than
// about 1e-6 of their magnitude.
int64_t BlockRows(int64_t dim) { return std::clamp<int64_t>(131072 / dim, 64, 512); }

int Threads(int threads) { return threads > 0 ? threads : DefaultThreads(); }

// Rows whose responsibility for a component is below this are left out of its scatter matrix.
// Their share of it is far below float32's resolution, and leaving them out keeps very small
// weights (whose square roots are float32 subnormals, a hundred times slower to multiply)
// out of the products; with separated components it also skips most rows.
constexpr double kNegligibleResponsibility = 1e-20;

// The strands of FullStatsPass: at most this many, and their float64 scatter matrices within
// this many bytes.
constexpr int64_t kMaxStrands = 16;
constexpr int64_t kStrandBytes = int64_t{64} << 20;

// Columns per panel of the kernels' packed operands: two AVX-512 vectors.
constexpr int64_t kPanelF32 = 32;
constexpr int64_t kPanelF64 = 16;

int64_t RoundUp(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

std::atomic<bool> force_blas{false};

bool UseKernels() {
#ifdef CURATION_HAVE_AVX512_KERNELS
  // libgcc's check includes the OS's support for saving the AVX-512 registers.
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512 && !force_blas.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

// The operand M = L^-T of y = z M (upper triangular: M[a][j] = Linv[j][a] for a <= j) in
// column panels of `width`: panel p holds rows a < min((p + 1) width, dim) of columns
// [p width, (p + 1) width), row-major, zero-padded past the last column. Rows below a panel
// are zero in M and are not stored.
template <typename T>
struct PackedFactor {
  int64_t width = 0;
  std::vector<T> data;
  std::vector<int64_t> offsets;  // where each panel starts in data
};

template <typename T>
PackedFactor<T> PackFactor(const double* linv, int64_t dim, int64_t width) {
  PackedFactor<T> packed;
  packed.width = width;
  for (int64_t j0 = 0; j0 < dim; j0 += width) {
    packed.offsets.push_back(static_cast<int64_t>(packed.data.size()));
    const int64_t rows = std::min(j0 + width, dim);
    for (int64_t a = 0; a < rows; ++a) {
      for (int64_t j = j0; j < j0 + width; ++j) {
        packed.data.push_back(j < dim && a <= j ? static_cast<T>(linv[j * dim + a]) : T{0});
      }
    }
  }
  return packed;
}

#ifdef CURATION_HAVE_AVX512_KERNELS

#define CURATION_AVX512 [[gnu::target("avx512f")]]
#define CURATION_AVX512_INLINE [[gnu::target("avx512f"), gnu::always_inline]] inline

// The vector operations the kernels need, for float32 and float64.
struct F32 {
  using T = float;
  using V = __m512;
  static constexpr int kLanes = 16;
  CURATION_AVX512_INLINE static V Zero() { return _mm512_setzero_ps(); }
  CURATION_AVX512_INLINE static V Load(const T* p) { return _mm512_loadu_ps(p); }
  CURATION_AVX512_INLINE static void Store(T* p, V v) { _mm512_storeu_ps(p, v); }
  CURATION_AVX512_INLINE static V Set1(T x) { return _mm512_set1_ps(x); }
  CURATION_AVX512_INLINE static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  CURATION_AVX512_INLINE static V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  // The lanes' sum in float64, in a fixed order. (Through memory: GCC 12 warns about the
  // undefined upper halves its conversion intrinsics start from.)
  CURATION_AVX512_INLINE static double Sum(V v) {
    alignas(64) float lanes[kLanes];
    _mm512_store_ps(lanes, v);
    double sum = 0;
    for (int l = 0; l < kLanes; ++l) sum += lanes[l];
    return sum;
  }
};

struct F64 {
  using T = double;
  using V = __m512d;
  static constexpr int kLanes = 8;
  CURATION_AVX512_INLINE static V Zero() { return _mm512_setzero_pd(); }
  CURATION_AVX512_INLINE static V Load(const T* p) { return _mm512_loadu_pd(p); }
  CURATION_AVX512_INLINE static void Store(T* p, V v) { _mm512_storeu_pd(p, v); }
  CURATION_AVX512_INLINE static V Set1(T x) { return _mm512_set1_pd(x); }
  CURATION_AVX512_INLINE static V Fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  CURATION_AVX512_INLINE static V Sub(V a, V b) { return _mm512_sub_pd(a, b); }
  CURATION_AVX512_INLINE static double Sum(V v) {
    alignas(64) double lanes[kLanes];
    _mm512_store_pd(lanes, v);
    double sum = 0;
    for (int l = 0; l < kLanes; ++l) sum += lanes[l];
    return sum;
  }
};

// Adds to q[r], for R rows (row pointers), sum_j ((z_r M)_j - b_j)^2 over the columns of
// panels [p_begin, p_end) of M (packed in panels of two vectors; b zero-padded to a whole
// panel). Each panel's R x 2 vectors of products stay in registers while the panel streams
// from cache. With `limit`, stops after the first panel at which every row's q exceeds its
// limit; returns the panel it stopped after (p_end if none).
template <typename Ops, int R>
CURATION_AVX512 int64_t QuadFormTile(const typename Ops::T* const* z, int64_t dim,
                                     const PackedFactor<typename Ops::T>& m,
                                     const typename Ops::T* b, int64_t p_begin, int64_t p_end,
                                     double* q, const double* limit) {
  using V = typename Ops::V;
  constexpr int64_t L = Ops::kLanes;
  constexpr int64_t W = 2 * L;
  V squares[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) squares[r] = Ops::Zero();
  int64_t p = p_begin;
  while (p < p_end) {
    const int64_t j0 = p * W;
    V acc0[R], acc1[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = Ops::Zero();
    const typename Ops::T* panel = m.data.data() + m.offsets[p];
    const int64_t rows = std::min(j0 + W, dim);
    for (int64_t a = 0; a < rows; ++a) {
      const V m0 = Ops::Load(panel + a * W);
      const V m1 = Ops::Load(panel + a * W + L);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const V za = Ops::Set1(z[r][a]);
        acc0[r] = Ops::Fma(za, m0, acc0[r]);
        acc1[r] = Ops::Fma(za, m1, acc1[r]);
      }
    }
    const V b0 = Ops::Load(b + j0);
    const V b1 = Ops::Load(b + j0 + L);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const V t0 = Ops::Sub(acc0[r], b0);
      const V t1 = Ops::Sub(acc1[r], b1);
      squares[r] = Ops::Fma(t0, t0, squares[r]);
      squares[r] = Ops::Fma(t1, t1, squares[r]);
    }
    ++p;
    if (limit != nullptr && p < p_end) {
      bool all_over = true;
      for (int r = 0; r < R && all_over; ++r) all_over = q[r] + Ops::Sum(squares[r]) > limit[r];
      if (all_over) break;
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) q[r] += Ops::Sum(squares[r]);
  return p;
}

// Runs QuadFormTile over a list of rows of a block, 8 at a time. With `limits`, a row whose
// tile stopped early gets `pruned` set. A last tile of 3 or more rows is filled up with copies
// of its last row (whose results are dropped, and whose limits never hold a tile back):
// cheaper than one-row tiles, which reload each panel per row.
template <typename Ops>
void QuadFormRows(const typename Ops::T* z, int64_t dim, const std::vector<int32_t>& rows,
                  const PackedFactor<typename Ops::T>& m, const typename Ops::T* b, int64_t p_begin,
                  int64_t p_end, double* q, const double* limits, uint8_t* pruned) {
  constexpr int kTile = 8;
  const typename Ops::T* pointers[kTile];
  double tile_q[kTile];
  double tile_limit[kTile];
  const size_t count = rows.size();
  for (size_t i = 0; i < count;) {
    const size_t left = count - i;
    const int n = left >= kTile ? kTile : (left >= 3 ? static_cast<int>(left) : 1);
    const int width = n >= 3 ? kTile : 1;
    for (int r = 0; r < width; ++r) {
      const int32_t row = rows[i + std::min(r, n - 1)];
      pointers[r] = z + row * dim;
      tile_q[r] = q[row];
      if (limits != nullptr) {
        tile_limit[r] = r < n ? limits[row] : -std::numeric_limits<double>::infinity();
      }
    }
    const double* limit = limits != nullptr ? tile_limit : nullptr;
    const int64_t stopped =
        width == kTile
            ? QuadFormTile<Ops, kTile>(pointers, dim, m, b, p_begin, p_end, tile_q, limit)
            : QuadFormTile<Ops, 1>(pointers, dim, m, b, p_begin, p_end, tile_q, limit);
    for (int r = 0; r < n; ++r) {
      q[rows[i + r]] = tile_q[r];
      if (stopped < p_end) pruned[rows[i + r]] = 1;
    }
    i += n;
  }
}

// Pruning: a component whose log(w_k N_k(x)) is more than this many nats below another's
// changes log p(x) by less than e^-50 of it (nothing, in float64) and gets a responsibility
// below kNegligibleResponsibility, so its exact value is never needed.
constexpr double kPruneMargin = 50;

// logp[i * k + c] = log_norm_c - q_c(x_i) / 2 for a block of `count` rows z (row stride dim),
// or -infinity where the term is provably negligible (kPruneMargin). The triangular structure
// of M makes the first panels of q cheap and a lower bound of all of it: every row first gets
// the first panels of every component, then the component that looks best so far exactly,
// then the others only until they fall kPruneMargin below it.
template <typename Ops>
void BlockLogTerms(const typename Ops::T* z, int64_t count, int64_t dim, int k,
                   const std::vector<PackedFactor<typename Ops::T>>& m,
                   const typename Ops::T* offsets, int64_t offset_stride, const double* log_norm,
                   double* logp, FullThreadBuffers& s) {
  constexpr int64_t W = 2 * Ops::kLanes;
  const int64_t panels = (dim + W - 1) / W;
  // The guess reads the first 64 columns: 1.6-6% of the work at d = 256.
  const int64_t first = std::min<int64_t>(panels, (64 + W - 1) / W);
  s.q.assign(k * count, 0.0);
  s.pruned.assign(k * count, 0);
  s.rows.resize(count);
  for (int64_t i = 0; i < count; ++i) s.rows[i] = static_cast<int32_t>(i);
  for (int c = 0; c < k; ++c) {
    QuadFormRows<Ops>(z, dim, s.rows, m[c], offsets + c * offset_stride, 0, first, &s.q[c * count],
                      nullptr, nullptr);
  }
  if (first < panels) {
    s.guess.assign(count, 0);
    s.best.resize(count);
    for (int64_t i = 0; i < count; ++i) {
      double top = -std::numeric_limits<double>::infinity();
      for (int c = 0; c < k; ++c) {
        const double bound = log_norm[c] - 0.5 * s.q[c * count + i];
        if (bound > top) {
          top = bound;
          s.guess[i] = c;
        }
      }
    }
    for (int c = 0; c < k; ++c) {
      s.rows.clear();
      for (int64_t i = 0; i < count; ++i) {
        if (s.guess[i] == c) s.rows.push_back(static_cast<int32_t>(i));
      }
      QuadFormRows<Ops>(z, dim, s.rows, m[c], offsets + c * offset_stride, first, panels,
                        &s.q[c * count], nullptr, nullptr);
    }
    for (int64_t i = 0; i < count; ++i) {
      const int g = s.guess[i];
      s.best[i] = log_norm[g] - 0.5 * s.q[g * count + i];
    }
    s.limits.resize(count);
    for (int c = 0; c < k; ++c) {
      s.rows.clear();
      for (int64_t i = 0; i < count; ++i) {
        if (s.guess[i] == c) continue;
        s.rows.push_back(static_cast<int32_t>(i));
        s.limits[i] = 2 * (log_norm[c] - s.best[i] + kPruneMargin);
      }
      QuadFormRows<Ops>(z, dim, s.rows, m[c], offsets + c * offset_stride, first, panels,
                        &s.q[c * count], s.limits.data(), &s.pruned[c * count]);
    }
  }
  for (int64_t i = 0; i < count; ++i) {
    for (int c = 0; c < k; ++c) {
      logp[i * k + c] = s.pruned[c * count + i] ? -std::numeric_limits<double>::infinity()
                                                : log_norm[c] - 0.5 * s.q[c * count + i];
    }
  }
}

// s[i][j] = sum_r w[r][i] w[r][j] for i in [i0, i0 + R), j in [j0, j0 + 32), w with `rows`
// rows of stride `stride` (zero-padded past the dimension), s of the same stride.
template <int R>
CURATION_AVX512 void ScatterTile(const float* w, int64_t rows, int64_t stride, int64_t i0,
                                 int64_t j0, float* s) {
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * stride;
    const __m512 x0 = _mm512_loadu_ps(wr + j0);
    const __m512 x1 = _mm512_loadu_ps(wr + j0 + 16);
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      const __m512 wi = _mm512_set1_ps(wr[i0 + i]);
      acc0[i] = _mm512_fmadd_ps(wi, x0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(wi, x1, acc1[i]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; ++i) {
    _mm512_storeu_ps(s + (i0 + i) * stride + j0, acc0[i]);
    _mm512_storeu_ps(s + (i0 + i) * stride + j0 + 16, acc1[i]);
  }
}

// The upper triangle (and a few entries below it) of w^T w, for padded rows of `stride`, a
// multiple of 32.
void Scatter(const float* w, int64_t rows, int64_t stride, float* s) {
  constexpr int kRows = 8;
  for (int64_t i0 = 0; i0 < stride; i0 += kRows) {
    for (int64_t j0 = i0 / 32 * 32; j0 < stride; j0 += 32) {
      ScatterTile<kRows>(w, rows, stride, i0, j0, s);
    }
  }
}

// out[r][j0 .. j0 + 32) = b[j0 ..] + sum_k x[r][k] a[k][j0 ..] for R rows x (stride in_dim)
// and one panel of a (in_dim rows of 32 columns, packed).
template <int R>
CURATION_AVX512 void ProjectTile(const float* x, int64_t in_dim, const float* panel, const float* b,
                                 float* out, int64_t out_stride) {
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm512_loadu_ps(b);
    acc1[r] = _mm512_loadu_ps(b + 16);
  }
  for (int64_t k = 0; k < in_dim; ++k) {
    const __m512 a0 = _mm512_loadu_ps(panel + k * 32);
    const __m512 a1 = _mm512_loadu_ps(panel + k * 32 + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 xk = _mm512_set1_ps(x[r * in_dim + k]);
      acc0[r] = _mm512_fmadd_ps(xk, a0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(xk, a1, acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(out + r * out_stride, acc0[r]);
    _mm512_storeu_ps(out + r * out_stride + 16, acc1[r]);
  }
}

#endif  // CURATION_HAVE_AVX512_KERNELS

// log sum_k exp(v_k), leaving exp(v_k - logsumexp) (the responsibilities) in v.
double LogSumExpInPlace(double* v, int k) {
  double max = -std::numeric_limits<double>::infinity();
  for (int c = 0; c < k; ++c) max = std::max(max, v[c]);
  double sum = 0;
  for (int c = 0; c < k; ++c) sum += v[c] = std::exp(v[c] - max);
  for (int c = 0; c < k; ++c) v[c] /= sum;
  return max + std::log(sum);
}

// z = float(x - c) for `rows` contiguous rows.
CURATION_HOT void CentreRows(const float* x, const double* center, int64_t rows, int64_t dim,
                             float* z) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < dim; ++j) {
      z[i * dim + j] = static_cast<float>(x[i * dim + j] - center[j]);
    }
  }
}

CURATION_HOT void WidenRows(const float* x, int64_t count, double* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = x[i];
}

// out[i * stride] = sum_j (y_ij - offset_j)^2 in float64, lanes combined in a fixed order.
template <typename T>
CURATION_HOT void SquaredNorms(const T* y, const double* offset, int64_t rows, int64_t dim,
                               double* out, int64_t stride) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* yi = y + i * dim;
    DoubleLanes acc = {};
    int64_t j = 0;
    for (; j + kLanes <= dim; j += kLanes) {
      DoubleLanes v;
      for (int l = 0; l < kLanes; ++l) v[l] = yi[j + l];
      const DoubleLanes t = v - Load(offset + j);
      acc += t * t;
    }
    for (; j < dim; ++j) {
      const double t = static_cast<double>(yi[j]) - offset[j];
      acc[j % kLanes] += t * t;
    }
    out[i * stride] = CombineLanes(acc);
  }
}

// For one component: s1 += sum_i r_i z_i (float64) and, if w is not null, the rows with a
// non-negligible r copied to w (row stride w_stride) scaled by sqrt(r_i). Returns how many
// rows were copied.
CURATION_HOT int WeightRows(const float* z, const double* resp, int k, int c, int64_t rows,
                            int64_t dim, double* s1, float* w, int64_t w_stride) {
  int used = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const double r = resp[i * k + c];
    if (r < kNegligibleResponsibility) continue;
    const float* zi = z + i * dim;
    for (int64_t j = 0; j < dim; ++j) s1[j] += r * zi[j];
    if (w == nullptr) continue;
    const float root = static_cast<float>(std::sqrt(r));
    float* wi = w + used * w_stride;
    for (int64_t j = 0; j < dim; ++j) wi[j] = root * zi[j];
    ++used;
  }
  return used;
}

}  // namespace

namespace {
std::mutex serial_blas_mu;
int serial_blas_users = 0;
int serial_blas_saved = 1;
}  // namespace

SerialBlas::SerialBlas(bool active) : active_(active) {
  if (!active_) return;
  std::lock_guard<std::mutex> lock(serial_blas_mu);
  if (serial_blas_users++ == 0) {
    serial_blas_saved = openblas_get_num_threads();
    if (serial_blas_saved != 1) openblas_set_num_threads(1);
  }
}

SerialBlas::~SerialBlas() {
  if (!active_) return;
  std::lock_guard<std::mutex> lock(serial_blas_mu);
  if (--serial_blas_users == 0 && serial_blas_saved != 1) {
    openblas_set_num_threads(serial_blas_saved);
  }
}

void ForceBlasForTesting(bool blas) { force_blas.store(blas); }

bool HaveProjectionKernel() { return UseKernels(); }

std::vector<float> PackProjection(const float* a, const float* b, int64_t out_dim, int64_t in_dim) {
  const int64_t padded = RoundUp(out_dim, kPanelF32);
  std::vector<float> packed(padded * in_dim + padded, 0.0f);
  for (int64_t j0 = 0; j0 < padded; j0 += kPanelF32) {
    float* panel = &packed[j0 * in_dim];
    for (int64_t k = 0; k < in_dim; ++k) {
      for (int64_t j = j0; j < std::min(j0 + kPanelF32, out_dim); ++j) {
        panel[k * kPanelF32 + (j - j0)] = a[j * in_dim + k];
      }
    }
  }
  std::copy(b, b + out_dim, packed.begin() + padded * in_dim);
  return packed;
}

void ProjectRows(const float* x, int64_t rows, int64_t in_dim, const std::vector<float>& packed,
                 int64_t out_dim, float* out) {
#ifdef CURATION_HAVE_AVX512_KERNELS
  const int64_t padded = RoundUp(out_dim, kPanelF32);
  const float* b = &packed[padded * in_dim];
  // Whole panels are written to padded rows, then the columns past out_dim dropped. Rows go
  // in groups that share each panel while it is in L2 (a 4,096 x 32 panel is 512 KB, the
  // group's rows 64 x 16 KB), so the packed matrix is read once per group, not per tile.
  constexpr int kRows = 8;
  constexpr int64_t kGroup = 64;
  std::vector<float> tile(kGroup * padded);
  for (int64_t g = 0; g < rows; g += kGroup) {
    const int64_t count = std::min(kGroup, rows - g);
    const float* xg = x + g * in_dim;
    for (int64_t j0 = 0; j0 < padded; j0 += kPanelF32) {
      const float* panel = &packed[j0 * in_dim];
      int64_t i = 0;
      for (; i + kRows <= count; i += kRows) {
        ProjectTile<kRows>(xg + i * in_dim, in_dim, panel, b + j0, &tile[i * padded + j0], padded);
      }
      for (; i < count; ++i) {
        ProjectTile<1>(xg + i * in_dim, in_dim, panel, b + j0, &tile[i * padded + j0], padded);
      }
    }
    for (int64_t i = 0; i < count; ++i) {
      std::copy(&tile[i * padded], &tile[i * padded] + out_dim, out + (g + i) * out_dim);
    }
  }
#endif
}

absl::StatusOr<double> InverseCholesky(const double* cov, int64_t dim, double* inverse_cholesky) {
  // A d = 256 factorisation takes a millisecond; on OpenBLAS's threads it would leave them
  // spinning (sched_yield) for far longer after each M step.
  SerialBlas serial(true);
  const int n = static_cast<int>(dim);
  // LAPACK is column-major, and a row-major matrix read column-major is its transpose. So the
  // factor LAPACK computes as upper-triangular U (A = U^T U, column-major) is, read row-major,
  // the lower-triangular L = U^T with A = L L^T; and inverting U in place leaves L^-1.
  double* a = inverse_cholesky;
  for (int64_t i = 0; i < dim; ++i) {
    for (int64_t j = 0; j < dim; ++j) {
      a[i * dim + j] = i <= j ? cov[i * dim + j] : cov[j * dim + i];
    }
  }
  int info = 0;
  dpotrf_("U", &n, a, &n, &info);
  if (info != 0) {
    return absl::FailedPreconditionError(
        "a mixture component's covariance is not positive definite; use a larger reg_covar");
  }
  double log_det = 0;
  for (int64_t i = 0; i < dim; ++i) log_det += 2 * std::log(a[i * dim + i]);
  dtrtri_("U", "N", &n, a, &n, &info);
  if (info != 0 || !std::isfinite(log_det)) {
    return absl::FailedPreconditionError("a mixture component's covariance is singular");
  }
  // The row-major strictly upper part still holds the input.
  for (int64_t i = 0; i < dim; ++i) {
    for (int64_t j = i + 1; j < dim; ++j) a[i * dim + j] = 0;
  }
  return log_det;
}

void FullScoreSamples(const MatrixView& x, const FullModel& m, int threads, double* out,
                      Cancel* cancel) {
  const int64_t d = m.dim;
  const int n = static_cast<int>(d);
  const int64_t block = BlockRows(d);
  const int64_t blocks = (x.rows + block - 1) / block;
  const bool kernels = UseKernels();
  // y = x L^-T - mu L^-T, as sklearn computes it; the offsets mu L^-T are zero-padded to whole
  // kernel panels.
  const int64_t padded = RoundUp(d, kPanelF64);
  std::vector<double> offset(m.k * padded, 0.0);
  std::vector<PackedFactor<double>> packed;
  for (int c = 0; c < m.k; ++c) {
    const double* linv = m.inverse_cholesky + c * d * d;
    for (int64_t j = 0; j < d; ++j) {
      double sum = 0;
      for (int64_t a = 0; a <= j; ++a) sum += m.means[c * d + a] * linv[j * d + a];
      offset[c * padded + j] = sum;
    }
    if (kernels) packed.push_back(PackFactor<double>(linv, d, kPanelF64));
  }
  SerialBlas serial(!kernels);
  // Per worker: the block's rows in float64, BLAS's product, the log terms, the pruning lists.
  struct Worker {
    std::vector<double> z, y, logp;
    FullThreadBuffers prune;
  };
  const int team = static_cast<int>(std::min<int64_t>(Threads(threads), blocks));
  std::vector<Worker> workers(std::max(team, 1));
  const auto stop = [cancel] { return cancel != nullptr && cancel->Stop(); };
  ParallelFor(blocks, team, [&](int worker, int64_t b) {
    if (stop()) return;
    Worker& w = workers[worker];
    w.z.resize(block * d);
    w.y.resize(kernels ? 0 : block * d);
    w.logp.resize(block * m.k);
    const int64_t begin = b * block;
    const int rows = static_cast<int>(std::min(block, x.rows - begin));
    WidenRows(x.row(begin), rows * d, w.z.data());
#ifdef CURATION_HAVE_AVX512_KERNELS
    if (kernels) {
      BlockLogTerms<F64>(w.z.data(), rows, d, m.k, packed, offset.data(), padded, m.log_norm,
                         w.logp.data(), w.prune);
    }
#endif
    for (int c = 0; c < m.k && !kernels; ++c) {
      if (stop()) return;
      std::copy(w.z.begin(), w.z.begin() + rows * d, w.y.begin());
      cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, rows, n, 1.0,
                  m.inverse_cholesky + c * d * d, n, w.y.data(), n);
      SquaredNorms(w.y.data(), &offset[c * padded], rows, d, &w.logp[c], m.k);
      for (int i = 0; i < rows; ++i) {
        w.logp[i * m.k + c] = m.log_norm[c] - 0.5 * w.logp[i * m.k + c];
      }
    }
    for (int i = 0; i < rows; ++i) out[begin + i] = LogSumExpInPlace(&w.logp[i * m.k], m.k);
  });
}

void FullStatsPass(const MatrixView& x, const double* center, int k, const FullModel* model,
                   const int32_t* labels, int derived, int threads, FullScratch* scratch,
                   MixtureStats* out, Cancel* cancel) {
  const int64_t d = x.dim;
  const int n = static_cast<int>(d);
  const int64_t block = BlockRows(d);
  const int64_t blocks = (x.rows + block - 1) / block;
  const bool kernels = UseKernels();
  // The kernels read whole panels: weighted rows and scatter matrices are zero-padded.
  const int64_t stride = kernels ? RoundUp(d, kPanelF32) : d;
  out->ll = 0;
  out->mass.assign(k, 0.0);
  out->s1.assign(k * d, 0.0);
  out->s2.assign(k * d * d, 0.0);
  out->derived = derived;

  // The E step in float32: y = (x - c) L^-T - (mu - c) L^-T, so only the offset row
  // (mu - c) L^-T, computed in float64, depends on the mean.
  std::vector<float> inverse_cholesky;
  std::vector<PackedFactor<float>> packed;
  std::vector<double> offset;
  std::vector<float> offset32;
  if (model != nullptr) {
    offset.assign(k * stride, 0.0);
    for (int c = 0; c < k; ++c) {
      const double* linv = model->inverse_cholesky + c * d * d;
      const double* mu = model->means + c * d;
      for (int64_t j = 0; j < d; ++j) {
        double sum = 0;
        for (int64_t a = 0; a <= j; ++a) sum += (mu[a] - center[a]) * linv[j * d + a];
        offset[c * stride + j] = sum;
      }
      if (kernels) packed.push_back(PackFactor<float>(linv, d, kPanelF32));
    }
    offset32.assign(offset.begin(), offset.end());
    if (!kernels) {
      inverse_cholesky.assign(model->inverse_cholesky, model->inverse_cholesky + k * d * d);
    }
  }

  // Blocks are split into a fixed number of strands, contiguous runs of blocks, each summed in
  // order into float64 totals of its own; the strands' totals are then added in strand order.
  // The split depends on the row count and dimension only, so the sums do not depend on the
  // thread count, and no thread ever waits for another's block.
  const int64_t strands =
      std::clamp<int64_t>(kStrandBytes / (static_cast<int64_t>(sizeof(double)) * k * d * d + 1), 1,
                          std::min<int64_t>(kMaxStrands, blocks));
  FullScratch local;
  if (scratch == nullptr) scratch = &local;
  std::vector<MixtureStats>& partial = scratch->strands;
  partial.resize(strands);
  const int team = static_cast<int>(std::min<int64_t>(Threads(threads), strands));
  scratch->threads.resize(std::max<size_t>(scratch->threads.size(), team));
  SerialBlas serial(!kernels);
  const auto stop = [cancel] { return cancel != nullptr && cancel->Stop(); };
  ParallelFor(strands, team, [&](int worker, int64_t strand) {
    FullThreadBuffers& buffers = scratch->threads[worker];
    std::vector<float>& z = buffers.z;
    // Block rows for BLAS's triangular product, then the weighted rows for the scatter. Its
    // padding columns must stay zero: rows are only ever written up to d.
    std::vector<float>& y = buffers.y;
    std::vector<float>& scatter = buffers.scatter;
    std::vector<double>& resp = buffers.resp;
    z.resize(block * d);
    if (y.size() != static_cast<size_t>(block * stride)) y.assign(block * stride, 0.0f);
    scatter.resize(stride * stride);
    resp.resize(block * k);
    MixtureStats& acc = partial[strand];
    acc.ll = 0;
    acc.mass.assign(k, 0.0);
    acc.s1.assign(k * d, 0.0);
    acc.s2.assign(k * d * d, 0.0);
    for (int64_t b = strand * blocks / strands; b < (strand + 1) * blocks / strands; ++b) {
      if (stop()) return;
      const int64_t begin = b * block;
      const int rows = static_cast<int>(std::min(block, x.rows - begin));
      CentreRows(x.row(begin), center, rows, d, z.data());
      if (model != nullptr) {
#ifdef CURATION_HAVE_AVX512_KERNELS
        if (kernels) {
          BlockLogTerms<F32>(z.data(), rows, d, k, packed, offset32.data(), stride, model->log_norm,
                             resp.data(), buffers);
        }
#endif
        for (int c = 0; c < k && !kernels; ++c) {
          if (stop()) return;
          std::copy(z.begin(), z.begin() + rows * d, y.begin());
          cblas_strmm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, rows, n,
                      1.0f, &inverse_cholesky[c * d * d], n, y.data(), n);
          SquaredNorms(y.data(), &offset[c * stride], rows, d, &resp[c], k);
          for (int i = 0; i < rows; ++i) {
            resp[i * k + c] = model->log_norm[c] - 0.5 * resp[i * k + c];
          }
        }
        for (int i = 0; i < rows; ++i) acc.ll += LogSumExpInPlace(&resp[i * k], k);
      } else {
        for (int i = 0; i < rows; ++i) {
          for (int c = 0; c < k; ++c) resp[i * k + c] = labels[begin + i] == c ? 1.0 : 0.0;
        }
      }
      for (int c = 0; c < k; ++c) {
        if (stop()) return;
        for (int i = 0; i < rows; ++i) acc.mass[c] += resp[i * k + c];
        if (c == derived) continue;
        const int used =
            WeightRows(z.data(), resp.data(), k, c, rows, d, &acc.s1[c * d], y.data(), stride);
        if (used == 0) continue;
#ifdef CURATION_HAVE_AVX512_KERNELS
        if (kernels) Scatter(y.data(), used, stride, scatter.data());
#endif
        if (!kernels) {
          cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, used, 1.0f, y.data(), n, 0.0f,
                      scatter.data(), n);
        }
        double* total = &acc.s2[c * d * d];
        for (int64_t i = 0; i < d; ++i) {
          for (int64_t j = i; j < d; ++j) total[i * d + j] += scatter[i * stride + j];
        }
      }
    }
  });
  for (const MixtureStats& acc : partial) {
    out->ll += acc.ll;
    for (int c = 0; c < k; ++c) out->mass[c] += acc.mass[c];
    for (size_t j = 0; j < out->s1.size(); ++j) out->s1[j] += acc.s1[j];
    for (size_t j = 0; j < out->s2.size(); ++j) out->s2[j] += acc.s2[j];
  }
}

}  // namespace curation::selection::internal
