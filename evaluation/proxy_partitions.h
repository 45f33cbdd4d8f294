// curation-proxy --partitions P: every selection method on one node beside its distributed
// form (selection/distributed.h) over the same pool split into P partitions, on the proxy.
//
// The pool's pairs get the ids the bench's ingest gives them ("p" + the pair's row in the
// matrix, zero-padded to 6 digits), are placed by curation::PartitionOf(id, P) and keyed by
// curation::UnitKey(id), as the service places and keys them. Both sides see the same row keys
// (SelectOptions::row_keys), so random and ISA must select the same rows on both, and the other
// methods show what their distributed approximation costs in proxy accuracy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "evaluation/proxy.h"

namespace curation::evaluation {

struct PartitionTableOptions {
  int partitions = 3;                // in [1, 64]
  std::vector<double> budgets;       // shares of the pool's single examples, each in (0, 1]
  std::vector<std::string> methods;  // empty: every method
  uint64_t seed = 0;                 // the selectors' seed, on both sides
};

// The methods the table knows, in its order.
std::vector<std::string> PartitionTableMethods();

// Prints one JSON line per method and budget as it goes (stdout, flushed), then a Markdown
// table. Per line: the one-node and distributed proxy accuracies, how many selected pairs are
// the same, the distributed run's rounds and bytes, random's sd at that budget and both wall
// times; plus a line "herding_exact" for exact distributed herding, whose selection is one
// node's (so its score is one node's) and whose rounds (k) and bytes are the cost model's
// (bench/COST_MODEL.md), not a run. INVALID_ARGUMENT for options out of range or an unknown
// method; the selectors' and the proxy's errors as they are.
absl::Status RunPartitionTable(const ProxyEvaluator& ev, const PartitionTableOptions& options);

}  // namespace curation::evaluation
