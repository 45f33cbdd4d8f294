// curation-proxy: the proxy table of PRODUCT.md with the C++ methods, on a matrix written by
// ../shared/tools/embed_lsa.py (row-major float32; all chosen rows, then all rejected rows).
//
//   curation-proxy MATRIX.f32 DIM [--train-pairs 20000] [--test-pairs 5000]
//       [--budgets 0.01,0.02,0.05,0.1] [--seeds 5] [--split-seed 1] [--methods m1,m2,...]
//       [--curve METHOD] [--encoding float32|float16|sq8] [--partitions P]
//
// The split is proxy_table.py's (numpy's permutation with seed 1), so the ISA and facility
// location rows score the same test pairs on the same pool; random rows use our own draws
// (seeds 0 .. seeds-1), so they agree with proxy_table.py's only within noise.
// Budgets are shares of the pool's single examples; pair methods spend floor(k / 2) pairs.
// Prints one JSON line per budget as it goes, then a Markdown table. --curve also measures the
// learning curve of one method and prints the fitted scaling law and budget recommendation.
// --encoding first round-trips every vector through a dataset encoding (index/codec.h), so the
// table measures what a dataset of that encoding gives: its selections and its proxy both see
// the decoded vectors, as in the service.
// --partitions P prints a different table instead: every method (random, isa, herding,
// facility_location, kcenter, dedup; --methods picks among these names) on one node beside its
// distributed form over the pool split into P partitions (evaluation/proxy_partitions.h).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "evaluation/proxy.h"
#include "evaluation/proxy_partitions.h"
#include "index/codec.h"
#include "selection/constraints.h"
#include "selection/dedup.h"
#include "selection/facility_location.h"
#include "selection/factory.h"
#include "selection/herding.h"
#include "selection/kcenter.h"
#include "selection/selector.h"

namespace {

using curation::evaluation::Accuracy;
using curation::evaluation::ProxyEvaluator;
using curation::evaluation::Unit;
namespace sel = curation::selection;

// A method of the table: what it selects on which rows, with what.
enum class Rows {
  kPairMean,    // one row per pair: (chosen + rejected) / 2, as the service passes pairs
  kPairConcat,  // one row per pair: [chosen, rejected]
  kPairDiff,    // one row per pair: chosen - rejected (an experiment)
  kExamples,    // one row per completion: chosen rows, then rejected rows
};

struct Method {
  std::string name;
  Rows rows;
  std::function<std::unique_ptr<sel::Selector>(const ProxyEvaluator&)> make;
  // Quota-constrained selections are not prefixes of larger ones; re-run at every budget.
  bool per_budget = false;

  Unit unit() const { return rows == Rows::kExamples ? Unit::kExample : Unit::kPair; }
};

std::vector<Method> AllMethods() {
  const auto fl = [](const ProxyEvaluator&) { return sel::MakeFacilityLocationSelector(); };
  const auto kc = [](const ProxyEvaluator&) { return sel::MakeKCenterSelector(); };
  const auto herd = [](const ProxyEvaluator&) { return sel::MakeHerdingSelector(); };
  const auto isa = [](const ProxyEvaluator&) { return *sel::MakeSelector("isa"); };
  const auto dedup = [](const ProxyEvaluator&) { return sel::MakeDedupSelector(); };
  // Examples laid out as PoolUnits(kExample): chosen rows (label 1) then rejected (label 0);
  // the quotas keep the pool's 1:1 label ratio (KTO-style data's desirable/undesirable).
  const auto balanced = [](std::shared_ptr<const sel::Selector> inner) {
    return [inner](const ProxyEvaluator& ev) {
      sel::GroupConstraint c;
      const int64_t t = ev.pool_examples() / 2;
      c.group.assign(2 * t, 0);
      std::fill(c.group.begin() + t, c.group.end(), 1);
      return sel::MakeConstrainedSelector(inner, std::move(c));
    };
  };
  return {
      {"isa_examples", Rows::kExamples, isa},
      {"isa_pair_mean", Rows::kPairMean, isa},
      {"fl_pair_mean", Rows::kPairMean, fl},
      {"fl_pair_concat", Rows::kPairConcat, fl},
      {"kcenter_pair_mean", Rows::kPairMean, kc},
      {"herding_pair_concat", Rows::kPairConcat, herd},
      {"herding_pair_mean", Rows::kPairMean, herd},
      {"dedup_pair_mean", Rows::kPairMean, dedup},
      {"fl_pair_diff", Rows::kPairDiff, fl},
      {"fl_examples", Rows::kExamples, fl},
      {"fl_examples_balanced", Rows::kExamples, balanced(sel::MakeFacilityLocationSelector()),
       true},
      {"kcenter_examples", Rows::kExamples, kc},
      {"herding_examples", Rows::kExamples, herd},
      {"herding_examples_balanced", Rows::kExamples, balanced(sel::MakeHerdingSelector()), true},
  };
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "curation-proxy: %s\n", message.c_str());
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> value, const std::string& what) {
  if (!value.ok()) Die(what + ": " + std::string(value.status().message()));
  return *std::move(value);
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::string Fixed(double v, int digits = 4) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: curation-proxy MATRIX.f32 DIM [--train-pairs N] [--test-pairs N] "
                 "[--budgets b1,b2,..] [--seeds N] [--split-seed N] [--methods m1,m2,..] "
                 "[--curve METHOD] [--encoding float32|float16|sq8] [--partitions P]\n");
    return 2;
  }
  const std::string path = argv[1];
  const int64_t dim = std::atoll(argv[2]);
  curation::evaluation::ProxyOptions options;
  options.train_pairs = 20000;
  std::vector<double> budgets = {0.01, 0.02, 0.05, 0.1};
  std::vector<std::string> wanted;
  std::string curve_method;
  int partitions = 0;
  curation::index::Encoding encoding = curation::index::Encoding::kFloat32;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--train-pairs") {
      options.train_pairs = std::atoll(value.c_str());
    } else if (flag == "--test-pairs") {
      options.test_pairs = std::atoll(value.c_str());
    } else if (flag == "--split-seed") {
      options.split_seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--seeds") {
      options.random_seeds = std::atoi(value.c_str());
    } else if (flag == "--budgets") {
      budgets.clear();
      for (const std::string& b : Split(value)) budgets.push_back(std::atof(b.c_str()));
    } else if (flag == "--methods") {
      wanted = Split(value);
    } else if (flag == "--curve") {
      curve_method = value;
    } else if (flag == "--partitions") {
      partitions = std::atoi(value.c_str());
      if (partitions < 1) Die("--partitions must be at least 1");
    } else if (flag == "--encoding") {
      const auto parsed = curation::index::ParseEncoding(value);
      if (!parsed) Die("--encoding must be float32, float16 or sq8");
      encoding = *parsed;
    } else {
      Die("unknown flag " + flag);
    }
  }

  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file || dim <= 0) Die("cannot read " + path);
  const int64_t bytes = file.tellg();
  const int64_t rows = bytes / static_cast<int64_t>(sizeof(float) * dim);
  if (rows * dim * static_cast<int64_t>(sizeof(float)) != bytes || rows % 2 != 0) {
    Die(path + " is not an even number of float32 rows of dim " + std::to_string(dim));
  }
  std::vector<float> matrix(rows * dim);
  file.seekg(0);
  file.read(reinterpret_cast<char*>(matrix.data()), bytes);
  {
    std::vector<uint8_t> code(curation::index::CodeBytes(encoding, static_cast<int>(dim)));
    for (int64_t r = 0; r < rows; ++r) {
      float* row = matrix.data() + r * dim;
      curation::index::Encode(encoding, row, static_cast<int>(dim), code.data());
      curation::index::Decode(encoding, code.data(), static_cast<int>(dim), row);
    }
  }
  const int64_t pairs = rows / 2;
  curation::evaluation::PairEmbeddings data{matrix.data(), matrix.data() + pairs * dim, pairs, dim,
                                            0};

  const auto start = std::chrono::steady_clock::now();
  const ProxyEvaluator ev = Check(ProxyEvaluator::Create(data, options), "split");
  const int64_t t = static_cast<int64_t>(ev.pool_pairs().size());
  const Accuracy full = Check(ev.EvaluateFull(), "full");
  std::printf("{\"train_pairs\": %lld, \"test_pairs\": %lld, \"full\": %s, \"seconds\": %.1f}\n",
              static_cast<long long>(t), static_cast<long long>(ev.test_pairs().size()),
              Fixed(full.accuracy).c_str(), Seconds(start));
  std::fflush(stdout);

  if (partitions > 0) {
    const absl::Status s = curation::evaluation::RunPartitionTable(
        ev, {.partitions = partitions, .budgets = budgets, .methods = wanted});
    if (!s.ok()) Die(s.ToString());
    return 0;
  }

  std::vector<Method> methods;
  for (Method& m : AllMethods()) {
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), m.name) != wanted.end()) {
      methods.push_back(std::move(m));
    }
  }

  // Every method selects once, at the largest budget; smaller budgets take prefixes (every
  // method here is prefix-consistent except the label-balanced one, which is re-run).
  std::map<std::string, std::vector<std::string>> cells;
  std::vector<std::string> order = {"random_examples", "random_pairs"};
  const int64_t k_max = static_cast<int64_t>(*std::max_element(budgets.begin(), budgets.end()) * 2 *
                                             static_cast<double>(t));
  std::map<std::string, std::vector<int64_t>> rankings;
  const curation::evaluation::PoolMatrix pair_mean = ev.PoolUnits(Unit::kPair);
  const curation::evaluation::PoolMatrix pair_concat =
      ev.PoolUnits(Unit::kPair, curation::evaluation::PairRows::kConcat);
  const curation::evaluation::PoolMatrix examples = ev.PoolUnits(Unit::kExample);
  curation::evaluation::PoolMatrix pair_diff{std::vector<float>(t * dim), t, dim};
  for (int64_t p = 0; p < t; ++p) {
    const int64_t id = ev.pool_pairs()[p];
    for (int64_t j = 0; j < dim; ++j) {
      pair_diff.data[p * dim + j] = data.chosen_row(id)[j] - data.rejected_row(id)[j];
    }
  }
  const auto run = [&](const Method& m, int64_t k) {
    const curation::evaluation::PoolMatrix& units = m.rows == Rows::kExamples     ? examples
                                                    : m.rows == Rows::kPairConcat ? pair_concat
                                                    : m.rows == Rows::kPairDiff   ? pair_diff
                                                                                  : pair_mean;
    const auto begin = std::chrono::steady_clock::now();
    sel::SelectionResult result =
        Check(m.make(ev)->Select(units.view(), k, sel::SelectOptions{}), m.name);
    std::fprintf(stderr, "%s: k=%lld in %.1f s\n", m.name.c_str(), static_cast<long long>(k),
                 Seconds(begin));
    return result.rows;
  };
  for (const Method& m : methods) {
    order.push_back(m.name);
    if (!m.per_budget) rankings[m.name] = run(m, m.unit() == Unit::kPair ? k_max / 2 : k_max);
  }

  for (double b : budgets) {
    const int64_t k = static_cast<int64_t>(b * 2 * static_cast<double>(t));
    std::string json = "{\"budget\": " + Fixed(b, 3);
    for (Unit unit : {Unit::kExample, Unit::kPair}) {
      const auto base = Check(ev.EvaluateRandom(unit, k), "random");
      const std::string name = unit == Unit::kExample ? "random_examples" : "random_pairs";
      cells[name].push_back(Fixed(base.mean, 3) + " (" + Fixed(base.sd, 3) + ")");
      json += ", \"" + name + "\": [" + Fixed(base.mean) + ", " + Fixed(base.sd) + "]";
    }
    for (const Method& m : methods) {
      const int64_t units = m.unit() == Unit::kPair ? k / 2 : k;
      std::vector<int64_t> rows;
      if (m.per_budget) {
        rows = run(m, units);
      } else {
        rows.assign(rankings[m.name].begin(), rankings[m.name].begin() + units);
      }
      const auto score =
          Check(ev.EvaluateSubset(m.unit(), ev.PoolRowsToIds(m.unit(), rows)), m.name);
      cells[m.name].push_back(Fixed(score.accuracy.accuracy, 3));
      json += ", \"" + m.name + "\": " + Fixed(score.accuracy.accuracy);
    }
    std::printf("%s}\n", json.c_str());
    std::fflush(stdout);
  }

  std::printf("\nFull data (%lld pairs): %s. Random: mean (sd) over %d seeds.\n\n| method |",
              static_cast<long long>(t), Fixed(full.accuracy, 3).c_str(), options.random_seeds);
  for (double b : budgets) std::printf(" %s%% |", Fixed(100 * b, 0).c_str());
  std::printf("\n|---|");
  for (size_t i = 0; i < budgets.size(); ++i) std::printf("---|");
  std::printf("\n");
  for (const std::string& name : order) {
    std::printf("| %s |", name.c_str());
    for (const std::string& cell : cells[name]) std::printf(" %s |", cell.c_str());
    std::printf("\n");
  }

  if (!curve_method.empty()) {
    const std::vector<Method> all = AllMethods();
    const auto m = std::find_if(all.begin(), all.end(),
                                [&](const Method& x) { return x.name == curve_method; });
    if (m == all.end() || m->rows == Rows::kPairDiff || m->per_budget) {
      Die("no curve for method " + curve_method);
    }
    curation::evaluation::RecommendOptions ro;
    ro.pair_rows = m->rows == Rows::kPairConcat ? curation::evaluation::PairRows::kConcat
                                                : curation::evaluation::PairRows::kMean;
    const auto rec = Check(ev.RecommendBudget(*m->make(ev), m->unit(), ro), "curve");
    std::printf("\nLearning curve of %s:\n", m->name.c_str());
    for (const auto& p : rec.curve) {
      const int bar = static_cast<int>(std::max(0.0, (p.accuracy.accuracy - 0.5) * 100));
      std::printf("%6s%% %6lld ex  %s [%s, %s]  %s\n", Fixed(p.percent, 1).c_str(),
                  static_cast<long long>(p.examples), Fixed(p.accuracy.accuracy, 3).c_str(),
                  Fixed(p.accuracy.interval.low, 3).c_str(),
                  Fixed(p.accuracy.interval.high, 3).c_str(), std::string(bar, '#').c_str());
    }
    std::printf("R(x) = r - (r - a) exp(-b x): r = %s, a = %s, b = %s, R^2 = %s, RMSE = %s\n",
                Fixed(rec.fit.r).c_str(), Fixed(rec.fit.a).c_str(), Fixed(rec.fit.b).c_str(),
                Fixed(rec.fit.r_squared, 3).c_str(), Fixed(rec.fit.rmse).c_str());
    if (rec.percent) {
      std::printf("%s%% of r is reached at %s%% of the data (%lld examples)%s\n",
                  Fixed(100 * rec.share, 0).c_str(), Fixed(*rec.percent, 2).c_str(),
                  static_cast<long long>(rec.examples),
                  rec.extrapolated ? ", extrapolated beyond the measured budgets" : "");
    } else {
      std::printf("the fitted curve never reaches %s%% of r\n", Fixed(100 * rec.share, 0).c_str());
    }
  }
  return 0;
}
