// Facility location: choose rows that together "cover" the whole dataset.
//
//   F(S) = sum_i max_{j in S} sim(i, j),   sim(i, j) = max(0, cos(x_i, x_j)) if j is one of
//                                          row i's k nearest neighbours (itself included), else 0
//
// F is monotone submodular, so greedy selection (add the row with the largest marginal gain)
// is within 1 - 1/e of the best k-subset. The similarity graph is KnnGraph (FAISS, exact or
// IVF), so memory is O(rows * neighbours). This is proxy_table.py's `fl`, whose lazy greedy it
// reproduces on the exact graph (up to KnnGraphOptions::exact_max_rows rows): same graph, same
// gains (in double here, float there), ties to the lower row.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "selection/knn_graph.h"
#include "selection/selector.h"

namespace curation::selection {

enum class GreedyMode {
  // Lazy greedy (Minoux): a max-heap of stale gains, which only fall as S grows, so a row
  // whose refreshed gain still tops the heap is the true argmax. Selects exactly what kPlain
  // selects, usually after O(rows) gain evaluations in all, so ranking all rows is cheap.
  kLazy,
  // Every remaining row's gain at every step, O(k * rows * neighbours). A reference for tests.
  kPlain,
  // Stochastic greedy (Mirzasoleiman et al., AAAI 2015): each step takes the best of
  // ceil(rows / k * ln(1 / stochastic_epsilon)) remaining rows drawn with the seed, which is
  // within 1 - 1/e - epsilon of the optimum in expectation with O(rows * ln(1 / epsilon))
  // evaluations whatever k is. Unlike kLazy, Select(k) is not a prefix of Select(k' > k).
  kStochastic,
};

struct FacilityLocationOptions {
  KnnGraphOptions graph;
  GreedyMode greedy = GreedyMode::kLazy;
  double stochastic_epsilon = 0.01;
};

// Greedy maximisation of F on a prepared graph.
class FacilityLocation {
 public:
  // `graph` is the similarity graph (row i's edges = the rows that can cover i), as
  // KnnGraph::Build returns it. Keeps its transpose, not a reference to it.
  explicit FacilityLocation(const KnnGraph& graph);

  // F(S) for the given rows (repeats count once). Requires 0 <= row < rows().
  double Objective(std::span<const int64_t> selected) const;

  // Greedy selection of k rows: SelectionResult rows in selection order, scores = marginal
  // gains F(S + j) - F(S) at selection time (non-increasing for kLazy and kPlain). Equal gains
  // go to the lower row. Once every row is covered as well as it can be, the remaining gains
  // are 0 and rows follow in increasing order. `seed` only matters for kStochastic.
  // INVALID_ARGUMENT unless 0 < k <= rows(); CANCELLED if `progress` returns false (called
  // every 1024 selections with the share of k done).
  absl::StatusOr<SelectionResult> Greedy(int64_t k, GreedyMode mode, uint64_t seed,
                                         double stochastic_epsilon = 0.01,
                                         const std::function<bool(double)>& progress = {}) const;

  int64_t rows() const { return coverage_.rows(); }

 private:
  // The transposed graph: candidate j's edges are the rows j covers, with their similarity.
  KnnGraph coverage_;
};

// The "facility_location" selector: builds the graph on `units` (the first half of progress),
// then runs FacilityLocation::Greedy (the second half). Rows can be anything (pair means,
// single completions); only their directions matter. Deterministic for given units, k and
// seed; with kLazy the seed is unused and Select(k) is the prefix of Select(rows), so ranking
// every row (k = units.rows) gives every budget's selection at once.
std::unique_ptr<Selector> MakeFacilityLocationSelector(FacilityLocationOptions options = {});

}  // namespace curation::selection
