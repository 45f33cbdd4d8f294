// Agreement of the Gaussian mixture and ISA with scikit-learn, the reference Python users trust,
// on real embeddings: the bundled Anthropic HH sample (tests/data) embedded by the built-in
// embedder, as the service would embed it, one row per prompt + completion.
//
//   (a) Given the same parameters, per-row log-likelihoods agree with sklearn's score_samples to
//       1e-6 relative and ISA's top 10% is the same rows in the same order.
//   (b) Fitted from scratch (same K, covariance type, tol, reg_covar), our mean log-likelihood
//       is no worse than sklearn's by more than 0.1% relative (three seeds on each side).
// For diag and full covariances; full runs on a PCA projection (16 dimensions), as a user with
// high-dimensional embeddings would. Needs /usr/bin/python3 with scikit-learn (scripts/deps
// installs python3-sklearn); skipped without it.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "embedding/embedder.h"
#include "formats/record_reader.h"
#include "gtest/gtest.h"
#include "selection/gaussian_mixture.h"
#include "selection/isa.h"
#include "selection/pca.h"
#include "selection/selector.h"
#include "tests/support/scratch_dir.h"

namespace curation::selection {
namespace {

namespace fs = std::filesystem;

constexpr char kPython[] = "/usr/bin/python3";

bool HaveSklearn() {
  const std::string cmd = std::string(kPython) + " -c 'import sklearn' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// The repository's bundled samples, found from this file's path.
fs::path DataDir() { return fs::path(__FILE__).parent_path().parent_path() / "data"; }

struct Matrix {
  int64_t rows = 0;
  int64_t dim = 0;
  std::vector<float> data;
  MatrixView view() const { return MatrixView{data.data(), rows, dim}; }
};

// Every pair's prompt + chosen, then every pair's prompt + rejected (embed_lsa.py's layout).
Matrix EmbedHhSample() {
  absl::StatusOr<std::unique_ptr<formats::RecordReader>> reader =
      formats::RecordReader::Open((DataDir() / "hh-rlhf-harmless-sample.jsonl.gz").string());
  EXPECT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> chosen, rejected;
  formats::Record record;
  while (reader.ok()) {
    absl::StatusOr<bool> more = (*reader)->Next(&record);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    chosen.push_back(record.prompt + "\n" + record.chosen);
    rejected.push_back(record.prompt + "\n" + record.rejected);
  }
  const std::unique_ptr<embedding::Embedder> embedder = embedding::MakeBuiltinEmbedder();
  Matrix m;
  m.dim = embedder->dim();
  m.rows = static_cast<int64_t>(chosen.size() + rejected.size());
  m.data.resize(m.rows * m.dim);
  int64_t row = 0;
  for (const auto* texts : {&chosen, &rejected}) {
    for (const std::string& text : *texts) embedder->Embed(text, &m.data[row++ * m.dim]);
  }
  return m;
}

Matrix Project(const Matrix& m, int64_t dim) {
  absl::StatusOr<Pca> pca = Pca::Train(m.view(), {.dim = dim});
  EXPECT_TRUE(pca.ok()) << pca.status();
  Matrix out;
  out.rows = m.rows;
  out.dim = dim;
  out.data = pca->Apply(m.view());
  return out;
}

// ctest runs each test in a process of its own, several at once: names carry the process id.
// Every file made is removed when the test ends (see TearDown).
std::vector<std::string>& TempFiles() {
  static std::vector<std::string> files;
  return files;
}

std::string TempPath(const std::string& name) {
  // A directory of this process's own (under $TEST_TMPDIR if set, removed at exit), not a
  // name in the shared /tmp that another run or user could hold or plant.
  static const std::string dir = curation::testing::ScratchDir("gmm-agreement");
  const std::string path = (fs::path(dir) / name).string();
  TempFiles().push_back(path);
  return path;
}

void WriteFile(const std::string& path, const void* data, size_t bytes) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), bytes);
}

// Runs `script` with `args` and reads back every number it prints.
std::vector<double> RunPython(const std::string& script, const std::string& args) {
  const std::string path = TempPath("check.py");
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

const char* Name(Covariance c) { return c == Covariance::kFull ? "full" : "diag"; }

// (a): sklearn scores the rows under our parameters, then runs ISA on its scores exactly as
// shared/tools/sklearn_isa_anchor.py does (stable argsort of -Delta) and prints the top k.
constexpr char kScoreScript[] = R"(
import sys, numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
path, d, k, cov, params, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
X = np.fromfile(path, dtype=np.float32).reshape(-1, d).astype(np.float64)
P = np.fromfile(params, dtype=np.float64)
g = GaussianMixture(k, covariance_type=cov)
g.weights_ = P[:k]
g.means_ = P[k:k + k * d].reshape(k, d)
g.covariances_ = P[k + k * d:].reshape((k, d, d) if cov == "full" else (k, d))
g.precisions_cholesky_ = _compute_precision_cholesky(g.covariances_, cov)
l = g.score_samples(X)
lp = (l - l.min()) / (l.max() - l.min()); p = np.exp(lp); ent = -(p * np.log(p))
H = ent.sum(); delta = H - (H - ent)
for v in l: print(repr(float(v)))
for i in np.argsort(-delta, kind="stable")[:top]: print(int(i))
)";

// (b): sklearn's own fits, as a Python user would run them (random_state 0, 1, 2), and their
// mean log-likelihoods.
constexpr char kFitScript[] = R"(
import sys, numpy as np
from sklearn.mixture import GaussianMixture
path, d, k, cov = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
X = np.fromfile(path, dtype=np.float32).reshape(-1, d).astype(np.float64)
for seed in range(3):
    g = GaussianMixture(k, covariance_type=cov, tol=1e-3, reg_covar=1e-6, random_state=seed).fit(X)
    print(repr(float(g.score_samples(X).mean())))
)";

class GmmAgreementTest : public ::testing::TestWithParam<Covariance> {
 protected:
  static void SetUpTestSuite() {
    embedded_ = new Matrix(EmbedHhSample());
    projected_ = new Matrix(Project(*embedded_, 16));
  }
  static void TearDownTestSuite() {
    delete embedded_;
    delete projected_;
  }

  void SetUp() override {
    if (!HaveSklearn()) GTEST_SKIP() << kPython << " has no scikit-learn";
    ASSERT_EQ(embedded_->rows, 1000);
  }
  void TearDown() override {
    for (const std::string& path : TempFiles()) std::remove(path.c_str());
    TempFiles().clear();
  }

  // The matrix each covariance type is tested on, written where Python can read it.
  const Matrix& Rows() const { return GetParam() == Covariance::kFull ? *projected_ : *embedded_; }
  std::string WriteRows() const {
    const std::string path = TempPath(std::string(Name(GetParam())) + ".f32");
    WriteFile(path, Rows().data.data(), Rows().data.size() * sizeof(float));
    return path;
  }

  static Matrix* embedded_;
  static Matrix* projected_;
};

Matrix* GmmAgreementTest::embedded_ = nullptr;
Matrix* GmmAgreementTest::projected_ = nullptr;

TEST_P(GmmAgreementTest, SameParametersSameScoresAndSameIsaTopK) {
  const Matrix& m = Rows();
  absl::StatusOr<GaussianMixture> g = GaussianMixture::Fit(m.view(), {.covariance = GetParam()});
  ASSERT_TRUE(g.ok()) << g.status();
  std::vector<double> params = g->weights();
  params.insert(params.end(), g->means().begin(), g->means().end());
  params.insert(params.end(), g->covariances().begin(), g->covariances().end());
  const std::string params_path = TempPath("params.f64");
  WriteFile(params_path, params.data(), params.size() * sizeof(double));
  const int64_t top = m.rows / 10;
  const std::vector<double> py =
      RunPython(kScoreScript, WriteRows() + " " + std::to_string(m.dim) + " 2 " + Name(GetParam()) +
                                  " " + params_path + " " + std::to_string(top));
  ASSERT_EQ(static_cast<int64_t>(py.size()), m.rows + top);

  std::vector<double> ll(m.rows);
  g->ScoreSamples(m.view(), ll.data());
  double worst = 0;
  for (int64_t i = 0; i < m.rows; ++i) {
    const double relative = std::abs(ll[i] - py[i]) / std::max(1.0, std::abs(py[i]));
    worst = std::max(worst, relative);
    EXPECT_LE(relative, 1e-6) << "row " << i << ": " << ll[i] << " vs sklearn " << py[i];
  }
  std::printf("%s: worst relative difference of log p(x) from sklearn %.3g\n", Name(GetParam()),
              worst);
  const std::vector<int64_t> ours = TopK(IsaDeltas(ll), top);
  for (int64_t i = 0; i < top; ++i) {
    EXPECT_EQ(ours[i], static_cast<int64_t>(py[m.rows + i])) << "rank " << i;
  }
}

TEST_P(GmmAgreementTest, FittedFromScratchNoWorseThanSklearn) {
  const Matrix& m = Rows();
  const std::vector<double> py =
      RunPython(kFitScript, WriteRows() + " " + std::to_string(m.dim) + " 2 " + Name(GetParam()));
  ASSERT_EQ(py.size(), 3u);
  // EM ends in a local optimum that depends on the initialisation, for sklearn as for us (here
  // a spread of about 0.1% across seeds), so three fits on each side are compared on average.
  const double sklearn = (py[0] + py[1] + py[2]) / 3;
  std::printf("%s: sklearn %.4f %.4f %.4f, mean %.4f\n", Name(GetParam()), py[0], py[1], py[2],
              sklearn);
  // Initialised on all rows (sklearn's recipe; the default below 2 * 16384 rows) and
  // warm-started from a 200-row sample.
  for (int64_t sample : {int64_t{0}, int64_t{200}}) {
    double ours = 0;
    for (uint64_t seed : {0, 1, 2}) {
      absl::StatusOr<GaussianMixture> g =
          GaussianMixture::Fit(m.view(), {.covariance = GetParam(),
                                          .tol = 1e-3,
                                          .reg_covar = 1e-6,
                                          .init_sample_rows = sample,
                                          .seed = seed});
      ASSERT_TRUE(g.ok()) << g.status();
      std::vector<double> ll(m.rows);
      g->ScoreSamples(m.view(), ll.data());
      double mean = 0;
      for (double l : ll) mean += l / static_cast<double>(m.rows);
      std::printf("%s init_sample_rows=%lld seed=%llu: %.4f\n", Name(GetParam()),
                  static_cast<long long>(sample), static_cast<unsigned long long>(seed), mean);
      // Every single fit is within the spread of sklearn's.
      EXPECT_GE(mean, sklearn - 2e-3 * std::abs(sklearn))
          << "sample " << sample << " seed " << seed;
      ours += mean / 3;
    }
    EXPECT_GE(ours, sklearn - 1e-3 * std::abs(sklearn)) << "sample " << sample;
  }
}

INSTANTIATE_TEST_SUITE_P(Covariances, GmmAgreementTest,
                         ::testing::Values(Covariance::kDiag, Covariance::kFull),
                         [](const ::testing::TestParamInfo<Covariance>& info) {
                           return std::string(Name(info.param));
                         });

}  // namespace
}  // namespace curation::selection
