#include "selection/kcenter.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/cancel.h"
#include "selection/kernels.h"
#include "selection/rng.h"

namespace curation::selection {
namespace {

// Farthest-point steps between progress calls.
constexpr int64_t kProgressEvery = 16;

// The farthest remaining row seen so far; merging two is order-independent because
// (distance, -row) is a total order, so threads can merge in any order.
struct Farthest {
  float sq = -1;
  int64_t row = -1;

  void Offer(float candidate_sq, int64_t candidate_row) {
    if (candidate_row < 0) return;
    if (row < 0 || candidate_sq > sq || (candidate_sq == sq && candidate_row < row)) {
      sq = candidate_sq;
      row = candidate_row;
    }
  }
};

// Squared distance from row a to the vector b (inv_b: 1 / |b| for kCosine, ignored
// otherwise).
[[gnu::always_inline]] inline float Squared(const MatrixView& x, const float* inv_norm, bool cosine,
                                            int64_t a, const float* b, float inv_b) {
  if (!cosine) return kernels::SquaredDistanceF32(x.row(a), b, x.dim);
  const float cos = kernels::DotF32(x.row(a), b, x.dim) * inv_norm[a] * inv_b;
  return std::max(0.0f, 2.0f - 2.0f * cos);
}

// One farthest-point step over rows [begin, end): lowers each remaining row's distance to the
// new center and returns the farthest remaining row of the range.
CURATION_KERNEL_CLONES Farthest Step(const MatrixView& x, const float* inv_norm, bool cosine,
                                     int64_t center, int64_t begin, int64_t end, float* nearest) {
  const float* c = x.row(center);
  const float inv_c = inv_norm[center];
  Farthest farthest;
  for (int64_t i = begin; i < end; ++i) {
    if (nearest[i] < 0) continue;
    nearest[i] = std::min(nearest[i], Squared(x, inv_norm, cosine, i, c, inv_c));
    farthest.Offer(nearest[i], i);
  }
  return farthest;
}

// The row nearest `point`, ties to the lower row.
CURATION_KERNEL_CLONES int64_t Nearest(const MatrixView& x, const float* inv_norm, bool cosine,
                                       const float* point) {
  int64_t best = 0;
  float best_sq = Squared(x, inv_norm, cosine, 0, point, 1.0f);
  for (int64_t i = 1; i < x.rows; ++i) {
    const float sq = Squared(x, inv_norm, cosine, i, point, 1.0f);
    if (sq < best_sq) {
      best = i;
      best_sq = sq;
    }
  }
  return best;
}

class KCenterSelector final : public DenseSelector {
 public:
  explicit KCenterSelector(KCenterOptions options) : options_(options) {}

  std::string_view name() const override { return "kcenter"; }

  // Every step scans every row, so decoding them once is cheapest.
  absl::StatusOr<SelectionResult> SelectDense(const MatrixView& units, int64_t k,
                                              const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    const int64_t n = units.rows;
    const int64_t d = units.dim;
    // A step is one pass over the rows; thousands of small parallel regions would cost more
    // in barriers than they save.
    const kernels::SerialOpenMpScope serial(n * d < kernels::kSerialBelowFloats);
    const bool cosine = options_.distance == KCenterDistance::kCosine;

    std::vector<float> inv_norm(n, 1.0f);
    bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite)
    for (int64_t i = 0; i < n; ++i) {
      const double sq = kernels::DotF64(units.row(i), units.row(i), d);
      finite = finite && std::isfinite(sq);
      if (cosine) inv_norm[i] = sq > 0 ? static_cast<float>(1 / std::sqrt(sq)) : 0.0f;
    }
    if (!finite) return absl::InvalidArgumentError("kcenter input has non-finite entries");

    int64_t center = 0;
    if (options_.start == KCenterStart::kSeeded) {
      std::mt19937_64 rng(options.seed);
      center = static_cast<int64_t>(BoundedDraw(rng, n));
    } else {
      std::vector<double> sum(d, 0.0);
      for (int64_t i = 0; i < n; ++i) {
        const float* x = units.row(i);
        for (int64_t j = 0; j < d; ++j) sum[j] += static_cast<double>(x[j]) * inv_norm[i];
      }
      std::vector<float> mean(d);
      double sq = 0;
      for (int64_t j = 0; j < d; ++j) sq += sum[j] * sum[j];
      // For kCosine only the mean's direction matters; scale it to unit length.
      const double scale = cosine ? (sq > 0 ? 1 / std::sqrt(sq) : 0) : 1.0 / n;
      for (int64_t j = 0; j < d; ++j) mean[j] = static_cast<float>(sum[j] * scale);
      center = Nearest(units, inv_norm.data(), cosine, mean.data());
    }

    // Reported every kProgressEvery steps; in between, a step asks whether to stop (each is a
    // pass over every row).
    internal::Cancel cancel(options.progress);
    SelectionResult result;
    result.rows.reserve(k);
    result.scores.reserve(k);
    // Squared distance to the nearest selected row; -1 marks selected rows.
    std::vector<float> nearest(n, std::numeric_limits<float>::infinity());
    double score = std::numeric_limits<double>::infinity();
    for (int64_t t = 0;; ++t) {
      result.rows.push_back(center);
      result.scores.push_back(score);
      nearest[center] = -1;
      if (t + 1 == k) break;
      if (t % kProgressEvery == 0 ? !cancel.Report(static_cast<double>(t) / static_cast<double>(k))
                                  : cancel.Stop()) {
        return absl::CancelledError("kcenter cancelled");
      }
      Farthest farthest;
#pragma omp parallel
      {
        const int64_t threads = omp_get_num_threads();
        const int64_t thread = omp_get_thread_num();
        const Farthest local = Step(units, inv_norm.data(), cosine, center, n * thread / threads,
                                    n * (thread + 1) / threads, nearest.data());
#pragma omp critical
        farthest.Offer(local.sq, local.row);
      }
      center = farthest.row;
      score = std::sqrt(static_cast<double>(farthest.sq));
    }
    return result;
  }

 private:
  KCenterOptions options_;
};

}  // namespace

std::unique_ptr<Selector> MakeKCenterSelector(KCenterOptions options) {
  return std::make_unique<KCenterSelector>(options);
}

}  // namespace curation::selection
