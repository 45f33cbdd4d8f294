// Herding: a subset whose mean tracks the whole dataset's mean, step by step.
//
// Kernel herding (Chen, Welling and Smola, UAI 2010) with a linear kernel: with mu the mean of
// all rows and S_t the first t rows selected, step t adds the row minimising
//
//   | (sum_{s in S_t} x_s + x) / (t + 1) - mu |,  i.e. the row nearest mu - sum_{s in S_t} (x_s -
//   mu),
//
// so |mean(S_t) - mu| shrinks like 1/t, where a random subset's shrinks like 1/sqrt(t). Models
// that learn from data averages see a subset that looks like the whole dataset sooner. For
// preference pairs, give it one row per pair holding [chosen, rejected] side by side (2 x dim
// floats; the service's interleaved storage already is that matrix): then the subset matches
// the mean chosen and mean rejected embeddings, and so the mean preference direction, which
// is what a Bradley-Terry reward model learns first. That is also why it does well on the
// linear proxy of PRODUCT.md; that a real DPO run gains as much is not shown by the proxy.
#pragma once

#include <cstdint>
#include <memory>

#include "selection/selector.h"

namespace curation::selection {

struct HerdingOptions {
  // Up to this many rows each step scans every remaining row: O(rows * dim) per step.
  int64_t exact_max_rows = 50000;
  // Above it, rows are bucketed by k-means (FAISS, L2, fixed seed) and each step scans the
  // buckets of the ivf_probe centroids nearest the target (more if those are used up).
  // 0 lists: 2 * sqrt(rows).
  int64_t ivf_lists = 0;
  int ivf_probe = 12;
};

// The "herding" selector. rows in selection order; scores[t] = |mean(rows[0..t]) - mu|, the
// distance (in the input's units) between the subset's mean and the dataset's mean after the
// pick. Equal distances go to the lower row. Deterministic (the seed is unused) and
// Select(k) is the prefix of Select(k' > k). Time O(k * rows * dim) exact, about
// O(k * rows / lists * probes * dim) bucketed; memory O(rows) exact, one grouped copy of the
// rows (rows * dim floats) bucketed. INVALID_ARGUMENT unless 0 < k <= rows or for non-finite
// input; CANCELLED through SelectOptions::progress (every 64 steps).
std::unique_ptr<Selector> MakeHerdingSelector(HerdingOptions options = {});

}  // namespace curation::selection
