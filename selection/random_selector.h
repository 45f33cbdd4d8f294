// The "random" baseline: k distinct rows drawn uniformly without replacement.
#pragma once

#include <memory>

#include "selection/selector.h"

namespace curation::selection {

// Rows come back in draw order; every score is 0 (random selection ranks nothing). Without
// SelectOptions::row_keys the draw is a partial Fisher-Yates shuffle on std::mt19937_64 seeded
// with SelectOptions::seed, so a seed gives the same rows on every machine and standard
// library; O(rows) memory and time. With row_keys (one per row, else INVALID_ARGUMENT) the
// rows are the k of smallest KeyedHash(seed, key), ascending, equal hashes by lower row: the
// same rows however the pool is split into partitions (distributed.h), and a ranking
// (RankAll) is the full sort; O(rows) memory, O(rows log k) time.
std::unique_ptr<Selector> MakeRandomSelector();

}  // namespace curation::selection
