#include "selection/pca.h"

#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/cancel.h"
#include "selection/mixture_internal.h"

namespace curation::selection {

Pca::Pca(Pca&&) noexcept = default;
Pca& Pca::operator=(Pca&&) noexcept = default;
Pca::~Pca() = default;

absl::StatusOr<Pca> Pca::Train(const MatrixView& x, const PcaOptions& options) {
  if (x.rows <= 0 || x.dim <= 0 || x.data == nullptr) {
    return absl::InvalidArgumentError("the matrix must have at least one row and one column");
  }
  if (options.dim < 1 || options.dim > x.dim) {
    return absl::InvalidArgumentError("pca dim must be between 1 and the input dimension");
  }
  if (options.sample_rows < 0) return absl::InvalidArgumentError("pca sample_rows must be >= 0");
  const int64_t wanted =
      options.sample_rows > 0 ? options.sample_rows : AutoPcaSampleRows(options.dim);
  std::vector<float> sample;
  MatrixView train = x;
  if (x.rows > wanted) {
    std::mt19937_64 rng(options.seed);
    const std::vector<int64_t> rows = internal::SampleRows(x.rows, wanted, rng);
    sample.resize(rows.size() * x.dim);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::copy(x.row(rows[i]), x.row(rows[i]) + x.dim, sample.begin() + i * x.dim);
    }
    train = MatrixView{sample.data(), static_cast<int64_t>(rows.size()), x.dim};
  }
  const float* end = train.data + train.rows * train.dim;
  if (!std::all_of(train.data, end, [](float v) { return std::isfinite(v); })) {
    return absl::InvalidArgumentError("input matrix contains NaN or infinite values");
  }

  Pca pca;
  pca.in_dim_ = x.dim;
  pca.out_dim_ = options.dim;
  pca.pca_ = std::make_unique<faiss::PCAMatrix>(static_cast<int>(x.dim),
                                                static_cast<int>(options.dim), 0.0f, false);
  // We sample ourselves (seeded, reported); FAISS's own cap would sample again.
  pca.pca_->max_points_per_d = std::numeric_limits<size_t>::max() / (x.dim + 1);
  pca.pca_->train(train.rows, train.data);
  return pca;
}

std::string Pca::Serialize() const {
  faiss::VectorIOWriter writer;
  faiss::write_VectorTransform(pca_.get(), &writer);
  return std::string(writer.data.begin(), writer.data.end());
}

absl::StatusOr<Pca> Pca::Deserialize(std::string_view bytes) {
  faiss::VectorIOReader reader;
  reader.data.assign(bytes.begin(), bytes.end());
  std::unique_ptr<faiss::VectorTransform> transform;
  try {
    transform.reset(faiss::read_VectorTransform(&reader));
  } catch (const faiss::FaissException& e) {
    return absl::DataLossError(std::string("stored PCA: ") + e.what());
  }
  auto* pca_matrix = dynamic_cast<faiss::PCAMatrix*>(transform.get());
  if (pca_matrix == nullptr || !pca_matrix->is_trained || pca_matrix->d_out <= 0 ||
      pca_matrix->d_out > pca_matrix->d_in) {
    return absl::DataLossError("stored PCA: not a trained PCA matrix");
  }
  Pca pca;
  pca.in_dim_ = pca_matrix->d_in;
  pca.out_dim_ = pca_matrix->d_out;
  transform.release();
  pca.pca_.reset(pca_matrix);
  return pca;
}

double Pca::Apply(const MatrixView& x, float* out, int threads) const {
  return ApplyInto(x, out, threads, nullptr);
}

double Pca::ApplyInto(const MatrixView& x, float* out, int threads,
                      internal::Cancel* cancel) const {
  // Blocks of rows on our threads, each block through our AVX-512 kernel or one
  // single-threaded sgemm in FAISS (whose LinearTransform::apply_noalloc keeps no state).
  // While a block is in cache, its share of the variance sums is taken too: per block
  // sum |x - m|^2, sum |y|^2, sum (x - m) and sum y, about the PCA's mean m; added in block
  // order afterwards, so the result does not depend on the thread count.
  constexpr int64_t kBlockRows = 1024;
  const int64_t blocks = (x.rows + kBlockRows - 1) / kBlockRows;
  const int64_t width = 2 + in_dim_ + out_dim_;
  std::vector<double> sums(blocks * width, 0.0);
  std::vector<float> packed;
  const bool kernel = internal::HaveProjectionKernel();
  if (kernel) {
    packed = internal::PackProjection(pca_->A.data(), pca_->b.data(), out_dim_, in_dim_);
  }
  const float* mean = pca_->mean.data();
  internal::SerialBlas serial(!kernel);
  internal::ParallelFor(blocks, threads > 0 ? threads : internal::DefaultThreads(),
                        [&](int, int64_t b) {
                          if (cancel != nullptr && cancel->Stop()) return;
                          const int64_t begin = b * kBlockRows;
                          const int64_t rows = std::min(kBlockRows, x.rows - begin);
                          float* y = out + begin * out_dim_;
                          if (kernel) {
                            internal::ProjectRows(x.row(begin), rows, in_dim_, packed, out_dim_, y);
                          } else {
                            pca_->apply_noalloc(rows, x.row(begin), y);
                          }
                          double* s = &sums[b * width];
                          double* sx = s + 2;
                          double* sy = sx + in_dim_;
                          for (int64_t i = 0; i < rows; ++i) {
                            const float* xi = x.row(begin + i);
                            for (int64_t j = 0; j < in_dim_; ++j) {
                              const double t = static_cast<double>(xi[j]) - mean[j];
                              s[0] += t * t;
                              sx[j] += t;
                            }
                            const float* yi = y + i * out_dim_;
                            for (int64_t j = 0; j < out_dim_; ++j) {
                              s[1] += static_cast<double>(yi[j]) * yi[j];
                              sy[j] += yi[j];
                            }
                          }
                        });
  std::vector<double> total(width, 0.0);
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t j = 0; j < width; ++j) total[j] += sums[b * width + j];
  }
  // Variances about the rows' own means: sum |v - m|^2 - |sum (v - m)|^2 / n.
  const double n = static_cast<double>(x.rows);
  double x_var = total[0], y_var = total[1];
  for (int64_t j = 0; j < in_dim_; ++j) x_var -= total[2 + j] * total[2 + j] / n;
  for (int64_t j = 0; j < out_dim_; ++j) {
    y_var -= total[2 + in_dim_ + j] * total[2 + in_dim_ + j] / n;
  }
  return x_var > 0 ? std::clamp(y_var / x_var, 0.0, 1.0) : 1.0;
}

std::vector<float> Pca::Apply(const MatrixView& x, int threads, double* retained) const {
  std::vector<float> out(x.rows * out_dim_);
  const double share = Apply(x, out.data(), threads);
  if (retained != nullptr) *retained = share;
  return out;
}

absl::StatusOr<std::vector<float>> Pca::Apply(const MatrixView& x, int threads, double* retained,
                                              const std::function<bool(double)>& progress) const {
  internal::Cancel cancel(progress);
  std::vector<float> out(x.rows * out_dim_);
  const double share = ApplyInto(x, out.data(), threads, &cancel);
  if (cancel.stopped()) return absl::CancelledError("pca projection cancelled");
  if (retained != nullptr) *retained = share;
  return out;
}

}  // namespace curation::selection
