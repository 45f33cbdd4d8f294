// Internals of GaussianMixture shared between gaussian_mixture.cc (the EM driver, diagonal and
// spherical kernels), mixture_full.cc (full covariance) and pca.cc. Not a public interface.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <random>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/selector.h"

namespace curation::selection::internal {

// The threads a fit uses when its options say 0: OpenMP's default, omp_get_max_threads(), so
// that OMP_NUM_THREADS still limits it.
int DefaultThreads();

// Runs fn(worker, i) for every i in [0, count), on up to `threads` threads (the caller's among
// them; worker in [0, threads)), each taking the next index from a shared counter. The other
// threads are started for this call and joined before it returns, so none of ours waits or
// spins between calls. (OpenMP's idle threads spin for milliseconds after each parallel region:
// on a loaded, shared machine that doubled the CPU time of a fit and halved its speed.) Starting
// a thread costs tens of microseconds, small against the passes this runs.
template <typename Fn>
void ParallelFor(int64_t count, int threads, Fn&& fn) {
  const int team = static_cast<int>(std::min<int64_t>(threads, count));
  std::atomic<int64_t> next{0};
  const auto work = [&](int worker) {
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < count;
         i = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(worker, i);
    }
  };
  std::vector<std::thread> helpers;
  for (int w = 1; w < team; ++w) {
    try {
      helpers.emplace_back(work, w);
    } catch (const std::system_error&) {
      break;  // no more threads to be had: the ones running share the work
    }
  }
  work(0);
  for (std::thread& t : helpers) t.join();
}

// Sufficient statistics of one pass over the rows, about a fixed centre c:
//   ll      sum of log p(x) (0 for passes that take hard labels instead of an E step)
//   mass_k  sum of r_k(x)
//   s1_k    sum of r_k(x) (x - c)                              (k x dim)
//   s2_k    diag: sum of r_k(x) (x - c)^2                       (k x dim)
//           full: sum of r_k(x) (x - c)(x - c)^T, upper triangle (k x dim x dim, row-major)
// A pass may leave one component's s1 and s2 at zero (`derived`): since the responsibilities
// of a row sum to 1, they are the totals over all rows minus the other components' sums.
struct MixtureStats {
  double ll = 0;
  std::vector<double> mass;
  std::vector<double> s1;
  std::vector<double> s2;
  int derived = -1;  // -1: every component was accumulated
};

// `count` distinct row numbers in [0, n), drawn uniformly with Floyd's algorithm (O(count)
// memory), in increasing order so that a sample is read sequentially. Requires
// 0 <= count <= n.
std::vector<int64_t> SampleRows(int64_t n, int64_t count, std::mt19937_64& rng);

// The parameters a full-covariance E step reads; arrays are row-major.
struct FullModel {
  int k = 0;
  int64_t dim = 0;
  const double* means = nullptr;             // k x dim
  const double* inverse_cholesky = nullptr;  // k x dim x dim, lower triangular L_k^-1
  const double* log_norm = nullptr;          // k
};

// Buffers of one thread in the full-covariance passes.
struct FullThreadBuffers {
  std::vector<float> z, y, scatter;
  std::vector<double> resp, q, limits, best;
  std::vector<uint8_t> pruned;
  std::vector<int32_t> guess, rows;
};

// What FullStatsPass keeps from one call to the next on the same matrix, so that its buffers
// (megabytes) are not allocated, and page-faulted in, on every EM iteration.
struct FullScratch {
  std::vector<MixtureStats> strands;
  std::vector<FullThreadBuffers> threads;
};

// Factorises the symmetric positive definite `cov` (dim x dim, row-major; only the upper
// triangle is read) as L L^T and writes L^-1 (lower triangular, zeros above) into
// `inverse_cholesky`. Returns log det cov, or FAILED_PRECONDITION if cov is not positive
// definite.
absl::StatusOr<double> InverseCholesky(const double* cov, int64_t dim, double* inverse_cholesky);

// While alive (and `active`), holds OpenBLAS at one thread. Debian's OpenBLAS is the pthreads
// build: called from several of our threads at once, each call would also start OpenBLAS's own
// threads and oversubscribe the cores (twice as slow on 2 cores), and after every call those
// threads spin (sched_yield) for up to a tenth of a second. Its thread count is process-wide,
// so concurrent holders share one setting, restored when the last one ends.
class SerialBlas {
 public:
  explicit SerialBlas(bool active = true);
  ~SerialBlas();
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;

 private:
  const bool active_;
};

// The PCA's projection y = A x + b (A out_dim x in_dim, row-major) on the AVX-512 kernels,
// where HaveProjectionKernel(): PackProjection lays A and b out once, ProjectRows writes `rows`
// projections (row-major, out_dim floats each). About twice the speed of the sgemm Debian's
// OpenBLAS runs on recent Xeons (its AVX2 kernels).
bool HaveProjectionKernel();
std::vector<float> PackProjection(const float* a, const float* b, int64_t out_dim, int64_t in_dim);
void ProjectRows(const float* x, int64_t rows, int64_t in_dim, const std::vector<float>& packed,
                 int64_t out_dim, float* out);

// Makes the full-covariance passes use BLAS even where the AVX-512 kernels could run, so tests
// can cover both on one machine. Not for concurrent use with fits in progress.
void ForceBlasForTesting(bool blas);

class Cancel;

// log p(x) for every row of x into out[0 .. x.rows), in float64. With `cancel`, asked before
// every block of rows (and every component's product on BLAS); the blocks left once it says
// stop are skipped.
void FullScoreSamples(const MatrixView& x, const FullModel& model, int threads, double* out,
                      Cancel* cancel = nullptr);

// One pass of EM statistics for full covariances, about `center` (dim doubles). With `model`
// the responsibilities come from an E step (in float32); otherwise from `labels`
// (one-hot, labels[i] in [0, k)). Component `derived` (or none, if -1) is left out of s1 and
// s2. The block layout and summation order depend only on x.rows and x.dim, so the result does
// not depend on `threads`. With `cancel`, asked before every block of rows and every
// component's scatter product; once it says stop the rest is skipped and `out` is partial.
void FullStatsPass(const MatrixView& x, const double* center, int k, const FullModel* model,
                   const int32_t* labels, int derived, int threads, FullScratch* scratch,
                   MixtureStats* out, Cancel* cancel = nullptr);

}  // namespace curation::selection::internal
