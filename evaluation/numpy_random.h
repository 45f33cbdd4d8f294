// numpy's np.random.default_rng(seed).permutation(n), bit for bit.
//
// The proxy's held-out split is the one proxy_table.py draws, so the C++ evaluator and the
// Python reference score the same test pairs and train on the same pool. That needs numpy's
// exact stream: SeedSequence (entropy pool mixing) -> PCG64 (128-bit LCG, XSL-RR output) ->
// Generator.shuffle (Fisher-Yates from the end, bounded draws by masked rejection on buffered
// 32-bit halves). Checked against numpy 1.24 in the evaluation tests.
#pragma once

#include <cstdint>
#include <vector>

namespace curation::evaluation {

// The values 0 .. n-1 in the order np.random.default_rng(seed).permutation(n) returns them.
// Requires n >= 0.
std::vector<int64_t> NumpyPermutation(uint64_t seed, int64_t n);

}  // namespace curation::evaluation
