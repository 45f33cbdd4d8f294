// curation-bench: times the selection library on a row-major float32 matrix file, such as
// the OUT.f32 that shared/tools/embed_lsa.py writes, for comparison with
// shared/tools/sklearn_isa_anchor.py on the same machine. See bench/README.md.
//
//   curation-bench scale --pairs N [...]   (the whole service at N pairs: scale.cc)
//   curation-bench forwarding [...]        (a cluster's forwarding cost: forwarding.cc)
//   curation-bench partitioned M.f32 DIM   (3 partitions vs one node, proxy: partitioned.cc)
//   curation-bench isa --matrix FILE.f32 --dim D --budget FRACTION --covariance diag|full
//       [--pca-dim P] [--out IDS.txt] [--rows N] [--repeat-noise SD] [more options: --help]
//
// Prints one line per run: fit_s= total_s= iters= mean_ll= peak_rss_mb= and more fields;
// fit_s is the PCA and mixture fit, total_s adds scoring and the top-k (the anchor's
// total_s covers the same steps). Loading the matrix is not timed.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/gaussian_mixture.h"
#include "selection/isa.h"
#include "selection/selector.h"

namespace {

using curation::selection::Covariance;
using curation::selection::IsaOptions;
using curation::selection::IsaScores;
using curation::selection::MatrixView;
using curation::selection::MixtureInit;

constexpr char kUsage[] =
    "usage: curation-bench scale --pairs N [--source FILE] [--methods m,..] [--budgets b,..]\n"
    "         [--encoding sq8|float16|float32] [--work DIR] [--bin DIR] [--embed-pairs N]\n"
    "         [--server-flag FLAG]... [--skip-restart]\n"
    "       curation-bench forwarding [--pairs N] [--gets N] [--selects N] [--work DIR]\n"
    "       curation-bench partitioned MATRIX.f32 DIM [--pairs N] [--test-pairs N] [--budgets "
    "F,...]\n"
    "                  [--methods M,...] [--work DIR]\n"
    "       curation-bench isa --matrix FILE.f32 --dim D --budget FRACTION\n"
    "         --covariance diag|full|spherical [--pca-dim P] [--pca-sample N] [--out IDS.txt]\n"
    "         [--rows N] [--repeat-noise SD] [--init kmeans|k-means++] [--init-sample N]\n"
    "         [--n-init N] [--tol T] [--max-iter N] [--reg-covar R] [--seed S] [--threads T]\n"
    "         [--runs R]\n"
    "  --rows N          use N rows: the file's first N, or (N above the file's rows) the file's\n"
    "                    rows repeated in order, each copy after the first plus uniform noise\n"
    "                    of standard deviation SD (--repeat-noise, default 0.001) per value\n"
    "  --init-sample N   MixtureOptions::init_sample_rows (0: initialise on all rows)\n"
    "  --runs R          repeat the selection R times on the loaded matrix, one line each\n";

struct Args {
  std::string matrix, out;
  int64_t dim = 0, rows = 0, pca_dim = 0, pca_sample = 0;
  double budget = 0, repeat_noise = 0.001;
  IsaOptions isa;
  uint64_t seed = 0;
  int runs = 1;
};

bool Parse(int argc, char** argv, Args& a) {
  if (argc < 2 || std::strcmp(argv[1], "isa") != 0) return false;
  bool have_cov = false;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (flag == "--matrix") {
      a.matrix = v;
    } else if (flag == "--dim") {
      a.dim = std::atoll(v);
    } else if (flag == "--budget") {
      a.budget = std::atof(v);
    } else if (flag == "--covariance") {
      have_cov = true;
      const std::string c = v;
      if (c == "diag") {
        a.isa.mixture.covariance = Covariance::kDiag;
      } else if (c == "full") {
        a.isa.mixture.covariance = Covariance::kFull;
      } else if (c == "spherical") {
        a.isa.mixture.covariance = Covariance::kSpherical;
      } else {
        return false;
      }
    } else if (flag == "--pca-dim") {
      a.isa.pca_dim = std::atoll(v);
    } else if (flag == "--pca-sample") {
      a.isa.pca_sample_rows = std::atoll(v);
    } else if (flag == "--out") {
      a.out = v;
    } else if (flag == "--rows") {
      a.rows = std::atoll(v);
    } else if (flag == "--repeat-noise") {
      a.repeat_noise = std::atof(v);
    } else if (flag == "--init") {
      const std::string init = v;
      if (init == "kmeans") {
        a.isa.mixture.init = MixtureInit::kKMeans;
      } else if (init == "k-means++") {
        a.isa.mixture.init = MixtureInit::kKMeansPlusPlus;
      } else {
        return false;
      }
    } else if (flag == "--init-sample") {
      a.isa.mixture.init_sample_rows = std::atoll(v);
    } else if (flag == "--n-init") {
      a.isa.mixture.n_init = std::atoi(v);
    } else if (flag == "--tol") {
      a.isa.mixture.tol = std::atof(v);
    } else if (flag == "--max-iter") {
      a.isa.mixture.max_iter = std::atoi(v);
    } else if (flag == "--reg-covar") {
      a.isa.mixture.reg_covar = std::atof(v);
    } else if (flag == "--seed") {
      a.seed = std::strtoull(v, nullptr, 10);
    } else if (flag == "--threads") {
      a.isa.mixture.threads = std::atoi(v);
    } else if (flag == "--runs") {
      a.runs = std::max(1, std::atoi(v));
    } else {
      return false;
    }
  }
  return !a.matrix.empty() && a.dim > 0 && a.budget > 0 && a.budget <= 1 && have_cov;
}

// splitmix64: a fast generator for the synthetic rows' noise (not for anything selected).
uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Reads the file's rows (all, or the first `rows`), or repeats them with noise up to `rows`.
bool Load(const Args& a, std::vector<float>& data, int64_t& rows) {
  std::ifstream in(a.matrix, std::ios::binary | std::ios::ate);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", a.matrix.c_str());
    return false;
  }
  const int64_t bytes = in.tellg();
  const int64_t file_rows = bytes / static_cast<int64_t>(sizeof(float) * a.dim);
  if (file_rows <= 0 || file_rows * a.dim * static_cast<int64_t>(sizeof(float)) != bytes) {
    std::fprintf(stderr, "%s: %lld bytes is not a whole number of %lld-float rows\n",
                 a.matrix.c_str(), static_cast<long long>(bytes), static_cast<long long>(a.dim));
    return false;
  }
  rows = a.rows > 0 ? a.rows : file_rows;
  data.resize(rows * a.dim);
  in.seekg(0);
  const int64_t read_rows = std::min(rows, file_rows);
  in.read(reinterpret_cast<char*>(data.data()), read_rows * a.dim * sizeof(float));
  if (!in) {
    std::fprintf(stderr, "short read from %s\n", a.matrix.c_str());
    return false;
  }
  // Uniform noise on [-h, h] has standard deviation h / sqrt(3).
  const double half_width = a.repeat_noise * std::sqrt(3.0);
  uint64_t state = 42;
  for (int64_t i = read_rows; i < rows; ++i) {
    const float* src = &data[(i % file_rows) * a.dim];
    float* dst = &data[i * a.dim];
    for (int64_t j = 0; j < a.dim; ++j) {
      const double u = static_cast<double>(SplitMix(state) >> 11) * 0x1.0p-53;
      dst[j] = src[j] + static_cast<float>((2 * u - 1) * half_width);
    }
  }
  return true;
}

double PeakRssMb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // kilobytes on Linux
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

const char* CovarianceName(Covariance c) {
  switch (c) {
    case Covariance::kDiag:
      return "diag";
    case Covariance::kSpherical:
      return "spherical";
    case Covariance::kFull:
      return "full";
  }
  return "?";
}

}  // namespace

namespace curation::bench {
int RunScale(int argc, char** argv);       // scale.cc
int RunForwarding(int argc, char** argv);  // forwarding.cc
int RunPartitioned(int argc, char** argv);  // partitioned.cc
}  // namespace curation::bench

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "scale") == 0) {
#ifdef CURATION_BENCH_SCALE
    return curation::bench::RunScale(argc, argv);
#else
    std::fputs("curation-bench scale: not in a CURATION_LIBS_ONLY build\n", stderr);
    return 2;
#endif
  }
  if (argc > 1 && std::strcmp(argv[1], "partitioned") == 0) {
#ifdef CURATION_BENCH_SCALE
    return curation::bench::RunPartitioned(argc, argv);
#else
    std::fputs("curation-bench partitioned: not in a CURATION_LIBS_ONLY build\n", stderr);
    return 2;
#endif
  }
  if (argc > 1 && std::strcmp(argv[1], "forwarding") == 0) {
#ifdef CURATION_BENCH_SCALE
    return curation::bench::RunForwarding(argc, argv);
#else
    std::fputs("curation-bench forwarding: not in a CURATION_LIBS_ONLY build\n", stderr);
    return 2;
#endif
  }
  Args a;
  if (!Parse(argc, argv, a)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::vector<float> data;
  int64_t rows = 0;
  if (!Load(a, data, rows)) return 1;
  const MatrixView x{data.data(), rows, a.dim};
  // As the anchor: k = round(budget * rows), halves to even (Python's round).
  const int64_t k = std::max<int64_t>(1, std::llrint(a.budget * static_cast<double>(rows)));

  for (int run = 0; run < a.runs; ++run) {
    using Clock = std::chrono::steady_clock;
    const double cpu0 = CpuSeconds();
    const Clock::time_point start = Clock::now();
    absl::StatusOr<IsaScores> scores = curation::selection::ScoreIsa(x, a.isa, a.seed);
    if (!scores.ok()) {
      std::fprintf(stderr, "isa failed: %s\n", scores.status().ToString().c_str());
      return 1;
    }
    const Clock::time_point top_start = Clock::now();
    const std::vector<int64_t> selected = curation::selection::TopK(scores->deltas, k);
    const double select_s = std::chrono::duration<double>(Clock::now() - top_start).count();
    const double total_s = std::chrono::duration<double>(Clock::now() - start).count();
    const double cpu_s = CpuSeconds() - cpu0;

    std::printf(
        "curation-bench isa n=%lld d=%lld cov=%s pca_dim=%lld k=%lld fit_s=%.3f total_s=%.3f "
        "iters=%d mean_ll=%.4f peak_rss_mb=%.1f matrix_mb=%.1f pca_s=%.3f gmm_s=%.3f "
        "score_s=%.3f select_s=%.3f init_iters=%d converged=%d retained_var=%.4f cpu_s=%.2f\n",
        static_cast<long long>(rows), static_cast<long long>(a.dim),
        CovarianceName(a.isa.mixture.covariance), static_cast<long long>(a.isa.pca_dim),
        static_cast<long long>(k), scores->pca_seconds + scores->fit_seconds, total_s,
        scores->fit.iterations, scores->fit.mean_log_likelihood, PeakRssMb(),
        static_cast<double>(data.size() * sizeof(float)) / (1 << 20), scores->pca_seconds,
        scores->fit_seconds, scores->score_seconds, select_s, scores->init_iterations,
        scores->fit.converged ? 1 : 0, scores->retained_variance, cpu_s);
    std::fflush(stdout);
    if (run == 0 && !a.out.empty()) {
      FILE* out = std::fopen(a.out.c_str(), "w");
      if (out == nullptr) {
        std::fprintf(stderr, "cannot write %s\n", a.out.c_str());
        return 1;
      }
      for (int64_t row : selected) std::fprintf(out, "%lld\n", static_cast<long long>(row));
      std::fclose(out);
    }
  }
  return 0;
}
