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
#include <vector>

#include "selection/selector.h"

namespace curation::selection {

struct HerdingOptions {
  // Up to this many rows each step scans every remaining row: O(rows * dim) per step, on a
  // float32 copy of the rows (Rows::Decode).
  int64_t exact_max_rows = 50000;
  // Above it, rows are bucketed by two-level k-means (about sqrt(ivf_lists) clusters, each
  // split into lists; 0 lists: 2 * sqrt(rows)), and each row gets a sign code (one bit per
  // dimension: above the mean or not). Each step ranks the remaining rows of the buckets of the
  // ivf_probe centroids nearest the target by their codes (an estimate of the distance), and
  // picks the nearest of the ivf_rerank best by exact distance.
  int64_t ivf_lists = 0;
  int ivf_probe = 24;
  int ivf_rerank = 128;
  // The mean the subset should track, dim values; empty tracks the rows' own mean. A
  // partition of a distributed pool herds toward the whole pool's mean (distributed.h).
  std::vector<double> target;
};

// The "herding" selector. rows in selection order; scores[t] = |mean(rows[0..t]) - mu|, the
// distance (in the input's units) between the subset's mean and the dataset's mean after the
// pick (mu is HerdingOptions::target when one is given). Equal distances go to the lower row.
// Deterministic on any number of threads (the seed is unused), the same whether the rows are a
// float32 matrix or a RowReader decoding to the same values, and Select(k) is the prefix of
// Select(k' > k).
// Time O(k * rows * dim) exact; bucketed about O(rows * sqrt(lists) * dim) to build and
// O(k * (lists * dim + probes * rows / lists * dim / 32 + rerank * dim)) for the steps.
// Memory O(rows) exact, plus the float32 copy. Bucketed, the rows are read in place (blocks
// through Rows::Scan and Rows::Read, the k-means sample and each step's re-rank shortlist
// through Rows::Gather), never copied whole: about rows * (dim / 8 + 25) bytes (codes, norms,
// bucket order; 89 MB for a million 512-float rows, 9% of their float16 codes) plus, while
// bucketing, the sample's lists * 16 rows as float32 (65 MB there).
// INVALID_ARGUMENT unless 0 < k <= rows, for options out of range (naming herding.target when
// it is not dim finite values) or non-finite input; CANCELLED through SelectOptions::progress
// (every 64 steps, and between blocks of rows while summing and bucketing).
std::unique_ptr<Selector> MakeHerdingSelector(HerdingOptions options = {});

}  // namespace curation::selection
