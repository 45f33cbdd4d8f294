#include "selection/knn_graph.h"

#include <cblas.h>
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissException.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/cancel.h"
#include "selection/kernels.h"
#include "selection/mixture_internal.h"

namespace curation::selection {
namespace {

using FaissId = faiss::Index::idx_t;

// Rows normalised and searched per FAISS call: large enough for FAISS's BLAS blocks, small
// enough that the float buffers stay a few MB and progress is reported often.
constexpr int64_t kBatch = 4096;

// Bucket scan: query rows per block and candidate columns per block (a 4 MB float block per
// thread, filled by one BLAS product per probed bucket slice).
constexpr int64_t kScanRows = 256;
constexpr int64_t kScanCols = 4096;

// IVF k-means: training rows per bucket and iterations. FAISS's defaults (256, 25) spend more
// time training than searching at 1M rows; 64 rows and 10 rounds give the same recall here.
constexpr int64_t kIvfTrainPerList = 64;
constexpr int kIvfIterations = 10;
// Fixed so the graph (and so every selection built on it) does not depend on a selection seed.
constexpr int kIvfSeed = 1234;
// Normalised rows the projection is trained on (an evenly strided sample): the principal axes
// of 4,096 rows are as good as those of all rows for ranking candidates, and training costs
// 4,096 * dim^2 flops plus a dim^3 eigendecomposition (a fraction of a second at 512-d).
constexpr int64_t kPcaSample = 4096;

// For every candidate t of row i (values xi): max(0, cos(x_i, x_j)) for j = labels[t], whose
// values are at xj[t], capped at 1 against rounding, or -1 for no candidate (j < 0) and for i
// itself (xj[t] unused). In double from the input rows, so the stored similarities do not
// depend on FAISS's float32 kernels, nor on where the rows were read from.
CURATION_KERNEL_CLONES void CandidateSimilarities(const float* xi, const float* const* xj,
                                                  int64_t dim, const double* inv_norm, int64_t i,
                                                  const FaissId* labels, int64_t k, double* out) {
  for (int64_t t = 0; t < k; ++t) {
    const FaissId j = labels[t];
    if (j < 0 || j == i) {
      out[t] = -1;
      continue;
    }
    const double s = kernels::DotF64(xi, xj[t], dim) * inv_norm[i] * inv_norm[j];
    out[t] = std::clamp(s, 0.0, 1.0);
  }
}

// |x_i|^2 for the count rows at x.
CURATION_KERNEL_CLONES void SquaredNorms(const float* x, int64_t count, int64_t dim, double* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = kernels::DotF64(x + i * dim, x + i * dim, dim);
}

// out = x * s, rounded to float (out may be x). A zero row stays zero.
void Normalise(const float* x, int64_t dim, double s, float* out) {
  for (int64_t j = 0; j < dim; ++j) out[j] = static_cast<float>(x[j] * s);
}

// Rows [begin, end) of x as floats: in the matrix when dense, else decoded into `scratch`.
const float* RowBlock(const Rows& x, int64_t begin, int64_t end, std::vector<float>& scratch) {
  if (const MatrixView* dense = x.dense()) return dense->row(begin);
  scratch.resize((end - begin) * x.dim());
  x.Read(begin, end, scratch.data());
  return scratch.data();
}

// Writes rows [first, first + count) of x, L2-normalised, to out (count x dim).
void WriteNormalised(const Rows& x, const std::vector<double>& inv_norm, int64_t first,
                     int64_t count, std::vector<float>& scratch, float* out) {
  const int64_t d = x.dim();
  const float* in = RowBlock(x, first, first + count, scratch);
  for (int64_t q = 0; q < count; ++q) Normalise(in + q * d, d, inv_norm[first + q], out + q * d);
}

// Whether the search runs exactly, and the dimension of the space it searches (the input's
// unless projected): see KnnGraphOptions.
bool ExactSearch(int64_t n, const KnnGraphOptions& options) {
  return options.search == KnnSearch::kExact ||
         (options.search == KnnSearch::kAuto && n <= options.exact_max_rows);
}
int64_t SearchDim(int64_t n, int64_t d, const KnnGraphOptions& options) {
  return options.ivf_dim > 0 && options.ivf_dim < d &&
                 n >= std::max(kPcaSample, options.ivf_dim_min_rows)
             ? options.ivf_dim
             : d;
}

// The rows the IVF searches: normalised rows as floats, or projections as bfloat16 (the top
// half of a float, rounded to nearest even): their ranking only proposes candidates, which
// are rescored exactly, and halving the largest buffer of the build is what keeps its peak
// near the input's size at 1M rows x 256-d.
class SearchSpace {
 public:
  SearchSpace(int64_t rows, int64_t dim, bool half) : dim_(dim), half_(half) {
    if (half) {
      half_rows_.resize(rows * dim);
    } else {
      rows_.resize(rows * dim);
    }
  }

  int64_t dim() const { return dim_; }
  // The float store (only when not half), for writing rows in place.
  float* floats() { return rows_.data(); }

  // Stores rows [first, first + count) from x (count x dim).
  void Store(int64_t first, int64_t count, const float* x) {
    if (!half_) {
      std::copy_n(x, count * dim_, rows_.data() + first * dim_);
      return;
    }
    uint16_t* out = half_rows_.data() + first * dim_;
    for (int64_t t = 0; t < count * dim_; ++t) {
      uint32_t u = std::bit_cast<uint32_t>(x[t]);
      u += 0x7FFF + ((u >> 16) & 1);
      out[t] = static_cast<uint16_t>(u >> 16);
    }
  }

  // Rows [first, first + count) as floats: in the store, or widened into `scratch`.
  const float* Rows(int64_t first, int64_t count, std::vector<float>& scratch) const {
    if (!half_) return rows_.data() + first * dim_;
    scratch.resize(count * dim_);
    const uint16_t* in = half_rows_.data() + first * dim_;
    for (int64_t t = 0; t < count * dim_; ++t) {
      scratch[t] = std::bit_cast<float>(static_cast<uint32_t>(in[t]) << 16);
    }
    return scratch.data();
  }

  // Rearranges the rows so that new row p is old row order[p], in place (order is a
  // permutation), following its cycles: one row of scratch, not a second copy.
  void Permute(const std::vector<int64_t>& order) {
    if (half_) {
      PermuteRows(half_rows_.data(), order);
    } else {
      PermuteRows(rows_.data(), order);
    }
  }

 private:
  template <typename T>
  void PermuteRows(T* data, const std::vector<int64_t>& order) const {
    const int64_t n = static_cast<int64_t>(order.size());
    std::vector<bool> placed(n, false);
    std::vector<T> held(dim_);
    for (int64_t start = 0; start < n; ++start) {
      if (placed[start] || order[start] == start) continue;
      std::copy_n(data + start * dim_, dim_, held.data());
      int64_t p = start;
      while (order[p] != start) {
        std::copy_n(data + order[p] * dim_, dim_, data + p * dim_);
        placed[p] = true;
        p = order[p];
      }
      std::copy_n(held.data(), dim_, data + p * dim_);
      placed[p] = true;
    }
  }

  int64_t dim_;
  bool half_;
  std::vector<float> rows_;
  std::vector<uint16_t> half_rows_;
};

// The k best candidates (highest similarity, then lowest row) of each of a block of query
// rows, fed candidate blocks one after another. Ties break on the row number, so the result
// does not depend on the order candidates arrive in. Each candidate carries a tag, its column
// in the caller's numbering, returned with it.
class TopK {
 public:
  TopK(int64_t queries, int64_t k)
      : k_(k), sims_(queries * k), rows_(queries * k), tags_(queries * k), size_(queries) {}

  void Reset(int64_t queries) { std::fill(size_.begin(), size_.begin() + queries, 0); }

  // Offers candidates rows[0 .. count), tagged first_tag + c, with similarities
  // sims[0 .. count) to query q.
  void Offer(int64_t q, const float* sims, const int64_t* rows, int64_t first_tag, int64_t count) {
    float* best = sims_.data() + q * k_;
    int64_t* best_rows = rows_.data() + q * k_;
    int64_t* best_tags = tags_.data() + q * k_;
    int64_t& size = size_[q];
    for (int64_t c = 0; c < count; ++c) {
      const float s = sims[c];
      const int64_t r = rows[c];
      // best[] is sorted, best first; skip anything not better than the current last.
      if (size == k_ && !(s > best[k_ - 1] || (s == best[k_ - 1] && r < best_rows[k_ - 1]))) {
        continue;
      }
      int64_t pos = size < k_ ? size++ : k_ - 1;
      while (pos > 0 && (s > best[pos - 1] || (s == best[pos - 1] && r < best_rows[pos - 1]))) {
        best[pos] = best[pos - 1];
        best_rows[pos] = best_rows[pos - 1];
        best_tags[pos] = best_tags[pos - 1];
        --pos;
      }
      best[pos] = s;
      best_rows[pos] = r;
      best_tags[pos] = first_tag + c;
    }
  }

  // Writes each query's rows and their tags, padded with -1, to labels and tags (queries x k).
  void Labels(int64_t queries, FaissId* labels, int64_t* tags) const {
    for (int64_t q = 0; q < queries; ++q) {
      for (int64_t t = 0; t < k_; ++t) {
        const bool found = t < size_[q];
        labels[q * k_ + t] = found ? rows_[q * k_ + t] : -1;
        tags[q * k_ + t] = found ? tags_[q * k_ + t] : -1;
      }
    }
  }

 private:
  int64_t k_;
  std::vector<float> sims_;
  std::vector<int64_t> rows_;
  std::vector<int64_t> tags_;
  std::vector<int64_t> size_;
};

}  // namespace

absl::StatusOr<KnnGraph> KnnGraph::Build(const Rows& rows, const KnnGraphOptions& options,
                                         const std::function<bool(double)>& progress) {
  if (rows.rows() <= 0 || rows.dim() <= 0 || (rows.dense() && rows.dense()->data == nullptr)) {
    return absl::InvalidArgumentError("k-NN graph needs a non-empty matrix");
  }
  if (rows.rows() >= std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError("k-NN graph supports fewer than 2^31 rows");
  }
  if (options.neighbours < 1 || options.ivf_probe < 1 || options.ivf_lists < 0 ||
      options.ivf_dim < 0 || options.ivf_oversample < 1) {
    return absl::InvalidArgumentError(
        "k-NN graph needs neighbours >= 1, ivf_probe >= 1, ivf_lists >= 0, ivf_dim >= 0 and "
        "ivf_oversample >= 1");
  }
  // The projected IVF reads the rows in place. The other searches keep a normalised float32
  // copy of them anyway (FAISS's index, the unprojected search space), on inputs small enough
  // (ivf_dim_min_rows) for one more copy to be cheap.
  if (rows.dense() != nullptr || (!ExactSearch(rows.rows(), options) &&
                                  SearchDim(rows.rows(), rows.dim(), options) < rows.dim())) {
    return BuildFrom(rows, options, progress);
  }
  std::vector<float> storage;
  absl::StatusOr<MatrixView> units = rows.Decode(&storage, progress);
  if (!units.ok()) return units.status();
  return BuildFrom(*units, options, progress);
}

absl::StatusOr<KnnGraph> KnnGraph::BuildFrom(const Rows& units, const KnnGraphOptions& options,
                                             const std::function<bool(double)>& progress) {
  const int64_t n = units.rows();
  const int64_t d = units.dim();
  const int64_t k = std::min<int64_t>(options.neighbours, n);
  // Set when the rows are one float32 matrix: always, except on the projected IVF.
  const MatrixView* const dense = units.dense();
  const kernels::SerialOpenMpScope serial(n * d < kernels::kSerialBelowFloats);

  // Polled between batches here and, through FAISS's interruption checks, between the blocks
  // of its searches and the iterations of its k-means.
  internal::Cancel cancel(progress);
  internal::FaissInterruptScope interrupt(&cancel);
  const auto report = [&](int64_t done) {
    return cancel.Report(static_cast<double>(done) / static_cast<double>(n));
  };
  const auto cancelled = [] { return absl::CancelledError("k-NN graph build cancelled"); };

  std::vector<double> inv_norm(n);
  {
    constexpr int64_t kNormRows = 1024;
    const int threads = internal::DefaultThreads();
    std::vector<std::vector<float>> scratch(threads);
    internal::ParallelFor((n + kNormRows - 1) / kNormRows, threads, [&](int worker, int64_t b) {
      if (worker == 0 ? cancel.Stop() : cancel.stopped()) return;
      const int64_t first = b * kNormRows;
      const int64_t count = std::min(kNormRows, n - first);
      SquaredNorms(RowBlock(units, first, first + count, scratch[worker]), count, d,
                   inv_norm.data() + first);
    });
    if (cancel.stopped()) return cancelled();
  }
  for (int64_t i = 0; i < n; ++i) {
    // A NaN or infinity anywhere in the row makes its squared norm non-finite; finite floats
    // cannot overflow in double.
    if (!std::isfinite(inv_norm[i])) {
      return absl::InvalidArgumentError("k-NN graph input has non-finite entries");
    }
    inv_norm[i] = inv_norm[i] > 0 ? 1 / std::sqrt(inv_norm[i]) : 0;
  }

  // Padded edge lists (k slots per row), compacted into CSR at the end; allocated (by
  // allocate_edges) only once the search starts, after the IVF's k-means buffers are gone.
  std::vector<int32_t> targets;
  std::vector<float> sims;
  std::vector<int64_t> counts;
  const auto allocate_edges = [&] {
    targets.resize(n * k);
    sims.resize(n * k);
    counts.assign(n, 0);
  };

  // Turns the m proposals for row i (values xi; proposal t's values at xj[t]) into its exact,
  // ordered edge list of at most k, with the caller's scratch.
  const auto keep_row =
      [&](int64_t i, const float* xi, const FaissId* proposals, const float* const* xj, int64_t m,
          std::vector<std::pair<double, int32_t>>& cand, std::vector<double>& sim) {
        sim.resize(m);
        CandidateSimilarities(xi, xj, d, inv_norm.data(), i, proposals, m, sim.data());
        cand.clear();
        for (int64_t t = 0; t < m; ++t) {
          if (sim[t] > 0) cand.emplace_back(sim[t], static_cast<int32_t>(proposals[t]));
        }
        std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
          return a.first > b.first || (a.first == b.first && a.second < b.second);
        });
        int64_t c = 0;
        int32_t* out_t = targets.data() + i * k;
        float* out_s = sims.data() + i * k;
        if (inv_norm[i] > 0) {
          // Itself, whether or not FAISS ranked it first (exact duplicates can push it out);
          // the last proposal is dropped instead, as it is the least similar.
          out_t[c] = static_cast<int32_t>(i);
          out_s[c++] = 1.0f;
        }
        for (size_t t = 0; t < cand.size() && c < k; ++t) {
          if (t > 0 && cand[t].second == cand[t - 1].second) continue;
          out_t[c] = cand[t].second;
          out_s[c++] = static_cast<float>(cand[t].first);
        }
        counts[i] = c;
      };
  // keep_row on a dense matrix: the m proposals for row i read in place.
  const auto keep_dense_row =
      [&](int64_t i, const FaissId* proposals, int64_t m, std::vector<const float*>& xj,
          std::vector<std::pair<double, int32_t>>& cand, std::vector<double>& sim) {
        xj.resize(m);
        for (int64_t t = 0; t < m; ++t)
          xj[t] = proposals[t] >= 0 ? dense->row(proposals[t]) : nullptr;
        keep_row(i, dense->row(i), proposals, xj.data(), m, cand, sim);
      };
  // keep_row for rows [first, first + count) of a dense matrix, proposals (count x k) from
  // FAISS.
  const auto keep_edges = [&](int64_t first, int64_t count, const FaissId* labels) {
#pragma omp parallel
    {
      std::vector<std::pair<double, int32_t>> cand;
      std::vector<double> sim;
      std::vector<const float*> xj;
#pragma omp for schedule(static)
      for (int64_t q = 0; q < count; ++q) {
        keep_dense_row(first + q, labels + q * k, k, xj, cand, sim);
      }
    }
  };

  std::vector<float> buf(kBatch * d);
  std::vector<FaissId> labels(kBatch * k);
  std::vector<float> faiss_sims(kBatch * k);
  const bool exact = ExactSearch(n, options);

  try {
    if (exact) {
      allocate_edges();
      faiss::IndexFlatIP index(d);
      std::vector<float> scratch;
      for (int64_t first = 0; first < n; first += kBatch) {
        const int64_t count = std::min(kBatch, n - first);
        WriteNormalised(units, inv_norm, first, count, scratch, buf.data());
        index.add(count, buf.data());
        if (cancel.Stop()) return cancelled();
      }
      for (int64_t first = 0; first < n; first += kBatch) {
        const int64_t count = std::min(kBatch, n - first);
        index.search(count, index.get_xb() + first * d, k, faiss_sims.data(), labels.data());
        keep_edges(first, count, labels.data());
        if (!report(first + count)) return cancelled();
      }
    } else {
      const int64_t lists = std::clamp<int64_t>(
          options.ivf_lists > 0 ? options.ivf_lists : std::llround(2 * std::sqrt(double(n))), 1,
          std::max<int64_t>(1, n / 40));
      // The search space: the normalised rows, or above ivf_dim dimensions their projections
      // onto the leading principal axes of the normalised rows, which keep most of what ranks
      // a row's neighbours at a fraction of the memory and of the products below. The axes
      // are uncentred (trained on the sample and its negation, whose mean is zero), so the
      // rows' shared direction, which real embeddings have and which counts in their cosines,
      // is kept rather than subtracted.
      // Small inputs are searched unprojected (the axes are trained on kPcaSample rows).
      const int64_t r = SearchDim(n, d, options);
      const bool projected = r < d;
      // Candidates per row: with a projection, more than are kept, as its ranking is rough.
      const int64_t m = projected ? std::min<int64_t>(n, k * options.ivf_oversample) : k;
      SearchSpace space(n, r, projected);
      if (projected) {
        faiss::PCAMatrix pca(static_cast<int>(d), static_cast<int>(r), 0.0f, false);
        {
          const int64_t s = kPcaSample;
          std::vector<int64_t> sample(s);
          for (int64_t t = 0; t < s; ++t) sample[t] = t * n / s;
          std::vector<float> train(2 * s * d);
          units.Gather(sample, train.data());
          for (int64_t t = 0; t < s; ++t) {
            Normalise(train.data() + t * d, d, inv_norm[sample[t]], train.data() + t * d);
          }
          std::transform(train.begin(), train.begin() + s * d, train.begin() + s * d,
                         [](float v) { return -v; });
          pca.max_points_per_d = std::numeric_limits<size_t>::max() / (d + 1);
          pca.train(2 * s, train.data());
        }
        // y = A x for blocks of normalised rows, a block per task (as the scan below). A's
        // rows are the axes; FAISS's mean, zero up to rounding, is left out.
        constexpr int64_t kProjectRows = 1024;
        internal::SerialBlas serial_blas;
        const int threads = internal::DefaultThreads();
        std::vector<std::vector<float>> normalised(threads), projections(threads), read(threads);
        internal::ParallelFor(
            (n + kProjectRows - 1) / kProjectRows, threads, [&](int worker, int64_t block) {
              if (worker == 0 ? cancel.Stop() : cancel.stopped()) return;
              const int64_t first = block * kProjectRows;
              const int64_t count = std::min(kProjectRows, n - first);
              std::vector<float>& x = normalised[worker];
              std::vector<float>& y = projections[worker];
              x.resize(kProjectRows * d);
              y.resize(kProjectRows * r);
              WriteNormalised(units, inv_norm, first, count, read[worker], x.data());
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(count),
                          static_cast<int>(r), static_cast<int>(d), 1.0f, x.data(),
                          static_cast<int>(d), pca.A.data(), static_cast<int>(d), 0.0f, y.data(),
                          static_cast<int>(r));
              space.Store(first, count, y.data());
            });
        if (cancel.stopped()) return cancelled();
      } else {
#pragma omp parallel for schedule(static)
        for (int64_t first = 0; first < n; first += 256) {
          std::vector<float> scratch;  // unused: the rows are dense here
          WriteNormalised(units, inv_norm, first, std::min<int64_t>(256, n - first), scratch,
                          space.floats() + first * d);
        }
      }
      if (cancel.Stop()) return cancelled();
      // Buckets: spherical k-means (FAISS) on an evenly strided sample of the search space.
      faiss::IndexFlatIP centroids(r);
      {
        faiss::ClusteringParameters cp;
        cp.niter = kIvfIterations;
        cp.seed = kIvfSeed;
        cp.spherical = true;
        cp.max_points_per_centroid = static_cast<int>(kIvfTrainPerList);
        faiss::Clustering clustering(r, lists, cp);
        const int64_t n_train = std::min(n, lists * kIvfTrainPerList);
        std::vector<float> train(n_train * r);
        std::vector<float> widened;
        for (int64_t t = 0; t < n_train; ++t) {
          std::copy_n(space.Rows(t * n / n_train, 1, widened), r, train.data() + t * r);
        }
        clustering.train(n_train, train.data(), centroids);
      }
      std::vector<FaissId> bucket(n);
      for (int64_t first = 0; first < n; first += kBatch) {
        const int64_t count = std::min(kBatch, n - first);
        centroids.search(count, space.Rows(first, count, buf), 1, faiss_sims.data(),
                         bucket.data() + first);
        if (cancel.Stop()) return cancelled();
      }
      buf = {};
      // The search space grouped by bucket, so every bucket is one contiguous block that BLAS
      // can multiply without gathering: position p of the space holds row order[p].
      std::vector<int64_t> order(n);
      std::vector<int64_t> offsets(lists + 1, 0);
      for (FaissId b : bucket) ++offsets[b + 1];
      for (int64_t b = 0; b < lists; ++b) offsets[b + 1] += offsets[b];
      {
        std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
        for (int64_t i = 0; i < n; ++i) order[next[bucket[i]]++] = i;
      }
      bucket = {};
      space.Permute(order);
      // Every bucket is compared with the rows of the buckets whose centroids are nearest its own
      // (itself included): probing per bucket rather than per row is what makes the scan a few
      // large matrix products.
      const int64_t probes = std::min<int64_t>(options.ivf_probe, lists);
      std::vector<FaissId> probe(lists * probes);
      {
        std::vector<float> probe_sims(lists * probes);
        centroids.search(lists, centroids.get_xb(), probes, probe_sims.data(), probe.data());
      }
      // Rows read in place are gathered for the rescoring, each once for a run of queries
      // whose candidates fit in this many floats (8 MB): a query block's candidates come from
      // its probed buckets' few thousand rows, and a row decoded once serves every query that
      // proposed it. At 1M x 256 this decodes 17 rows per row in all, against 33 with 2 MB
      // runs and 60 (the proposals) one at a time.
      constexpr int64_t kGatherFloats = int64_t{1} << 21;
      const int64_t gather_rows = std::max<int64_t>(1, kGatherFloats / d);
      // Buckets are independent tasks on our threads, each with its own buffers and one
      // single-threaded product per candidate slice: the products are small (a bucket's few
      // hundred rows against a slice), and splitting each across threads, with a barrier
      // after each, spent more time waiting than computing on a loaded machine. Every row's
      // result depends only on its bucket, so the thread count does not change the graph.
      allocate_edges();
      internal::SerialBlas serial_blas;
      const int threads = internal::DefaultThreads();
      struct Scratch {
        explicit Scratch(int64_t m)
            : top(kScanRows, m), proposals(kScanRows * m), tags(proposals.size()) {}
        TopK top;
        std::vector<FaissId> proposals;
        // Each proposal's column among the probed buckets' rows, in scan order.
        std::vector<int64_t> tags;
        std::vector<float> block = std::vector<float>(kScanRows * kScanCols);
        std::vector<int64_t> block_rows = std::vector<int64_t>(kScanCols);
        std::vector<std::pair<double, int32_t>> cand;
        std::vector<double> sim;
        std::vector<float> queries, columns;  // widened rows of a half-precision space
        std::vector<const float*> xj;
        // Rows read in place: slot[tag] is where the row at that column was gathered, or -1.
        std::vector<int32_t> slot;
        std::vector<int64_t> gather, gathered_tags;
        std::vector<float> gathered, query_rows;
      };
      // Rescoring of the proposals w.proposals (count x m) for the rows at positions
      // [first, first + count), the scan having seen `columns` candidate columns.
      const auto rescore = [&](Scratch& w, int64_t first, int64_t count, int64_t columns) {
        if (dense != nullptr) {
          for (int64_t q = 0; q < count; ++q) {
            keep_dense_row(order[first + q], w.proposals.data() + q * m, m, w.xj, w.cand, w.sim);
          }
          return;
        }
        w.slot.assign(columns, -1);
        w.xj.resize(m);
        w.gather.clear();
        w.gathered_tags.clear();
        int64_t begin = 0;  // queries [begin, q) have their candidates in w.gather
        const auto flush = [&](int64_t end) {
          w.gathered.resize(w.gather.size() * d);
          units.Gather(w.gather, w.gathered.data());
          w.query_rows.resize((end - begin) * d);
          units.Gather(std::span<const int64_t>(order.data() + first + begin, end - begin),
                       w.query_rows.data());
          for (int64_t q = begin; q < end; ++q) {
            const int64_t* tags = w.tags.data() + q * m;
            for (int64_t t = 0; t < m; ++t) {
              w.xj[t] = tags[t] >= 0 ? w.gathered.data() + w.slot[tags[t]] * d : nullptr;
            }
            keep_row(order[first + q], w.query_rows.data() + (q - begin) * d,
                     w.proposals.data() + q * m, w.xj.data(), m, w.cand, w.sim);
          }
          for (int64_t tag : w.gathered_tags) w.slot[tag] = -1;
          w.gather.clear();
          w.gathered_tags.clear();
          begin = end;
        };
        for (int64_t q = 0; q < count; ++q) {
          if (q > begin && static_cast<int64_t>(w.gather.size()) + m > gather_rows) flush(q);
          for (int64_t t = 0; t < m; ++t) {
            const int64_t tag = w.tags[q * m + t];
            if (tag < 0 || w.slot[tag] >= 0) continue;
            w.slot[tag] = static_cast<int32_t>(w.gather.size());
            w.gather.push_back(w.proposals[q * m + t]);
            w.gathered_tags.push_back(tag);
          }
        }
        flush(count);
      };
      std::vector<std::unique_ptr<Scratch>> scratch(std::min<int64_t>(threads, lists));
      std::atomic<int64_t> done{0};
      internal::ParallelFor(lists, threads, [&](int worker, int64_t b) {
        if (cancel.stopped()) return;
        if (!scratch[worker]) scratch[worker] = std::make_unique<Scratch>(m);
        Scratch& w = *scratch[worker];
        for (int64_t first = offsets[b]; first < offsets[b + 1]; first += kScanRows) {
          const int64_t count = std::min(kScanRows, offsets[b + 1] - first);
          const float* queries = space.Rows(first, count, w.queries);
          w.top.Reset(count);
          // Candidate columns of all probed buckets, kScanCols at a time: one product per
          // bucket slice into the block, then one merge per block.
          int64_t filled = 0, merged = 0;
          const auto merge = [&] {
            for (int64_t q = 0; q < count; ++q) {
              w.top.Offer(q, w.block.data() + q * kScanCols, w.block_rows.data(), merged, filled);
            }
            merged += filled;
            filled = 0;
          };
          for (int64_t t = 0; t < probes; ++t) {
            const FaissId other = probe[b * probes + t];
            if (other < 0) continue;
            for (int64_t col = offsets[other]; col < offsets[other + 1];) {
              if (filled == kScanCols) merge();
              const int64_t cols = std::min(kScanCols - filled, offsets[other + 1] - col);
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(count),
                          static_cast<int>(cols), static_cast<int>(r), 1.0f, queries,
                          static_cast<int>(r), space.Rows(col, cols, w.columns),
                          static_cast<int>(r), 0.0f, w.block.data() + filled,
                          static_cast<int>(kScanCols));
              std::copy_n(order.data() + col, cols, w.block_rows.data() + filled);
              filled += cols;
              col += cols;
            }
          }
          if (filled > 0) merge();
          w.top.Labels(count, w.proposals.data(), w.tags.data());
          rescore(w, first, count, merged);
          const int64_t now = done.fetch_add(count, std::memory_order_relaxed) + count;
          // Only the calling thread (worker 0) runs the callback; the others see its answer.
          if (worker == 0 ? !report(now) : cancel.Stop()) return;
        }
      });
      if (cancel.stopped()) return cancelled();
    }
  } catch (const faiss::FaissException&) {
    if (cancel.stopped()) return cancelled();
    throw;
  }

  // Compact in place: row i's edges move from slot i * k to offsets[i] <= i * k, and never
  // onto a later row's slots, so a forward pass is safe.
  KnnGraph graph;
  graph.offsets_.resize(n + 1);
  graph.offsets_[0] = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t dst = graph.offsets_[i];
    std::copy(targets.begin() + i * k, targets.begin() + i * k + counts[i], targets.begin() + dst);
    std::copy(sims.begin() + i * k, sims.begin() + i * k + counts[i], sims.begin() + dst);
    graph.offsets_[i + 1] = dst + counts[i];
  }
  targets.resize(graph.offsets_[n]);
  sims.resize(graph.offsets_[n]);
  graph.targets_ = std::move(targets);
  graph.sims_ = std::move(sims);
  return graph;
}

KnnGraph KnnGraph::FromEdges(const std::vector<std::vector<std::pair<int32_t, float>>>& edges) {
  KnnGraph graph;
  graph.offsets_.assign(1, 0);
  for (const auto& list : edges) {
    for (const auto& [j, s] : list) {
      graph.targets_.push_back(j);
      graph.sims_.push_back(s);
    }
    graph.offsets_.push_back(static_cast<int64_t>(graph.targets_.size()));
  }
  return graph;
}

KnnGraph KnnGraph::Transposed() const {
  const int64_t n = rows();
  KnnGraph t;
  t.offsets_.assign(n + 1, 0);
  for (int32_t j : targets_) ++t.offsets_[j + 1];
  for (int64_t i = 0; i < n; ++i) t.offsets_[i + 1] += t.offsets_[i];
  t.targets_.resize(targets_.size());
  t.sims_.resize(sims_.size());
  std::vector<int64_t> next(t.offsets_.begin(), t.offsets_.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t e = offsets_[i]; e < offsets_[i + 1]; ++e) {
      const int64_t slot = next[targets_[e]]++;
      t.targets_[slot] = static_cast<int32_t>(i);
      t.sims_[slot] = sims_[e];
    }
  }
  return t;
}

}  // namespace curation::selection
