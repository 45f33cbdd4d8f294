#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <numbers>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "selection/factory.h"
#include "selection/gaussian_mixture.h"
#include "selection/isa.h"
#include "selection/mixture_internal.h"
#include "selection/pca.h"
#include "selection/random_selector.h"
#include "selection/rng.h"
#include "selection/selector.h"

namespace curation::selection {
namespace {

using ::testing::ElementsAre;

// A row-major float matrix that owns its data.
struct Matrix {
  int64_t rows = 0;
  int64_t dim = 0;
  std::vector<float> data;

  Matrix(int64_t r, int64_t d) : rows(r), dim(d), data(r * d) {}
  float& at(int64_t i, int64_t j) { return data[i * dim + j]; }
  MatrixView view() const { return MatrixView{data.data(), rows, dim}; }
};

SelectOptions Seeded(uint64_t seed) {
  SelectOptions options;
  options.seed = seed;
  return options;
}

double Normal(std::mt19937_64& rng) {
  // Box-Muller on our portable uniform draw; 1 - u keeps log away from 0.
  const double u = 1 - UniformDraw(rng);
  const double v = UniformDraw(rng);
  return std::sqrt(-2 * std::log(u)) * std::cos(2 * std::numbers::pi * v);
}

// n_a rows around -5 (sd 1) then n_b rows around +5 (sd 0.5), in `dim` dimensions.
Matrix TwoClusters(int64_t n_a, int64_t n_b, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Matrix m(n_a + n_b, dim);
  for (int64_t i = 0; i < m.rows; ++i) {
    for (int64_t j = 0; j < dim; ++j) {
      m.at(i, j) = static_cast<float>(i < n_a ? -5 + Normal(rng) : 5 + 0.5 * Normal(rng));
    }
  }
  return m;
}

// --- ISA scoring by hand --------------------------------------------------------------------

TEST(IsaDeltasTest, MatchesHandComputation) {
  // l = {-3, -1, -2, -1}: min l = -3, max l = -1, range 2.
  // l' = (l + 3) / 2              = {0, 1, 0.5, 1}
  // p = exp(l')                   = {1, e, e^0.5, e}
  // Delta = -p log p = -p l'      = {0, -e, -0.5 e^0.5, -e}
  //                               = {0, -2.718281828459045, -0.8243606353500641,
  //                               -2.718281828459045}
  // H = sum -p log p = -(2e + 0.5 e^0.5); for every x', H - H'(x') is that row's own term.
  const std::vector<double> ll = {-3, -1, -2, -1};
  const std::vector<double> delta = IsaDeltas(ll);
  ASSERT_EQ(delta.size(), 4u);
  EXPECT_NEAR(delta[0], 0.0, 1e-12);
  EXPECT_NEAR(delta[1], -2.718281828459045, 1e-12);
  EXPECT_NEAR(delta[2], -0.8243606353500641, 1e-12);
  EXPECT_NEAR(delta[3], -2.718281828459045, 1e-12);

  // Largest Delta first: row 0 (0), row 2 (-0.82), then rows 1 and 3 tie at -e and the smaller
  // row number goes first.
  EXPECT_THAT(TopK(delta, 4), ElementsAre(0, 2, 1, 3));
  EXPECT_THAT(TopK(delta, 3), ElementsAre(0, 2, 1));
  EXPECT_THAT(TopK(delta, 1), ElementsAre(0));
}

TEST(IsaDeltasTest, DeltaFallsWithLikelihood) {
  // As written ISA prefers the least likely rows: Delta is decreasing in l.
  const std::vector<double> ll = {-10, -7.5, -5, -2.5, 0, 2.5};
  const std::vector<double> delta = IsaDeltas(ll);
  for (size_t i = 1; i < delta.size(); ++i) EXPECT_LT(delta[i], delta[i - 1]);
  EXPECT_NEAR(delta.back(), -std::numbers::e, 1e-12);
}

TEST(IsaDeltasTest, AllEqualLikelihoodsGiveZeroAndRowOrder) {
  const std::vector<double> ll = {-5, -5, -5, -5, -5};
  const std::vector<double> delta = IsaDeltas(ll);
  for (double d : delta) EXPECT_EQ(d, 0.0);
  EXPECT_THAT(TopK(delta, 3), ElementsAre(0, 1, 2));
}

TEST(IsaSelectorTest, IdenticalRowsFallBackToRowOrder) {
  Matrix m(10, 3);
  std::fill(m.data.begin(), m.data.end(), 0.25f);
  absl::StatusOr<SelectionResult> r = MakeIsaSelector()->Select(m.view(), 3, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->rows, ElementsAre(0, 1, 2));
  EXPECT_THAT(r->scores, ElementsAre(0.0, 0.0, 0.0));
  ASSERT_TRUE(r->fit.has_value());
  EXPECT_TRUE(std::isfinite(r->fit->mean_log_likelihood));
}

TEST(IsaSelectorTest, KeepsOutliersFirstAndReportsFit) {
  Matrix m = TwoClusters(300, 200, 4, 7);
  // Three far points at rows 50, 350 and 499.
  for (int64_t row : {50, 350, 499}) {
    for (int64_t j = 0; j < m.dim; ++j) m.at(row, j) = 40.0f + row % 7;
  }
  absl::StatusOr<SelectionResult> r = MakeIsaSelector()->Select(m.view(), 20, Seeded(3));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows.size(), 20u);
  ASSERT_EQ(r->scores.size(), 20u);
  EXPECT_EQ(std::set<int64_t>(r->rows.begin(), r->rows.begin() + 3),
            (std::set<int64_t>{50, 350, 499}));
  EXPECT_TRUE(std::is_sorted(r->scores.begin(), r->scores.end(), std::greater<>()));
  EXPECT_EQ(std::set<int64_t>(r->rows.begin(), r->rows.end()).size(), 20u);

  ASSERT_TRUE(r->fit.has_value());
  EXPECT_GT(r->fit->iterations, 0);
  EXPECT_TRUE(r->fit->converged);
  ASSERT_EQ(r->fit->weights.size(), 2u);
  EXPECT_NEAR(r->fit->weights[0] + r->fit->weights[1], 1.0, 1e-12);

  // The scores are exactly Delta of the fitted mixture's log-likelihoods.
  absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(m.view(), {.seed = 3});
  ASSERT_TRUE(g.ok()) << g.status();
  std::vector<double> ll(m.rows);
  g->ScoreSamples(m.view(), ll.data());
  const std::vector<double> delta = IsaDeltas(ll);
  for (size_t i = 0; i < r->rows.size(); ++i) EXPECT_EQ(r->scores[i], delta[r->rows[i]]);
  double mean = 0;
  for (double l : ll) mean += l / m.rows;
  EXPECT_NEAR(r->fit->mean_log_likelihood, mean, 1e-9);
}

TEST(IsaSelectorTest, SameSeedSameResult) {
  const Matrix m = TwoClusters(700, 300, 8, 11);
  auto isa = MakeIsaSelector();
  absl::StatusOr<SelectionResult> a = isa->Select(m.view(), 100, Seeded(5));
  absl::StatusOr<SelectionResult> b = isa->Select(m.view(), 100, Seeded(5));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->rows, b->rows);
  EXPECT_EQ(a->scores, b->scores);
}

// --- Gaussian mixture ----------------------------------------------------------------------

// Sorts fitted components by their first mean coordinate so tests can name them.
std::vector<int> ByFirstMean(const GaussianMixture& g) {
  std::vector<int> order(g.components());
  for (int c = 0; c < g.components(); ++c) order[c] = c;
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return g.means()[a * g.dim()] < g.means()[b * g.dim()]; });
  return order;
}

TEST(GaussianMixtureTest, RecoversTwoSeparatedClusters) {
  const Matrix m = TwoClusters(600, 400, 4, 1);
  absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(m.view(), {});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->converged());
  EXPECT_LE(g->iterations(), 10);
  const std::vector<int> order = ByFirstMean(*g);
  const int a = order[0], b = order[1];
  // The clusters are 20 sd apart, so responsibilities are 0/1 and the weights are the counts.
  EXPECT_NEAR(g->weights()[a], 0.6, 1e-9);
  EXPECT_NEAR(g->weights()[b], 0.4, 1e-9);
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_NEAR(g->means()[a * 4 + j], -5, 0.15);
    EXPECT_NEAR(g->means()[b * 4 + j], 5, 0.1);
    EXPECT_NEAR(g->variances()[a * 4 + j], 1.0, 0.15);
    EXPECT_NEAR(g->variances()[b * 4 + j], 0.25, 0.04);
  }
}

TEST(GaussianMixtureTest, SphericalSharesOneVariancePerComponent) {
  const Matrix m = TwoClusters(600, 400, 4, 1);
  absl::StatusOr<GaussianMixture> g =
      GaussianMixture::Fit(m.view(), {.covariance = Covariance::kSpherical});
  ASSERT_TRUE(g.ok()) << g.status();
  for (int c = 0; c < 2; ++c) {
    for (int64_t j = 1; j < 4; ++j) EXPECT_EQ(g->variances()[c * 4 + j], g->variances()[c * 4]);
  }
  const std::vector<int> order = ByFirstMean(*g);
  EXPECT_NEAR(g->variances()[order[0] * 4], 1.0, 0.1);
  EXPECT_NEAR(g->variances()[order[1] * 4], 0.25, 0.03);
}

TEST(GaussianMixtureTest, ScoreSamplesMatchesDirectDensity) {
  const std::vector<double> w = {0.3, 0.7};
  const std::vector<double> mu = {0.0, 1.0, -2.0, 3.0, -1.0, 0.5};
  const std::vector<double> var = {1.0, 0.5, 2.0, 0.25, 1.5, 3.0};
  absl::StatusOr<GaussianMixture> g =
      GaussianMixture::FromParameters(w, mu, var, Covariance::kDiag);
  ASSERT_TRUE(g.ok()) << g.status();
  Matrix m(4, 3);
  const float pts[4][3] = {{0, 0, 0}, {1, 1, -2}, {3, -1, 0.5f}, {1.5f, 0, -1}};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 3; ++j) m.at(i, j) = pts[i][j];
  }
  std::vector<double> out(4);
  g->ScoreSamples(m.view(), out.data());
  for (int i = 0; i < 4; ++i) {
    // log(sum_k w_k prod_d N(x_d | mu_kd, var_kd)), without any log-sum-exp.
    double p = 0;
    for (int c = 0; c < 2; ++c) {
      double density = w[c];
      for (int j = 0; j < 3; ++j) {
        const double v = var[c * 3 + j];
        const double t = pts[i][j] - mu[c * 3 + j];
        density *= std::exp(-t * t / (2 * v)) / std::sqrt(2 * std::numbers::pi * v);
      }
      p += density;
    }
    EXPECT_NEAR(out[i], std::log(p), 1e-12 * std::abs(std::log(p))) << "row " << i;
  }
}

TEST(GaussianMixtureTest, FarPointsHaveFiniteLogLikelihood) {
  absl::StatusOr<GaussianMixture> g =
      GaussianMixture::FromParameters({0.5, 0.5}, {0, 0, 10, 10}, {1, 1, 1, 1}, Covariance::kDiag);
  ASSERT_TRUE(g.ok()) << g.status();
  Matrix m(1, 2);
  m.at(0, 0) = 1e4f;
  m.at(0, 1) = -1e4f;
  double out = 0;
  g->ScoreSamples(m.view(), &out);
  ASSERT_TRUE(std::isfinite(out));
  // Both densities underflow in linear space (exp(-1e8)); in log space
  // l_k = log 0.5 - log(2 pi) - |x - mu_k|^2 / 2 and log p = logsumexp(l_0, l_1).
  const double l0 = std::log(0.5) - std::log(2 * std::numbers::pi) - (1e8 + 1e8) / 2;
  const double l1 = std::log(0.5) - std::log(2 * std::numbers::pi) -
                    (std::pow(1e4 - 10, 2) + std::pow(1e4 + 10, 2)) / 2;
  const double expected = std::max(l0, l1) + std::log1p(std::exp(-std::abs(l0 - l1)));
  EXPECT_NEAR(out, expected, 1e-9 * std::abs(expected));
}

TEST(GaussianMixtureTest, SameSeedGivesIdenticalFitWhateverTheThreads) {
  const Matrix m = TwoClusters(3000, 2000, 16, 2);
  absl::StatusOr<GaussianMixture> a = GaussianMixture::Fit(m.view(), {.seed = 9, .threads = 1});
  absl::StatusOr<GaussianMixture> b = GaussianMixture::Fit(m.view(), {.seed = 9, .threads = 3});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->weights(), b->weights());
  EXPECT_EQ(a->means(), b->means());
  EXPECT_EQ(a->variances(), b->variances());
  EXPECT_EQ(a->iterations(), b->iterations());
  EXPECT_EQ(a->lower_bound(), b->lower_bound());
}

TEST(GaussianMixtureTest, ConstantDimensionGetsRegCovar) {
  Matrix m = TwoClusters(60, 40, 3, 4);
  for (int64_t i = 0; i < m.rows; ++i) m.at(i, 2) = 7.0f;
  absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(m.view(), {.reg_covar = 1e-6});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_NEAR(g->variances()[2], 1e-6, 1e-12);
  EXPECT_NEAR(g->variances()[5], 1e-6, 1e-12);
  std::vector<double> ll(m.rows);
  g->ScoreSamples(m.view(), ll.data());
  for (double l : ll) EXPECT_TRUE(std::isfinite(l));

  EXPECT_EQ(GaussianMixture::Fit(m.view(), {.reg_covar = 0}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(GaussianMixtureTest, IdenticalRowsDoNotCrash) {
  Matrix m(5, 4);
  std::fill(m.data.begin(), m.data.end(), -3.0f);
  absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(m.view(), {});
  ASSERT_TRUE(g.ok()) << g.status();
  std::vector<double> ll(5);
  g->ScoreSamples(m.view(), ll.data());
  for (double l : ll) EXPECT_TRUE(std::isfinite(l));
}

TEST(GaussianMixtureTest, RejectsBadInput) {
  Matrix m = TwoClusters(3, 0, 2, 1);
  EXPECT_EQ(GaussianMixture::Fit(m.view(), {.components = 4}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GaussianMixture::Fit(m.view(), {.init_sample_rows = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      GaussianMixture::Fit(m.view(), {.components = 2, .init_sample_rows = 1}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GaussianMixture::Fit(m.view(), {.reg_covar = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GaussianMixture::Fit(MatrixView{}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  m.at(1, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(GaussianMixture::Fit(m.view(), {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GaussianMixture::FromParameters({0.5, 0.6}, {0, 0}, {1, 1}, Covariance::kDiag)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GaussianMixture::FromParameters({0.5, 0.5}, {0, 0}, {1, 0}, Covariance::kDiag)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GaussianMixtureTest, ProgressReportsAndCancels) {
  const Matrix m = TwoClusters(600, 400, 4, 1);
  std::vector<double> seen;
  absl::StatusOr<GaussianMixture> g =
      GaussianMixture::Fit(m.view(), {.max_iter = 50}, [&](double done) {
        seen.push_back(done);
        return true;
      });
  ASSERT_TRUE(g.ok());
  // Zeros while k-means initialises, then one rising share per EM iteration (polls between
  // chunks of rows may repeat a share).
  const auto first_em = std::find_if(seen.begin(), seen.end(), [](double d) { return d > 0; });
  EXPECT_GT(first_em - seen.begin(), 0);
  ASSERT_EQ(std::set<double>(first_em, seen.end()).size(), static_cast<size_t>(g->iterations()));
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_DOUBLE_EQ(seen.back(), g->iterations() / 50.0);

  int calls = 0;
  EXPECT_EQ(GaussianMixture::Fit(m.view(), {}, [&](double) { return ++calls < 1; }).status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);

  absl::StatusOr<SelectionResult> r =
      MakeIsaSelector()->Select(m.view(), 10, {.progress = [](double) { return false; }});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
}

// --- full covariance, initialisation, warm start ------------------------------------------

// n_a rows around -3 with covariance A A^T and n_b rows around +3 with covariance B B^T, in 4
// dimensions; A and B are lower triangular with strong off-diagonal terms.
Matrix CorrelatedClusters(int64_t n_a, int64_t n_b, uint64_t seed) {
  static constexpr double kA[4][4] = {
      {1, 0, 0, 0}, {0.9, 0.4, 0, 0}, {0, 0.5, 1, 0}, {0, 0, -0.7, 0.5}};
  static constexpr double kB[4][4] = {
      {0.5, 0, 0, 0}, {-0.4, 0.3, 0, 0}, {0.2, 0, 0.6, 0}, {0, 0.3, 0, 0.4}};
  std::mt19937_64 rng(seed);
  Matrix m(n_a + n_b, 4);
  for (int64_t i = 0; i < m.rows; ++i) {
    const bool a = i < n_a;
    double z[4];
    for (double& v : z) v = Normal(rng);
    for (int r = 0; r < 4; ++r) {
      double v = a ? -3 : 3;
      for (int c = 0; c <= r; ++c) v += (a ? kA : kB)[r][c] * z[c];
      m.at(i, r) = static_cast<float>(v);
    }
  }
  return m;
}

TEST(FullCovarianceTest, ScoreSamplesMatchesDirectDensity) {
  // Two 3x3 covariances, inverted and their determinants taken by cofactors, independently
  // of the Cholesky code under test.
  const std::vector<double> w = {0.35, 0.65};
  const std::vector<double> mu = {0.0, 1.0, -2.0, 3.0, -1.0, 0.5};
  const std::vector<double> cov = {2.0, 0.6,  -0.3, 0.6,  1.0, 0.2, -0.3, 0.2, 0.5,
                                   1.0, -0.4, 0.1,  -0.4, 0.8, 0.3, 0.1,  0.3, 1.5};
  absl::StatusOr<GaussianMixture> g =
      GaussianMixture::FromParameters(w, mu, cov, Covariance::kFull);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->covariances(), cov);
  EXPECT_THAT(g->variances(), ElementsAre(2.0, 1.0, 0.5, 1.0, 0.8, 1.5));
  Matrix m(5, 3);
  const float pts[5][3] = {{0, 0, 0}, {1, 1, -2}, {3, -1, 0.5f}, {1.5f, 0, -1}, {40, -30, 20}};
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 3; ++j) m.at(i, j) = pts[i][j];
  }
  std::vector<double> out(5);
  g->ScoreSamples(m.view(), out.data());
  for (int i = 0; i < 5; ++i) {
    double terms[2];
    for (int c = 0; c < 2; ++c) {
      const double* s = &cov[c * 9];
      const double a = s[0], b = s[1], e = s[2], d = s[4], f = s[5], h = s[8];
      const double inv[9] = {d * h - f * f, e * f - b * h, b * f - e * d,
                             e * f - b * h, a * h - e * e, b * e - a * f,
                             b * f - e * d, b * e - a * f, a * d - b * b};
      const double det = a * inv[0] + b * inv[1] + e * inv[2];
      double q = 0;
      for (int r = 0; r < 3; ++r) {
        for (int k = 0; k < 3; ++k) {
          q += (pts[i][r] - mu[c * 3 + r]) * inv[r * 3 + k] / det * (pts[i][k] - mu[c * 3 + k]);
        }
      }
      terms[c] = std::log(w[c]) - 0.5 * (3 * std::log(2 * std::numbers::pi) + std::log(det) + q);
    }
    const double top = std::max(terms[0], terms[1]);
    const double expected = top + std::log(std::exp(terms[0] - top) + std::exp(terms[1] - top));
    EXPECT_NEAR(out[i], expected, 1e-11 * std::abs(expected)) << "row " << i;
  }
}

TEST(FullCovarianceTest, RecoversCorrelatedClusters) {
  const Matrix m = CorrelatedClusters(1200, 800, 3);
  absl::StatusOr<GaussianMixture> g =
      GaussianMixture::Fit(m.view(), {.covariance = Covariance::kFull});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->converged());
  const std::vector<int> order = ByFirstMean(*g);
  EXPECT_NEAR(g->weights()[order[0]], 0.6, 1e-9);
  // Covariance of cluster A is A A^T; entry (1, 0) is 0.9, (3, 2) is -0.7.
  const std::vector<double>& cov = g->covariances();
  const double* a = &cov[order[0] * 16];
  EXPECT_NEAR(a[0], 1.0, 0.1);
  EXPECT_NEAR(a[1 * 4 + 0], 0.9, 0.1);
  EXPECT_NEAR(a[0 * 4 + 1], 0.9, 0.1);
  EXPECT_NEAR(a[3 * 4 + 2], -0.7, 0.1);
  const double* b = &cov[order[1] * 16];
  EXPECT_NEAR(b[1 * 4 + 0], -0.2, 0.05);  // B B^T: -0.4 * 0.5
  // A full model of correlated data beats a diagonal one by a wide margin.
  absl::StatusOr<GaussianMixture> diag = GaussianMixture::Fit(m.view(), {});
  ASSERT_TRUE(diag.ok());
  EXPECT_GT(g->lower_bound(), diag->lower_bound() + 0.3);
}

TEST(FullCovarianceTest, SameSeedGivesIdenticalFitWhateverTheThreads) {
  const Matrix m = CorrelatedClusters(3000, 2000, 5);
  const MixtureOptions base{.covariance = Covariance::kFull, .seed = 4};
  MixtureOptions one = base, three = base;
  one.threads = 1;
  three.threads = 3;
  absl::StatusOr<GaussianMixture> a = GaussianMixture::Fit(m.view(), one);
  absl::StatusOr<GaussianMixture> b = GaussianMixture::Fit(m.view(), three);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->weights(), b->weights());
  EXPECT_EQ(a->means(), b->means());
  EXPECT_EQ(a->covariances(), b->covariances());
  EXPECT_EQ(a->iterations(), b->iterations());
  EXPECT_EQ(a->lower_bound(), b->lower_bound());
}

TEST(FullCovarianceTest, BlasAndKernelsAgree) {
  // Where the CPU has AVX-512 the products run on our kernels, elsewhere on BLAS; both must
  // give the same fit up to float32 rounding, and the same scores up to float64 rounding.
  const Matrix m = CorrelatedClusters(2500, 1500, 13);
  std::vector<std::vector<double>> scores;
  std::vector<GaussianMixture> fits;
  for (bool blas : {false, true}) {
    internal::ForceBlasForTesting(blas);
    absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(
        m.view(), {.covariance = Covariance::kFull, .init_sample_rows = 1000, .seed = 3});
    internal::ForceBlasForTesting(false);
    ASSERT_TRUE(g.ok()) << g.status();
    std::vector<double> ll(m.rows);
    internal::ForceBlasForTesting(blas);
    g->ScoreSamples(m.view(), ll.data());
    internal::ForceBlasForTesting(false);
    scores.push_back(std::move(ll));
    fits.push_back(*std::move(g));
  }
  EXPECT_EQ(fits[0].iterations(), fits[1].iterations());
  EXPECT_NEAR(fits[0].lower_bound(), fits[1].lower_bound(), 1e-6 * std::abs(fits[1].lower_bound()));
  for (size_t j = 0; j < fits[0].covariances().size(); ++j) {
    EXPECT_NEAR(fits[0].covariances()[j], fits[1].covariances()[j], 1e-5);
  }
  // The same parameters scored both ways.
  std::vector<double> blas_scores(m.rows), kernel_scores(m.rows);
  internal::ForceBlasForTesting(true);
  fits[0].ScoreSamples(m.view(), blas_scores.data());
  internal::ForceBlasForTesting(false);
  fits[0].ScoreSamples(m.view(), kernel_scores.data());
  for (int64_t i = 0; i < m.rows; ++i) {
    EXPECT_NEAR(blas_scores[i], kernel_scores[i], 1e-12 * std::abs(blas_scores[i])) << i;
  }
}

TEST(FullCovarianceTest, RejectsBadParametersAndSingularFits) {
  // Not symmetric; not positive definite; wrong size.
  EXPECT_EQ(GaussianMixture::FromParameters({1}, {0, 0}, {1, 0.5, 0.2, 1}, Covariance::kFull)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      GaussianMixture::FromParameters({1}, {0, 0}, {1, 2, 2, 1}, Covariance::kFull).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      GaussianMixture::FromParameters({1}, {0, 0}, {1, 0, 0}, Covariance::kFull).status().code(),
      absl::StatusCode::kInvalidArgument);
  // A dimension that is a copy of another makes every covariance singular without reg_covar.
  Matrix m = CorrelatedClusters(100, 100, 1);
  for (int64_t i = 0; i < m.rows; ++i) m.at(i, 3) = m.at(i, 2);
  EXPECT_EQ(GaussianMixture::Fit(m.view(), {.covariance = Covariance::kFull, .reg_covar = 0})
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<GaussianMixture> g =
      GaussianMixture::Fit(m.view(), {.covariance = Covariance::kFull, .reg_covar = 1e-6});
  ASSERT_TRUE(g.ok()) << g.status();
}

TEST(MixtureInitTest, KMeansPlusPlusSeedsAloneRecoverSeparatedClusters) {
  const Matrix m = TwoClusters(600, 400, 4, 1);
  for (Covariance cov : {Covariance::kDiag, Covariance::kFull}) {
    absl::StatusOr<GaussianMixture> g =
        GaussianMixture::Fit(m.view(), {.covariance = cov, .init = MixtureInit::kKMeansPlusPlus});
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_TRUE(g->converged());
    EXPECT_EQ(g->init_iterations(), 0);  // no Lloyd rounds
    const std::vector<int> order = ByFirstMean(*g);
    EXPECT_NEAR(g->weights()[order[0]], 0.6, 1e-9);
    EXPECT_NEAR(g->means()[order[1] * 4], 5, 0.1);
  }
}

TEST(MixtureInitTest, MoreInitialisationsNeverLowerTheBound) {
  // Overlapping clusters, where initialisations end in different optima.
  std::mt19937_64 rng(8);
  Matrix m(3000, 6);
  for (int64_t i = 0; i < m.rows; ++i) {
    for (int64_t j = 0; j < m.dim; ++j) m.at(i, j) = static_cast<float>(Normal(rng) * (1 + j % 3));
  }
  for (Covariance cov : {Covariance::kDiag, Covariance::kFull}) {
    absl::StatusOr<GaussianMixture> one =
        GaussianMixture::Fit(m.view(), {.components = 3, .covariance = cov, .seed = 2});
    absl::StatusOr<GaussianMixture> four = GaussianMixture::Fit(
        m.view(), {.components = 3, .covariance = cov, .n_init = 4, .seed = 2});
    ASSERT_TRUE(one.ok() && four.ok());
    // The first of the four initialisations is the single one's, so the best of four is at
    // least as good.
    EXPECT_GE(four->lower_bound(), one->lower_bound());
  }
}

TEST(WarmStartTest, LargeMatricesInitialiseOnASample) {
  const Matrix m = TwoClusters(3000, 2000, 8, 6);
  for (Covariance cov : {Covariance::kDiag, Covariance::kSpherical, Covariance::kFull}) {
    absl::StatusOr<GaussianMixture> warm =
        GaussianMixture::Fit(m.view(), {.covariance = cov, .init_sample_rows = 1000});
    absl::StatusOr<GaussianMixture> cold =
        GaussianMixture::Fit(m.view(), {.covariance = cov, .init_sample_rows = 0});
    ASSERT_TRUE(warm.ok() && cold.ok()) << warm.status() << cold.status();
    EXPECT_TRUE(warm->converged());
    // Separated clusters: both reach the same optimum. From the sample's fit, the first E
    // step on all rows is followed by one M step that moves to the optimum and an E step that
    // finds it converged; the sample's own E steps are counted apart.
    EXPECT_NEAR(warm->lower_bound(), cold->lower_bound(), 1e-6 * std::abs(cold->lower_bound()));
    EXPECT_LE(warm->iterations(), 3);
    EXPECT_GT(warm->init_iterations(), cold->init_iterations());
  }
}

TEST(WarmStartTest, BadValuesOutsideTheSampleAreFound) {
  Matrix m = TwoClusters(3000, 2000, 8, 6);
  // Whatever the sample, some row with a NaN is outside it.
  for (int64_t row = 0; row < m.rows; row += 2)
    m.at(row, 3) = std::numeric_limits<float>::quiet_NaN();
  for (Covariance cov : {Covariance::kDiag, Covariance::kFull}) {
    EXPECT_EQ(GaussianMixture::Fit(m.view(), {.covariance = cov, .init_sample_rows = 100})
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
  Matrix inf = TwoClusters(3000, 2000, 8, 6);
  inf.at(4321, 0) = std::numeric_limits<float>::infinity();
  EXPECT_EQ(GaussianMixture::Fit(inf.view(), {.init_sample_rows = 100}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WarmStartTest, ProgressReportsDuringTheSampleAndCancels) {
  const Matrix m = TwoClusters(3000, 2000, 8, 6);
  std::vector<double> seen;
  absl::StatusOr<GaussianMixture> g =
      GaussianMixture::Fit(m.view(), {.max_iter = 50, .init_sample_rows = 1000}, [&](double done) {
        seen.push_back(done);
        return true;
      });
  ASSERT_TRUE(g.ok());
  // Every k-means round and sample EM iteration reports share 0 (+ the k-means++ seeding); every
  // EM iteration on all rows reports a larger share. Polls between chunks of rows may repeat
  // the last share in between, never move it back.
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  const auto first_em = std::find_if(seen.begin(), seen.end(), [](double d) { return d > 0; });
  EXPECT_GE(first_em - seen.begin(), g->init_iterations() + 1);
  EXPECT_EQ(std::set<double>(first_em, seen.end()).size(), static_cast<size_t>(g->iterations()));
  int calls = 0;
  EXPECT_EQ(GaussianMixture::Fit(m.view(), {.init_sample_rows = 1000},
                                 [&](double) { return ++calls < 3; })
                .status()
                .code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 3);
}

TEST(FitTest, FinalParametersScoreAtLeastTheLowerBound) {
  const Matrix m = CorrelatedClusters(1500, 1000, 9);
  for (Covariance cov : {Covariance::kDiag, Covariance::kSpherical, Covariance::kFull}) {
    for (int64_t sample : {int64_t{0}, int64_t{500}}) {
      absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(
          m.view(), {.covariance = cov, .n_init = 2, .init_sample_rows = sample});
      ASSERT_TRUE(g.ok()) << g.status();
      std::vector<double> ll(m.rows);
      g->ScoreSamples(m.view(), ll.data());
      double mean = 0;
      for (double l : ll) mean += l / m.rows;
      // EM never lowers the likelihood, and the returned parameters are one M step past the
      // last E step's bound (kFull's bound is computed in float32).
      EXPECT_GE(mean, g->lower_bound() - 1e-6 * std::abs(mean));
      EXPECT_LT(mean - g->lower_bound(), 1e-3);  // converged: that M step gained < tol
    }
  }
}

// --- PCA -------------------------------------------------------------------------------------

TEST(PcaTest, KeepsTheLeadingDirections) {
  // Rows along (1, 2, 2)/3 with sd 10, plus sd 0.1 noise in every dimension.
  std::mt19937_64 rng(3);
  Matrix m(4000, 3);
  for (int64_t i = 0; i < m.rows; ++i) {
    const double t = 10 * Normal(rng);
    const double axis[3] = {1.0 / 3, 2.0 / 3, 2.0 / 3};
    for (int j = 0; j < 3; ++j)
      m.at(i, j) = static_cast<float>(5 + t * axis[j] + 0.1 * Normal(rng));
  }
  for (int64_t sample : {int64_t{0}, int64_t{500}}) {
    absl::StatusOr<Pca> pca = Pca::Train(m.view(), {.dim = 1, .sample_rows = sample, .seed = 1});
    ASSERT_TRUE(pca.ok()) << pca.status();
    EXPECT_EQ(pca->in_dim(), 3);
    EXPECT_EQ(pca->out_dim(), 1);
    double retained = 0;
    const std::vector<float> y = pca->Apply(m.view(), 0, &retained);
    // Variance 100 along the axis, 3 x 0.01 of noise.
    EXPECT_NEAR(retained, 100.01 / 100.03, 2e-3);
    ASSERT_EQ(y.size(), 4000u);
    // The projection is the coordinate along the axis, about the mean, up to sign.
    double dot = 0, yy = 0, tt = 0;
    for (int64_t i = 0; i < m.rows; ++i) {
      const double t = (m.at(i, 0) - 5) / 3 + 2 * (m.at(i, 1) - 5) / 3 + 2 * (m.at(i, 2) - 5) / 3;
      dot += t * y[i];
      yy += y[i] * double{y[i]};
      tt += t * t;
    }
    EXPECT_GT(std::abs(dot) / std::sqrt(yy * tt), 0.9999);
  }
  EXPECT_EQ(Pca::Train(m.view(), {.dim = 4}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pca::Train(m.view(), {.dim = 0}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PcaTest, KernelAndBlasProjectAlike) {
  // Dimensions and row counts that are not multiples of the kernel's tiles.
  std::mt19937_64 rng(5);
  Matrix m(1003, 100);
  for (int64_t i = 0; i < m.rows; ++i) {
    for (int64_t j = 0; j < m.dim; ++j) m.at(i, j) = static_cast<float>(Normal(rng) * (1 + j % 7));
  }
  absl::StatusOr<Pca> pca = Pca::Train(m.view(), {.dim = 37});
  ASSERT_TRUE(pca.ok()) << pca.status();
  double kernel_share = 0, blas_share = 0;
  const std::vector<float> kernel = pca->Apply(m.view(), 3, &kernel_share);
  internal::ForceBlasForTesting(true);
  const std::vector<float> blas = pca->Apply(m.view(), 1, &blas_share);
  internal::ForceBlasForTesting(false);
  ASSERT_EQ(kernel.size(), blas.size());
  for (size_t i = 0; i < kernel.size(); ++i) {
    ASSERT_NEAR(kernel[i], blas[i], 1e-4 * (1 + std::abs(blas[i]))) << i;
  }
  EXPECT_NEAR(kernel_share, blas_share, 1e-6);
  EXPECT_GT(kernel_share, 37.0 / 100);  // the leading directions carry more than their share
  EXPECT_LT(kernel_share, 1.0);
}

TEST(IsaSelectorTest, PcaAndFullCovariance) {
  Matrix m = TwoClusters(600, 400, 16, 12);
  for (int64_t row : {17, 700}) {
    for (int64_t j = 0; j < m.dim; ++j) m.at(row, j) = 30.0f;
  }
  IsaOptions options;
  options.mixture.covariance = Covariance::kFull;
  options.pca_dim = 4;
  absl::StatusOr<SelectionResult> r = MakeIsaSelector(options)->Select(m.view(), 10, Seeded(2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(std::set<int64_t>(r->rows.begin(), r->rows.begin() + 2), (std::set<int64_t>{17, 700}));
  ASSERT_TRUE(r->fit.has_value());
  EXPECT_TRUE(r->fit->converged);

  // The scores are Delta of the fit ScoreIsa reports, for the same seed.
  absl::StatusOr<IsaScores> scores = ScoreIsa(m.view(), options, 2);
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_EQ(scores->deltas, IsaDeltas(scores->log_likelihoods));
  for (size_t i = 0; i < r->rows.size(); ++i) EXPECT_EQ(r->scores[i], scores->deltas[r->rows[i]]);
  EXPECT_GT(scores->retained_variance, 0.9);

  options.pca_dim = 17;
  EXPECT_EQ(MakeIsaSelector(options)->Select(m.view(), 10, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- scikit-learn agreement ----------------------------------------------------------------

constexpr char kPython[] = "/usr/bin/python3";

bool HaveSklearn() {
  const std::string cmd = std::string(kPython) + " -c 'import sklearn' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

std::vector<double> RunPython(const std::string& script, const std::string& args) {
  const std::string path = testing::TempDir() + "/selection_test_check.py";
  std::ofstream(path) << script;
  const std::string cmd = std::string(kPython) + " " + path + " " + args;
  std::vector<double> values;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return values;
  double v;
  while (std::fscanf(pipe, "%lf", &v) == 1) values.push_back(v);
  pclose(pipe);
  return values;
}

void WriteFile(const std::string& path, const void* data, size_t bytes) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), bytes);
}

TEST(SklearnAgreementTest, ScoreSamplesAndFit) {
  if (!HaveSklearn()) GTEST_SKIP() << kPython << " has no scikit-learn";
  const int64_t dim = 5;
  const Matrix clean = TwoClusters(120, 80, dim, 21);
  absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(clean.view(), {});
  ASSERT_TRUE(g.ok()) << g.status();
  // Scored rows include far ones, which exercise the log-sum-exp on both sides.
  Matrix scored = clean;
  for (int64_t j = 0; j < dim; ++j) {
    scored.at(0, j) = 200.0f;
    scored.at(1, j) = -150.0f + j;
  }

  const std::string dir = testing::TempDir();
  const std::string clean_path = dir + "/selection_test_clean.f32";
  const std::string scored_path = dir + "/selection_test_scored.f32";
  const std::string params_path = dir + "/selection_test_params.f64";
  WriteFile(clean_path, clean.data.data(), clean.data.size() * sizeof(float));
  WriteFile(scored_path, scored.data.data(), scored.data.size() * sizeof(float));
  std::vector<double> params = g->weights();
  params.insert(params.end(), g->means().begin(), g->means().end());
  params.insert(params.end(), g->variances().begin(), g->variances().end());
  WriteFile(params_path, params.data(), params.size() * sizeof(double));

  // Prints our mixture's score_samples under sklearn for the scored rows, then sklearn's own
  // fit of the clean rows: mean log-likelihood, weights and means, components ordered by
  // their first mean.
  const std::string script = R"(
import sys, numpy as np
from sklearn.mixture import GaussianMixture
d, k = int(sys.argv[4]), int(sys.argv[5])
load = lambda p: np.fromfile(p, dtype=np.float32).reshape(-1, d).astype(np.float64)
P = np.fromfile(sys.argv[3], dtype=np.float64)
g = GaussianMixture(k, covariance_type="diag")
g.weights_ = P[:k]
g.means_ = P[k:k + k * d].reshape(k, d)
g.covariances_ = P[k + k * d:].reshape(k, d)
g.precisions_cholesky_ = 1 / np.sqrt(g.covariances_)
for s in g.score_samples(load(sys.argv[2])): print(repr(float(s)))
X = load(sys.argv[1])
f = GaussianMixture(k, covariance_type="diag", random_state=0, reg_covar=1e-6).fit(X)
print(repr(float(f.score_samples(X).mean())))
o = np.argsort(f.means_[:, 0])
for w in f.weights_[o]: print(repr(float(w)))
for v in f.means_[o].ravel(): print(repr(float(v)))
)";
  const std::vector<double> py =
      RunPython(script, clean_path + " " + scored_path + " " + params_path + " " +
                            std::to_string(dim) + " 2");
  const int64_t n = scored.rows;
  ASSERT_EQ(static_cast<int64_t>(py.size()), n + 1 + 2 + 2 * dim);

  std::vector<double> ll(n);
  g->ScoreSamples(scored.view(), ll.data());
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(ll[i], py[i], 1e-6 * std::max(1.0, std::abs(py[i]))) << "row " << i;
  }
  EXPECT_LT(ll[0], -1e4);  // far rows really are far

  // Fits from different initialisations reach the same optimum on separated clusters.
  g->ScoreSamples(clean.view(), ll.data());
  double mean = 0;
  for (double l : ll) mean += l / clean.rows;
  EXPECT_NEAR(mean, py[n], 1e-6 * std::abs(py[n]));
  const std::vector<int> order = ByFirstMean(*g);
  for (int c = 0; c < 2; ++c) {
    EXPECT_NEAR(g->weights()[order[c]], py[n + 1 + c], 1e-6);
    for (int64_t j = 0; j < dim; ++j) {
      EXPECT_NEAR(g->means()[order[c] * dim + j], py[n + 3 + c * dim + j], 1e-6);
    }
  }
  for (const std::string& path : {clean_path, scored_path, params_path}) {
    std::remove(path.c_str());
  }
}

// --- random selector and factory -----------------------------------------------------------

TEST(RngTest, EngineIsTheStandardOne) {
  // The standard fixes the 10000th output of a default-constructed mt19937_64.
  std::mt19937_64 rng;
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ull);
}

TEST(RandomSelectorTest, DistinctInRangeAndZeroScores) {
  const Matrix m(1000, 2);
  absl::StatusOr<SelectionResult> r = MakeRandomSelector()->Select(m.view(), 300, Seeded(1));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->rows.size(), 300u);
  EXPECT_EQ(std::set<int64_t>(r->rows.begin(), r->rows.end()).size(), 300u);
  for (int64_t row : r->rows) {
    EXPECT_GE(row, 0);
    EXPECT_LT(row, 1000);
  }
  EXPECT_EQ(r->scores, std::vector<double>(300, 0.0));
  EXPECT_FALSE(r->fit.has_value());

  absl::StatusOr<SelectionResult> all = MakeRandomSelector()->Select(m.view(), 1000, Seeded(1));
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(std::set<int64_t>(all->rows.begin(), all->rows.end()).size(), 1000u);
}

TEST(RandomSelectorTest, DeterministicPerSeedAndSeedsDiffer) {
  const Matrix m(1000, 2);
  auto random = MakeRandomSelector();
  absl::StatusOr<SelectionResult> a = random->Select(m.view(), 50, Seeded(42));
  absl::StatusOr<SelectionResult> b = random->Select(m.view(), 50, Seeded(42));
  absl::StatusOr<SelectionResult> c = random->Select(m.view(), 50, Seeded(43));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->rows, b->rows);
  EXPECT_NE(a->rows, c->rows);
  // Pinned so that a change of the draw (which would change every user's subsets) is noticed.
  absl::StatusOr<SelectionResult> small = random->Select(Matrix(10, 1).view(), 4, Seeded(42));
  ASSERT_TRUE(small.ok());
  EXPECT_THAT(small->rows, ElementsAre(6, 0, 4, 7));
}

TEST(SelectorTest, KOutOfRangeIsInvalidArgument) {
  const Matrix m = TwoClusters(10, 10, 2, 1);
  for (const auto& selector : {MakeIsaSelector(), MakeRandomSelector()}) {
    for (int64_t k : {int64_t{0}, int64_t{-1}, int64_t{21}}) {
      EXPECT_EQ(selector->Select(m.view(), k, {}).status().code(),
                absl::StatusCode::kInvalidArgument)
          << selector->name() << " k=" << k;
    }
  }
}

TEST(FactoryTest, MakesKnownMethodsOnly) {
  for (std::string_view name : {"isa", "random"}) {
    absl::StatusOr<std::unique_ptr<Selector>> s = MakeSelector(name);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ((*s)->name(), name);
  }
  const absl::Status unknown = MakeSelector("density").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), ::testing::HasSubstr("\"density\""));
  for (const char* known : {"isa", "random", "herding", "facility_location", "kcenter", "dedup"}) {
    EXPECT_THAT(std::string(unknown.message()), ::testing::HasSubstr(known));
  }
}

// ISA through the factory reports the whole fit, as ScoreIsa does, so no caller needs ScoreIsa
// for the k-means rounds, the PCA's retained variance or the fit's time.
TEST(FactoryTest, IsaReportsTheFitInFull) {
  Matrix m = TwoClusters(600, 400, 16, 12);
  SelectorSpec spec;
  spec.method = "isa";
  spec.isa.pca_dim = 4;
  absl::StatusOr<std::unique_ptr<Selector>> isa = MakeSelector(spec);
  ASSERT_TRUE(isa.ok()) << isa.status();
  absl::StatusOr<SelectionResult> r = (*isa)->Select(m.view(), 10, Seeded(5));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->fit.has_value());
  absl::StatusOr<IsaScores> scores = ScoreIsa(m.view(), spec.isa, 5);
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_GT(r->fit->init_iterations, 0);  // k-means rounds
  EXPECT_EQ(r->fit->init_iterations, scores->init_iterations);
  EXPECT_LT(r->fit->retained_variance, 1);
  EXPECT_EQ(r->fit->retained_variance, scores->retained_variance);
  EXPECT_GT(r->fit->fit_seconds, 0);
  EXPECT_EQ(r->fit->iterations, scores->fit.iterations);
  EXPECT_EQ(r->fit->mean_log_likelihood, scores->fit.mean_log_likelihood);
  EXPECT_EQ(r->fit->weights, scores->fit.weights);
  // Without a PCA all of the variance is kept.
  spec.isa.pca_dim = 0;
  absl::StatusOr<SelectionResult> plain = (*MakeSelector(spec))->Select(m.view(), 10, Seeded(5));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->fit->retained_variance, 1);
}

}  // namespace
}  // namespace curation::selection
