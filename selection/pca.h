// Principal component analysis as a projection before a mixture fit, on FAISS's PCAMatrix.
//
// For 4,096-d embeddings a full covariance mixture is out of reach (and a diagonal one slow):
// projecting onto the leading principal components first keeps most of the variance in a
// dimension EM handles. The projection is y = P (x - mean) with P's rows the leading
// eigenvectors of the covariance of the training rows (no whitening, no rotation).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/selector.h"

namespace faiss {
struct PCAMatrix;
}  // namespace faiss

namespace curation::selection {
namespace internal {
class Cancel;
}  // namespace internal

struct PcaOptions {
  // Output dimension, 1 <= dim <= the input's dimension.
  int64_t dim = 0;
  // The PCA is trained on a uniform random sample of this many rows when the matrix has more
  // (0 = AutoPcaSampleRows(dim)). Training costs O(sample * d_in * min(sample, d_in)) plus
  // an eigendecomposition of a min(sample, d_in)-square matrix.
  int64_t sample_rows = 0;
  // Seeds the sample.
  uint64_t seed = 0;
};

// The automatic training sample: every row up to this many, else a sample of this many.
// FAISS's training ends in a full eigendecomposition (LAPACK's QR algorithm) of a
// min(sample, d_in)-square matrix, cubic in its size: on the benchmark machine 3 s for 1,024
// rows of 4,096-d and 25 s for 2,048, which kept 51% and 55% of the variance at 256-d.
inline int64_t AutoPcaSampleRows(int64_t dim_out) { return std::max<int64_t>(1024, 4 * dim_out); }

class Pca {
 public:
  // Trains on the rows of `x` (or a sample, see PcaOptions). INVALID_ARGUMENT for an empty
  // matrix, non-finite values or dim outside [1, x.dim]. Deterministic for the same inputs
  // and options.
  static absl::StatusOr<Pca> Train(const MatrixView& x, const PcaOptions& options);

  Pca(Pca&&) noexcept;
  Pca& operator=(Pca&&) noexcept;
  ~Pca();

  // A byte string that Deserialize turns back into the same projection (FAISS's
  // VectorTransform format), to store a projection with the data it projects.
  std::string Serialize() const;
  // DATA_LOSS if `bytes` is not a PCA that Serialize wrote.
  static absl::StatusOr<Pca> Deserialize(std::string_view bytes);

  int64_t in_dim() const { return in_dim_; }
  int64_t out_dim() const { return out_dim_; }

  // Writes the projections of x's rows into out (x.rows x out_dim() floats, row-major) and
  // returns the share of the rows' total variance the projections keep, in [0, 1] (1 for
  // rows without variance). Requires x.dim == in_dim(). Runs blocks of rows through an
  // AVX-512 kernel, or BLAS's sgemm without AVX-512, on `threads` threads (0: as
  // MixtureOptions::threads). Thread-safe.
  double Apply(const MatrixView& x, float* out, int threads = 0) const;

  // As Apply, into a new matrix; the share of the variance kept goes to *retained if given.
  std::vector<float> Apply(const MatrixView& x, int threads = 0, double* retained = nullptr) const;

  // As above, calling `progress` (with share 0, on the calling thread, every few milliseconds
  // at most) between blocks of rows, so that projecting millions of rows can be cancelled:
  // CANCELLED once it returns false.
  absl::StatusOr<std::vector<float>> Apply(const MatrixView& x, int threads, double* retained,
                                           const std::function<bool(double)>& progress) const;

 private:
  Pca() = default;

  // Apply into `out`, skipping the blocks left once `cancel` (if any) says stop.
  double ApplyInto(const MatrixView& x, float* out, int threads, internal::Cancel* cancel) const;

  int64_t in_dim_ = 0;
  int64_t out_dim_ = 0;
  std::unique_ptr<faiss::PCAMatrix> pca_;
};

}  // namespace curation::selection
