#include "selection/herding.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/impl/FaissException.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/cancel.h"
#include "selection/kernels.h"

namespace curation::selection {
namespace {

using FaissId = faiss::Index::idx_t;

// Herding steps between progress calls.
constexpr int64_t kProgressEvery = 64;
// Bucketing: k-means on 64 strided rows per bucket, 10 rounds, a fixed seed (as knn_graph.cc).
constexpr int64_t kIvfTrainPerList = 64;
constexpr int kIvfIterations = 10;
constexpr int kIvfSeed = 1234;

// The remaining row nearest the target so far; (distance, row) is a total order, so partial
// results merge the same in any order.
struct Nearest {
  float sq = std::numeric_limits<float>::infinity();
  int64_t row = -1;

  void Offer(float candidate_sq, int64_t candidate_row) {
    if (candidate_row < 0) return;
    if (row < 0 || candidate_sq < sq || (candidate_sq == sq && candidate_row < row)) {
      sq = candidate_sq;
      row = candidate_row;
    }
  }
};

// The nearest remaining row to q among rows ids[begin .. end) (or begin .. end when ids is
// null).
CURATION_KERNEL_CLONES Nearest Scan(const MatrixView& x, const int64_t* ids, int64_t begin,
                                    int64_t end, const float* q, const uint8_t* taken) {
  Nearest best;
  for (int64_t p = begin; p < end; ++p) {
    const int64_t i = ids ? ids[p] : p;
    if (taken[i]) continue;
    best.Offer(kernels::SquaredDistanceF32(x.row(i), q, x.dim), i);
  }
  return best;
}

// Rows grouped into k-means buckets, to scan only the buckets near each step's target.
struct Buckets {
  faiss::IndexFlatL2 centroids;
  std::vector<int64_t> offsets;  // bucket b holds order[offsets[b] .. offsets[b + 1])
  std::vector<int64_t> order;
  std::vector<int64_t> remaining;  // rows of each bucket not selected yet
  std::vector<int32_t> bucket_of;  // per row

  Buckets(const MatrixView& x, int64_t lists) : centroids(x.dim), offsets(lists + 1, 0) {
    const int64_t n = x.rows;
    faiss::ClusteringParameters cp;
    cp.niter = kIvfIterations;
    cp.seed = kIvfSeed;
    cp.max_points_per_centroid = static_cast<int>(kIvfTrainPerList);
    faiss::Clustering clustering(x.dim, lists, cp);
    const int64_t n_train = std::min(n, lists * kIvfTrainPerList);
    std::vector<float> train(n_train * x.dim);
    for (int64_t t = 0; t < n_train; ++t) {
      std::copy_n(x.row(t * n / n_train), x.dim, train.data() + t * x.dim);
    }
    clustering.train(n_train, train.data(), centroids);
    std::vector<FaissId> bucket(n);
    std::vector<float> dist(n);
    centroids.search(n, x.data, 1, dist.data(), bucket.data());
    for (FaissId b : bucket) ++offsets[b + 1];
    for (int64_t b = 0; b < lists; ++b) offsets[b + 1] += offsets[b];
    order.resize(n);
    std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[next[bucket[i]]++] = i;
    bucket_of.assign(bucket.begin(), bucket.end());
    remaining.resize(lists);
    for (int64_t b = 0; b < lists; ++b) remaining[b] = offsets[b + 1] - offsets[b];
  }
};

class HerdingSelector final : public Selector {
 public:
  explicit HerdingSelector(HerdingOptions options) : options_(options) {}

  std::string_view name() const override { return "herding"; }

  absl::StatusOr<SelectionResult> Select(const MatrixView& units, int64_t k,
                                         const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    if (options_.ivf_probe < 1 || options_.ivf_lists < 0) {
      return absl::InvalidArgumentError("herding needs ivf_probe >= 1 and ivf_lists >= 0");
    }
    const int64_t n = units.rows;
    const int64_t d = units.dim;
    const kernels::SerialOpenMpScope serial(n * d < kernels::kSerialBelowFloats);
    std::vector<double> mu(d, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const float* x = units.row(i);
      for (int64_t j = 0; j < d; ++j) mu[j] += x[j];
    }
    for (int64_t j = 0; j < d; ++j) {
      if (!std::isfinite(mu[j])) {
        return absl::InvalidArgumentError("herding input has non-finite entries");
      }
      mu[j] /= static_cast<double>(n);
    }

    // FAISS's k-means and search for the buckets are interrupted through the same polls.
    internal::Cancel cancel(options.progress);
    internal::FaissInterruptScope interrupt(&cancel);
    const auto cancelled = [] { return absl::CancelledError("herding cancelled"); };
    std::unique_ptr<Buckets> buckets;
    if (n > options_.exact_max_rows) {
      const int64_t lists = std::clamp<int64_t>(
          options_.ivf_lists > 0 ? options_.ivf_lists : std::llround(2 * std::sqrt(double(n))), 1,
          std::max<int64_t>(1, n / 40));
      try {
        buckets = std::make_unique<Buckets>(units, lists);
      } catch (const faiss::FaissException&) {
        if (cancel.stopped()) return cancelled();
        throw;
      }
    }

    SelectionResult result;
    result.rows.reserve(k);
    result.scores.reserve(k);
    std::vector<uint8_t> taken(n, 0);
    // residual = sum over the selection of (x - mu); the target is mu - residual.
    std::vector<double> residual(d, 0.0);
    std::vector<float> target(d);
    std::vector<std::pair<float, int64_t>> by_distance;
    for (int64_t t = 0; t < k; ++t) {
      if (t % kProgressEvery == 0 && t > 0
              ? !cancel.Report(static_cast<double>(t) / static_cast<double>(k))
              : cancel.Stop()) {
        return cancelled();
      }
      for (int64_t j = 0; j < d; ++j) target[j] = static_cast<float>(mu[j] - residual[j]);
      Nearest best;
      if (!buckets) {
#pragma omp parallel
        {
          const int64_t threads = omp_get_num_threads();
          const int64_t thread = omp_get_thread_num();
          const Nearest local = Scan(units, nullptr, n * thread / threads,
                                     n * (thread + 1) / threads, target.data(), taken.data());
#pragma omp critical
          best.Offer(local.sq, local.row);
        }
      } else {
        // Buckets by centroid distance to the target; scan the nearest ivf_probe that still
        // have rows (there is always one, since t < k <= rows).
        const int64_t lists = static_cast<int64_t>(buckets->remaining.size());
        const float* c = buckets->centroids.get_xb();
        by_distance.clear();
        for (int64_t b = 0; b < lists; ++b) {
          if (buckets->remaining[b] > 0) {
            by_distance.emplace_back(kernels::SquaredDistanceF32(c + b * d, target.data(), d), b);
          }
        }
        const int64_t probes = std::min<int64_t>(options_.ivf_probe, by_distance.size());
        std::partial_sort(by_distance.begin(), by_distance.begin() + probes, by_distance.end());
        for (int64_t p = 0; p < probes; ++p) {
          const int64_t b = by_distance[p].second;
          const Nearest local = Scan(units, buckets->order.data(), buckets->offsets[b],
                                     buckets->offsets[b + 1], target.data(), taken.data());
          best.Offer(local.sq, local.row);
        }
      }
      const int64_t row = best.row;
      taken[row] = 1;
      const float* x = units.row(row);
      double norm = 0;
      for (int64_t j = 0; j < d; ++j) {
        residual[j] += x[j] - mu[j];
        norm += residual[j] * residual[j];
      }
      if (buckets) --buckets->remaining[buckets->bucket_of[row]];
      result.rows.push_back(row);
      result.scores.push_back(std::sqrt(norm) / static_cast<double>(t + 1));
    }
    return result;
  }

 private:
  HerdingOptions options_;
};

}  // namespace

std::unique_ptr<Selector> MakeHerdingSelector(HerdingOptions options) {
  return std::make_unique<HerdingSelector>(options);
}

}  // namespace curation::selection
