#include "jobs/cost.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace curation::jobs {
namespace {

// Sustained multiply-adds per second of one worker on the reference machine (2 cores, AVX2),
// for the time estimates only.
constexpr double kFlopsPerSecond = 2e9;
// The same for OpenBLAS's sgemm on both cores (AVX2), which the k-NN graph's search runs in.
constexpr double kBlasFlopsPerSecond = 4e10;
// Allocator slack, thread stacks, protobuf results.
constexpr int64_t kFixedBytes = int64_t{16} << 20;

int64_t Floats(int64_t rows, int64_t dim) { return rows * dim * 4; }

}  // namespace

JobCost EstimateSelection(const SelectionPlan& plan, const PoolShape& pool, int64_t k) {
  const v1::SelectRequest& r = plan.resolved;
  const int64_t n = std::max<int64_t>(1, pool.rows);
  const int64_t d = std::max<int64_t>(1, pool.dim);
  const bool ranking = r.ranking();
  const int64_t picks = ranking ? n : std::clamp<int64_t>(k, 1, n);
  // The pool is read in place from the index's codes (index::VectorIndex::Units); what it
  // costs is its bookkeeping (seq, example, side, label, the filter's row list) and, for a
  // method that wants every row as float32 (`decodes`), one decoded copy. A constraint hands
  // the method one group at a time, so that copy is at most the pool again.
  double bytes = n * 26.0;
  const auto& f = r.filter();
  double flops = 0;
  double blas_flops = 0;  // dense products (OpenBLAS sgemm), an order of magnitude faster
  bool decodes = true;
  // k-NN graph of FL and dedup (selection/knn_graph.h): from 200,000 rows a 64-d bfloat16
  // projection read from the codes, below it the decoded rows and a normalised float copy; 24
  // bytes a row, and the edges with their transpose, 8 bytes each.
  auto graph = [&](int64_t neighbours) {
    bytes +=
        (n >= 200000 ? n * 64.0 * 2 : 2.0 * Floats(n, d)) + n * 24.0 + n * neighbours * 8.0 * 2;
    if (n <= 30000) {  // exact search: every row against every row, in BLAS
      blas_flops += static_cast<double>(n) * n * d * 2;
    } else {
      // IVF over 2 sqrt(n) buckets, 12 probed per row, in the projection's 64 dimensions from
      // 200,000 rows; each row's 3 x neighbours candidates rescored exactly.
      const double scanned = 12 * static_cast<double>(n) / (2 * std::sqrt(static_cast<double>(n)));
      const double space = n >= 200000 ? 64 : static_cast<double>(d);
      blas_flops += static_cast<double>(n) * scanned * space * 2;
      flops += static_cast<double>(n) * neighbours * 3 * d;
    }
  };
  if (f.dedup_threshold() > 0) graph(16);
  switch (r.method()) {
    case v1::SELECTION_METHOD_ISA: {
      const auto& isa = r.isa();
      const double K = std::max(1, isa.components());
      double dd = static_cast<double>(d);
      if (isa.pca_dim() > 0) {
        bytes += dd * dd * 8 * 2 + Floats(n, isa.pca_dim());
        flops += static_cast<double>(std::min<int64_t>(n, 65536)) * dd * dd + dd * dd * dd;
        dd = static_cast<double>(isa.pca_dim());
      }
      // Responsibilities and log-probabilities (N x K doubles), the k-means sample.
      bytes += n * K * 8 * 3 + 16384 * dd * 4;
      const double iters = std::max(1, isa.max_iter()) * std::max(1, isa.n_init());
      if (isa.covariance() == v1::COVARIANCE_FULL) {
        // Covariances, their Cholesky factors and precisions, and per-thread accumulators.
        bytes += K * dd * dd * 8 * 4;
        flops += iters * (n * K * dd * dd + K * dd * dd * dd / 3);
      } else {
        bytes += K * dd * 8 * 4;
        flops += iters * n * K * dd * 3;
      }
      break;
    }
    case v1::SELECTION_METHOD_FACILITY_LOCATION:
      graph(std::max(2, r.facility_location().neighbours()));
      flops += static_cast<double>(picks) * r.facility_location().neighbours() * 50;
      decodes = false;  // the graph's own copy, counted above
      break;
    case v1::SELECTION_METHOD_DEDUP:
      if (f.dedup_threshold() <= 0) graph(16);
      decodes = false;
      break;
    case v1::SELECTION_METHOD_HERDING:
      if (n > 50000) {
        // Bucketed (selection/herding.h), reading the codes in place: sign codes and bucket
        // bookkeeping; each pick estimates the distances of the rows in 24 of about 2 sqrt(n)
        // buckets from their codes and re-ranks 128 exactly; the two-level k-means is a few
        // passes over the rows.
        bytes += n * (d / 8.0 + 25);
        const double bucket = std::sqrt(static_cast<double>(n)) / 2;
        flops += static_cast<double>(picks) * (24 * bucket * d / 8 + 128.0 * d) + 20.0 * n * d;
        decodes = false;
        break;
      }
      [[fallthrough]];
    case v1::SELECTION_METHOD_KCENTER:
      // Per-row distances; each pick scans the pool.
      bytes += n * 16.0;
      flops += static_cast<double>(picks) * n * d;
      break;
    default:  // random: reads no vectors
      bytes += n * 8.0;
      flops += n;
      decodes = false;
  }
  if (decodes) bytes += Floats(n, d);
  // The result: ids and scores of every picked unit.
  bytes += picks * 80.0;
  JobCost cost;
  cost.memory_bytes = static_cast<int64_t>(bytes * 1.25) + kFixedBytes;
  cost.seconds = flops / kFlopsPerSecond + blas_flops / kBlasFlopsPerSecond;
  return cost;
}

JobCost EstimateEvaluation(int64_t pairs, int64_t dim, int64_t fits, const JobCost& selection) {
  // The pair matrix (chosen and rejected rows), the logistic regression's design matrix of one
  // fit at a time (difference rows, doubles) and its gradients.
  const double n = static_cast<double>(std::max<int64_t>(1, pairs));
  const double d = static_cast<double>(std::max<int64_t>(1, dim));
  const double bytes = 2 * n * d * 4 + 2 * n * d * 8 + n * 64;
  JobCost cost;
  cost.memory_bytes = static_cast<int64_t>(bytes * 1.25) + kFixedBytes + selection.memory_bytes;
  // About 100 L-BFGS iterations of two passes over the design matrix per fit.
  cost.seconds = static_cast<double>(fits) * 200 * n * d / kFlopsPerSecond + selection.seconds;
  return cost;
}

absl::Status CheckDegenerate(const SelectionPlan& plan, const PoolShape& pool,
                             absl::string_view prefix) {
  const v1::SelectRequest& r = plan.resolved;
  if (r.method() != v1::SELECTION_METHOD_ISA) return absl::OkStatus();
  const auto& isa = r.isa();
  if (isa.components() > pool.rows) {
    return InvalidField(absl::StrCat(prefix, "isa.components"),
                        absl::StrCat(isa.components(),
                                     " components need at least as many units; "
                                     "the pool holds ",
                                     pool.rows));
  }
  if (isa.covariance() == v1::COVARIANCE_FULL) {
    const int64_t dim = isa.pca_dim() > 0 ? isa.pca_dim() : pool.dim;
    const int64_t needed = static_cast<int64_t>(isa.components()) * dim;
    if (pool.rows < needed) {
      return InvalidField(
          absl::StrCat(prefix, "isa.covariance"),
          absl::StrCat("FULL with ", isa.components(), " components of ", dim,
                       " dimensions needs at least ", needed,
                       " units (one per parameter row of each covariance); the pool holds ",
                       pool.rows, ": use DIAG, fewer components or a smaller pca_dim"));
    }
  }
  return absl::OkStatus();
}

}  // namespace curation::jobs
