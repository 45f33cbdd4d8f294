// Subset evaluation: numpy's permutation, logistic regression, Wilson intervals, the scaling
// law, and the proxy evaluator.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <numbers>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "evaluation/logistic_regression.h"
#include "evaluation/numpy_random.h"
#include "evaluation/proxy.h"
#include "evaluation/scaling_law.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "selection/random_selector.h"
#include "selection/rng.h"

namespace curation::evaluation {
namespace {

using ::testing::ElementsAre;

double Normal(std::mt19937_64& rng) {
  const double u = 1 - selection::UniformDraw(rng);
  const double v = selection::UniformDraw(rng);
  return std::sqrt(-2 * std::log(u)) * std::cos(2 * std::numbers::pi * v);
}

// ------------------------------------------------------------------------- numpy split

TEST(NumpyPermutationTest, MatchesNumpy) {
  // Values printed by numpy 1.24: np.random.default_rng(seed).permutation(n).
  EXPECT_THAT(NumpyPermutation(1, 10), ElementsAre(8, 4, 7, 0, 1, 2, 5, 9, 6, 3));
  EXPECT_THAT(NumpyPermutation(0, 20),
              ElementsAre(4, 19, 6, 2, 13, 16, 3, 11, 10, 8, 0, 12, 7, 5, 18, 17, 14, 9, 1, 15));
  EXPECT_THAT(NumpyPermutation(12345, 7), ElementsAre(4, 3, 0, 2, 1, 6, 5));
  // A seed above 2^32 is two entropy words.
  EXPECT_THAT(NumpyPermutation((uint64_t{1} << 40) + 3, 12),
              ElementsAre(2, 4, 10, 9, 6, 5, 3, 7, 11, 0, 8, 1));
  const std::vector<int64_t> big = NumpyPermutation(7, 100000);
  EXPECT_THAT(std::vector<int64_t>(big.begin(), big.begin() + 5),
              ElementsAre(45070, 71435, 99538, 45453, 95412));
  EXPECT_THAT(std::vector<int64_t>(big.end() - 3, big.end()), ElementsAre(27285, 16809, 84619));
  // proxy_table.py's split of the 55,725 alpaca pairs starts with these test pairs.
  const std::vector<int64_t> alpaca = NumpyPermutation(1, 55725);
  EXPECT_THAT(std::vector<int64_t>(alpaca.begin(), alpaca.begin() + 4),
              ElementsAre(13576, 25473, 6448, 31544));
  EXPECT_TRUE(NumpyPermutation(3, 0).empty());
}

// ------------------------------------------------------------------ logistic regression

struct Dataset {
  int64_t n = 0;
  int64_t dim = 0;
  std::vector<float> x;
  std::vector<uint8_t> y;
  std::vector<const float*> rows;
};

Dataset Synthetic(int64_t n, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Dataset d{n, dim, std::vector<float>(n * dim), std::vector<uint8_t>(n), {}};
  std::vector<double> w(dim);
  for (double& v : w) v = Normal(rng);
  for (int64_t i = 0; i < n; ++i) {
    double z = 0.3;
    for (int64_t j = 0; j < dim; ++j) {
      d.x[i * dim + j] = static_cast<float>(Normal(rng) + 0.5 * (j == 0));
      z += w[j] * d.x[i * dim + j];
    }
    d.y[i] = selection::UniformDraw(rng) < 1 / (1 + std::exp(-z));
  }
  for (int64_t i = 0; i < n; ++i) d.rows.push_back(d.x.data() + i * dim);
  return d;
}

TEST(LogisticRegressionTest, GradientVanishesAtTheOptimum) {
  const Dataset d = Synthetic(800, 12, 1);
  LogisticRegressionOptions options;
  options.c = 0.3;
  absl::StatusOr<LogisticModel> m = FitLogisticRegression(d.rows, d.y, d.dim, options);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->converged);
  EXPECT_LT(m->iterations, 20) << m->iterations;
  // C X'(sigma(z) - y) + [w, 0] = 0, intercept unpenalised.
  std::vector<double> grad(d.dim + 1, 0.0);
  for (int64_t i = 0; i < d.n; ++i) {
    const double r = 1 / (1 + std::exp(-m->Score(d.rows[i]))) - d.y[i];
    for (int64_t j = 0; j < d.dim; ++j) grad[j] += options.c * r * d.rows[i][j];
    grad[d.dim] += options.c * r;
  }
  for (int64_t j = 0; j < d.dim; ++j) EXPECT_NEAR(grad[j] + m->weights[j], 0, 1e-10);
  EXPECT_NEAR(grad[d.dim], 0, 1e-10);
}

TEST(LogisticRegressionTest, MatchesScikitLearn) {
  if (std::system("/usr/bin/python3 -c 'import sklearn' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with scikit-learn is not available";
  }
  const Dataset d = Synthetic(500, 8, 2);
  const std::string dir = ::testing::TempDir();
  std::ofstream(dir + "/lr_x.f32", std::ios::binary)
      .write(reinterpret_cast<const char*>(d.x.data()), d.x.size() * sizeof(float));
  std::ofstream(dir + "/lr_y.u8", std::ios::binary)
      .write(reinterpret_cast<const char*>(d.y.data()), d.y.size());
  const std::string cmd =
      "/usr/bin/python3 -c \"import numpy as np, sys; from sklearn.linear_model import "
      "LogisticRegression as L; d = sys.argv[1]; "
      "X = np.fromfile(d + '/lr_x.f32', dtype=np.float32).reshape(-1, 8).astype(np.float64); "
      "y = np.fromfile(d + '/lr_y.u8', dtype=np.uint8); "
      "m = L(C=1.0, tol=1e-12, max_iter=100000).fit(X, y); "
      "open(d + '/lr_out.txt', 'w').write(' '.join(map(repr, list(m.coef_[0]) + "
      "[m.intercept_[0]])))\" " +
      dir;
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(dir + "/lr_out.txt");
  std::vector<double> reference;
  for (double v; in >> v;) reference.push_back(v);
  ASSERT_EQ(reference.size(), 9u);
  absl::StatusOr<LogisticModel> m = FitLogisticRegression(d.rows, d.y, d.dim);
  ASSERT_TRUE(m.ok());
  for (int j = 0; j < 8; ++j) EXPECT_NEAR(m->weights[j], reference[j], 1e-5) << j;
  EXPECT_NEAR(m->intercept, reference[8], 1e-5);
}

TEST(LogisticRegressionTest, RejectsOneLabelAndBadInput) {
  Dataset d = Synthetic(50, 3, 3);
  std::vector<uint8_t> ones(50, 1);
  EXPECT_EQ(FitLogisticRegression(d.rows, ones, 3).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<uint8_t> twos(50, 2);
  EXPECT_EQ(FitLogisticRegression(d.rows, twos, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  d.x[7] = std::nanf("");
  EXPECT_EQ(FitLogisticRegression(d.rows, d.y, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WilsonIntervalTest, KnownValues) {
  // Textbook values (e.g. Newcombe 1998, Table I): 5/10 -> 0.2366-0.7634, 0/10 -> 0-0.2775.
  Interval a = WilsonInterval(5, 10);
  EXPECT_NEAR(a.low, 0.236593, 1e-6);
  EXPECT_NEAR(a.high, 0.763407, 1e-6);
  Interval b = WilsonInterval(0, 10);
  EXPECT_NEAR(b.low, 0.0, 1e-12);
  EXPECT_NEAR(b.high, 0.277533, 1e-6);
  Interval c = WilsonInterval(80, 100);
  EXPECT_NEAR(c.low, 0.711171, 1e-6);
  EXPECT_NEAR(c.high, 0.866633, 1e-6);
  Interval none = WilsonInterval(0, 0);
  EXPECT_EQ(none.low, 0);
  EXPECT_EQ(none.high, 1);
}

// --------------------------------------------------------------------------- scaling law

TEST(ScalingLawTest, RecoversKnownParameters) {
  // The paper's HH-Golden fit.
  const double r = 83.17, a = 18.27, b = 0.3;
  std::vector<double> x = {0.5, 1, 2, 5, 10, 25, 50, 100}, y;
  for (double v : x) y.push_back(r - (r - a) * std::exp(-b * v));
  absl::StatusOr<ScalingLawFit> fit = FitScalingLaw(x, y);
  ASSERT_TRUE(fit.ok()) << fit.status();
  EXPECT_NEAR(fit->r, r, 1e-6);
  EXPECT_NEAR(fit->a, a, 1e-6);
  EXPECT_NEAR(fit->b, b, 1e-8);
  EXPECT_NEAR(fit->r_squared, 1, 1e-12);
  EXPECT_LT(fit->rmse, 1e-7);
  EXPECT_TRUE(fit->converged);

  // 95% of r at ln((r - a) / (0.05 r)) / b = 9.159...
  const std::optional<double> budget = BudgetForShare(*fit, 0.95);
  ASSERT_TRUE(budget.has_value());
  EXPECT_NEAR(*budget, std::log((r - a) / (0.05 * r)) / b, 1e-5);
  EXPECT_NEAR((*fit)(*budget), 0.95 * r, 1e-6);
}

TEST(ScalingLawTest, NoisyAccuracyCurve) {
  // A proxy-like curve: 0.55 at no data, plateau 0.82, fast rise, +-0.004 noise.
  const double r = 0.82, a = 0.55, b = 0.9;
  const std::vector<double> x = {0.5, 1, 2, 5, 10, 25, 50, 100};
  const std::vector<double> noise = {0.004, -0.003, 0.002, -0.004, 0.003, -0.002, 0.001, -0.001};
  std::vector<double> y;
  for (size_t i = 0; i < x.size(); ++i) y.push_back(r - (r - a) * std::exp(-b * x[i]) + noise[i]);
  absl::StatusOr<ScalingLawFit> fit = FitScalingLaw(x, y);
  ASSERT_TRUE(fit.ok());
  EXPECT_NEAR(fit->r, r, 0.005);
  EXPECT_NEAR(fit->a, a, 0.05);
  EXPECT_NEAR(fit->b, b, 0.3);
  EXPECT_GT(fit->r_squared, 0.95);
  EXPECT_LT(fit->rmse, 0.005);
}

// A curve that falls with the budget has no plateau in the range of accuracies; unbounded
// least squares puts one far outside it, bounds keep it an accuracy.
TEST(ScalingLawTest, BoundsKeepThePlateauOfAFallingCurveAnAccuracy) {
  const std::vector<double> x = {5, 10, 25, 50, 100};
  std::vector<double> y;
  for (double v : x) y.push_back(0.62 - 0.0008 * v);  // a straight line down
  absl::StatusOr<ScalingLawFit> free = FitScalingLaw(x, y);
  ASSERT_TRUE(free.ok());
  EXPECT_TRUE(free->r < 0 || free->r > 1) << free->r;
  absl::StatusOr<ScalingLawFit> fit = FitScalingLaw(x, y, ScalingLawBounds{0, 1});
  ASSERT_TRUE(fit.ok());
  EXPECT_GE(fit->r, 0);
  EXPECT_LE(fit->r, 1);
  EXPECT_GE(fit->a, 0);
  EXPECT_LE(fit->a, 1);
  EXPECT_TRUE(std::isfinite(fit->rmse));
  EXPECT_LT(fit->rmse, 0.05);
}

TEST(ScalingLawTest, EdgeCases) {
  EXPECT_EQ(FitScalingLaw(std::vector<double>{1, 1, 2}, std::vector<double>{0.5, 0.6, 0.7})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  ScalingLawFit flat;
  flat.r = 0.8;
  flat.a = 0.79;
  flat.b = 1;
  EXPECT_EQ(BudgetForShare(flat, 0.95), 0.0);  // a already reaches 0.76
  ScalingLawFit falling;
  falling.r = 0.6;
  falling.a = 0.4;
  falling.b = -1;
  EXPECT_FALSE(BudgetForShare(falling, 0.95).has_value());
  EXPECT_FALSE(BudgetForShare(flat, 1.5).has_value());
}

// ------------------------------------------------------------------------- the proxy

// Pairs whose chosen row is its rejected row moved along a fixed preference direction `u`
// (plus noise), so a linear reward model can learn them.
struct Pairs {
  int64_t pairs;
  int64_t dim;
  std::vector<float> stacked;      // all chosen rows, then all rejected rows
  std::vector<float> interleaved;  // chosen, rejected, chosen, ...

  PairEmbeddings Stacked() const {
    return {stacked.data(), stacked.data() + pairs * dim, pairs, dim, 0};
  }
  PairEmbeddings Interleaved() const {
    return {interleaved.data(), interleaved.data() + dim, pairs, dim, 2 * dim};
  }
};

Pairs MakePairs(int64_t pairs, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Pairs p{pairs, dim, std::vector<float>(2 * pairs * dim), std::vector<float>(2 * pairs * dim)};
  for (int64_t i = 0; i < pairs; ++i) {
    for (int64_t j = 0; j < dim; ++j) {
      const double base = Normal(rng);
      const double shift = j < 2 ? 0.4 : 0.0;
      const float c = static_cast<float>(base + shift + 0.5 * Normal(rng));
      const float r = static_cast<float>(base - shift + 0.5 * Normal(rng));
      p.stacked[i * dim + j] = c;
      p.stacked[(pairs + i) * dim + j] = r;
      p.interleaved[2 * i * dim + j] = c;
      p.interleaved[(2 * i + 1) * dim + j] = r;
    }
  }
  return p;
}

TEST(ProxyEvaluatorTest, SplitIsNumpysAndHeldOutPairsAreNeverTrainedOn) {
  const Pairs data = MakePairs(500, 6, 1);
  absl::StatusOr<ProxyEvaluator> ev = ProxyEvaluator::Create(data.Stacked());
  ASSERT_TRUE(ev.ok()) << ev.status();
  // test = min(5000, 20% of 500) = 100, the pool is the rest.
  const std::vector<int64_t> perm = NumpyPermutation(1, 500);
  EXPECT_EQ(std::vector<int64_t>(ev->test_pairs().begin(), ev->test_pairs().end()),
            std::vector<int64_t>(perm.begin(), perm.begin() + 100));
  EXPECT_EQ(std::vector<int64_t>(ev->pool_pairs().begin(), ev->pool_pairs().end()),
            std::vector<int64_t>(perm.begin() + 100, perm.end()));
  EXPECT_EQ(ev->pool_examples(), 800);

  const int64_t held = ev->test_pairs()[0];
  const std::vector<int64_t> pool(ev->pool_pairs().begin(), ev->pool_pairs().begin() + 50);
  std::vector<int64_t> ids = pool;
  ids.push_back(held);
  absl::StatusOr<SubsetScore> with = ev->EvaluateSubset(Unit::kPair, ids);
  absl::StatusOr<SubsetScore> without = ev->EvaluateSubset(Unit::kPair, pool);
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_EQ(with->dropped_held_out, 1);
  EXPECT_EQ(with->examples, 100);
  EXPECT_EQ(with->accuracy.correct, without->accuracy.correct);
  EXPECT_EQ(with->accuracy.pairs, 100);
  EXPECT_GT(with->accuracy.accuracy, 0.75);
  EXPECT_LE(with->accuracy.interval.low, with->accuracy.accuracy);
  EXPECT_GE(with->accuracy.interval.high, with->accuracy.accuracy);

  EXPECT_EQ(ev->EvaluateSubset(Unit::kPair, std::vector<int64_t>{pool[0], pool[0]}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ev->EvaluateSubset(Unit::kPair, std::vector<int64_t>{500}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ev->EvaluateSubset(Unit::kPair, std::vector<int64_t>{held}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ProxyEvaluatorTest, ExampleUnitsAndLayouts) {
  const Pairs data = MakePairs(400, 5, 2);
  ProxyOptions options;
  options.test_pairs = 60;
  options.train_pairs = 200;
  absl::StatusOr<ProxyEvaluator> a = ProxyEvaluator::Create(data.Stacked(), options);
  absl::StatusOr<ProxyEvaluator> b = ProxyEvaluator::Create(data.Interleaved(), options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->test_pairs().size(), 60u);
  EXPECT_EQ(a->pool_pairs().size(), 200u);

  // Pool rows -> ids: pair rows are pool pairs; example rows are chosen rows then rejected.
  const int64_t p0 = a->pool_pairs()[0];
  EXPECT_THAT(a->PoolRowsToIds(Unit::kPair, std::vector<int64_t>{0}), ElementsAre(p0));
  EXPECT_THAT(a->PoolRowsToIds(Unit::kExample, std::vector<int64_t>{0, 200}),
              ElementsAre(2 * p0, 2 * p0 + 1));
  const PoolMatrix means = a->PoolUnits(Unit::kPair);
  const PoolMatrix concat = a->PoolUnits(Unit::kPair, PairRows::kConcat);
  const PoolMatrix examples = a->PoolUnits(Unit::kExample);
  ASSERT_EQ(means.rows, 200);
  ASSERT_EQ(means.dim, 5);
  ASSERT_EQ(concat.dim, 10);
  ASSERT_EQ(examples.rows, 400);
  EXPECT_FLOAT_EQ(means.data[0], 0.5f * (data.stacked[p0 * 5] + data.stacked[(400 + p0) * 5]));
  EXPECT_EQ(concat.data[0], data.stacked[p0 * 5]);
  EXPECT_EQ(concat.data[5], data.stacked[(400 + p0) * 5]);
  EXPECT_EQ(examples.data[200 * 5], data.stacked[(400 + p0) * 5]);

  // Both layouts give the same numbers.
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 40; ++i) ids.push_back(2 * a->pool_pairs()[i] + (i % 3 == 0));
  absl::StatusOr<EvaluationReport> ra = a->Evaluate(Unit::kExample, ids);
  absl::StatusOr<EvaluationReport> rb = b->Evaluate(Unit::kExample, ids);
  ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status();
  EXPECT_EQ(ra->subset.accuracy.correct, rb->subset.accuracy.correct);
  EXPECT_EQ(ra->random_pairs.accuracies, rb->random_pairs.accuracies);
  EXPECT_EQ(ra->full.correct, rb->full.correct);
  EXPECT_EQ(ra->subset.examples, 40);
  EXPECT_EQ(ra->random_examples.examples, 40);
  EXPECT_EQ(ra->random_pairs.examples, 40);
  EXPECT_EQ(ra->random_examples.accuracies.size(), 5u);

  // Only chosen completions: one label, scored as chance like proxy_table.py.
  std::vector<int64_t> chosen_only;
  for (int64_t i = 0; i < 20; ++i) chosen_only.push_back(2 * a->pool_pairs()[i]);
  absl::StatusOr<SubsetScore> one = a->EvaluateSubset(Unit::kExample, chosen_only);
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->accuracy.single_label);
  EXPECT_EQ(one->accuracy.accuracy, 0.5);
}

TEST(ProxyEvaluatorTest, RandomBaselineIsSeededAndMatchesTheRandomSelector) {
  const Pairs data = MakePairs(300, 4, 3);
  absl::StatusOr<ProxyEvaluator> ev = ProxyEvaluator::Create(data.Stacked());
  ASSERT_TRUE(ev.ok());
  absl::StatusOr<RandomBaseline> x = ev->EvaluateRandom(Unit::kPair, 41);
  absl::StatusOr<RandomBaseline> y = ev->EvaluateRandom(Unit::kPair, 41);
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(x->examples, 40);
  EXPECT_EQ(x->accuracies, y->accuracies);
  double mean = 0;
  for (double v : x->accuracies) mean += v / 5;
  EXPECT_NEAR(x->mean, mean, 1e-12);
  // Seed 2's draw is what the "random" selector picks on the pool's pair rows.
  const PoolMatrix units = ev->PoolUnits(Unit::kPair);
  ASSERT_EQ(units.rows, 240);
  selection::SelectOptions seed2;
  seed2.seed = 2;
  absl::StatusOr<selection::SelectionResult> rows =
      selection::MakeRandomSelector()->Select(units.view(), 20, seed2);
  ASSERT_TRUE(rows.ok());
  absl::StatusOr<SubsetScore> s =
      ev->EvaluateSubset(Unit::kPair, ev->PoolRowsToIds(Unit::kPair, rows->rows));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->accuracy.accuracy, x->accuracies[2]);
  EXPECT_EQ(ev->EvaluateRandom(Unit::kPair, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProxyEvaluatorTest, RecommendBudgetFitsTheCurve) {
  // 48 dimensions, 2 informative: a handful of pairs overfits, the whole pool does not.
  const Pairs data = MakePairs(1500, 48, 4);
  absl::StatusOr<ProxyEvaluator> ev = ProxyEvaluator::Create(data.Stacked());
  ASSERT_TRUE(ev.ok());
  std::unique_ptr<selection::Selector> random = selection::MakeRandomSelector();
  absl::StatusOr<BudgetRecommendation> rec = ev->RecommendBudget(*random, Unit::kPair);
  ASSERT_TRUE(rec.ok()) << rec.status();
  ASSERT_EQ(rec->curve.size(), 8u);
  EXPECT_EQ(rec->curve.back().percent, 100);
  EXPECT_EQ(rec->curve.back().examples, 2400);
  EXPECT_EQ(rec->curve[3].examples, 2 * (120 / 2));  // 5% of 2400 examples = 60 pairs
  absl::StatusOr<Accuracy> full = ev->EvaluateFull();
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(rec->curve.back().accuracy.correct, full->correct);
  EXPECT_GT(rec->fit.r, 0.6);
  EXPECT_LT(rec->fit.r, 1.0);
  ASSERT_TRUE(rec->percent.has_value());
  EXPECT_GT(*rec->percent, 0);
  EXPECT_LT(*rec->percent, 100);
  EXPECT_GE(*rec->percent, 0.5);  // never below the smallest budget measured
  EXPECT_EQ(rec->extrapolated, *rec->percent > 100);
  EXPECT_GE(rec->fit(*rec->percent), 0.95 * rec->fit.r - 1e-9);
  EXPECT_LT(rec->curve.front().accuracy.accuracy, rec->curve.back().accuracy.accuracy);

  RecommendOptions two;
  two.budgets_percent = {1, 100};
  EXPECT_EQ(ev->RecommendBudget(*random, Unit::kPair, two).status().code(),
            absl::StatusCode::kInvalidArgument);
  bool asked = false;
  EXPECT_EQ(ev->RecommendBudget(*random, Unit::kPair, {},
                                [&](double) {
                                  asked = true;
                                  return false;
                                })
                .status()
                .code(),
            absl::StatusCode::kCancelled);
  EXPECT_TRUE(asked);
}

}  // namespace
}  // namespace curation::evaluation
