// Near-duplicate removal by cosine similarity, alone or in front of any selector.
//
// Groups are the connected components of the graph joining rows i != j with
// cos(x_i, x_j) >= threshold, where j is among i's KnnGraphOptions::neighbours nearest rows
// (KnnGraph, so O(rows * neighbours) memory). Each group keeps its lowest row. Components can
// chain (a ~ b ~ c groups a with c even if cos(a, c) < threshold); at thresholds near 1 that is
// what near-duplicates look like anyway. A row with more than neighbours - 1 duplicates still
// joins its group through them. All-zero rows have no direction and are never grouped.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/knn_graph.h"
#include "selection/selector.h"

namespace curation::selection {

struct DedupOptions {
  // Rows at least this similar (cosine) are near-duplicates. In (0, 1].
  double threshold = 0.95;
  KnnGraphOptions graph;
};

struct DedupResult {
  // The lowest row of every group, increasing.
  std::vector<int64_t> kept;
  // representative[i] is the kept row of i's group (i itself when i is kept).
  std::vector<int64_t> representative;
};

// Groups the rows of `units`. INVALID_ARGUMENT for a threshold outside (0, 1] and whatever
// KnnGraph::Build rejects; CANCELLED if `progress` returns false. Deterministic (see KnnGraph).
absl::StatusOr<DedupResult> Deduplicate(const Rows& units, const DedupOptions& options,
                                        const std::function<bool(double done)>& progress = {});

// A selector that deduplicates `units` first and runs `inner` on the kept rows (a Subset
// of `units`, not a copy), returning row numbers of `units`. With no inner selector it draws
// the k rows at random among the kept rows (the "dedup" method: a duplicate-free random
// sample) and is named "dedup", otherwise "dedup+<inner name>". FAILED_PRECONDITION if fewer
// than k rows survive deduplication. Scores and fit are the inner selector's.
//
// With `rank_kept`, Select(units, k) returns the inner selector's order over every kept row
// (inner Select with k = kept rows), of which the first k are the selection: the full ranking
// of a deduplicated pool, since dedup cannot rank the rows it drops. FAILED_PRECONDITION
// ("only N rows are left after dedup") if fewer than k rows are kept.
std::unique_ptr<Selector> MakeDedupSelector(DedupOptions options = {},
                                            std::shared_ptr<const Selector> inner = nullptr,
                                            bool rank_kept = false);

}  // namespace curation::selection
