// The "random" baseline: k distinct rows drawn uniformly without replacement.
#pragma once

#include <memory>

#include "selection/selector.h"

namespace curation::selection {

// Rows come back in draw order; every score is 0 (random selection ranks nothing). The draw
// is a partial Fisher-Yates shuffle on std::mt19937_64 seeded with SelectOptions::seed, so a
// seed gives the same rows on every machine and standard library. O(rows) memory and time.
std::unique_ptr<Selector> MakeRandomSelector();

}  // namespace curation::selection
