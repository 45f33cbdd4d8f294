// k-center: greedy farthest-point selection (Gonzalez 1985).
//
// Start from one row, then repeatedly add the row farthest from everything selected so far.
// The k rows' covering radius max_i min_{j in S} d(i, j) is at most twice the best possible
// radius of any k rows (d must be a metric, which both distances below are). Where facility
// location favours dense regions, k-center reaches into every corner, outliers included.
#pragma once

#include <memory>

#include "selection/selector.h"

namespace curation::selection {

enum class KCenterDistance {
  // Chordal distance between directions, sqrt(2 - 2 cos(x, y)) = |x/|x| - y/|y||: a metric on
  // directions, so embedding norms are ignored as in facility location. An all-zero row is
  // treated as orthogonal to everything (distance sqrt 2).
  kCosine,
  // |x - y|.
  kEuclidean,
};

enum class KCenterStart {
  // The row nearest the mean (of the normalised rows for kCosine), ties to the lower row:
  // the most central row, independent of the seed.
  kCentral,
  // A uniformly drawn row, from SelectOptions::seed.
  kSeeded,
};

struct KCenterOptions {
  KCenterDistance distance = KCenterDistance::kCosine;
  KCenterStart start = KCenterStart::kCentral;
};

// The "kcenter" selector. rows[0] is the start; rows[t] for t > 0 is the remaining row
// farthest from rows[0 .. t), ties to the lower row. scores[t] is that distance at selection
// time (non-increasing); scores[0] is +infinity (the distance to an empty set). Once only
// exact duplicates of selected rows remain, they follow in increasing row order with score 0.
// Select(k) is the prefix of Select(k' > k). Distances are float32 with a fixed summation
// order, so results are identical on every x86-64 CPU and thread count. Time
// O(rows * k * dim) (parallel over rows with OpenMP), memory O(rows): ranking every row of a
// large matrix is quadratic, unlike facility location. INVALID_ARGUMENT unless
// 0 < k <= rows or for non-finite input; CANCELLED through SelectOptions::progress.
std::unique_ptr<Selector> MakeKCenterSelector(KCenterOptions options = {});

}  // namespace curation::selection
