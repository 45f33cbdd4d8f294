// Diversity selection: the k-NN graph, facility location, k-center, dedup, quotas, rankings.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <numbers>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "selection/constraints.h"
#include "selection/dedup.h"
#include "selection/facility_location.h"
#include "selection/factory.h"
#include "selection/herding.h"
#include "selection/isa.h"
#include "selection/kcenter.h"
#include "selection/kernels.h"
#include "selection/knn_graph.h"
#include "selection/random_selector.h"
#include "selection/rng.h"
#include "selection/selector.h"

namespace curation::selection {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

struct Matrix {
  int64_t rows = 0;
  int64_t dim = 0;
  std::vector<float> data;

  Matrix(int64_t r, int64_t d) : rows(r), dim(d), data(r * d) {}
  float& at(int64_t i, int64_t j) { return data[i * dim + j]; }
  MatrixView view() const { return MatrixView{data.data(), rows, dim}; }
};

double Normal(std::mt19937_64& rng) {
  const double u = 1 - UniformDraw(rng);
  const double v = UniformDraw(rng);
  return std::sqrt(-2 * std::log(u)) * std::cos(2 * std::numbers::pi * v);
}

Matrix Gaussian(int64_t rows, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Matrix m(rows, dim);
  for (float& v : m.data) v = static_cast<float>(Normal(rng));
  return m;
}

// Rows around `centers` random directions (sd `spread` around each), so the graph has clear
// neighbourhoods and positive similarities.
Matrix Clustered(int64_t rows, int64_t dim, int centers, double spread, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Matrix c = Gaussian(centers, dim, seed + 1000);
  Matrix m(rows, dim);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t from = static_cast<int64_t>(BoundedDraw(rng, centers));
    for (int64_t j = 0; j < dim; ++j) {
      m.at(i, j) = static_cast<float>(c.at(from, j) + spread * Normal(rng));
    }
  }
  return m;
}

// Rows near a `rank`-dimensional subspace of `dim` dimensions (sd `noise` off it), with a
// shared offset as real embeddings have: what the IVF's principal-axis projection is for.
Matrix LowRank(int64_t rows, int64_t dim, int rank, double noise, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const Matrix basis = Gaussian(rank + 1, dim, seed + 1000);
  Matrix m(rows, dim);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < dim; ++j) m.at(i, j) = static_cast<float>(2 * basis.data[j]);
    for (int f = 1; f <= rank; ++f) {
      const double z = Normal(rng);
      for (int64_t j = 0; j < dim; ++j)
        m.at(i, j) += static_cast<float>(z * basis.data[f * dim + j]);
    }
    for (int64_t j = 0; j < dim; ++j) m.at(i, j) += static_cast<float>(noise * Normal(rng));
  }
  return m;
}

// Share of the edges of `truth` that `graph` also has.
double Recall(const KnnGraph& truth, const KnnGraph& graph) {
  int64_t found = 0;
  for (int64_t i = 0; i < truth.rows(); ++i) {
    const std::set<int32_t> want(truth.targets(i).begin(), truth.targets(i).end());
    for (int32_t j : graph.targets(i)) found += want.count(j);
  }
  return static_cast<double>(found) / static_cast<double>(truth.edges());
}

double Cosine(const Matrix& m, int64_t a, int64_t b) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t j = 0; j < m.dim; ++j) {
    ab += double(m.data[a * m.dim + j]) * m.data[b * m.dim + j];
    aa += double(m.data[a * m.dim + j]) * m.data[a * m.dim + j];
    bb += double(m.data[b * m.dim + j]) * m.data[b * m.dim + j];
  }
  return ab / std::sqrt(aa * bb);
}

SelectOptions Seeded(uint64_t seed) {
  SelectOptions options;
  options.seed = seed;
  return options;
}

// ---------------------------------------------------------------------------- k-NN graph

TEST(KnnGraphTest, ExactMatchesBruteForce) {
  const Matrix m = Clustered(300, 12, 6, 0.8, 1);
  KnnGraphOptions options;
  options.neighbours = 6;
  options.search = KnnSearch::kExact;
  absl::StatusOr<KnnGraph> graph = KnnGraph::Build(m.view(), options);
  ASSERT_TRUE(graph.ok()) << graph.status();
  for (int64_t i = 0; i < m.rows; ++i) {
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t j = 0; j < m.rows; ++j) {
      if (j != i) all.push_back({-Cosine(m, i, j), j});
    }
    std::sort(all.begin(), all.end());
    const auto targets = graph->targets(i);
    const auto sims = graph->similarities(i);
    ASSERT_EQ(targets.size(), 6u);
    EXPECT_EQ(targets[0], i);
    EXPECT_EQ(sims[0], 1.0f);
    for (int t = 1; t < 6; ++t) {
      EXPECT_EQ(targets[t], all[t - 1].second) << "row " << i;
      EXPECT_NEAR(sims[t], std::max(0.0, -all[t - 1].first), 1e-6);
    }
  }
}

TEST(KnnGraphTest, NegativeSimilaritiesAreDroppedAndZeroRowsHaveNoEdges) {
  Matrix m(4, 2);
  m.at(0, 0) = 1;   // (1, 0)
  m.at(1, 0) = -1;  // opposite of row 0
  m.at(2, 1) = 1;   // orthogonal to both
  // row 3 is all zeros
  KnnGraphOptions options;
  options.neighbours = 4;
  absl::StatusOr<KnnGraph> graph = KnnGraph::Build(m.view(), options);
  ASSERT_TRUE(graph.ok()) << graph.status();
  EXPECT_THAT(std::vector<int32_t>(graph->targets(0).begin(), graph->targets(0).end()),
              ElementsAre(0));
  EXPECT_THAT(std::vector<int32_t>(graph->targets(1).begin(), graph->targets(1).end()),
              ElementsAre(1));
  EXPECT_EQ(graph->targets(3).size(), 0u);
}

TEST(KnnGraphTest, IvfProbingEveryListIsExact) {
  const Matrix m = Clustered(2000, 16, 20, 0.5, 2);
  KnnGraphOptions exact;
  exact.neighbours = 8;
  exact.search = KnnSearch::kExact;
  KnnGraphOptions ivf = exact;
  ivf.search = KnnSearch::kIvf;
  ivf.ivf_lists = 16;
  ivf.ivf_probe = 16;
  absl::StatusOr<KnnGraph> a = KnnGraph::Build(m.view(), exact);
  absl::StatusOr<KnnGraph> b = KnnGraph::Build(m.view(), ivf);
  ASSERT_TRUE(a.ok() && b.ok());
  int64_t differ = 0;
  for (int64_t i = 0; i < m.rows; ++i) {
    differ += !std::equal(a->targets(i).begin(), a->targets(i).end(), b->targets(i).begin(),
                          b->targets(i).end());
  }
  EXPECT_EQ(differ, 0);
}

TEST(KnnGraphTest, IvfWithFewProbesHasHighRecall) {
  const Matrix m = Clustered(8000, 16, 50, 0.5, 3);
  KnnGraphOptions exact;
  exact.neighbours = 10;
  exact.search = KnnSearch::kExact;
  KnnGraphOptions ivf = exact;
  ivf.search = KnnSearch::kIvf;  // default lists (2 sqrt(n) = 283) and probes (12)
  absl::StatusOr<KnnGraph> a = KnnGraph::Build(m.view(), exact);
  absl::StatusOr<KnnGraph> b = KnnGraph::Build(m.view(), ivf);
  ASSERT_TRUE(a.ok() && b.ok());
  int64_t found = 0;
  for (int64_t i = 0; i < m.rows; ++i) {
    const std::set<int32_t> truth(a->targets(i).begin(), a->targets(i).end());
    for (int32_t j : b->targets(i)) found += truth.count(j);
  }
  EXPECT_GT(static_cast<double>(found) / a->edges(), 0.9);
}

TEST(KnnGraphTest, IvfInAProjectedSpaceHasHighRecall) {
  const Matrix m = LowRank(8000, 96, 6, 0.05, 5);
  KnnGraphOptions exact;
  exact.neighbours = 10;
  exact.search = KnnSearch::kExact;
  KnnGraphOptions ivf = exact;
  ivf.search = KnnSearch::kIvf;
  ivf.ivf_dim = 12;  // 96-d rows searched in 12 dimensions, candidates rescored exactly
  ivf.ivf_dim_min_rows = 0;
  KnnGraphOptions full = ivf;
  full.ivf_dim = 0;
  absl::StatusOr<KnnGraph> a = KnnGraph::Build(m.view(), exact);
  absl::StatusOr<KnnGraph> b = KnnGraph::Build(m.view(), ivf);
  absl::StatusOr<KnnGraph> f = KnnGraph::Build(m.view(), full);
  ASSERT_TRUE(a.ok() && b.ok() && f.ok());
  std::cout << "recall: projected " << Recall(*a, *b) << ", full dimension " << Recall(*a, *f)
            << std::endl;
  // Not below the unprojected search's by more than a little (the buckets differ too).
  EXPECT_GT(Recall(*a, *b), Recall(*a, *f) - 0.03);
  // Stored similarities are the exact ones, whatever space proposed the pair.
  for (int64_t i = 0; i < m.rows; i += 97) {
    const auto targets = b->targets(i);
    const auto sims = b->similarities(i);
    for (size_t t = 0; t < targets.size(); ++t) {
      EXPECT_NEAR(sims[t], std::max(0.0, Cosine(m, i, targets[t])), 1e-6) << i;
    }
  }
  // Too few dimensions lose neighbours the rescoring cannot bring back: the projection is
  // what is being measured.
  ivf.ivf_dim = 2;
  absl::StatusOr<KnnGraph> c = KnnGraph::Build(m.view(), ivf);
  ASSERT_TRUE(c.ok());
  EXPECT_LT(Recall(*a, *c), Recall(*a, *b));
}

TEST(KnnGraphTest, IvfGraphDoesNotDependOnTheThreadCount) {
  // Large enough (rows * dim >= kernels::kSerialBelowFloats) to run on several threads.
  const Matrix m = LowRank(50000, 96, 6, 0.05, 6);
  KnnGraphOptions ivf;
  ivf.neighbours = 8;
  ivf.search = KnnSearch::kIvf;
  ivf.ivf_dim = 12;
  ivf.ivf_dim_min_rows = 0;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  absl::StatusOr<KnnGraph> a = KnnGraph::Build(m.view(), ivf);
  omp_set_num_threads(std::max(2, threads));
  absl::StatusOr<KnnGraph> b = KnnGraph::Build(m.view(), ivf);
  omp_set_num_threads(threads);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->edges(), b->edges());
  for (int64_t i = 0; i < m.rows; ++i) {
    ASSERT_TRUE(std::equal(a->targets(i).begin(), a->targets(i).end(), b->targets(i).begin(),
                           b->targets(i).end()))
        << i;
    ASSERT_TRUE(std::equal(a->similarities(i).begin(), a->similarities(i).end(),
                           b->similarities(i).begin(), b->similarities(i).end()))
        << i;
  }
}

TEST(KnnGraphTest, RejectsBadInput) {
  Matrix m = Gaussian(10, 3, 4);
  m.at(5, 1) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(KnnGraph::Build(m.view(), {}).status().code(), absl::StatusCode::kInvalidArgument);
  KnnGraphOptions none;
  none.neighbours = 0;
  EXPECT_EQ(KnnGraph::Build(Gaussian(10, 3, 4).view(), none).status().code(),
            absl::StatusCode::kInvalidArgument);
  KnnGraphOptions bad_dim;
  bad_dim.ivf_dim = -1;
  EXPECT_EQ(KnnGraph::Build(Gaussian(10, 3, 4).view(), bad_dim).status().code(),
            absl::StatusCode::kInvalidArgument);
  KnnGraphOptions bad_oversample;
  bad_oversample.ivf_oversample = 0;
  EXPECT_EQ(KnnGraph::Build(Gaussian(10, 3, 4).view(), bad_oversample).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --------------------------------------------------------------------- facility location

// F(S) straight from the definition on a dense similarity matrix.
double DenseObjective(const std::vector<std::vector<double>>& sim, const std::vector<int64_t>& s) {
  double total = 0;
  for (size_t i = 0; i < sim.size(); ++i) {
    double best = 0;
    for (int64_t j : s) best = std::max(best, sim[i][j]);
    total += best;
  }
  return total;
}

TEST(FacilityLocationTest, ObjectiveAndGreedyMatchBruteForce) {
  // neighbours = rows makes the sparse graph dense, so F is checkable by definition.
  const int64_t n = 12;
  const Matrix m = Gaussian(n, 4, 5);
  KnnGraphOptions options;
  options.neighbours = n;
  absl::StatusOr<KnnGraph> graph = KnnGraph::Build(m.view(), options);
  ASSERT_TRUE(graph.ok());
  std::vector<std::vector<double>> sim(n, std::vector<double>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) sim[i][j] = i == j ? 1.0 : std::max(0.0, Cosine(m, i, j));
  }
  FacilityLocation fl(*graph);

  // Greedy by definition, then compare rows and gains.
  std::vector<int64_t> greedy;
  std::vector<double> gains;
  for (int step = 0; step < 4; ++step) {
    int64_t best = -1;
    double best_gain = -1;
    for (int64_t j = 0; j < n; ++j) {
      if (std::find(greedy.begin(), greedy.end(), j) != greedy.end()) continue;
      std::vector<int64_t> with = greedy;
      with.push_back(j);
      const double gain = DenseObjective(sim, with) - DenseObjective(sim, greedy);
      if (gain > best_gain + 1e-9) {
        best = j;
        best_gain = gain;
      }
    }
    greedy.push_back(best);
    gains.push_back(best_gain);
  }
  absl::StatusOr<SelectionResult> result = fl.Greedy(4, GreedyMode::kLazy, 0);
  ASSERT_TRUE(result.ok());
  EXPECT_THAT(result->rows, ElementsAreArray(greedy));
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(result->scores[t], gains[t], 1e-6);
  EXPECT_NEAR(fl.Objective(result->rows), DenseObjective(sim, greedy), 1e-6);

  // The best 4-subset by enumeration: greedy is within 1 - 1/e of it (and F is monotone).
  double opt = 0;
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = a + 1; b < n; ++b)
      for (int64_t c = b + 1; c < n; ++c)
        for (int64_t d = c + 1; d < n; ++d) {
          const std::vector<int64_t> s{a, b, c, d};
          EXPECT_NEAR(fl.Objective(s), DenseObjective(sim, s), 1e-6);
          opt = std::max(opt, DenseObjective(sim, s));
        }
  EXPECT_GE(fl.Objective(result->rows), (1 - 1 / std::numbers::e) * opt);
  EXPECT_LE(fl.Objective(result->rows), opt + 1e-9);
}

TEST(FacilityLocationTest, LazyEqualsPlainGreedy) {
  const Matrix m = Clustered(600, 8, 10, 1.0, 6);
  KnnGraphOptions options;
  options.neighbours = 10;
  absl::StatusOr<KnnGraph> graph = KnnGraph::Build(m.view(), options);
  ASSERT_TRUE(graph.ok());
  FacilityLocation fl(*graph);
  absl::StatusOr<SelectionResult> lazy = fl.Greedy(600, GreedyMode::kLazy, 0);
  absl::StatusOr<SelectionResult> plain = fl.Greedy(600, GreedyMode::kPlain, 0);
  ASSERT_TRUE(lazy.ok() && plain.ok());
  EXPECT_EQ(lazy->rows, plain->rows);
  EXPECT_EQ(lazy->scores, plain->scores);
  EXPECT_TRUE(std::is_sorted(lazy->scores.rbegin(), lazy->scores.rend()));
  // Ranking every row: a permutation, and the full objective is reached.
  std::vector<int64_t> sorted = lazy->rows;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 600; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_NEAR(std::accumulate(lazy->scores.begin(), lazy->scores.end(), 0.0),
              fl.Objective(lazy->rows), 1e-6);
}

TEST(FacilityLocationTest, StochasticGreedyIsSeededAndClose) {
  const Matrix m = Clustered(2000, 8, 40, 1.0, 7);
  KnnGraphOptions options;
  absl::StatusOr<KnnGraph> graph = KnnGraph::Build(m.view(), options);
  ASSERT_TRUE(graph.ok());
  FacilityLocation fl(*graph);
  absl::StatusOr<SelectionResult> lazy = fl.Greedy(100, GreedyMode::kLazy, 0);
  absl::StatusOr<SelectionResult> a = fl.Greedy(100, GreedyMode::kStochastic, 1);
  absl::StatusOr<SelectionResult> b = fl.Greedy(100, GreedyMode::kStochastic, 1);
  absl::StatusOr<SelectionResult> c = fl.Greedy(100, GreedyMode::kStochastic, 2);
  ASSERT_TRUE(lazy.ok() && a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->rows, b->rows);
  EXPECT_NE(a->rows, c->rows);
  EXPECT_EQ(std::set<int64_t>(a->rows.begin(), a->rows.end()).size(), 100u);
  EXPECT_GE(fl.Objective(a->rows), 0.95 * fl.Objective(lazy->rows));
}

TEST(FacilityLocationTest, SelectorIsAPrefixOfItsRankingAndDeterministic) {
  const Matrix m = Clustered(1500, 16, 30, 1.0, 8);
  std::unique_ptr<Selector> fl = MakeFacilityLocationSelector();
  EXPECT_EQ(fl->name(), "facility_location");
  absl::StatusOr<SelectionResult> ranking = RankAll(*fl, m.view(), Seeded(3));
  absl::StatusOr<SelectionResult> top = fl->Select(m.view(), 40, Seeded(9));
  absl::StatusOr<SelectionResult> again = fl->Select(m.view(), 40, Seeded(9));
  ASSERT_TRUE(ranking.ok() && top.ok() && again.ok());
  EXPECT_EQ(top->rows, again->rows);
  EXPECT_EQ(top->rows, std::vector<int64_t>(ranking->rows.begin(), ranking->rows.begin() + 40));
}

TEST(FacilityLocationTest, MatchesProxyTableReference) {
  // proxy_table.py's `fl`, run by Debian's Python with faiss, on the same rows.
  if (std::system("/usr/bin/python3 -c 'import faiss, numpy' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with faiss and numpy is not available";
  }
  const Matrix m = Clustered(800, 16, 25, 1.2, 9);
  const std::string dir = ::testing::TempDir();
  const std::string in = dir + "/fl_ref.f32", out = dir + "/fl_ref.txt";
  std::ofstream(in, std::ios::binary)
      .write(reinterpret_cast<const char*>(m.data.data()), m.data.size() * sizeof(float));
  const std::string script = R"PY(
import heapq, sys, numpy as np, faiss
Z = np.fromfile(sys.argv[1], dtype=np.float32).reshape(-1, 16).astype(np.float64); k = 60; nn = 20
Zn = np.ascontiguousarray(Z / (np.linalg.norm(Z, axis=1, keepdims=True) + 1e-12), dtype=np.float32)
ix = faiss.IndexFlatIP(Zn.shape[1]); ix.add(Zn); S, I = ix.search(Zn, nn); S = np.maximum(S, 0)
cols = [[] for _ in range(len(Z))]
for i in range(len(Z)):
    for s, j in zip(S[i], I[i]): cols[j].append((i, s))
best = np.zeros(len(Z)); ch = np.zeros(len(Z), bool); sel = []
h = [(-sum(s for _, s in cols[j]), j) for j in range(len(Z))]; heapq.heapify(h)
while len(sel) < k:
    g, j = heapq.heappop(h)
    if ch[j]: continue
    cur = sum(max(0.0, s - best[i]) for i, s in cols[j])
    if h and cur < -h[0][0] - 1e-12: heapq.heappush(h, (-cur, j)); continue
    ch[j] = True; sel.append(j)
    for i, s in cols[j]: best[i] = max(best[i], s)
open(sys.argv[2], "w").write(" ".join(map(str, sel)))
)PY";
  const std::string py = dir + "/fl_ref.py";
  std::ofstream(py) << script;
  ASSERT_EQ(std::system(("/usr/bin/python3 " + py + " " + in + " " + out).c_str()), 0);
  std::ifstream result(out);
  std::vector<int64_t> reference;
  for (int64_t row; result >> row;) reference.push_back(row);
  ASSERT_EQ(reference.size(), 60u);
  absl::StatusOr<SelectionResult> ours = MakeFacilityLocationSelector()->Select(m.view(), 60, {});
  ASSERT_TRUE(ours.ok());
  // Gains are float32 sums there and double here, so a near-tie may swap two picks; the sets
  // must agree almost entirely and the first picks exactly.
  EXPECT_EQ(std::vector<int64_t>(ours->rows.begin(), ours->rows.begin() + 10),
            std::vector<int64_t>(reference.begin(), reference.begin() + 10));
  const std::set<int64_t> a(ours->rows.begin(), ours->rows.end());
  int64_t shared = 0;
  for (int64_t r : reference) shared += a.count(r);
  EXPECT_GE(shared, 57);
}

TEST(FacilityLocationTest, ErrorsAndCancellation) {
  const Matrix m = Clustered(200, 4, 5, 1.0, 10);
  std::unique_ptr<Selector> fl = MakeFacilityLocationSelector();
  EXPECT_EQ(fl->Select(m.view(), 0, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fl->Select(m.view(), 201, {}).status().code(), absl::StatusCode::kInvalidArgument);
  SelectOptions cancel;
  cancel.progress = [](double) { return false; };
  EXPECT_EQ(fl->Select(m.view(), 10, cancel).status().code(), absl::StatusCode::kCancelled);
}

// ------------------------------------------------------------------------------ k-center

TEST(KCenterTest, KnownLineCase) {
  // 1-D points 0, 1, 2, 10, 11, 20 (Euclidean). The mean 7.33 is nearest 10 (row 3); from it
  // 0 and 20 are both 10 away, and the tie goes to the lower row 0.
  const std::vector<float> x = {0, 1, 2, 10, 11, 20};
  const MatrixView view{x.data(), 6, 1};
  KCenterOptions options;
  options.distance = KCenterDistance::kEuclidean;
  absl::StatusOr<SelectionResult> r = MakeKCenterSelector(options)->Select(view, 6, {});
  ASSERT_TRUE(r.ok());
  // After {10, 0}: distances 1->1, 2->2, 11->1, 20->10, so 20 (row 5) at 10; then 2 (row 2)
  // at 2; then 1 and 11 both at 1 -> row 1 first, then row 4 at 1.
  EXPECT_THAT(r->rows, ElementsAre(3, 0, 5, 2, 1, 4));
  EXPECT_TRUE(std::isinf(r->scores[0]));
  EXPECT_THAT(std::vector<double>(r->scores.begin() + 1, r->scores.end()),
              ElementsAre(10, 10, 2, 1, 1));
}

TEST(KCenterTest, WithinTwiceTheOptimalRadius) {
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const Matrix m = Gaussian(14, 2, 100 + seed);
    KCenterOptions options;
    options.distance = KCenterDistance::kEuclidean;
    absl::StatusOr<SelectionResult> r = MakeKCenterSelector(options)->Select(m.view(), 3, {});
    ASSERT_TRUE(r.ok());
    const auto radius = [&](const std::vector<int64_t>& s) {
      double worst = 0;
      for (int64_t i = 0; i < m.rows; ++i) {
        double nearest = std::numeric_limits<double>::infinity();
        for (int64_t c : s) {
          nearest = std::min<double>(nearest, std::hypot(m.data[i * 2] - m.data[c * 2],
                                                         m.data[i * 2 + 1] - m.data[c * 2 + 1]));
        }
        worst = std::max(worst, nearest);
      }
      return worst;
    };
    double opt = std::numeric_limits<double>::infinity();
    for (int64_t a = 0; a < m.rows; ++a)
      for (int64_t b = a + 1; b < m.rows; ++b)
        for (int64_t c = b + 1; c < m.rows; ++c) opt = std::min(opt, radius({a, b, c}));
    EXPECT_LE(radius(r->rows), 2 * opt + 1e-6) << "seed " << seed;
  }
}

TEST(KCenterTest, CosineIgnoresNormsAndSeedOnlyMovesTheSeededStart) {
  Matrix m = Gaussian(500, 8, 11);
  Matrix scaled = m;
  for (int64_t i = 0; i < m.rows; ++i) {
    for (int64_t j = 0; j < m.dim; ++j) scaled.at(i, j) *= static_cast<float>(1 + i % 7);
  }
  std::unique_ptr<Selector> kc = MakeKCenterSelector();
  absl::StatusOr<SelectionResult> a = kc->Select(m.view(), 30, Seeded(1));
  absl::StatusOr<SelectionResult> b = kc->Select(scaled.view(), 30, Seeded(2));
  absl::StatusOr<SelectionResult> all = kc->Select(m.view(), 500, Seeded(3));
  ASSERT_TRUE(a.ok() && b.ok() && all.ok());
  // Scaling rows by 1..7 changes float rounding slightly, not the choices.
  EXPECT_EQ(a->rows, b->rows);
  EXPECT_EQ(a->rows, std::vector<int64_t>(all->rows.begin(), all->rows.begin() + 30));
  EXPECT_TRUE(std::is_sorted(a->scores.rbegin(), a->scores.rend()));

  KCenterOptions seeded;
  seeded.start = KCenterStart::kSeeded;
  std::unique_ptr<Selector> ks = MakeKCenterSelector(seeded);
  std::set<int64_t> starts;
  for (uint64_t s = 0; s < 5; ++s) starts.insert((*ks->Select(m.view(), 3, Seeded(s))).rows[0]);
  EXPECT_GT(starts.size(), 1u);
  EXPECT_EQ((*ks->Select(m.view(), 10, Seeded(4))).rows,
            (*ks->Select(m.view(), 10, Seeded(4))).rows);
}

// --------------------------------------------------------------------------------- dedup

TEST(DedupTest, GroupsKeepTheirLowestRow) {
  // Three directions; rows 0, 3, 7 are copies of one (scaled or slightly perturbed), 1 and 5
  // of another, the rest distinct.
  Matrix base = Gaussian(8, 16, 12);
  Matrix m = base;
  const auto copy = [&](int64_t to, int64_t from, float scale, float noise) {
    for (int64_t j = 0; j < m.dim; ++j) {
      m.at(to, j) = scale * base.at(from, j) + noise * static_cast<float>(j % 3 - 1);
    }
  };
  copy(3, 0, 2.0f, 0.0f);
  copy(7, 0, 1.0f, 0.01f);
  copy(5, 1, 0.5f, 0.0f);
  DedupOptions options;
  options.threshold = 0.99;
  absl::StatusOr<DedupResult> r = Deduplicate(m.view(), options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->kept, ElementsAre(0, 1, 2, 4, 6));
  EXPECT_THAT(r->representative, ElementsAre(0, 1, 2, 0, 4, 1, 6, 0));
}

TEST(DedupTest, ThresholdIsInclusiveCosine) {
  // Unit vectors at 0 and at angle acos(0.9) (cosine 0.9 up to float rounding).
  const float c = 0.9f, s = std::sqrt(1 - 0.9f * 0.9f);
  const std::vector<float> x = {1, 0, c, s, 0, 1};
  const MatrixView view{x.data(), 3, 2};
  DedupOptions strict;
  strict.threshold = 0.95;
  DedupOptions loose;
  loose.threshold = 0.85;
  EXPECT_THAT((*Deduplicate(view, strict)).kept, ElementsAre(0, 1, 2));
  EXPECT_THAT((*Deduplicate(view, loose)).kept, ElementsAre(0, 2));
  DedupOptions bad;
  bad.threshold = 1.5;
  EXPECT_EQ(Deduplicate(view, bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DedupTest, AsAPreFilterReturnsOnlyKeptRows) {
  Matrix m = Clustered(400, 8, 5, 0.0, 13);  // 5 distinct directions, 400 exact copies
  absl::StatusOr<DedupResult> d = Deduplicate(m.view(), {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kept.size(), 5u);
  std::unique_ptr<Selector> dedup = MakeDedupSelector();
  EXPECT_EQ(dedup->name(), "dedup");
  absl::StatusOr<SelectionResult> r = dedup->Select(m.view(), 5, Seeded(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::set<int64_t>(r->rows.begin(), r->rows.end()),
            std::set<int64_t>(d->kept.begin(), d->kept.end()));
  EXPECT_EQ(dedup->Select(m.view(), 6, {}).status().code(), absl::StatusCode::kFailedPrecondition);
  std::unique_ptr<Selector> dedup_fl = MakeDedupSelector({}, MakeFacilityLocationSelector());
  EXPECT_EQ(dedup_fl->name(), "dedup+facility_location");
  absl::StatusOr<SelectionResult> f = dedup_fl->Select(m.view(), 3, {});
  ASSERT_TRUE(f.ok());
  for (int64_t row : f->rows) EXPECT_EQ(d->representative[row], row);
}

// -------------------------------------------------------------------------------- quotas

TEST(QuotaTest, LargestRemainderKnownValues) {
  const std::vector<int64_t> big = {100, 100, 100};
  // 7 * (5, 3, 2) / 10 = 3.5, 2.1, 1.4 -> floors 3, 2, 1; the one left goes to remainder 0.5.
  EXPECT_THAT(*LargestRemainderQuotas(std::vector<double>{5, 3, 2}, big, 7), ElementsAre(4, 2, 1));
  // Equal remainders: the lower group first.
  EXPECT_THAT(*LargestRemainderQuotas(std::vector<double>{1, 1, 1}, big, 2), ElementsAre(1, 1, 0));
  EXPECT_THAT(*LargestRemainderQuotas(std::vector<double>{1, 1, 1}, big, 100),
              ElementsAre(34, 33, 33));
  // Non-integral weights (a requested ratio).
  EXPECT_THAT(
      *LargestRemainderQuotas(std::vector<double>{0.3, 0.7}, std::vector<int64_t>{50, 50}, 10),
      ElementsAre(3, 7));
  // A requested ratio a small group cannot meet.
  EXPECT_EQ(LargestRemainderQuotas(std::vector<double>{1, 1}, std::vector<int64_t>{2, 50}, 10)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(LargestRemainderQuotas(std::vector<double>{0, 0}, big, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Proportional to sizes never exceeds a size and always sums to k.
  std::mt19937_64 rng(14);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int64_t> sizes(1 + BoundedDraw(rng, 6));
    int64_t total = 0;
    for (int64_t& s : sizes) total += s = static_cast<int64_t>(BoundedDraw(rng, 50));
    if (total == 0) continue;
    const int64_t k = static_cast<int64_t>(BoundedDraw(rng, total + 1));
    const std::vector<double> w(sizes.begin(), sizes.end());
    absl::StatusOr<std::vector<int64_t>> q = LargestRemainderQuotas(w, sizes, k);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(std::accumulate(q->begin(), q->end(), int64_t{0}), k);
    for (size_t g = 0; g < sizes.size(); ++g) {
      EXPECT_LE((*q)[g], sizes[g]);
      EXPECT_LT(std::abs((*q)[g] - double(k) * sizes[g] / total), 1.0);
    }
  }
}

TEST(QuotaTest, QuotasHoldExactlyAndPrefixesStayProportional) {
  const Matrix m = Clustered(900, 8, 12, 1.0, 15);
  std::vector<int32_t> group(900);
  for (int64_t i = 0; i < 900; ++i) group[i] = i < 600 ? 0 : (i < 800 ? 1 : 2);
  const std::vector<int64_t> quota = {60, 25, 15};
  std::unique_ptr<Selector> fl = MakeFacilityLocationSelector();
  absl::StatusOr<SelectionResult> r = SelectWithQuotas(*fl, m.view(), group, quota, Seeded(5));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows.size(), 100u);
  std::vector<int64_t> count(3, 0);
  for (size_t t = 0; t < r->rows.size(); ++t) {
    ++count[group[r->rows[t]]];
    for (int g = 0; g < 3; ++g) {
      EXPECT_LE(std::abs(count[g] - double(t + 1) * quota[g] / 100), 1.0) << "prefix " << t + 1;
    }
  }
  EXPECT_THAT(count, ElementsAre(60, 25, 15));
  // Within a group, the inner method's own selection on that group's rows.
  Matrix g1(200, 8);
  std::copy(m.data.begin() + 600 * 8, m.data.begin() + 800 * 8, g1.data.begin());
  absl::StatusOr<SelectionResult> alone = fl->Select(g1.view(), 25, {});
  ASSERT_TRUE(alone.ok());
  std::vector<int64_t> from_group;
  for (int64_t row : r->rows) {
    if (group[row] == 1) from_group.push_back(row - 600);
  }
  EXPECT_EQ(from_group, alone->rows);

  EXPECT_EQ(
      SelectWithQuotas(*fl, m.view(), group, std::vector<int64_t>{601, 0, 0}, {}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(QuotaTest, ConstrainedSelectorKeepsTheRatioAndIsSeeded) {
  // Label balance: 300 "desirable" rows, 100 "undesirable".
  const Matrix m = Gaussian(400, 4, 16);
  GroupConstraint keep;
  keep.group.assign(400, 0);
  std::fill(keep.group.begin() + 300, keep.group.end(), 1);
  GroupConstraint even = keep;
  even.shares = {1, 1};
  std::shared_ptr<const Selector> random = MakeRandomSelector();
  std::unique_ptr<Selector> keep_ratio = MakeConstrainedSelector(random, keep);
  std::unique_ptr<Selector> balanced = MakeConstrainedSelector(random, even);
  const auto labels = [&](const SelectionResult& r) {
    int64_t ones = 0;
    for (int64_t row : r.rows) ones += row >= 300;
    return ones;
  };
  absl::StatusOr<SelectionResult> a = keep_ratio->Select(m.view(), 41, Seeded(1));
  absl::StatusOr<SelectionResult> b = balanced->Select(m.view(), 41, Seeded(1));
  absl::StatusOr<SelectionResult> a2 = keep_ratio->Select(m.view(), 41, Seeded(1));
  absl::StatusOr<SelectionResult> a3 = keep_ratio->Select(m.view(), 41, Seeded(2));
  ASSERT_TRUE(a.ok() && b.ok() && a2.ok() && a3.ok());
  EXPECT_EQ(labels(*a), 10);  // 41 * 1/4 = 10.25
  EXPECT_EQ(labels(*b), 20);  // 20.5 each, the tie to group 0
  EXPECT_EQ(a->rows, a2->rows);
  EXPECT_NE(a->rows, a3->rows);
  EXPECT_EQ(balanced->Select(m.view(), 250, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(keep_ratio->Select(Gaussian(10, 4, 1).view(), 5, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ------------------------------------------------------------------------------- herding

TEST(HerdingTest, KnownLineCase) {
  // 1-D points 0, 1, 2, 3, 10 with mean 3.2. Targets: 3.2 -> 3; 3.4 -> 2; 4.6 -> 1 (3.6 from
  // 1, 4.6 from 0, 5.4 from 10); 6.8 -> 10; 0 -> 0.
  const std::vector<float> x = {0, 1, 2, 3, 10};
  absl::StatusOr<SelectionResult> r =
      MakeHerdingSelector()->Select(MatrixView{x.data(), 5, 1}, 5, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->rows, ElementsAre(3, 2, 1, 4, 0));
  const std::vector<double> want = {0.2, 0.7, 1.2, 0.8, 0.0};
  for (int t = 0; t < 5; ++t) EXPECT_NEAR(r->scores[t], want[t], 1e-6) << t;
}

TEST(HerdingTest, IsTheGreedyMeanMatcherAndBeatsRandom) {
  const Matrix m = Gaussian(400, 6, 20);
  std::vector<double> mu(6, 0.0);
  for (int64_t i = 0; i < m.rows; ++i) {
    for (int j = 0; j < 6; ++j) mu[j] += m.data[i * 6 + j] / 400.0;
  }
  const auto discrepancy = [&](const std::vector<int64_t>& rows, int64_t count) {
    double sq = 0;
    for (int j = 0; j < 6; ++j) {
      double mean = 0;
      for (int64_t t = 0; t < count; ++t) mean += m.data[rows[t] * 6 + j] / count;
      sq += (mean - mu[j]) * (mean - mu[j]);
    }
    return std::sqrt(sq);
  };
  // Greedy by definition, in double.
  std::vector<int64_t> greedy;
  std::vector<char> taken(400, 0);
  for (int t = 0; t < 30; ++t) {
    int64_t best = -1;
    double best_d = 0;
    for (int64_t i = 0; i < 400; ++i) {
      if (taken[i]) continue;
      greedy.push_back(i);
      const double d = discrepancy(greedy, t + 1);
      greedy.pop_back();
      if (best < 0 || d < best_d) {
        best = i;
        best_d = d;
      }
    }
    taken[best] = 1;
    greedy.push_back(best);
  }
  absl::StatusOr<SelectionResult> r = MakeHerdingSelector()->Select(m.view(), 30, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows, greedy);
  for (int t = 0; t < 30; ++t) EXPECT_NEAR(r->scores[t], discrepancy(r->rows, t + 1), 1e-5);
  double random_mean = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    random_mean +=
        discrepancy((*MakeRandomSelector()->Select(m.view(), 30, Seeded(seed))).rows, 30) / 10;
  }
  EXPECT_LT(r->scores.back(), 0.2 * random_mean);
}

TEST(HerdingTest, BucketedSearchIsCloseToExact) {
  const Matrix m = Clustered(6000, 12, 30, 1.0, 21);
  HerdingOptions bucketed;
  bucketed.exact_max_rows = 1000;
  absl::StatusOr<SelectionResult> exact = MakeHerdingSelector()->Select(m.view(), 200, {});
  absl::StatusOr<SelectionResult> approx = MakeHerdingSelector(bucketed)->Select(m.view(), 200, {});
  absl::StatusOr<SelectionResult> again = MakeHerdingSelector(bucketed)->Select(m.view(), 200, {});
  absl::StatusOr<SelectionResult> prefix = MakeHerdingSelector(bucketed)->Select(m.view(), 50, {});
  ASSERT_TRUE(exact.ok() && approx.ok() && again.ok() && prefix.ok());
  EXPECT_EQ(approx->rows, again->rows);
  EXPECT_EQ(prefix->rows, std::vector<int64_t>(approx->rows.begin(), approx->rows.begin() + 50));
  EXPECT_EQ(std::set<int64_t>(approx->rows.begin(), approx->rows.end()).size(), 200u);
  EXPECT_LT(approx->scores.back(), 2 * exact->scores.back() + 1e-3);
}

// Probing every bucket and re-ranking every row leaves nothing to the estimates: the exact
// path's rows and scores, bit for bit.
TEST(HerdingTest, BucketedProbingAndRerankingEverythingIsExact) {
  const Matrix m = Clustered(3000, 13, 20, 1.0, 22);
  HerdingOptions all;
  all.exact_max_rows = 100;
  all.ivf_lists = 16;
  all.ivf_probe = 1000;
  all.ivf_rerank = 3000;
  absl::StatusOr<SelectionResult> exact = MakeHerdingSelector()->Select(m.view(), 150, {});
  absl::StatusOr<SelectionResult> bucketed = MakeHerdingSelector(all)->Select(m.view(), 150, {});
  ASSERT_TRUE(exact.ok() && bucketed.ok());
  EXPECT_EQ(bucketed->rows, exact->rows);
  EXPECT_EQ(bucketed->scores, exact->scores);
}

// Default bucketing on more floats than kSerialBelowFloats, so that it runs on every thread:
// the same rows and scores as on one.
TEST(HerdingTest, BucketedIsTheSameOnOneThread) {
  const Matrix m = Clustered(66000, 64, 50, 1.0, 31);
  ASSERT_GE(m.rows * m.dim, kernels::kSerialBelowFloats);
  absl::StatusOr<SelectionResult> parallel = MakeHerdingSelector()->Select(m.view(), 300, {});
  absl::StatusOr<SelectionResult> serial;
  {
    const kernels::SerialOpenMpScope one_thread(true);
    serial = MakeHerdingSelector()->Select(m.view(), 300, {});
  }
  ASSERT_TRUE(parallel.ok() && serial.ok());
  EXPECT_EQ(parallel->rows, serial->rows);
  EXPECT_EQ(parallel->scores, serial->scores);
}

// The default bucketed path keeps the subset's mean about as close as exact herding does.
TEST(HerdingTest, BucketedObjectiveIsNearExact) {
  const Matrix m = Clustered(20000, 32, 40, 1.0, 23);
  HerdingOptions bucketed;
  bucketed.exact_max_rows = 1000;
  absl::StatusOr<SelectionResult> exact = MakeHerdingSelector()->Select(m.view(), 400, {});
  absl::StatusOr<SelectionResult> approx = MakeHerdingSelector(bucketed)->Select(m.view(), 400, {});
  ASSERT_TRUE(exact.ok() && approx.ok());
  std::printf("herding 20k x 32, k 400: exact %.5f, bucketed %.5f\n", exact->scores.back(),
              approx->scores.back());
  EXPECT_LT(approx->scores.back(), 1.25 * exact->scores.back());
}

TEST(HerdingTest, RejectsOptionsOutOfRange) {
  const Matrix m = Clustered(200, 4, 4, 1.0, 5);
  HerdingOptions no_probe, no_rerank, negative_lists;
  no_probe.ivf_probe = 0;
  no_rerank.ivf_rerank = 0;
  negative_lists.ivf_lists = -1;
  for (const HerdingOptions& o : {no_probe, no_rerank, negative_lists}) {
    EXPECT_EQ(MakeHerdingSelector(o)->Select(m.view(), 10, {}).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// ----------------------------------------------------------------------------- factory

TEST(DiversityFactoryTest, KnownNames) {
  for (const char* name : {"facility_location", "kcenter", "herding", "dedup"}) {
    absl::StatusOr<std::unique_ptr<Selector>> s = MakeSelector(name);
    ASSERT_TRUE(s.ok()) << name;
    EXPECT_EQ((*s)->name(), name);
  }
}

// 240 rows in random directions, then exact copies of the first 60: dedup keeps at most 240.
Matrix WithDuplicates(uint64_t seed) {
  const Matrix base = Clustered(240, 8, 12, 0.4, seed);
  Matrix m(300, 8);
  std::copy(base.data.begin(), base.data.end(), m.data.begin());
  std::copy_n(base.data.begin(), 60 * 8, m.data.begin() + 240 * 8);
  return m;
}

constexpr const char* kMethods[] = {"isa",     "random", "herding", "facility_location",
                                    "kcenter", "dedup"};

DedupOptions AtThreshold(double threshold) {
  DedupOptions options;
  options.threshold = threshold;
  return options;
}

// The method as the server composed it by hand before the factory existed.
std::shared_ptr<const Selector> HandMethod(const std::string& method, double dedup) {
  std::shared_ptr<const Selector> s;
  if (method == "isa") s = MakeIsaSelector();
  if (method == "random") s = MakeRandomSelector();
  if (method == "herding") s = MakeHerdingSelector();
  if (method == "facility_location") s = MakeFacilityLocationSelector();
  if (method == "kcenter") s = MakeKCenterSelector();
  if (method == "dedup") return MakeDedupSelector(AtThreshold(dedup > 0 ? dedup : 0.95));
  if (dedup > 0) s = MakeDedupSelector(AtThreshold(dedup), s);
  return s;
}

void ExpectSame(const absl::StatusOr<SelectionResult>& a, const absl::StatusOr<SelectionResult>& b,
                const std::string& what) {
  ASSERT_TRUE(a.ok()) << what << ": " << a.status();
  ASSERT_TRUE(b.ok()) << what << ": " << b.status();
  EXPECT_EQ(a->rows, b->rows) << what;
  EXPECT_EQ(a->scores, b->scores) << what;
}

TEST(FactoryTest, SameResultsAsTheHandComposition) {
  const Matrix m = WithDuplicates(21);
  GroupConstraint constraint;
  for (int64_t i = 0; i < m.rows; ++i) constraint.group.push_back(i % 3 == 0 ? 1 : 0);
  for (const std::string method : kMethods) {
    for (double dedup : {0.0, 0.97}) {
      for (bool constrained : {false, true}) {
        const std::string what =
            method + " dedup=" + std::to_string(dedup) + (constrained ? " constrained" : "");
        SelectorSpec spec;
        spec.method = method;
        spec.dedup_threshold = dedup;
        if (constrained) spec.constraint = constraint;
        absl::StatusOr<std::unique_ptr<Selector>> made = MakeSelector(spec);
        ASSERT_TRUE(made.ok()) << what << ": " << made.status();
        std::shared_ptr<const Selector> hand = HandMethod(method, dedup);
        if (constrained) hand = MakeConstrainedSelector(hand, constraint);
        EXPECT_EQ((*made)->name(), hand->name()) << what;
        ExpectSame((*made)->Select(m.view(), 30, Seeded(4)), hand->Select(m.view(), 30, Seeded(4)),
                   what);
      }
    }
  }
}

TEST(FactoryTest, RankingIsRankAllOrTheKeptRowsOrder) {
  const Matrix m = WithDuplicates(22);
  for (const std::string method : kMethods) {
    for (double dedup : {0.0, 0.97}) {
      const std::string what = method + " dedup=" + std::to_string(dedup);
      SelectorSpec spec;
      spec.method = method;
      spec.dedup_threshold = dedup;
      spec.ranking = true;
      absl::StatusOr<std::unique_ptr<Selector>> made = MakeSelector(spec);
      ASSERT_TRUE(made.ok()) << what << ": " << made.status();
      std::shared_ptr<const Selector> hand = HandMethod(method, dedup);
      absl::StatusOr<SelectionResult> ranked = (*made)->Select(m.view(), 30, Seeded(6));
      if (dedup == 0 && method != "dedup") {
        ExpectSame(ranked, RankAll(*hand, m.view(), Seeded(6)), what);
        EXPECT_EQ(ranked->rows.size(), 300u) << what;
        continue;
      }
      // As the server did: dedup, then Select(kept rows) of the dedup-wrapped method.
      absl::StatusOr<DedupResult> groups =
          Deduplicate(m.view(), AtThreshold(dedup > 0 ? dedup : 0.95));
      ASSERT_TRUE(groups.ok());
      const int64_t kept = static_cast<int64_t>(groups->kept.size());
      ASSERT_GE(kept, 30);
      ASSERT_LE(kept, 240);
      ExpectSame(ranked, hand->Select(m.view(), kept, Seeded(6)), what);
      EXPECT_EQ(static_cast<int64_t>(ranked->rows.size()), kept) << what;
      // A budget above the kept rows cannot be ranked.
      const absl::Status short_of = (*made)->Select(m.view(), kept + 1, Seeded(6)).status();
      EXPECT_EQ(short_of.code(), absl::StatusCode::kFailedPrecondition) << what;
      EXPECT_THAT(
          std::string(short_of.message()),
          ::testing::HasSubstr("only " + std::to_string(kept) + " rows are left after dedup"))
          << what;
    }
  }
}

TEST(FactoryTest, RefusesRankingsThatAreNotPrefixConsistent) {
  SelectorSpec spec;
  spec.method = "herding";
  spec.ranking = true;
  spec.constraint = GroupConstraint{.group = {0, 1, 0, 1}, .shares = {}};
  EXPECT_EQ(MakeSelector(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.constraint.reset();
  EXPECT_TRUE(MakeSelector(spec).ok());
  spec.method = "facility_location";
  spec.facility_location.greedy = GreedyMode::kStochastic;
  EXPECT_EQ(MakeSelector(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.ranking = false;
  EXPECT_TRUE(MakeSelector(spec).ok());
  spec.dedup_threshold = 1.5;
  EXPECT_EQ(MakeSelector(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FactoryTest, UnknownMethodNamesTheKnownOnes) {
  SelectorSpec spec;
  spec.method = "density";
  const absl::Status s = MakeSelector(spec).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              ::testing::HasSubstr("unknown selection method \"density\""));
  for (const char* known : kMethods) {
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(known));
  }
}

}  // namespace
}  // namespace curation::selection
