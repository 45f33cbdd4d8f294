#include "evaluation/proxy.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "evaluation/numpy_random.h"
#include "selection/rng.h"

namespace curation::evaluation {
namespace {

// k distinct values of [0, n) by a partial Fisher-Yates shuffle on mt19937_64(seed): the rows
// MakeRandomSelector() returns for the same n, k and seed.
std::vector<int64_t> RandomRows(int64_t n, int64_t k, uint64_t seed) {
  std::vector<int64_t> rows(n);
  for (int64_t i = 0; i < n; ++i) rows[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j = i + static_cast<int64_t>(selection::BoundedDraw(rng, n - i));
    std::swap(rows[i], rows[j]);
  }
  rows.resize(k);
  return rows;
}

absl::Status Cancelled() { return absl::CancelledError("proxy evaluation cancelled"); }

}  // namespace

absl::StatusOr<ProxyEvaluator> ProxyEvaluator::Create(const PairEmbeddings& data,
                                                      const ProxyOptions& options) {
  if (data.chosen == nullptr || data.rejected == nullptr || data.dim <= 0 ||
      (data.stride != 0 && data.stride < data.dim)) {
    return absl::InvalidArgumentError("pair embeddings need rows, dim > 0 and stride >= dim");
  }
  if (data.pairs < 2) return absl::InvalidArgumentError("the proxy needs at least 2 pairs");
  if (!(options.max_test_share > 0 && options.max_test_share < 1) || options.random_seeds < 1 ||
      options.test_pairs < 1 || options.train_pairs < 0) {
    return absl::InvalidArgumentError(
        "proxy options need test_pairs >= 1, train_pairs >= 0, max_test_share in (0, 1) and "
        "random_seeds >= 1");
  }
  const int64_t test = std::min<int64_t>(
      options.test_pairs,
      static_cast<int64_t>(std::floor(static_cast<double>(data.pairs) * options.max_test_share)));
  if (test < 1) {
    return absl::InvalidArgumentError(absl::StrCat(data.pairs, " pairs at max_test_share ",
                                                   options.max_test_share, " hold out nothing"));
  }
  const int64_t rest = data.pairs - test;
  const int64_t train = options.train_pairs > 0 ? std::min(options.train_pairs, rest) : rest;

  ProxyEvaluator evaluator(data, options);
  const std::vector<int64_t> perm = NumpyPermutation(options.split_seed, data.pairs);
  evaluator.test_.assign(perm.begin(), perm.begin() + test);
  evaluator.pool_.assign(perm.begin() + test, perm.begin() + test + train);
  evaluator.held_out_.assign(data.pairs, 0);
  for (int64_t p : evaluator.test_) evaluator.held_out_[p] = 1;
  return evaluator;
}

PoolMatrix ProxyEvaluator::PoolUnits(Unit unit, PairRows pair_rows) const {
  const int64_t t = static_cast<int64_t>(pool_.size());
  const int64_t d = data_.dim;
  const bool concat = unit == Unit::kPair && pair_rows == PairRows::kConcat;
  PoolMatrix out;
  out.rows = unit == Unit::kPair ? t : 2 * t;
  out.dim = concat ? 2 * d : d;
  out.data.resize(out.rows * out.dim);
  for (int64_t p = 0; p < t; ++p) {
    const float* c = data_.chosen_row(pool_[p]);
    const float* r = data_.rejected_row(pool_[p]);
    if (unit == Unit::kExample) {
      std::copy_n(c, d, out.data.data() + p * d);
      std::copy_n(r, d, out.data.data() + (t + p) * d);
    } else if (concat) {
      std::copy_n(c, d, out.data.data() + p * 2 * d);
      std::copy_n(r, d, out.data.data() + p * 2 * d + d);
    } else {
      for (int64_t j = 0; j < d; ++j) out.data[p * d + j] = 0.5f * (c[j] + r[j]);
    }
  }
  return out;
}

std::vector<int64_t> ProxyEvaluator::PoolRowsToIds(Unit unit, std::span<const int64_t> rows) const {
  const int64_t t = static_cast<int64_t>(pool_.size());
  std::vector<int64_t> ids;
  ids.reserve(rows.size());
  for (int64_t row : rows) {
    if (unit == Unit::kPair) {
      ids.push_back(pool_[row]);
    } else {
      ids.push_back(row < t ? 2 * pool_[row] : 2 * pool_[row - t] + 1);
    }
  }
  return ids;
}

absl::StatusOr<Accuracy> ProxyEvaluator::Train(std::span<const float* const> rows,
                                               std::span<const uint8_t> labels) const {
  Accuracy acc;
  acc.pairs = static_cast<int64_t>(test_.size());
  const bool both = std::find(labels.begin(), labels.end(), 0) != labels.end() &&
                    std::find(labels.begin(), labels.end(), 1) != labels.end();
  if (!both) {
    // One label cannot train a ranker; proxy_table.py scores such a subset as chance.
    acc.single_label = true;
    acc.correct = acc.pairs / 2;
    acc.interval = WilsonInterval(acc.correct, acc.pairs);
    return acc;
  }
  absl::StatusOr<LogisticModel> model =
      FitLogisticRegression(rows, labels, data_.dim, options_.model);
  if (!model.ok()) return model.status();
  for (int64_t p : test_) {
    acc.correct += model->Score(data_.chosen_row(p)) > model->Score(data_.rejected_row(p));
  }
  acc.accuracy = static_cast<double>(acc.correct) / static_cast<double>(acc.pairs);
  acc.interval = WilsonInterval(acc.correct, acc.pairs);
  return acc;
}

absl::StatusOr<SubsetScore> ProxyEvaluator::EvaluateSubset(Unit unit,
                                                           std::span<const int64_t> ids) const {
  const int64_t limit = unit == Unit::kPair ? data_.pairs : 2 * data_.pairs;
  std::vector<uint8_t> seen(limit, 0);
  std::vector<const float*> rows;
  std::vector<uint8_t> labels;
  SubsetScore score;
  for (int64_t id : ids) {
    if (id < 0 || id >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("subset id ", id, " outside [0, ", limit, ")"));
    }
    if (seen[id]) return absl::InvalidArgumentError(absl::StrCat("subset id ", id, " repeats"));
    seen[id] = 1;
    const int64_t pair = unit == Unit::kPair ? id : id / 2;
    if (held_out_[pair]) {
      ++score.dropped_held_out;
      continue;
    }
    if (unit == Unit::kPair || id % 2 == 0) {
      rows.push_back(data_.chosen_row(pair));
      labels.push_back(1);
    }
    if (unit == Unit::kPair || id % 2 == 1) {
      rows.push_back(data_.rejected_row(pair));
      labels.push_back(0);
    }
  }
  if (rows.empty()) {
    return absl::FailedPreconditionError("every id of the subset is held out; nothing to train on");
  }
  score.examples = static_cast<int64_t>(rows.size());
  absl::StatusOr<Accuracy> acc = Train(rows, labels);
  if (!acc.ok()) return acc.status();
  score.accuracy = *acc;
  return score;
}

absl::StatusOr<Accuracy> ProxyEvaluator::EvaluateFull() const {
  std::vector<const float*> rows;
  std::vector<uint8_t> labels;
  for (int64_t p : pool_) {
    rows.push_back(data_.chosen_row(p));
    labels.push_back(1);
    rows.push_back(data_.rejected_row(p));
    labels.push_back(0);
  }
  return Train(rows, labels);
}

absl::StatusOr<RandomBaseline> ProxyEvaluator::EvaluateRandom(Unit unit, int64_t examples) const {
  const int64_t t = static_cast<int64_t>(pool_.size());
  const int64_t n = unit == Unit::kPair ? t : 2 * t;
  const int64_t k = unit == Unit::kPair ? examples / 2 : examples;
  if (k < 1 || k > n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a random baseline of ", examples, " examples does not fit a pool of ", t, " pairs"));
  }
  RandomBaseline baseline;
  baseline.unit = unit;
  baseline.examples = unit == Unit::kPair ? 2 * k : k;
  for (int s = 0; s < options_.random_seeds; ++s) {
    const std::vector<int64_t> rows = RandomRows(n, k, static_cast<uint64_t>(s));
    absl::StatusOr<SubsetScore> score = EvaluateSubset(unit, PoolRowsToIds(unit, rows));
    if (!score.ok()) return score.status();
    baseline.accuracies.push_back(score->accuracy.accuracy);
  }
  double sum = 0;
  for (double a : baseline.accuracies) sum += a;
  baseline.mean = sum / options_.random_seeds;
  double sq = 0;
  for (double a : baseline.accuracies) sq += (a - baseline.mean) * (a - baseline.mean);
  baseline.sd = std::sqrt(sq / options_.random_seeds);
  return baseline;
}

absl::StatusOr<EvaluationReport> ProxyEvaluator::Evaluate(
    Unit unit, std::span<const int64_t> ids, const std::function<bool(double)>& progress) const {
  const double fits = 2.0 * options_.random_seeds + 2;
  EvaluationReport report;
  absl::StatusOr<SubsetScore> subset = EvaluateSubset(unit, ids);
  if (!subset.ok()) return subset.status();
  report.subset = *subset;
  if (progress && !progress(1 / fits)) return Cancelled();
  absl::StatusOr<RandomBaseline> examples = EvaluateRandom(Unit::kExample, report.subset.examples);
  if (!examples.ok()) return examples.status();
  report.random_examples = *std::move(examples);
  if (progress && !progress((1 + options_.random_seeds) / fits)) return Cancelled();
  // A single example cannot be drawn as whole pairs; the pair baseline then uses one pair.
  absl::StatusOr<RandomBaseline> pairs =
      EvaluateRandom(Unit::kPair, std::max<int64_t>(2, report.subset.examples));
  if (!pairs.ok()) return pairs.status();
  report.random_pairs = *std::move(pairs);
  if (progress && !progress((1 + 2 * options_.random_seeds) / fits)) return Cancelled();
  absl::StatusOr<Accuracy> full = EvaluateFull();
  if (!full.ok()) return full.status();
  report.full = *full;
  if (progress) progress(1.0);
  return report;
}

absl::StatusOr<BudgetRecommendation> ProxyEvaluator::RecommendBudget(
    const selection::Selector& selector, Unit unit, const RecommendOptions& options,
    const std::function<bool(double)>& progress) const {
  std::vector<double> budgets = options.budgets_percent;
  std::sort(budgets.begin(), budgets.end());
  budgets.erase(std::unique(budgets.begin(), budgets.end()), budgets.end());
  if (budgets.size() < 3 || !(budgets.front() > 0) || budgets.back() > 100) {
    return absl::InvalidArgumentError("need at least 3 distinct budgets in (0, 100] percent");
  }
  if (!(options.share > 0 && options.share < 1)) {
    return absl::InvalidArgumentError("share must be in (0, 1)");
  }
  const int64_t pool_examples = this->pool_examples();
  const auto units_for = [&](double percent) {
    const int64_t examples = static_cast<int64_t>(std::floor(percent / 100 * pool_examples));
    return std::max<int64_t>(1, unit == Unit::kPair ? examples / 2 : examples);
  };
  int64_t largest = 0;
  for (double b : budgets) {
    if (b < 100) largest = std::max(largest, units_for(b));
  }
  // Progress: the selection is counted as half the work, the fits as the other half.
  const double steps = static_cast<double>(budgets.size());
  std::vector<int64_t> ranking;
  if (largest > 0) {
    const PoolMatrix units = PoolUnits(unit, options.pair_rows);
    selection::SelectOptions select;
    select.seed = options.seed;
    if (progress) select.progress = [&progress](double d) { return progress(0.5 * d); };
    absl::StatusOr<selection::SelectionResult> selected =
        selector.Select(units.view(), std::min(largest, units.rows), select);
    if (!selected.ok()) return selected.status();
    ranking = std::move(selected->rows);
  }

  BudgetRecommendation rec;
  rec.share = options.share;
  std::vector<double> xs, ys;
  for (size_t i = 0; i < budgets.size(); ++i) {
    CurvePoint point;
    point.percent = budgets[i];
    if (budgets[i] >= 100) {
      absl::StatusOr<Accuracy> full = EvaluateFull();
      if (!full.ok()) return full.status();
      point.accuracy = *full;
      point.examples = pool_examples;
    } else {
      const int64_t k = std::min<int64_t>(units_for(budgets[i]), ranking.size());
      const std::vector<int64_t> ids =
          PoolRowsToIds(unit, std::span<const int64_t>(ranking.data(), k));
      absl::StatusOr<SubsetScore> score = EvaluateSubset(unit, ids);
      if (!score.ok()) return score.status();
      point.accuracy = score->accuracy;
      point.examples = score->examples;
    }
    xs.push_back(point.percent);
    ys.push_back(point.accuracy.accuracy);
    rec.curve.push_back(point);
    if (progress && !progress(0.5 + 0.5 * (i + 1) / steps)) return Cancelled();
  }
  // Accuracies: the plateau and the start lie in [0, 1].
  absl::StatusOr<ScalingLawFit> fit = FitScalingLaw(xs, ys, ScalingLawBounds{0, 1});
  if (!fit.ok()) return fit.status();
  rec.fit = *fit;
  rec.percent = BudgetForShare(rec.fit, options.share);
  if (rec.percent) {
    // A curve that already reaches the share below the smallest budget (it can fall with the
    // budget: a good method's small subsets beat the whole) says nothing about budgets nobody
    // measured; the smallest measured one is the honest answer.
    rec.percent = std::max(*rec.percent, budgets.front());
    rec.examples = static_cast<int64_t>(std::ceil(*rec.percent / 100 * pool_examples));
    rec.extrapolated = *rec.percent > budgets.back();
  }
  return rec;
}

}  // namespace curation::evaluation
