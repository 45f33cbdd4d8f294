// SelectDistributed against the same methods on one node: random and ISA exactly (ISA to
// float tolerance), the approximate forms within stated bounds, and the errors.
#include "selection/distributed.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/stable_hash.h"
#include "gtest/gtest.h"
#include "selection/factory.h"
#include "selection/gaussian_mixture.h"
#include "selection/isa.h"

namespace curation::selection {
namespace {

// Clustered rows: `clusters` Gaussian blobs of different spreads.
std::vector<float> Clustered(int64_t n, int64_t dim, int clusters, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> centers(clusters * dim);
  for (float& c : centers) c = 3 * normal(rng);
  std::vector<float> x(n * dim);
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % clusters);
    const float spread = 0.5f + 0.5f * c;
    for (int64_t d = 0; d < dim; ++d) x[i * dim + d] = centers[c * dim + d] + spread * normal(rng);
  }
  return x;
}

SelectorSpec Spec(const std::string& method, double dedup_threshold = 0, bool ranking = false) {
  SelectorSpec spec;
  spec.method = method;
  spec.dedup_threshold = dedup_threshold;
  spec.ranking = ranking;
  return spec;
}

SelectOptions Seeded(uint64_t seed) {
  SelectOptions options;
  options.seed = seed;
  return options;
}

MixtureOptions Components(int k) {
  MixtureOptions options;
  options.components = k;
  return options;
}

std::vector<uint64_t> Keys(int64_t n) {
  std::vector<uint64_t> keys(n);
  for (int64_t i = 0; i < n; ++i) keys[i] = UnitKey("example-" + std::to_string(i));
  return keys;
}

// The pool split into contiguous partitions of the given sizes, so that (partition, row)
// order is the pool's row order.
struct Split {
  std::vector<std::unique_ptr<Partition>> owned;
  std::vector<Partition*> partitions;
  std::vector<int64_t> offset;

  Split(const std::vector<float>& x, int64_t dim, const std::vector<uint64_t>& keys,
        const std::vector<int64_t>& sizes, const SelectorSpec& spec) {
    int64_t at = 0;
    for (int64_t size : sizes) {
      offset.push_back(at);
      const MatrixView view{x.data() + at * dim, size, dim};
      owned.push_back(MakeLocalPartition(
          view, std::vector<uint64_t>(keys.begin() + at, keys.begin() + at + size), spec));
      partitions.push_back(owned.back().get());
      at += size;
    }
  }

  std::vector<int64_t> Global(const DistributedResult& r) const {
    std::vector<int64_t> rows;
    for (const PartitionRow& pr : r.rows) rows.push_back(offset[pr.partition] + pr.row);
    return rows;
  }
};

SelectionResult OneNode(const SelectorSpec& spec, const MatrixView& x,
                        const std::vector<uint64_t>& keys, int64_t k, uint64_t seed) {
  auto selector = MakeSelector(spec);
  EXPECT_TRUE(selector.ok()) << selector.status();
  SelectOptions options;
  options.seed = seed;
  options.row_keys = keys;
  auto result = (*selector)->Select(x, k, options);
  EXPECT_TRUE(result.ok()) << result.status();
  return *result;
}

absl::StatusOr<DistributedResult> Distributed(const SelectorSpec& spec, const Split& split,
                                              int64_t k, uint64_t seed) {
  SelectOptions options;
  options.seed = seed;
  return SelectDistributed(spec, split.partitions, k, options);
}

const std::vector<std::vector<int64_t>> kSplits = {
    {1000}, {500, 500}, {100, 600, 300}, {200, 0, 350, 50, 400}, {0, 1000}};

TEST(KeyedHash, IsFixed) {
  // Stored orders depend on it: it must never change.
  EXPECT_EQ(KeyedHash(0, 0), Mix64(0 ^ Mix64(0x6b65796564686173ULL)));
  EXPECT_NE(KeyedHash(1, 5), KeyedHash(2, 5));
  EXPECT_NE(KeyedHash(1, 5), KeyedHash(1, 6));
}

TEST(RandomKeyed, IsTheSmallestHashesAndRanksEveryRow) {
  const int64_t n = 300, dim = 4;
  const std::vector<float> x = Clustered(n, dim, 2, 1);
  const std::vector<uint64_t> keys = Keys(n);
  const MatrixView view{x.data(), n, dim};
  SelectionResult ranking = OneNode(Spec("random", 0, true), view, keys, 5, 9);
  ASSERT_EQ(ranking.rows.size(), static_cast<size_t>(n));
  for (int64_t i = 1; i < n; ++i) {
    EXPECT_LT(KeyedHash(9, keys[ranking.rows[i - 1]]), KeyedHash(9, keys[ranking.rows[i]]));
  }
  const SelectionResult top = OneNode(Spec("random"), view, keys, 7, 9);
  EXPECT_EQ(top.rows, std::vector<int64_t>(ranking.rows.begin(), ranking.rows.begin() + 7));
  // Without keys the draw is the old one (not the keyed order).
  auto selector = MakeSelector("random");
  ASSERT_TRUE(selector.ok());
  auto unkeyed = (*selector)->Select(view, 7, Seeded(9));
  ASSERT_TRUE(unkeyed.ok());
  EXPECT_NE(unkeyed->rows, top.rows);
}

TEST(RandomKeyed, KeysPassThroughTheWrappers) {
  const int64_t n = 400, dim = 4;
  const std::vector<float> x = Clustered(n, dim, 2, 21);
  const std::vector<uint64_t> keys = Keys(n);
  const MatrixView view{x.data(), n, dim};
  // Quotas: each group's picks are that group's rows of smallest hash under the group's seed.
  SelectorSpec spec = Spec("random");
  spec.constraint.emplace();
  for (int64_t i = 0; i < n; ++i) spec.constraint->group.push_back(i % 3 == 0 ? 1 : 0);
  const SelectionResult picked = OneNode(spec, view, keys, 30, 4);
  for (int g = 0; g < 2; ++g) {
    const uint64_t seed = 4 ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(g + 1));
    std::vector<int64_t> members, mine;
    for (int64_t i = 0; i < n; ++i) {
      if (spec.constraint->group[i] == g) members.push_back(i);
    }
    for (int64_t row : picked.rows) {
      if (spec.constraint->group[row] == g) mine.push_back(row);
    }
    std::sort(members.begin(), members.end(), [&](int64_t a, int64_t b) {
      return KeyedHash(seed, keys[a]) < KeyedHash(seed, keys[b]);
    });
    members.resize(mine.size());
    EXPECT_EQ(mine, members) << g;
  }
  // Keys that do not match the rows.
  auto selector = MakeSelector("random");
  ASSERT_TRUE(selector.ok());
  SelectOptions bad;
  const std::vector<uint64_t> few(3, 1);
  bad.row_keys = few;
  EXPECT_EQ((*selector)->Select(view, 5, bad).status().code(), absl::StatusCode::kInvalidArgument);
  auto isa = MakeSelector("isa");
  ASSERT_TRUE(isa.ok());
  EXPECT_EQ((*isa)->Select(view, 5, bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Distributed, RandomEqualsOneNode) {
  const int64_t n = 1000, dim = 8;
  const std::vector<float> x = Clustered(n, dim, 3, 2);
  const std::vector<uint64_t> keys = Keys(n);
  const SelectorSpec spec = Spec("random");
  for (const auto& sizes : kSplits) {
    Split split(x, dim, keys, sizes, spec);
    for (uint64_t seed : {0ull, 1ull, 77ull}) {
      for (int64_t k : {1, 37, 1000}) {
        const SelectionResult one = OneNode(spec, {x.data(), n, dim}, keys, k, seed);
        auto dist = Distributed(spec, split, k, seed);
        ASSERT_TRUE(dist.ok()) << dist.status();
        EXPECT_EQ(split.Global(*dist), one.rows) << sizes.size() << " partitions, seed " << seed;
        EXPECT_EQ(dist->scores, one.scores);
        EXPECT_EQ(dist->rounds, 2);
        // Keys and row numbers for at most k rows per partition, nothing else.
        EXPECT_LE(dist->bytes_from_partitions,
                  static_cast<int64_t>(sizes.size()) * (24 * k + 24 + 8 * dim));
      }
    }
  }
}

// ---- ISA

MixtureStatistics WholeStatistics(const std::vector<float>& x, int64_t n, int64_t dim,
                                  const MixtureParameters& params) {
  auto stats = MixtureEStep({x.data(), n, dim}, params);
  EXPECT_TRUE(stats.ok()) << stats.status();
  return *stats;
}

TEST(DistributedIsa, SummedStatisticsEqualTheWholePool) {
  const int64_t n = 2000, dim = 12;
  const std::vector<float> x = Clustered(n, dim, 3, 3);
  auto g = GaussianMixture::Fit({x.data(), n, dim}, Components(3));
  ASSERT_TRUE(g.ok());
  MixtureParameters params = g->parameters();
  params.center.assign(dim, 0.25);
  const MixtureStatistics whole = WholeStatistics(x, n, dim, params);
  MixtureStatistics summed;
  int64_t at = 0;
  for (int64_t size : {700, 0, 13, 1287}) {
    auto part = MixtureEStep({x.data() + at * dim, size, dim}, params);
    ASSERT_TRUE(part.ok()) << part.status();
    ASSERT_TRUE(AddMixtureStatistics(*part, &summed).ok());
    at += size;
  }
  EXPECT_EQ(summed.rows, n);
  EXPECT_NEAR(summed.log_likelihood, whole.log_likelihood, 1e-9 * std::abs(whole.log_likelihood));
  const auto close = [](const std::vector<double>& a, const std::vector<double>& b) {
    ASSERT_EQ(a.size(), b.size());
    double scale = 0;
    for (double v : b) scale = std::max(scale, std::abs(v));
    // The E step's products run in float32 over blocks of rows (as one node's), whose
    // boundaries move with the partition boundaries: about 1e-7 relative.
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * scale) << i;
  };
  close(summed.resp, whole.resp);
  close(summed.resp_x, whole.resp_x);
  close(summed.resp_x2, whole.resp_x2);
  // The responsibilities of every row sum to 1.
  EXPECT_NEAR(std::accumulate(whole.resp.begin(), whole.resp.end(), 0.0), n, 1e-6);
}

void ExpectRelativelyClose(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i], b[i], tol * std::max(1.0, std::abs(b[i]))) << i;
  }
}

void CheckIsaAgrees(int64_t n, int64_t dim, const IsaOptions& isa,
                    const std::vector<int64_t>& sizes, int64_t k, uint64_t seed) {
  const std::vector<float> x = Clustered(n, dim, 3, seed + 10);
  const std::vector<uint64_t> keys = Keys(n);
  SelectorSpec spec = Spec("isa");
  spec.isa = isa;
  // One node, keyed: the fit and every row's score.
  auto scores = ScoreIsa({x.data(), n, dim}, isa, seed, nullptr, keys);
  ASSERT_TRUE(scores.ok()) << scores.status();
  const SelectionResult one = OneNode(spec, {x.data(), n, dim}, keys, k, seed);
  Split split(x, dim, keys, sizes, spec);
  auto dist = Distributed(spec, split, k, seed);
  ASSERT_TRUE(dist.ok()) << dist.status();
  EXPECT_EQ(split.Global(*dist), one.rows);
  ASSERT_EQ(dist->scores.size(), one.scores.size());
  for (size_t i = 0; i < one.scores.size(); ++i) EXPECT_NEAR(dist->scores[i], one.scores[i], 1e-6);
  ASSERT_TRUE(dist->fit.has_value());
  ASSERT_TRUE(one.fit.has_value());
  ExpectRelativelyClose(dist->fit->weights, one.fit->weights, 1e-6);
  EXPECT_EQ(dist->fit->iterations, one.fit->iterations);
  EXPECT_EQ(dist->fit->init_iterations, one.fit->init_iterations);
  EXPECT_NEAR(dist->fit->mean_log_likelihood, one.fit->mean_log_likelihood,
              1e-6 * std::abs(one.fit->mean_log_likelihood));
  double weight_diff = 0, score_diff = 0;
  for (size_t i = 0; i < one.fit->weights.size(); ++i) {
    weight_diff = std::max(
        weight_diff, std::abs(dist->fit->weights[i] - one.fit->weights[i]) / one.fit->weights[i]);
  }
  for (size_t i = 0; i < one.scores.size(); ++i) {
    score_diff = std::max(score_diff, std::abs(dist->scores[i] - one.scores[i]));
  }
  std::printf(
      "isa n=%lld P=%zu k=%lld: same rows, max weight rel diff %.2g, max Delta diff %.2g, "
      "%d EM iterations, %lld rounds, %lld bytes from partitions (pool %lld bytes)\n",
      static_cast<long long>(n), sizes.size(), static_cast<long long>(k), weight_diff, score_diff,
      dist->fit->iterations, static_cast<long long>(dist->rounds),
      static_cast<long long>(dist->bytes_from_partitions), static_cast<long long>(4 * n * dim));
  // Rounds: summaries, sample, one per EM iteration on all rows (of every initialisation),
  // tails.
  if (isa.mixture.n_init == 1) {
    EXPECT_EQ(dist->rounds, 3 + dist->fit->iterations);
  } else {
    EXPECT_GT(dist->rounds, 3 + dist->fit->iterations);
  }
}

TEST(DistributedIsa, TheWarmStartSampleIsOneNodes) {
  const int64_t n = 1000, dim = 4;
  const std::vector<float> x = Clustered(n, dim, 2, 22);
  const std::vector<uint64_t> keys = Keys(n);
  for (const auto& sizes : kSplits) {
    Split split(x, dim, keys, sizes, Spec("isa"));
    std::vector<std::pair<uint64_t, int64_t>> merged, whole;
    for (size_t p = 0; p < sizes.size(); ++p) {
      auto part = split.partitions[p]->SmallestHashes(7, 64, true);
      ASSERT_TRUE(part.ok()) << part.status();
      ASSERT_EQ(part->values.size(), part->rows.size() * dim);
      for (size_t i = 0; i < part->rows.size(); ++i) {
        const int64_t row = split.offset[p] + part->rows[i];
        EXPECT_EQ(part->values[i * dim], x[row * dim]);
        merged.push_back({KeyedHash(7, part->keys[i]), row});
      }
    }
    for (int64_t i = 0; i < n; ++i) whole.push_back({KeyedHash(7, keys[i]), i});
    std::sort(merged.begin(), merged.end());
    std::sort(whole.begin(), whole.end());
    merged.resize(64);
    whole.resize(64);
    EXPECT_EQ(merged, whole);
  }
}

TEST(DistributedIsa, EqualsOneNodeOnAPoolInsideTheSample) {
  IsaOptions isa;
  isa.mixture.components = 3;
  CheckIsaAgrees(3000, 16, isa, {1000, 1000, 1000}, 100, 1);
  CheckIsaAgrees(3000, 16, isa, {400, 0, 2100, 500}, 250, 2);
  isa.mixture.covariance = Covariance::kSpherical;
  CheckIsaAgrees(3000, 16, isa, {1500, 1500}, 60, 3);
  // Overlapping clusters in few dimensions: EM runs many iterations on all rows, and the
  // partitions' sums, added in another order, must not drift from one node's.
  isa.mixture.covariance = Covariance::kDiag;
  isa.mixture.components = 5;
  isa.mixture.tol = 1e-6;
  CheckIsaAgrees(3000, 2, isa, {700, 1300, 1000}, 200, 6);
}

TEST(DistributedIsa, EqualsOneNodeOnAPoolAboveTheSample) {
  IsaOptions isa;
  isa.mixture.components = 2;
  isa.mixture.init_sample_rows = 500;
  CheckIsaAgrees(4000, 10, isa, {1000, 3000}, 150, 4);
  isa.mixture.init = MixtureInit::kKMeansPlusPlus;
  isa.mixture.n_init = 2;
  CheckIsaAgrees(4000, 10, isa, {300, 700, 1000, 0, 2000}, 40, 5);
}

TEST(DistributedIsa, FitFromSampleEqualsFitWithSample) {
  const int64_t n = 3000, dim = 8;
  const std::vector<float> x = Clustered(n, dim, 3, 6);
  std::vector<int64_t> sample(400);
  for (int64_t i = 0; i < 400; ++i) sample[i] = (i * 7919) % n;
  MixtureOptions options = Components(3);
  options.seed = 5;
  auto one = GaussianMixture::FitWithSample({x.data(), n, dim}, sample, options);
  ASSERT_TRUE(one.ok()) << one.status();
  std::vector<float> gathered;
  for (int64_t row : sample) gathered.insert(gathered.end(), &x[row * dim], &x[row * dim] + dim);
  const auto all_rows = [&](const MixtureParameters& p) -> absl::StatusOr<MixtureStatistics> {
    MixtureStatistics total;
    for (int64_t begin : {0, 1234}) {
      const int64_t end = begin == 0 ? 1234 : n;
      auto part = MixtureEStep({x.data() + begin * dim, end - begin, dim}, p);
      if (!part.ok()) return part.status();
      if (auto s = AddMixtureStatistics(*part, &total); !s.ok()) return s;
    }
    return total;
  };
  auto dist = GaussianMixture::FitFromSample({gathered.data(), 400, dim}, n, all_rows, options);
  ASSERT_TRUE(dist.ok()) << dist.status();
  EXPECT_EQ(dist->iterations(), one->iterations());
  ExpectRelativelyClose(dist->weights(), one->weights(), 1e-6);
  ExpectRelativelyClose(dist->means(), one->means(), 1e-6);
  ExpectRelativelyClose(dist->variances(), one->variances(), 1e-6);

  // Statistics of the wrong shape, and full covariances, are refused.
  const auto wrong = [&](const MixtureParameters&) -> absl::StatusOr<MixtureStatistics> {
    return MixtureStatistics{};
  };
  EXPECT_EQ(GaussianMixture::FitFromSample({gathered.data(), 400, dim}, n, wrong, options)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  options.covariance = Covariance::kFull;
  EXPECT_EQ(GaussianMixture::FitFromSample({gathered.data(), 400, dim}, n, all_rows, options)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- herding, facility location, kcenter

double MeanDistance(const std::vector<float>& x, int64_t n, int64_t dim,
                    const std::vector<int64_t>& rows) {
  std::vector<double> mu(dim, 0.0), sub(dim, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dim; ++d) mu[d] += x[i * dim + d] / static_cast<double>(n);
  }
  for (int64_t r : rows) {
    for (int64_t d = 0; d < dim; ++d) sub[d] += x[r * dim + d] / static_cast<double>(rows.size());
  }
  double s = 0;
  for (int64_t d = 0; d < dim; ++d) s += (sub[d] - mu[d]) * (sub[d] - mu[d]);
  return std::sqrt(s);
}

TEST(Distributed, HerdingTracksTheGlobalMean) {
  const int64_t n = 3000, dim = 16;
  const std::vector<float> x = Clustered(n, dim, 4, 7);
  const std::vector<uint64_t> keys = Keys(n);
  const SelectorSpec spec = Spec("herding");
  const int64_t k = 120;
  const SelectionResult one = OneNode(spec, {x.data(), n, dim}, keys, k, 0);
  const double one_distance = MeanDistance(x, n, dim, one.rows);
  // A random subset's distance, the baseline herding beats by far.
  const SelectionResult random = OneNode(Spec("random"), {x.data(), n, dim}, keys, k, 3);
  const double random_distance = MeanDistance(x, n, dim, random.rows);
  for (const std::vector<int64_t>& sizes : std::vector<std::vector<int64_t>>{
           {3000}, {1500, 1500}, {500, 0, 1000, 1500}, {600, 600, 600, 600, 600}}) {
    Split split(x, dim, keys, sizes, spec);
    auto dist = Distributed(spec, split, k, 0);
    ASSERT_TRUE(dist.ok()) << dist.status();
    const std::vector<int64_t> rows = split.Global(*dist);
    ASSERT_EQ(rows.size(), static_cast<size_t>(k));
    EXPECT_EQ(std::set<int64_t>(rows.begin(), rows.end()).size(), static_cast<size_t>(k));
    const double d = MeanDistance(x, n, dim, rows);
    // Each of P partitions herds toward the global mean with a residual bounded as one node's
    // is, so the sum of P residuals is at most about P times one node's: P + 1 leaves room for
    // the quotas' rounding. Far below a random subset's in any case.
    const double parts = static_cast<double>(sizes.size());
    EXPECT_LE(d, (parts + 1) * one_distance) << parts;
    EXPECT_LT(d, 0.3 * random_distance) << parts;
    // The reported scores are one node's definition on the merged order.
    EXPECT_NEAR(dist->scores.back(), d, 1e-6 * std::max(1.0, d));
    if (sizes.size() == 1) {
      EXPECT_EQ(rows, one.rows);
    }
    std::printf("herding P=%zu: |mean - mu| %.4g (one node %.4g, random %.4g)\n", sizes.size(), d,
                one_distance, random_distance);
  }
}

// Facility location's objective with cosine similarities over every pair:
// sum_i max(0, max_{s in S} cos(x_i, x_s)).
double Coverage(const std::vector<float>& x, int64_t n, int64_t dim,
                const std::vector<int64_t>& rows) {
  std::vector<double> norm(n);
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t d = 0; d < dim; ++d) s += double(x[i * dim + d]) * x[i * dim + d];
    norm[i] = std::sqrt(s);
  }
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double best = 0;
    for (int64_t r : rows) {
      double dot = 0;
      for (int64_t d = 0; d < dim; ++d) dot += double(x[i * dim + d]) * x[r * dim + d];
      best = std::max(best, dot / (norm[i] * norm[r]));
    }
    total += best;
  }
  return total;
}

// k-center's covering radius with the chordal distance |x/|x| - y/|y||.
double Radius(const std::vector<float>& x, int64_t n, int64_t dim,
              const std::vector<int64_t>& rows) {
  const auto unit = [&](int64_t i, int64_t d) {
    double s = 0;
    for (int64_t e = 0; e < dim; ++e) s += double(x[i * dim + e]) * x[i * dim + e];
    return x[i * dim + d] / std::sqrt(s);
  };
  double radius = 0;
  for (int64_t i = 0; i < n; ++i) {
    double nearest = std::numeric_limits<double>::infinity();
    for (int64_t r : rows) {
      double s = 0;
      for (int64_t d = 0; d < dim; ++d) s += (unit(i, d) - unit(r, d)) * (unit(i, d) - unit(r, d));
      nearest = std::min(nearest, std::sqrt(s));
    }
    radius = std::max(radius, nearest);
  }
  return radius;
}

TEST(Distributed, GreeDiKeepsMostOfTheObjective) {
  const int64_t n = 1500, dim = 12;
  const std::vector<float> x = Clustered(n, dim, 6, 8);
  const std::vector<uint64_t> keys = Keys(n);
  const SelectorSpec spec = Spec("facility_location");
  const int64_t k = 40;
  const SelectionResult one = OneNode(spec, {x.data(), n, dim}, keys, k, 0);
  const double one_value = Coverage(x, n, dim, one.rows);
  for (const std::vector<int64_t>& sizes : std::vector<std::vector<int64_t>>{
           {750, 750}, {100, 0, 900, 500}, {300, 300, 300, 300, 300}}) {
    Split split(x, dim, keys, sizes, spec);
    auto dist = Distributed(spec, split, k, 0);
    ASSERT_TRUE(dist.ok()) << dist.status();
    const std::vector<int64_t> rows = split.Global(*dist);
    EXPECT_EQ(std::set<int64_t>(rows.begin(), rows.end()).size(), static_cast<size_t>(k));
    const double value = Coverage(x, n, dim, rows);
    // GreeDi's worst case is (1 - 1/e)^2 / min(P, k) of the optimum; on data whose clusters
    // every partition sees, the second greedy pass recovers nearly all of it. 0.95 is the
    // bound asserted (measured values are printed).
    EXPECT_GE(value, 0.95 * one_value) << sizes.size();
    EXPECT_EQ(dist->rounds, 2);
    std::printf("greedi P=%zu: F %.2f (one node %.2f, ratio %.4f)\n", sizes.size(), value,
                one_value, value / one_value);
  }
}

TEST(Distributed, KCenterRadiusWithinTheTwoRoundBound) {
  const int64_t n = 1200, dim = 10;
  const std::vector<float> x = Clustered(n, dim, 5, 9);
  const std::vector<uint64_t> keys = Keys(n);
  const SelectorSpec spec = Spec("kcenter");
  const int64_t k = 30;
  const SelectionResult one = OneNode(spec, {x.data(), n, dim}, keys, k, 0);
  const double one_radius = Radius(x, n, dim, one.rows);
  for (const std::vector<int64_t>& sizes :
       std::vector<std::vector<int64_t>>{{600, 600}, {0, 200, 1000}, {240, 240, 240, 240, 240}}) {
    Split split(x, dim, keys, sizes, spec);
    auto dist = Distributed(spec, split, k, 0);
    ASSERT_TRUE(dist.ok()) << dist.status();
    const double radius = Radius(x, n, dim, split.Global(*dist));
    // Two-round farthest-first is within 4 of the optimal radius (Malkomes et al. 2015), and
    // the optimum is at most one node's radius.
    EXPECT_LE(radius, 4 * one_radius) << sizes.size();
    std::printf("kcenter P=%zu: radius %.4f (one node %.4f)\n", sizes.size(), radius, one_radius);
  }
}

// ---- dedup

// Rows of `base` distinct directions, each planted again (a tiny perturbation) in a later
// partition.
struct Planted {
  std::vector<float> x;
  int64_t n;
  int64_t dim;
};

Planted PlantDuplicates(int64_t base, int64_t dim, uint64_t seed) {
  std::vector<float> b = Clustered(base, dim, 1, seed);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<float> noise(0, 1e-4f);
  Planted p{b, base, dim};
  // Copies of the first half of the rows, appended: they land in the last partitions.
  for (int64_t i = 0; i < base / 2; ++i) {
    for (int64_t d = 0; d < dim; ++d) p.x.push_back(b[i * dim + d] + noise(rng));
  }
  p.n = base + base / 2;
  return p;
}

void ExpectNoNearDuplicates(const Planted& p, const std::vector<int64_t>& rows, double threshold) {
  for (size_t a = 0; a < rows.size(); ++a) {
    for (size_t b = a + 1; b < rows.size(); ++b) {
      double ab = 0, aa = 0, bb = 0;
      for (int64_t d = 0; d < p.dim; ++d) {
        const double u = p.x[rows[a] * p.dim + d], v = p.x[rows[b] * p.dim + d];
        ab += u * v;
        aa += u * u;
        bb += v * v;
      }
      EXPECT_LT(ab / std::sqrt(aa * bb), threshold) << rows[a] << " " << rows[b];
    }
  }
}

TEST(Distributed, DedupPicksNoNearDuplicatesAcrossPartitions) {
  const Planted p = PlantDuplicates(400, 24, 11);
  const std::vector<uint64_t> keys = Keys(p.n);
  const SelectorSpec spec = Spec("dedup", 0.999);
  for (const std::vector<int64_t>& sizes :
       std::vector<std::vector<int64_t>>{{600}, {300, 300}, {150, 0, 250, 200}}) {
    Split split(p.x, p.dim, keys, sizes, spec);
    for (int64_t k : {50, 300, 400}) {
      auto dist = Distributed(spec, split, k, 3);
      ASSERT_TRUE(dist.ok()) << dist.status() << " k " << k;
      const std::vector<int64_t> rows = split.Global(*dist);
      ASSERT_EQ(rows.size(), static_cast<size_t>(k));
      ExpectNoNearDuplicates(p, rows, 0.999);
      if (sizes.size() == 1) {
        EXPECT_EQ(rows, OneNode(spec, {p.x.data(), p.n, p.dim}, keys, k, 3).rows);
      }
    }
    // 400 distinct directions: 401 cannot be had.
    auto short_of = Distributed(spec, split, 401, 3);
    EXPECT_EQ(short_of.status().code(), absl::StatusCode::kFailedPrecondition) << short_of.status();
  }
}

TEST(Distributed, DedupPreFilterOnEveryMethod) {
  const Planted p = PlantDuplicates(400, 24, 12);
  const std::vector<uint64_t> keys = Keys(p.n);
  for (const std::string method : {"isa", "herding", "random", "facility_location", "kcenter"}) {
    SelectorSpec spec = Spec(method, 0.999);
    spec.isa.mixture.components = 2;
    for (const std::vector<int64_t>& sizes :
         std::vector<std::vector<int64_t>>{{600}, {350, 250}, {100, 0, 200, 300}}) {
      Split split(p.x, p.dim, keys, sizes, spec);
      for (int64_t k : {20, 100, 380}) {
        auto dist = Distributed(spec, split, k, 1);
        ASSERT_TRUE(dist.ok()) << method << ": " << dist.status();
        const std::vector<int64_t> rows = split.Global(*dist);
        ASSERT_EQ(rows.size(), static_cast<size_t>(k));
        ExpectNoNearDuplicates(p, rows, 0.999);
        // One partition's filter is one node's, and the method then runs on the same rows.
        if (sizes.size() == 1 && method != "facility_location" && method != "kcenter") {
          EXPECT_EQ(rows, OneNode(spec, {p.x.data(), p.n, p.dim}, keys, k, 1).rows) << method;
        }
      }
      // 400 distinct directions, and the merge finds them all.
      auto short_of = Distributed(spec, split, 401, 1);
      EXPECT_EQ(short_of.status().code(), absl::StatusCode::kFailedPrecondition)
          << method << ": " << short_of.status();
    }
  }
}

TEST(Distributed, HerdingBehindTheFilterRefillsWhenTheMergeRunsShort) {
  // Three partitions holding the same 1000 directions: each herds the same rows, so the first
  // oversampled picks overlap and the merge has to ask for more.
  const int64_t base = 1000, dim = 24;
  const std::vector<float> b = Clustered(base, dim, 4, 15);
  Planted p{b, base, dim};
  std::mt19937_64 rng(16);
  std::normal_distribution<float> noise(0, 1e-4f);
  for (int copy = 0; copy < 2; ++copy) {
    for (float v : b) p.x.push_back(v + noise(rng));
  }
  p.n = 3 * base;
  const std::vector<uint64_t> keys = Keys(p.n);
  const SelectorSpec spec = Spec("herding", 0.999);
  Split split(p.x, p.dim, keys, {base, base, base}, spec);
  auto dist = Distributed(spec, split, 900, 0);
  ASSERT_TRUE(dist.ok()) << dist.status();
  ExpectNoNearDuplicates(p, split.Global(*dist), 0.999);
  EXPECT_GT(dist->rounds, 2);  // summaries, picks, at least one refill
  EXPECT_EQ(Distributed(spec, split, base + 1, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// ---- errors and cancellation

#define RETURN_IF_FAILING() \
  if (calls_++ >= fail_from_) return absl::UnavailableError("member m3 (10.0.0.3:7000) is down")

// A partition whose member is unreachable from the n-th call on.
class Unreachable final : public Partition {
 public:
  Unreachable(Partition* inner, int fail_from) : inner_(inner), fail_from_(fail_from) {}
  absl::StatusOr<PartitionSummary> Summarize() override {
    RETURN_IF_FAILING();
    return inner_->Summarize();
  }
  absl::StatusOr<PartitionRows> SmallestHashes(uint64_t seed, int64_t k, bool v) override {
    RETURN_IF_FAILING();
    return inner_->SmallestHashes(seed, k, v);
  }
  absl::StatusOr<PartitionRows> SelectLocal(const LocalSelectRequest& r) override {
    RETURN_IF_FAILING();
    return inner_->SelectLocal(r);
  }
  absl::StatusOr<MixtureStatistics> MixtureStep(const MixtureParameters& p) override {
    RETURN_IF_FAILING();
    return inner_->MixtureStep(p);
  }
  absl::StatusOr<LikelihoodTail> LowestLikelihoods(const MixtureParameters& p, int64_t k) override {
    RETURN_IF_FAILING();
    return inner_->LowestLikelihoods(p, k);
  }

 private:
  Partition* inner_;
  int fail_from_;
  int calls_ = 0;
};

TEST(Distributed, Errors) {
  const int64_t n = 600, dim = 6;
  const std::vector<float> x = Clustered(n, dim, 2, 13);
  const std::vector<uint64_t> keys = Keys(n);
  const SelectorSpec spec = Spec("random");
  Split split(x, dim, keys, {200, 400}, spec);
  const auto code = [&](const SelectorSpec& s, int64_t k) {
    return Distributed(s, split, k, 0).status().code();
  };
  EXPECT_EQ(code(spec, 0), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(spec, n + 1), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Distributed(spec, split, n, 0).ok());
  SelectorSpec constrained = spec;
  constrained.constraint.emplace();
  constrained.constraint->group.assign(n, 0);
  EXPECT_EQ(code(constrained, 5), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Spec("random", 0, true), 5), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Spec("nope"), 5), absl::StatusCode::kInvalidArgument);
  SelectorSpec full = Spec("isa");
  full.isa.mixture.covariance = Covariance::kFull;
  auto full_status = Distributed(full, split, 5, 0).status();
  EXPECT_EQ(full_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(full_status.message().find("isa.covariance"), std::string::npos) << full_status;
  SelectorSpec pca = Spec("isa");
  pca.isa.pca_dim = 3;
  auto pca_status = Distributed(pca, split, 5, 0).status();
  EXPECT_EQ(pca_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(pca_status.message().find("isa.pca_dim"), std::string::npos) << pca_status;
  // Keys that do not match the rows.
  auto bad = MakeLocalPartition(MatrixView{x.data(), n, dim}, {1, 2, 3}, spec);
  Partition* bad_list[] = {bad.get()};
  EXPECT_EQ(SelectDistributed(spec, bad_list, 5, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An unreachable member's status comes back as it is, whichever call it fails.
  for (const std::string method : {"random", "isa", "herding", "facility_location", "dedup"}) {
    const SelectorSpec s = Spec(method, method == "dedup" ? 0.9999 : 0);
    Split parts(x, dim, keys, {200, 400}, s);
    for (int fail_from : {0, 1, 2, 4}) {
      Unreachable down(parts.partitions[1], fail_from);
      Partition* list[] = {parts.partitions[0], &down};
      auto result = SelectDistributed(s, list, 50, {});
      if (result.ok()) continue;  // the method made fewer calls than fail_from
      EXPECT_EQ(result.status(), absl::UnavailableError("member m3 (10.0.0.3:7000) is down"))
          << method << " " << fail_from;
    }
    Unreachable down(parts.partitions[1], 0);
    Partition* list[] = {parts.partitions[0], &down};
    EXPECT_EQ(SelectDistributed(s, list, 50, {}).status().code(), absl::StatusCode::kUnavailable);
  }
}

TEST(Distributed, Cancellation) {
  const int64_t n = 3000, dim = 16;
  const std::vector<float> x = Clustered(n, dim, 3, 14);
  const std::vector<uint64_t> keys = Keys(n);
  for (const std::string method : {"isa", "herding", "random", "facility_location", "dedup"}) {
    const SelectorSpec spec = Spec(method, method == "dedup" ? 0.9999 : 0);
    Split split(x, dim, keys, {1000, 2000}, spec);
    // Stops at the first call, at the second, and once the work has reached a share: before
    // the partitions' local runs (0.1), or, for isa, in EM on all rows (any share above 0).
    const double share = method == "isa" ? 1e-12 : method == "random" ? 1.0 : 0.1;
    for (int stop_at : {0, 1, -1}) {
      int calls = 0;
      SelectOptions options;
      options.progress = [&](double done) {
        const bool go = stop_at >= 0 ? calls < stop_at : done < share;
        ++calls;
        return go;
      };
      auto result = SelectDistributed(spec, split.partitions, 100, options);
      EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << method << " " << stop_at;
    }
  }
}

}  // namespace
}  // namespace curation::selection
