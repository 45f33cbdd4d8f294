// Cancellation liveness: once SelectOptions::progress (or a fit's FitProgress) returns false, a
// large selection returns CANCELLED promptly, from inside EM iterations, factorisations, graph
// builds and greedy loops alike. Each test stops a case that would run for many seconds after
// about 0.2 s and allows a generous 5 s for the call to return (a liveness bound, not a speed
// test: these run under ASan in CI); the measured latency is printed for the log.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "selection/factory.h"
#include "selection/gaussian_mixture.h"
#include "selection/isa.h"
#include "selection/knn_graph.h"
#include "selection/rows.h"
#include "selection/selector.h"
#include "tests/unit/float_reader.h"

namespace curation::selection {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kRunFor = std::chrono::milliseconds(200);
constexpr double kLivenessSeconds = 5;

// Uniform noise around a few random centres: enough structure for every method to do real
// work, cheap to generate.
std::vector<float> Noise(int64_t rows, int64_t dim, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> centres(8 * dim);
  for (float& v : centres) v = 4 * u(rng);
  std::vector<float> x(rows * dim);
  for (int64_t i = 0; i < rows; ++i) {
    const float* c = &centres[(i % 8) * dim];
    for (int64_t j = 0; j < dim; ++j) x[i * dim + j] = c[j] + u(rng);
  }
  return x;
}

// A progress callback that says stop once kRunFor has passed since it was made. The stop is
// what a caller's flag would say from that moment on (the server sets one when its client
// leaves), so the latency runs from then, not from the first poll that sees it: a method that
// polls rarely shows up as a long latency.
struct StopAfter {
  Clock::time_point start = Clock::now();
  bool stopped = false;
  int64_t calls = 0;

  std::function<bool(double)> Callback() {
    return [this](double) {
      ++calls;
      stopped = stopped || Clock::now() - start >= kRunFor;
      return !stopped;
    };
  }

  // Seconds from the stop to now.
  double Latency() const {
    return std::chrono::duration<double>(Clock::now() - (start + kRunFor)).count();
  }
};

void ExpectPromptCancel(const std::string& what, const absl::Status& status,
                        const StopAfter& stop) {
  ASSERT_TRUE(stop.stopped) << what << " finished before the stop: make the case larger";
  const double latency = stop.Latency();
  std::cout << "[ latency  ] " << what << ": " << latency * 1000 << " ms from the stop to the "
            << "return (" << stop.calls << " progress calls)" << std::endl;
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << what << ": " << status;
  EXPECT_LT(latency, kLivenessSeconds) << what;
}

void RunSelector(const std::string& what, const SelectorSpec& spec, int64_t rows, int64_t dim,
                 int64_t k) {
  const std::vector<float> x = Noise(rows, dim, 7);
  absl::StatusOr<std::unique_ptr<Selector>> selector = MakeSelector(spec);
  ASSERT_TRUE(selector.ok()) << selector.status();
  StopAfter stop;
  SelectOptions options;
  options.seed = 3;
  options.progress = stop.Callback();
  const absl::Status status =
      (*selector)->Select(MatrixView{x.data(), rows, dim}, k, options).status();
  ExpectPromptCancel(what, status, stop);
}

TEST(CancellationTest, FullCovarianceMixtureStopsInsideAnIteration) {
  // 16 components of 512 dimensions: every E step, scatter pass and M step's factorisations
  // take far longer than the stop allows.
  const int64_t rows = 2000, dim = 512;
  const std::vector<float> x = Noise(rows, dim, 1);
  MixtureOptions options;
  options.components = 16;
  options.covariance = Covariance::kFull;
  options.init = MixtureInit::kKMeansPlusPlus;
  options.reg_covar = 1e-3;
  StopAfter stop;
  const absl::Status status =
      GaussianMixture::Fit({x.data(), rows, dim}, options, stop.Callback()).status();
  ExpectPromptCancel("full covariance, 16 x 512-d, 2000 rows", status, stop);
}

// The size that used to run ~20 s per EM iteration without a check (1.5 GB of covariances and
// factors): the ISA bomb of the jobs issue, stopped inside its first iterations.
TEST(CancellationTest, FullCovarianceAtScale) {
  const int64_t rows = 2000, dim = 1024;
  const std::vector<float> x = Noise(rows, dim, 1);
  MixtureOptions options;
  options.components = 64;
  options.covariance = Covariance::kFull;
  options.reg_covar = 1e-3;
  StopAfter stop;
  const absl::Status status =
      GaussianMixture::Fit({x.data(), rows, dim}, options, stop.Callback()).status();
  ExpectPromptCancel("full covariance, 64 x 1024-d, 2000 rows", status, stop);
}

TEST(CancellationTest, DiagonalIsaStopsInsideAnIteration) {
  SelectorSpec spec;
  spec.method = "isa";
  spec.isa.mixture.components = 32;
  spec.isa.mixture.init_sample_rows = 0;  // k-means and EM on every row
  RunSelector("isa diag, 32 components, 200k x 128", spec, 200'000, 128, 100);
}

TEST(CancellationTest, IsaWithPcaStops) {
  SelectorSpec spec;
  spec.method = "isa";
  spec.isa.pca_dim = 64;
  spec.isa.mixture.components = 16;
  spec.isa.mixture.covariance = Covariance::kFull;
  spec.isa.mixture.init_sample_rows = 0;
  RunSelector("isa pca 64 + full, 16 components, 100k x 256", spec, 100'000, 256, 100);
}

TEST(CancellationTest, HerdingStops) {
  SelectorSpec spec;
  spec.method = "herding";
  RunSelector("herding ranking, 100k x 256", spec, 100'000, 256, 100'000);
}

TEST(CancellationTest, KCenterStops) {
  SelectorSpec spec;
  spec.method = "kcenter";
  RunSelector("kcenter, 100k x 256", spec, 100'000, 256, 20'000);
}

TEST(CancellationTest, FacilityLocationStopsInTheGraphBuild) {
  SelectorSpec spec;
  spec.method = "facility_location";
  RunSelector("facility location, 100k x 256", spec, 100'000, 256, 1'000);
}

TEST(CancellationTest, ProjectedIvfGraphStops) {
  // The projected IVF (normally from 200,000 rows): principal axes, k-means, bucket scan.
  const int64_t rows = 100'000, dim = 256;
  const std::vector<float> x = Noise(rows, dim, 9);
  KnnGraphOptions options;
  options.search = KnnSearch::kIvf;
  options.ivf_dim_min_rows = 0;
  StopAfter stop;
  const absl::Status status =
      KnnGraph::Build(MatrixView{x.data(), rows, dim}, options, stop.Callback()).status();
  ExpectPromptCancel("projected IVF graph, 100k x 256", status, stop);
}

TEST(CancellationTest, ProjectedIvfGraphOnRowsReadInPlaceStops) {
  // As above, with every row read through a RowReader: the norms, the projection and the
  // rescoring's gathers.
  const int64_t rows = 100'000, dim = 256;
  const Rows x(std::make_shared<FloatReader>(Noise(rows, dim, 9), dim));
  KnnGraphOptions options;
  options.search = KnnSearch::kIvf;
  options.ivf_dim_min_rows = 0;
  StopAfter stop;
  const absl::Status status = KnnGraph::Build(x, options, stop.Callback()).status();
  ExpectPromptCancel("projected IVF graph on rows read in place, 100k x 256", status, stop);
}

TEST(CancellationTest, ExactGraphDedupStops) {
  SelectorSpec spec;
  spec.method = "dedup";
  RunSelector("dedup (exact graph), 30k x 256", spec, 30'000, 256, 100);
}

TEST(CancellationTest, ConstrainedRandomStops) {
  SelectorSpec spec;
  spec.method = "herding";
  GroupConstraint constraint;
  for (int64_t i = 0; i < 100'000; ++i) constraint.group.push_back(i % 2);
  spec.constraint = constraint;
  RunSelector("herding with label balance, 100k x 256", spec, 100'000, 256, 50'000);
}

}  // namespace
}  // namespace curation::selection
