// The cheap, honest proxy of PRODUCT.md: how good is a training subset of preference data?
//
// A linear Bradley-Terry reward model (logistic regression on example embeddings, chosen rows
// labelled 1, rejected rows 0; see logistic_regression.h) is trained on the subset and scored
// on held-out pairs: accuracy = share of held-out pairs with score(chosen) > score(rejected),
// with a 95% Wilson interval. The held-out pairs are fixed by a seed before anything is
// selected and are never trained on; everything else can be selected from.
//
// The split is np.random.default_rng(split_seed).permutation(pairs): the first test pairs are
// held out and the next train pairs form the training pool, exactly as proxy_table.py does, so
// on the same embeddings both score the same test pairs and draw from the same pool.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "evaluation/logistic_regression.h"
#include "evaluation/scaling_law.h"
#include "selection/selector.h"

namespace curation::evaluation {

// Preference pairs as two embedding rows each, owned by the caller (must outlive the
// evaluator). Pair i's rows are chosen + i * stride and rejected + i * stride, so both the
// "all chosen, then all rejected" layout (stride = dim, rejected = chosen + pairs * dim) and the
// interleaved "chosen, rejected, chosen, ..." layout (stride = 2 * dim, rejected = chosen + dim)
// need no copy.
struct PairEmbeddings {
  const float* chosen = nullptr;
  const float* rejected = nullptr;
  int64_t pairs = 0;
  int64_t dim = 0;
  // Floats from one pair's row to the next; 0 means dim.
  int64_t stride = 0;

  const float* chosen_row(int64_t i) const { return chosen + i * (stride ? stride : dim); }
  const float* rejected_row(int64_t i) const { return rejected + i * (stride ? stride : dim); }
};

// What a subset is made of. Pair ids are pair numbers in PairEmbeddings (0 .. pairs-1);
// example ids are 2 * pair + side, side 0 for the chosen completion and 1 for the rejected one.
enum class Unit { kPair, kExample };

// How a pair becomes one selection row when pairs are the unit.
enum class PairRows {
  // (chosen + rejected) / 2, dim floats: the service's pair units.
  kMean,
  // [chosen, rejected] side by side, 2 * dim floats: what herding needs to see the
  // preference direction (see selection/herding.h).
  kConcat,
};

// Selection rows owned by the caller, row-major.
struct PoolMatrix {
  std::vector<float> data;
  int64_t rows = 0;
  int64_t dim = 0;

  selection::MatrixView view() const { return {data.data(), rows, dim}; }
};

struct ProxyOptions {
  // Seeds numpy's permutation of the pairs (proxy_table.py uses 1).
  uint64_t split_seed = 1;
  // Held-out pairs: min(test_pairs, floor(pairs * max_test_share)), at least 1.
  int64_t test_pairs = 5000;
  double max_test_share = 0.2;
  // Pool size: the next train_pairs pairs of the permutation, 0 = all the rest.
  // (proxy_table.py uses 20,000.)
  int64_t train_pairs = 0;
  // Random baselines: seeds 0 .. random_seeds-1.
  int random_seeds = 5;
  LogisticRegressionOptions model;
};

struct Accuracy {
  // Share of held-out pairs ranked correctly; 0.5 when the training rows had only one label,
  // which a subset of single examples can (proxy_table.py scores that as chance too).
  double accuracy = 0.5;
  Interval interval;  // 95% Wilson interval over `pairs` held-out pairs
  int64_t correct = 0;
  int64_t pairs = 0;
  bool single_label = false;
};

struct SubsetScore {
  Accuracy accuracy;
  // Training rows used (2 per pair id, 1 per example id), after dropping held-out ids.
  int64_t examples = 0;
  // Ids in the subset that belong to held-out pairs; never trained on, only counted.
  int64_t dropped_held_out = 0;
};

struct RandomBaseline {
  Unit unit = Unit::kPair;
  // Training rows per draw: the requested count (kExample), or 2 * floor(count / 2) (kPair).
  int64_t examples = 0;
  double mean = 0;
  // Population standard deviation (ddof = 0, as numpy's std in proxy_table.py).
  double sd = 0;
  std::vector<double> accuracies;  // per seed
};

struct EvaluationReport {
  SubsetScore subset;
  RandomBaseline random_examples;  // the subset's example count, drawn as single examples
  RandomBaseline random_pairs;     // the same count, drawn as whole pairs
  Accuracy full;                   // the whole training pool
};

// Learning curve and the scaling law fitted to it.
struct CurvePoint {
  double percent = 0;    // of the pool's examples
  int64_t examples = 0;  // training rows used
  Accuracy accuracy;
};

struct RecommendOptions {
  // Budgets in percent of the pool's examples, each in (0, 100]; at least 3 distinct. 100 is
  // the whole pool, whatever the method.
  std::vector<double> budgets_percent = {0.5, 1, 2, 5, 10, 25, 50, 100};
  // Recommend the smallest budget whose fitted value reaches share * r.
  double share = 0.95;
  uint64_t seed = 0;  // the selector's seed
  // The selector's rows when unit is kPair.
  PairRows pair_rows = PairRows::kMean;
};

struct BudgetRecommendation {
  std::vector<CurvePoint> curve;  // by increasing budget
  ScalingLawFit fit;              // on (percent, accuracy)
  double share = 0.95;
  // BudgetForShare(fit, share) in percent, but at least the smallest measured budget, and the
  // pool examples it means (ceil). Empty if the fitted curve never reaches the share.
  std::optional<double> percent;
  int64_t examples = 0;
  // The percent lies above the measured budgets, so it rests on the fitted curve alone.
  bool extrapolated = false;
};

class ProxyEvaluator {
 public:
  // Draws the split. INVALID_ARGUMENT for null rows, dim <= 0, stride < dim, fewer than 2
  // pairs, max_test_share outside (0, 1), random_seeds < 1, or a split leaving no test or no
  // training pair. O(pairs) memory: the split, not the embeddings.
  static absl::StatusOr<ProxyEvaluator> Create(const PairEmbeddings& data,
                                               const ProxyOptions& options = {});

  // Held-out pair ids (never trained on) and the training pool's pair ids, in the order of the
  // permutation. Pool row p (below) is pool_pairs()[p].
  std::span<const int64_t> test_pairs() const { return test_; }
  std::span<const int64_t> pool_pairs() const { return pool_; }
  int64_t pool_examples() const { return 2 * static_cast<int64_t>(pool_.size()); }

  // The pool as selection units: kPair -> one row per pool pair, laid out as `pair_rows` says
  // (kMean in float is what the service and proxy_table.py use); kExample -> the chosen rows of
  // every pool pair, then their rejected rows (proxy_table.py's X).
  PoolMatrix PoolUnits(Unit unit, PairRows pair_rows = PairRows::kMean) const;

  // Dataset ids (pair ids or example ids, see Unit) of pool rows as PoolUnits lays them out.
  // Requires every row in range.
  std::vector<int64_t> PoolRowsToIds(Unit unit, std::span<const int64_t> rows) const;

  // Trains on the subset `ids` (dataset ids; any pair not held out may appear, pool or not)
  // and scores the held-out pairs. INVALID_ARGUMENT for an id out of range or repeated;
  // FAILED_PRECONDITION if nothing is left after dropping held-out ids.
  absl::StatusOr<SubsetScore> EvaluateSubset(Unit unit, std::span<const int64_t> ids) const;

  // Trains on the whole pool.
  absl::StatusOr<Accuracy> EvaluateFull() const;

  // Trains on `examples` random pool examples (kExample) or floor(examples / 2) random pool
  // pairs (kPair), once per seed 0 .. random_seeds-1 (the same partial Fisher-Yates draw as
  // the "random" selector on pool rows). INVALID_ARGUMENT if the pool is too small or the
  // count is below 1 (kExample) / 2 (kPair).
  absl::StatusOr<RandomBaseline> EvaluateRandom(Unit unit, int64_t examples) const;

  // The subset, both random baselines at the subset's example count, and the full pool:
  // 2 * random_seeds + 2 fits. `progress` (may be empty) gets the share of fits done;
  // returning false cancels (CANCELLED).
  absl::StatusOr<EvaluationReport> Evaluate(
      Unit unit, std::span<const int64_t> ids,
      const std::function<bool(double done)>& progress = {}) const;

  // The learning curve of `selector` on the pool and the scaling law fitted to it. The
  // selector runs once, on PoolUnits(unit, options.pair_rows), for the largest budget below
  // 100%; smaller budgets
  // take prefixes of that selection (exactly their own selection for every prefix-consistent
  // method, see RankAll in selection/factory.h), so one FAISS graph or mixture fit serves the
  // whole curve. Budget b takes floor(b / 100 * pool_examples()) examples, as whole pairs for
  // kPair. INVALID_ARGUMENT for bad budgets or share; the selector's and fits' errors pass through;
  // CANCELLED through `progress`.
  absl::StatusOr<BudgetRecommendation> RecommendBudget(
      const selection::Selector& selector, Unit unit, const RecommendOptions& options = {},
      const std::function<bool(double done)>& progress = {}) const;

  const ProxyOptions& options() const { return options_; }

 private:
  ProxyEvaluator(const PairEmbeddings& data, const ProxyOptions& options)
      : data_(data), options_(options) {}

  // Fits on the given training rows and scores the held-out pairs.
  absl::StatusOr<Accuracy> Train(std::span<const float* const> rows,
                                 std::span<const uint8_t> labels) const;

  PairEmbeddings data_;
  ProxyOptions options_;
  std::vector<int64_t> test_;
  std::vector<int64_t> pool_;
  std::vector<uint8_t> held_out_;  // per pair
};

}  // namespace curation::evaluation
