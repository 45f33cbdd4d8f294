// curation-diversity-bench: time and peak memory of one selection method at scale.
//
//   curation-diversity-bench [--rows 1000000] [--dim 256] [--base FILE.f32] [--noise 0.05]
//       [--method facility_location|fl_stochastic|kcenter|herding|dedup] [--k 10000]
//       [--search auto|exact|ivf] [--seed 0] [--ivf-dim N]
//       [--herding-exact-max-rows N] [--ivf-lists N] [--ivf-probe N] [--ivf-rerank N]
//       [--f16-rows 0|1]
//
// Rows are standard normal, or, with --base, the base file's floats taken `dim` at a time and
// repeated in order, with Gaussian noise of sd `noise` times the base's RMS entry added (so
// near-duplicates exist, as in real data). With --dim 512 on a 256-d embed_lsa.py matrix a row
// is two consecutive embeddings side by side, the shape of herding's [chosen, rejected] rows.
// Prints one JSON line: wall and CPU seconds for generating the data and for the selection (FAISS
// graph and greedy separately where the method reports progress), and the process's peak resident
// memory, which includes the input matrix; for herding also the last score, the objective
// |mean(subset) - mean| (lower is better), to compare settings. `--method recall` instead
// builds the exact k-NN graph, the one --search and --ivf-dim give, and the same without
// projection (ivf_dim 0, the IVF before projections), and prints the share of the exact
// graph's edges each found, with the build times. `--f16-rows 1` holds the rows as float16
// codes (index/codec.h, as the server keeps its vectors) and hands the method a RowReader that
// decodes them on demand, as the server does, instead of a float32 matrix; input_mb is then the
// codes' size.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "index/codec.h"
#include "selection/dedup.h"
#include "selection/facility_location.h"
#include "selection/herding.h"
#include "selection/kcenter.h"
#include "selection/knn_graph.h"
#include "selection/rng.h"
#include "selection/selector.h"

namespace {

namespace sel = curation::selection;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double PeakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

struct Clock {
  std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
  double cpu = CpuSeconds();
  double Wall() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count();
  }
  double Cpu() const { return CpuSeconds() - cpu; }
};

// Rows held as float16 codes, decoded on demand.
class HalfRows final : public sel::RowReader {
 public:
  HalfRows(std::vector<uint8_t> codes, int64_t rows, int64_t dim)
      : codes_(std::move(codes)),
        rows_(rows),
        dim_(dim),
        bytes_(curation::index::CodeBytes(curation::index::Encoding::kFloat16,
                                          static_cast<int>(dim))) {}
  int64_t rows() const override { return rows_; }
  int64_t dim() const override { return dim_; }
  void Read(int64_t begin, int64_t end, float* out) const override {
    for (int64_t i = begin; i < end; ++i) Decode(i, out + (i - begin) * dim_);
  }
  void Gather(std::span<const int64_t> rows, float* out) const override {
    for (size_t t = 0; t < rows.size(); ++t) Decode(rows[t], out + t * dim_);
  }

 private:
  void Decode(int64_t i, float* out) const {
    curation::index::Decode(curation::index::Encoding::kFloat16, codes_.data() + i * bytes_,
                            static_cast<int>(dim_), out);
  }
  const std::vector<uint8_t> codes_;
  const int64_t rows_, dim_;
  const size_t bytes_;
};

double Normal(std::mt19937_64& rng) {
  const double u = 1 - sel::UniformDraw(rng);
  const double v = sel::UniformDraw(rng);
  return std::sqrt(-2 * std::log(u)) * std::cos(2 * std::numbers::pi * v);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 1000000, dim = 256, k = 10000, ivf_dim = -1, f16_rows = 0;
  uint64_t seed = 0;
  double noise = 0.05;
  std::string base, method = "facility_location", search = "auto";
  sel::HerdingOptions herding;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--rows")
      rows = std::atoll(value.c_str());
    else if (flag == "--dim")
      dim = std::atoll(value.c_str());
    else if (flag == "--k")
      k = std::atoll(value.c_str());
    else if (flag == "--seed")
      seed = std::strtoull(value.c_str(), nullptr, 10);
    else if (flag == "--noise")
      noise = std::atof(value.c_str());
    else if (flag == "--base")
      base = value;
    else if (flag == "--method")
      method = value;
    else if (flag == "--search")
      search = value;
    else if (flag == "--f16-rows")
      f16_rows = std::atoll(value.c_str());
    else if (flag == "--ivf-dim")
      ivf_dim = std::atoll(value.c_str());
    else if (flag == "--herding-exact-max-rows")
      herding.exact_max_rows = std::atoll(value.c_str());
    else if (flag == "--ivf-lists")
      herding.ivf_lists = std::atoll(value.c_str());
    else if (flag == "--ivf-probe")
      herding.ivf_probe = std::atoi(value.c_str());
    else if (flag == "--ivf-rerank")
      herding.ivf_rerank = std::atoi(value.c_str());
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }

  if (f16_rows && method == "recall") {
    std::fprintf(stderr, "--method recall reads float32 rows only\n");
    return 2;
  }
  Clock gen;
  std::vector<float> data(f16_rows ? 0 : rows * dim);
  const size_t code_bytes =
      curation::index::CodeBytes(curation::index::Encoding::kFloat16, static_cast<int>(dim));
  std::vector<uint8_t> codes(f16_rows ? rows * code_bytes : 0);
  std::vector<float> source;
  double scale = 1;
  if (!base.empty()) {
    std::ifstream in(base, std::ios::binary | std::ios::ate);
    const int64_t bytes = in.tellg();
    source.resize(bytes / sizeof(float) / dim * dim);
    in.seekg(0);
    in.read(reinterpret_cast<char*>(source.data()), source.size() * sizeof(float));
    double sq = 0;
    for (float v : source) sq += double(v) * v;
    scale = noise * std::sqrt(sq / source.size());
  }
  const int64_t base_rows = static_cast<int64_t>(source.size()) / dim;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + i);
    std::vector<float> row(f16_rows ? dim : 0);
    float* out = f16_rows ? row.data() : data.data() + i * dim;
    for (int64_t j = 0; j < dim; ++j) {
      out[j] = static_cast<float>(
          base_rows ? source[(i % base_rows) * dim + j] + scale * Normal(rng) : Normal(rng));
    }
    if (f16_rows) {
      curation::index::Encode(curation::index::Encoding::kFloat16, out, static_cast<int>(dim),
                              codes.data() + i * code_bytes);
    }
  }
  source = {};
  const double gen_wall = gen.Wall();

  sel::KnnGraphOptions graph;
  if (search == "exact") graph.search = sel::KnnSearch::kExact;
  if (search == "ivf") graph.search = sel::KnnSearch::kIvf;
  if (ivf_dim >= 0) {  // that projection whatever the row count
    graph.ivf_dim = static_cast<int>(ivf_dim);
    graph.ivf_dim_min_rows = 0;
  }
  if (method == "recall") {
    const sel::MatrixView view{data.data(), rows, dim};
    sel::KnnGraphOptions exact = graph;
    exact.search = sel::KnnSearch::kExact;
    Clock exact_clock;
    const auto truth = sel::KnnGraph::Build(view, exact);
    const double exact_wall = exact_clock.Wall();
    if (!truth.ok()) return 1;
    const auto recall = [&](const sel::KnnGraphOptions& o, double* wall) {
      Clock clock;
      const auto approx = sel::KnnGraph::Build(view, o);
      *wall = clock.Wall();
      if (!approx.ok()) return -1.0;
      int64_t found = 0;
      for (int64_t i = 0; i < rows; ++i) {
        const auto t = truth->targets(i);
        for (int32_t j : approx->targets(i)) found += std::find(t.begin(), t.end(), j) != t.end();
      }
      return static_cast<double>(found) / static_cast<double>(truth->edges());
    };
    sel::KnnGraphOptions full = graph;
    full.ivf_dim = 0;
    double wall = 0, full_wall = 0;
    const double got = recall(graph, &wall);
    const double full_got = recall(full, &full_wall);
    std::printf(
        "{\"method\": \"recall\", \"rows\": %lld, \"dim\": %lld, \"search\": \"%s\", "
        "\"ivf_dim\": %d, \"base\": \"%s\", \"exact_wall_s\": %.1f, \"graph_wall_s\": %.1f, "
        "\"recall\": %.4f, \"full_dim_wall_s\": %.1f, \"full_dim_recall\": %.4f}\n",
        static_cast<long long>(rows), static_cast<long long>(dim), search.c_str(), graph.ivf_dim,
        base.c_str(), exact_wall, wall, got, full_wall, full_got);
    return 0;
  }
  std::unique_ptr<sel::Selector> selector;
  if (method == "facility_location" || method == "fl_stochastic") {
    sel::FacilityLocationOptions o;
    o.graph = graph;
    if (method == "fl_stochastic") o.greedy = sel::GreedyMode::kStochastic;
    selector = sel::MakeFacilityLocationSelector(o);
  } else if (method == "kcenter") {
    selector = sel::MakeKCenterSelector();
  } else if (method == "herding") {
    selector = sel::MakeHerdingSelector(herding);
  } else if (method == "dedup") {
    sel::DedupOptions o;
    o.graph = graph;
    selector = sel::MakeDedupSelector(o);
  } else {
    std::fprintf(stderr, "unknown method %s\n", method.c_str());
    return 2;
  }

  Clock run;
  double half_wall = -1, half_cpu = -1;
  sel::SelectOptions options;
  options.seed = seed;
  options.progress = [&](double done) {
    if (done >= 0.5 && half_wall < 0) {
      half_wall = run.Wall();
      half_cpu = run.Cpu();
    }
    return true;
  };
  const sel::Rows input = f16_rows
                              ? sel::Rows(std::make_shared<HalfRows>(std::move(codes), rows, dim))
                              : sel::Rows(sel::MatrixView{data.data(), rows, dim});
  const auto result = selector->Select(input, k, options);
  const double wall = run.Wall(), cpu = run.Cpu();
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  const double first_score = result->scores.empty() ? 0 : result->scores.front();
  const double last_score = result->scores.empty() ? 0 : result->scores.back();
  std::printf(
      "{\"method\": \"%s\", \"rows\": %lld, \"dim\": %lld, \"k\": %lld, \"search\": \"%s\", "
      "\"base\": \"%s\", \"generate_s\": %.1f, \"select_wall_s\": %.1f, \"select_cpu_s\": %.1f, "
      "\"first_half_wall_s\": %.1f, \"first_half_cpu_s\": %.1f, \"peak_rss_mb\": %.0f, "
      "\"input_mb\": %.0f, \"first_row\": %lld, \"first_score\": %.4f, \"last_score\": %.6g}\n",
      method.c_str(), static_cast<long long>(rows), static_cast<long long>(dim),
      static_cast<long long>(k), search.c_str(), base.c_str(), gen_wall, wall, cpu, half_wall,
      half_cpu, PeakRssMb(), rows * dim * (f16_rows ? 2.0 : 4.0) / (1 << 20),
      static_cast<long long>(result->rows.front()), first_score, last_score);
  return 0;
}
