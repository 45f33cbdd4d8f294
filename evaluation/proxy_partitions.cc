#include "evaluation/proxy_partitions.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/stable_hash.h"
#include "common/status.h"
#include "selection/distributed.h"
#include "selection/factory.h"

namespace curation::evaluation {
namespace {

namespace sel = curation::selection;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// The pool split as the service would split it: each partition's pool rows (increasing), their
// unit rows in the layout a method needs, and their keys.
struct Part {
  std::vector<int64_t> pool_rows;
  std::vector<uint64_t> keys;
  PoolMatrix mean;
  PoolMatrix concat;
};

PoolMatrix Gather(const PoolMatrix& all, const std::vector<int64_t>& rows) {
  PoolMatrix out{std::vector<float>(rows.size() * all.dim), static_cast<int64_t>(rows.size()),
                 all.dim};
  for (size_t i = 0; i < rows.size(); ++i) {
    std::copy_n(all.data.data() + rows[i] * all.dim, all.dim, out.data.data() + i * all.dim);
  }
  return out;
}

// Exact distributed herding, as bench/COST_MODEL.md prices it: one round per pick, in which
// the coordinator sends every partition the current target (dim doubles) and every partition
// answers with its best remaining row (row number, score, key and its dim float32 values, so
// the winner's values are at hand to update the target). Its picks are one node's.
struct ModeledCost {
  int64_t rounds = 0;
  int64_t bytes_from = 0;
  int64_t bytes_to = 0;
};
ModeledCost ExactHerdingCost(int64_t k, int64_t partitions, int64_t dim) {
  return {k, k * partitions * (3 * 8 + 4 * dim), k * partitions * 8 * dim};
}

struct Line {
  std::string method;
  double budget = 0;
  int64_t pairs = 0;
  double one_node = 0;
  double distributed = 0;
  int64_t same = 0;
  int64_t rounds = 0;
  int64_t bytes_from = 0;
  int64_t bytes_to = 0;
  double random_mean = 0;
  double random_sd = 0;
  // Herding only: |mean(subset) - mean(pool)| after the last pick (its score), both sides.
  double distance_one_node = -1;
  double distance_distributed = -1;
  double one_node_seconds = 0;
  double distributed_seconds = 0;
  int iterations = 0;         // EM iterations of a fit (isa), 0 otherwise
  std::vector<int64_t> kept;  // per partition: the rows its method works on (after dedup)
  bool modeled = false;
};

void Print(const Line& l, int partitions) {
  std::printf(
      "{\"method\": \"%s\", \"budget\": %.3f, \"pairs\": %lld, \"partitions\": %d, "
      "\"one_node\": %.4f, \"distributed\": %.4f, \"same_rows\": %lld, \"rounds\": %lld, "
      "\"bytes_from_partitions\": %lld, \"bytes_to_partitions\": %lld, \"random_mean\": %.4f, "
      "\"random_sd\": %.4f, "
      "\"one_node_seconds\": %.2f, \"distributed_seconds\": %.2f, \"iterations\": %d, "
      "\"distance_one_node\": %.6g, "
      "\"distance_distributed\": %.6g, "
      "\"partition_kept\": [%s], \"modeled\": %s}\n",
      l.method.c_str(), l.budget, static_cast<long long>(l.pairs), partitions, l.one_node,
      l.distributed, static_cast<long long>(l.same), static_cast<long long>(l.rounds),
      static_cast<long long>(l.bytes_from), static_cast<long long>(l.bytes_to), l.random_mean,
      l.random_sd, l.one_node_seconds, l.distributed_seconds, l.iterations, l.distance_one_node,
      l.distance_distributed, absl::StrJoin(l.kept, ", ").c_str(), l.modeled ? "true" : "false");
  std::fflush(stdout);
}

std::string Bytes(int64_t b) {
  if (b < 10 * 1024) return absl::StrCat(b, " B");
  if (b < 10 * 1024 * 1024) return absl::StrFormat("%.0f KiB", b / 1024.0);
  return absl::StrFormat("%.1f MiB", b / (1024.0 * 1024.0));
}

}  // namespace

std::vector<std::string> PartitionTableMethods() {
  return {"random", "isa", "herding", "facility_location", "kcenter", "dedup"};
}

absl::Status RunPartitionTable(const ProxyEvaluator& ev, const PartitionTableOptions& options) {
  if (options.partitions < 1 || options.partitions > 64) {
    return absl::InvalidArgumentError("--partitions must be in [1, 64]");
  }
  if (options.budgets.empty()) return absl::InvalidArgumentError("--budgets is empty");
  for (double b : options.budgets) {
    if (!(b > 0 && b <= 1)) return absl::InvalidArgumentError("--budgets must be in (0, 1]");
  }
  const std::vector<std::string> known = PartitionTableMethods();
  std::vector<std::string> methods;
  for (const std::string& m : known) {
    if (options.methods.empty() ||
        std::find(options.methods.begin(), options.methods.end(), m) != options.methods.end()) {
      methods.push_back(m);
    }
  }
  for (const std::string& m : options.methods) {
    if (std::find(known.begin(), known.end(), m) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat("--methods: unknown method ", m,
                                                     " (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  const int parts = options.partitions;
  const int64_t t = static_cast<int64_t>(ev.pool_pairs().size());
  std::vector<int64_t> pairs_at;  // per budget, as the ordinary table spends them
  for (double b : options.budgets) {
    const int64_t pairs = static_cast<int64_t>(b * 2 * static_cast<double>(t)) / 2;
    if (pairs < 1) return absl::InvalidArgumentError("a budget selects no pair of this pool");
    pairs_at.push_back(pairs);
  }
  const int64_t max_pairs = *std::max_element(pairs_at.begin(), pairs_at.end());

  const PoolMatrix mean = ev.PoolUnits(Unit::kPair);
  const bool herding = std::find(methods.begin(), methods.end(), "herding") != methods.end();
  const PoolMatrix concat = herding ? ev.PoolUnits(Unit::kPair, PairRows::kConcat) : PoolMatrix{};

  std::vector<uint64_t> keys(t);
  std::vector<Part> split(parts);
  for (int64_t p = 0; p < t; ++p) {
    const std::string id = absl::StrFormat("p%06d", ev.pool_pairs()[p]);
    keys[p] = UnitKey(id);
    Part& part = split[PartitionOf(id, parts)];
    part.pool_rows.push_back(p);
    part.keys.push_back(keys[p]);
  }
  std::vector<std::string> sizes;
  for (Part& part : split) {
    part.mean = Gather(mean, part.pool_rows);
    if (herding) part.concat = Gather(concat, part.pool_rows);
    sizes.push_back(absl::StrCat(part.pool_rows.size()));
  }
  std::printf(
      "{\"pool_pairs\": %lld, \"partitions\": %d, \"partition_pairs\": [%s], \"dim\": %lld}\n",
      static_cast<long long>(t), parts, absl::StrJoin(sizes, ", ").c_str(),
      static_cast<long long>(mean.dim));
  std::fflush(stdout);

  const auto score = [&](std::span<const int64_t> rows) -> absl::StatusOr<double> {
    ASSIGN_OR_RETURN(SubsetScore s,
                     ev.EvaluateSubset(Unit::kPair, ev.PoolRowsToIds(Unit::kPair, rows)));
    return s.accuracy.accuracy;
  };
  std::map<int64_t, RandomBaseline> random;
  for (int64_t pairs : pairs_at) {
    ASSIGN_OR_RETURN(RandomBaseline r, ev.EvaluateRandom(Unit::kPair, 2 * pairs));
    random[pairs] = std::move(r);
  }

  std::vector<Line> lines;
  sel::SelectOptions select_options;
  select_options.seed = options.seed;
  select_options.row_keys = keys;
  for (const std::string& method : methods) {
    sel::SelectorSpec spec;
    spec.method = method;
    const bool concat_rows = method == "herding";
    const PoolMatrix& units = concat_rows ? concat : mean;
    ASSIGN_OR_RETURN(std::unique_ptr<sel::Selector> selector, sel::MakeSelector(spec));
    // Every method but dedup is prefix-consistent on one node (RankAll in factory.h): one run
    // at the largest budget serves them all. The distributed forms are not all so (GreeDi's
    // candidates depend on k), so they run at every budget.
    std::optional<sel::SelectionResult> ranked;
    double ranked_seconds = 0;
    if (method != "dedup") {
      const auto begin = std::chrono::steady_clock::now();
      ASSIGN_OR_RETURN(ranked, selector->Select(units.view(), max_pairs, select_options));
      ranked_seconds = Seconds(begin);
    }
    std::vector<std::unique_ptr<sel::Partition>> owned;
    std::vector<sel::Partition*> partitions;
    for (const Part& part : split) {
      owned.push_back(
          sel::MakeLocalPartition((concat_rows ? part.concat : part.mean).view(), part.keys, spec));
      partitions.push_back(owned.back().get());
    }
    for (size_t b = 0; b < pairs_at.size(); ++b) {
      Line line;
      line.method = method;
      line.budget = options.budgets[b];
      line.pairs = pairs_at[b];
      line.random_mean = random[line.pairs].mean;
      line.random_sd = random[line.pairs].sd;
      std::vector<int64_t> one;
      if (ranked) {
        one.assign(ranked->rows.begin(), ranked->rows.begin() + line.pairs);
        if (method == "herding") line.distance_one_node = ranked->scores[line.pairs - 1];
        line.one_node_seconds = ranked_seconds;
      } else {
        const auto begin = std::chrono::steady_clock::now();
        ASSIGN_OR_RETURN(sel::SelectionResult r,
                         selector->Select(units.view(), line.pairs, select_options));
        line.one_node_seconds = Seconds(begin);
        one = std::move(r.rows);
      }
      const auto begin = std::chrono::steady_clock::now();
      ASSIGN_OR_RETURN(sel::DistributedResult d,
                       sel::SelectDistributed(spec, partitions, line.pairs, select_options));
      line.distributed_seconds = Seconds(begin);
      std::vector<int64_t> dist;
      dist.reserve(d.rows.size());
      for (const sel::PartitionRow& r : d.rows) {
        if (r.partition < 0 || r.partition >= parts || r.row < 0 ||
            r.row >= static_cast<int64_t>(split[r.partition].pool_rows.size())) {
          return absl::InternalError(absl::StrCat(method, ": distributed row out of range"));
        }
        dist.push_back(split[r.partition].pool_rows[r.row]);
      }
      const std::unordered_set<int64_t> in_one(one.begin(), one.end());
      for (int64_t r : dist) line.same += in_one.count(r);
      ASSIGN_OR_RETURN(line.one_node, score(one));
      ASSIGN_OR_RETURN(line.distributed, score(dist));
      line.rounds = d.rounds;
      line.bytes_from = d.bytes_from_partitions;
      line.bytes_to = d.bytes_to_partitions;
      if (d.fit) line.iterations = d.fit->iterations;
      if (method == "herding" && !d.scores.empty()) line.distance_distributed = d.scores.back();
      // What each partition's method works on, for the cost model's dedup shares; asked after
      // the timed run, whose own Summarize round has already deduplicated the partition.
      for (sel::Partition* p : partitions) {
        ASSIGN_OR_RETURN(sel::PartitionSummary summary, p->Summarize());
        line.kept.push_back(summary.kept < 0 ? summary.rows : summary.kept);
      }
      Print(line, parts);
      lines.push_back(line);
      if (method == "herding") {
        const ModeledCost c = ExactHerdingCost(line.pairs, parts, concat.dim);
        Line exact = line;
        exact.method = "herding_exact";
        exact.distributed = line.one_node;
        exact.distance_distributed = line.distance_one_node;
        exact.same = line.pairs;
        exact.rounds = c.rounds;
        exact.bytes_from = c.bytes_from;
        exact.bytes_to = c.bytes_to;
        exact.distributed_seconds = 0;
        exact.modeled = true;
        Print(exact, parts);
        lines.push_back(exact);
      }
    }
  }

  std::printf(
      "\nPool %lld pairs in %d partitions (%s pairs). Accuracy on %lld held-out pairs; random: "
      "mean (sd) over %d seeds of random pairs at the same budget. herding_exact is priced by the "
      "cost "
      "model, not run: its rows are one node's.\n\n",
      static_cast<long long>(t), parts, absl::StrJoin(sizes, "/").c_str(),
      static_cast<long long>(ev.test_pairs().size()), ev.options().random_seeds);
  std::printf(
      "| method | budget | pairs | one node | %d partitions | diff | diff / random sd | same pairs "
      "| rounds | bytes from | bytes to | random "
      "|\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
      parts);
  for (const Line& l : lines) {
    std::printf(
        "| %s | %s%% | %lld | %.3f | %.3f | %+.3f | %+.1f | %lld | %lld | %s | %s | %.3f (%.3f) "
        "|\n",
        l.method.c_str(), absl::StrFormat("%g", 100 * l.budget).c_str(),
        static_cast<long long>(l.pairs), l.one_node, l.distributed, l.distributed - l.one_node,
        l.random_sd > 0 ? (l.distributed - l.one_node) / l.random_sd : 0.0,
        static_cast<long long>(l.same), static_cast<long long>(l.rounds),
        Bytes(l.bytes_from).c_str(), Bytes(l.bytes_to).c_str(), l.random_mean, l.random_sd);
  }
  // Herding both ways: the one-round form run, the exact form (k rounds) as one node's rows.
  bool herding_header = false;
  for (const Line& l : lines) {
    if (l.method != "herding") continue;
    if (!herding_header) {
      std::printf(
          "\nHerding, one round vs exact (k rounds = one node's rows): |mean(subset) - "
          "mean(pool)| and the proxy, the better one marked *.\n\n| budget | pairs | distance one "
          "round | distance exact | proxy one round | proxy exact | proxy diff / random sd "
          "|\n|---|---|---|---|---|---|---|\n");
      herding_header = true;
    }
    const bool round_better = l.distributed > l.one_node;
    const bool exact_better = l.one_node > l.distributed;
    std::printf("| %s%% | %lld | %.4g%s | %.4g%s | %.3f%s | %.3f%s | %+.1f |\n",
                absl::StrFormat("%g", 100 * l.budget).c_str(), static_cast<long long>(l.pairs),
                l.distance_distributed, l.distance_distributed < l.distance_one_node ? "*" : "",
                l.distance_one_node, l.distance_one_node < l.distance_distributed ? "*" : "",
                l.distributed, round_better ? "*" : "", l.one_node, exact_better ? "*" : "",
                l.random_sd > 0 ? (l.distributed - l.one_node) / l.random_sd : 0.0);
  }
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace curation::evaluation
