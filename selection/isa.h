// ISA (Information Sampling for Alignment), Algorithm 1 of Khera, Ghosh and Dutta,
// arXiv:2411.10545, implemented exactly as written (see PRODUCT.md):
//
//   l(x)     = log p(x) under a Gaussian mixture fitted to all rows (2 components by default)
//   l'(x)    = (l(x) - min l) / (max l - min l)
//   p(x)     = exp(l'(x))                      (not renormalised)
//   Delta(x) = H(X) - H'(x) = -p(x) log p(x) = -exp(l'(x)) l'(x)
//
// and keep the k rows with the largest Delta. Delta falls monotonically from 0 (at l' = 0) to
// -e (at l' = 1), so ISA as written keeps the k least likely rows. Improvements on it are
// separate, differently named methods.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "selection/gaussian_mixture.h"
#include "selection/selector.h"

namespace curation::selection {

struct IsaOptions {
  // The paper's mixture; its covariance type is unstated, diagonal is what fits in memory at
  // embedding sizes. MixtureOptions::seed is ignored: Select uses SelectOptions::seed.
  MixtureOptions mixture;
};

// Delta for every row from its log-likelihood, in O(N). If max l == min l (or the range is not
// a positive finite number), every l' is taken as 0, so every Delta is 0 and selection falls
// back to row order. Requires every l to be finite.
std::vector<double> IsaDeltas(std::span<const double> log_likelihoods);

// The rows of the k largest scores, best first; equal scores go to the smaller row number
// first, so the order is total and reproducible. Requires 0 < k <= scores.size().
std::vector<int64_t> TopK(std::span<const double> scores, int64_t k);

// The "isa" selector. Scores are Delta (<= 0, larger is selected first). SelectionResult::fit
// reports the mixture fit; its mean_log_likelihood is the mean of l under the final
// parameters. Returns the mixture fit's errors (INVALID_ARGUMENT for fewer rows than
// components or non-finite inputs, CANCELLED through SelectOptions::progress).
std::unique_ptr<Selector> MakeIsaSelector(IsaOptions options = {});

}  // namespace curation::selection
