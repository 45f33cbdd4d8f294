// A sparse cosine k-nearest-neighbour graph over the rows of a matrix, built with FAISS.
//
// Facility location and dedup only ever look at each row's few most similar rows, so they
// work on this graph instead of an N x N similarity matrix: memory is O(N * neighbours).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/selector.h"

namespace curation::selection {

enum class KnnSearch {
  // kExact up to KnnGraphOptions::exact_max_rows rows, kIvf above.
  kAuto,
  // faiss::IndexFlatIP: every row against every row, O(N^2 dim) time (BLAS).
  kExact,
  // Inverted-file search: FAISS's spherical k-means puts the rows in ivf_lists buckets, and
  // each bucket's rows are compared (BLAS sgemm) with the rows of the ivf_probe buckets whose
  // centroids are nearest its own. Above ivf_dim dimensions the buckets and the comparisons
  // use the rows' projections onto their ivf_dim leading principal axes, and each row's
  // ivf_oversample * neighbours best candidates there are rescored exactly. Approximate: a true
  // neighbour in an unprobed bucket, or ranked too low by the projection, is missed and
  // replaced by the next best found. About ivf_probe / ivf_lists * ivf_dim / dim of the exact
  // work.
  kIvf,
};

struct KnnGraphOptions {
  // Neighbours kept per row, the row itself included (so 20 = itself and 19 others), as
  // FAISS's search(k = neighbours) returns it in proxy_table.py's `fl`.
  int neighbours = 20;
  KnnSearch search = KnnSearch::kAuto;
  // Above this many rows kAuto switches to IVF; exact search costs rows^2 * dim * 2 flops,
  // a few seconds at 30,000 x 256 on two cores.
  int64_t exact_max_rows = 30000;
  // IVF buckets; 0 picks 2 * sqrt(rows), at least 1 and at most rows / 40 (FAISS wants ~40
  // training rows per bucket).
  int64_t ivf_lists = 0;
  // Buckets scanned per row.
  int ivf_probe = 12;
  // Dimension of the space the IVF buckets and candidates are found in: the leading principal
  // axes (uncentred, so the mean direction counts) of the normalised rows. 0 or >= the input
  // dimension: the normalised rows themselves. Sets the IVF's extra memory (rows * min(ivf_dim,
  // dim) bfloat16 values) and most of its time.
  int ivf_dim = 64;
  // Inputs of fewer rows (and of fewer than 4,096) are searched unprojected: there the full
  // copy is small and quick to scan, and the projection's lost recall moved facility
  // location's proxy figures (README, 40,000 completions) by several standard deviations.
  int64_t ivf_dim_min_rows = 200000;
  // With a projection, candidates per row rescored exactly, as a multiple of neighbours.
  int ivf_oversample = 3;
};

// Row i's out-edges are its most similar rows j with sim(i, j) = max(0, cos(x_i, x_j)) > 0:
// itself first (similarity exactly 1 unless x_i is all zeros, which has no edges at all),
// then the others by decreasing similarity, ties by increasing row number. Similarities are
// recomputed in double from the input rows for every pair FAISS proposes and stored as float,
// so they do not depend on FAISS's float32 kernels; which rows FAISS proposes can, on another
// CPU, differ where two candidates tie within float rounding.
//
// Determinism: the same rows and options give the same graph run after run on one machine,
// whatever the OpenMP thread count (the IVF k-means uses a fixed seed, independent of any
// selection seed, every row's candidates are merged in a fixed order, and the IVF's own
// products run with OpenBLAS held to one thread). FAISS's k-means calls OpenBLAS with its own
// thread count, whose rounding can move a few rows between buckets.
class KnnGraph {
 public:
  // Builds the graph. Returns INVALID_ARGUMENT for an empty matrix, dim <= 0, rows >= 2^31,
  // neighbours < 1, ivf_probe < 1, ivf_lists < 0, ivf_dim < 0, ivf_oversample < 1, or non-finite
  // entries; CANCELLED if `progress` (called between search
  // batches with the share done, may be empty) returns false. Peak memory besides the input:
  // 8 * rows * neighbours bytes for the edges, plus for kExact a normalised copy of the rows
  // (rows * dim floats, in FAISS's index), for kIvf the search space grouped by bucket
  // (rows * ivf_dim bfloat16 values when projected, else rows * dim floats) and 24 bytes a row.
  // Rows behind a RowReader are read in place when projected (through Read and Gather, at
  // most 8 MB of floats at a time per thread); else they are first decoded into one float32
  // copy (rows * dim floats more), as that search copies them anyway.
  static absl::StatusOr<KnnGraph> Build(const Rows& units, const KnnGraphOptions& options,
                                        const std::function<bool(double done)>& progress = {});

  // A graph from explicit edge lists (tests, callers with their own similarities).
  // edges[i] lists (j, sim) pairs; they are kept in the given order. Requires 0 <= j < size.
  static KnnGraph FromEdges(const std::vector<std::vector<std::pair<int32_t, float>>>& edges);

  // The graph with every edge reversed, each row's in-edges ordered by source row. Facility
  // location scans a candidate's in-edges: the rows it would cover.
  KnnGraph Transposed() const;

  int64_t rows() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t edges() const { return static_cast<int64_t>(targets_.size()); }
  std::span<const int32_t> targets(int64_t i) const {
    return {targets_.data() + offsets_[i], targets_.data() + offsets_[i + 1]};
  }
  std::span<const float> similarities(int64_t i) const {
    return {sims_.data() + offsets_[i], sims_.data() + offsets_[i + 1]};
  }

 private:
  KnnGraph() = default;
  // Build on validated rows: one float32 matrix, or, on the projected IVF, rows read in place.
  static absl::StatusOr<KnnGraph> BuildFrom(const Rows& units, const KnnGraphOptions& options,
                                            const std::function<bool(double done)>& progress);

  std::vector<int64_t> offsets_{0};
  std::vector<int32_t> targets_;
  std::vector<float> sims_;
};

}  // namespace curation::selection
