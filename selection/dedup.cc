#include "selection/dedup.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "selection/random_selector.h"

namespace curation::selection {

absl::StatusOr<DedupResult> Deduplicate(const Rows& units, const DedupOptions& options,
                                        const std::function<bool(double)>& progress) {
  if (!(options.threshold > 0 && options.threshold <= 1)) {
    return absl::InvalidArgumentError("dedup threshold must be in (0, 1]");
  }
  absl::StatusOr<KnnGraph> graph = KnnGraph::Build(units, options.graph, progress);
  if (!graph.ok()) return graph.status();

  // Union-find whose root is always the component's lowest row, so the kept row falls out of
  // the structure and does not depend on the order edges are visited in.
  const int64_t n = units.rows();
  std::vector<int64_t> parent(n);
  for (int64_t i = 0; i < n; ++i) parent[i] = i;
  const auto find = [&](int64_t i) {
    while (parent[i] != i) {
      parent[i] = parent[parent[i]];
      i = parent[i];
    }
    return i;
  };
  for (int64_t i = 0; i < n; ++i) {
    const auto targets = graph->targets(i);
    const auto sims = graph->similarities(i);
    for (size_t e = 0; e < targets.size(); ++e) {
      if (targets[e] == i || static_cast<double>(sims[e]) < options.threshold) continue;
      const int64_t a = find(i);
      const int64_t b = find(targets[e]);
      if (a != b) parent[std::max(a, b)] = std::min(a, b);
    }
  }
  DedupResult result;
  result.representative.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    result.representative[i] = find(i);
    if (result.representative[i] == i) result.kept.push_back(i);
  }
  return result;
}

namespace {

class DedupSelector final : public Selector {
 public:
  DedupSelector(DedupOptions options, std::shared_ptr<const Selector> inner, bool rank_kept)
      : options_(std::move(options)),
        rank_kept_(rank_kept),
        name_(inner ? absl::StrCat("dedup+", std::string(inner->name())) : "dedup"),
        inner_(inner ? std::move(inner) : std::shared_ptr<const Selector>(MakeRandomSelector())) {}

  std::string_view name() const override { return name_; }

  absl::StatusOr<SelectionResult> Select(const Rows& units, int64_t k,
                                         const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows()) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    const auto part = [&](double start, double share) -> std::function<bool(double)> {
      if (!options.progress) return {};
      return
          [&options, start, share](double done) { return options.progress(start + share * done); };
    };
    absl::StatusOr<DedupResult> dedup = Deduplicate(units, options_, part(0, 0.5));
    if (!dedup.ok()) return dedup.status();
    const int64_t kept = static_cast<int64_t>(dedup->kept.size());
    if (rank_kept_ && kept < k) {
      return absl::FailedPreconditionError(
          absl::StrCat("only ", kept, " rows are left after dedup (of ", units.rows(),
                       ", at cosine threshold ", options_.threshold, "); cannot rank ", k));
    }
    if (kept < k) {
      return absl::FailedPreconditionError(absl::StrCat(
          "only ", kept, " of ", units.rows(), " rows remain after dedup at cosine threshold ",
          options_.threshold, "; cannot select ", k));
    }
    SelectOptions inner_options = options;
    inner_options.progress = part(0.5, 0.5);
    // The kept rows keep their keys, so the inner method's keyed order is the pool's.
    std::vector<uint64_t> kept_keys;
    if (!options.row_keys.empty()) {
      if (static_cast<int64_t>(options.row_keys.size()) != units.rows()) {
        return absl::InvalidArgumentError("row_keys must hold one key per row");
      }
      kept_keys.reserve(dedup->kept.size());
      for (int64_t row : dedup->kept) kept_keys.push_back(options.row_keys[row]);
      inner_options.row_keys = kept_keys;
    }
    absl::StatusOr<SelectionResult> result =
        inner_->Select(units.Subset(dedup->kept), rank_kept_ ? kept : k, inner_options);
    if (!result.ok()) return result.status();
    for (int64_t& row : result->rows) row = dedup->kept[row];
    return result;
  }

 private:
  DedupOptions options_;
  bool rank_kept_;
  std::string name_;
  std::shared_ptr<const Selector> inner_;
};

}  // namespace

std::unique_ptr<Selector> MakeDedupSelector(DedupOptions options,
                                            std::shared_ptr<const Selector> inner, bool rank_kept) {
  return std::make_unique<DedupSelector>(std::move(options), std::move(inner), rank_kept);
}

}  // namespace curation::selection
