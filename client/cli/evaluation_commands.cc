// `curation evaluate` and `curation recommend`: the proxy reward model on a subset, and the
// learning curve with the budget it recommends.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "client/cli/commands.h"
#include "client/cli/learning_curve_svg.h"
#include "client/cli/progress.h"
#include "client/cli/selection_args.h"

namespace curation::cli {
namespace {

// 1234567 -> "1,234,567".
std::string Thousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(i, ",");
  return n < 0 ? "-" + digits : digits;
}

bool ParseInt(const std::string& text, int64_t* out) {
  try {
    size_t used = 0;
    *out = std::stoll(text, &used);
    return used == text.size();
  } catch (...) {
    return false;
  }
}

bool ParseDouble(const std::string& text, double* out) {
  try {
    size_t used = 0;
    *out = std::stod(text, &used);
    return used == text.size();
  } catch (...) {
    return false;
  }
}

// The proxy's and the method's options shared by both commands; "" or a usage message.
std::string ParseCommon(const Args& args, v1::ProxyOptions* proxy, v1::SelectRequest* select) {
  int64_t n = 0;
  if (auto v = args.Get("split-seed")) {
    if (!ParseInt(*v, &n) || n < 0) return "--split-seed must be a non-negative number";
    proxy->set_split_seed(static_cast<uint64_t>(n));
  }
  if (auto v = args.Get("test-pairs")) {
    if (!ParseInt(*v, &n)) return "--test-pairs must be a number";
    proxy->set_test_pairs(n);
  }
  if (auto v = args.Get("train-pairs")) {
    if (!ParseInt(*v, &n)) return "--train-pairs must be a number";
    proxy->set_train_pairs(n);
  }
  if (auto v = args.Get("random-seeds")) {
    if (!ParseInt(*v, &n) || n < 0 || n > 1000) return "--random-seeds must be a small number";
    proxy->set_random_seeds(static_cast<int32_t>(n));
  }
  if (auto v = args.Get("method")) {
    auto parsed = ParseMethod(*v);
    if (!parsed) return std::string("--method must be ") + kMethodChoices;
    select->set_method(*parsed);
  }
  if (auto unit = args.Get("unit")) {
    auto parsed = ParseUnit(*unit);
    if (!parsed) return "--unit must be pair or example";
    select->set_unit(*parsed);
  }
  if (auto v = args.Get("seed")) {
    if (!ParseInt(*v, &n) || n < 0) return "--seed must be a non-negative number";
    select->set_seed(static_cast<uint64_t>(n));
  }
  return "";
}

// Draws the server's progress messages as a bar on a terminal.
client::Client::ProgressCallback BarFor(ProgressBar& bar) {
  return [&bar](const v1::Progress& p) {
    bar.Update(p.fraction(), 1.0, static_cast<int64_t>(p.elapsed_seconds()));
  };
}

std::string Interval(const v1::Accuracy& a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%.4f, %.4f]", a.low(), a.high());
  return buf;
}

void PrintEvaluation(const v1::Evaluation& e) {
  const bool pairs = e.unit() == v1::SELECTION_UNIT_PAIR;
  std::printf("evaluate %s: %s (%s), %s\n", e.dataset().c_str(), MethodName(e.method()),
              pairs ? "pair units" : "example units",
              e.selection_id().empty() ? "selected now, as Select selects it"
                                       : ("selection " + e.selection_id()).c_str());
  std::printf("  held out %s pairs (split seed %llu), training pool %s pairs\n",
              Thousands(e.test_pairs()).c_str(), static_cast<unsigned long long>(e.split_seed()),
              Thousands(e.pool_pairs()).c_str());
  std::printf("  subset           %.4f %s  %s examples", e.subset().accuracy(),
              Interval(e.subset()).c_str(), Thousands(e.subset_examples()).c_str());
  if (e.dropped_held_out() > 0) {
    std::printf(" (%s held-out items not trained on)", Thousands(e.dropped_held_out()).c_str());
  }
  std::printf("%s\n", e.subset().single_label() ? ", one label only: chance" : "");
  std::printf("  random pairs     %.4f ± %.4f  (%d draws of %s examples)\n",
              e.random_pairs().mean(), e.random_pairs().sd(), e.random_pairs().accuracies_size(),
              Thousands(e.random_pairs().examples()).c_str());
  std::printf("  random examples  %.4f ± %.4f  (%d draws of %s examples)\n",
              e.random_examples().mean(), e.random_examples().sd(),
              e.random_examples().accuracies_size(),
              Thousands(e.random_examples().examples()).c_str());
  std::printf("  full pool        %.4f %s  %s examples\n", e.full().accuracy(),
              Interval(e.full()).c_str(), Thousands(2 * e.pool_pairs()).c_str());
  const double diff = e.subset().accuracy() - e.random_pairs().mean();
  const double sd = e.random_pairs().sd();
  if (sd > 0) {
    std::printf("  verdict: subset is %.1f sd %s random pairs (%+.4f) in %.1f s\n",
                std::fabs(diff) / sd, diff >= 0 ? "above" : "below", diff, e.duration_seconds());
  } else {
    std::printf("  verdict: subset is %+.4f from random pairs (which did not vary) in %.1f s\n",
                diff, e.duration_seconds());
  }
}

void PrintRecommendation(const v1::BudgetRecommendation& r) {
  const bool pairs = r.unit() == v1::SELECTION_UNIT_PAIR;
  std::printf("recommend %s: %s (%s), training pool %s pairs, held out %s (split seed %llu)\n",
              r.dataset().c_str(), MethodName(r.method()), pairs ? "pair units" : "example units",
              Thousands(r.pool_pairs()).c_str(), Thousands(r.test_pairs()).c_str(),
              static_cast<unsigned long long>(r.split_seed()));
  double lo = 1, hi = 0;
  bool random = false;
  for (const auto& p : r.curve()) {
    lo = std::min(lo, p.accuracy().accuracy());
    hi = std::max(hi, p.accuracy().accuracy());
    random = random || p.has_random_pairs();
  }
  constexpr int kBar = 30;
  std::printf("  %7s  %8s  %-18s  %-*s%s\n", "budget", "accuracy", "95% interval", kBar + 2, "",
              random ? "  random pairs" : "");
  for (const auto& p : r.curve()) {
    const double a = p.accuracy().accuracy();
    const int fill =
        hi > lo ? static_cast<int>(std::lround(1 + (kBar - 1) * (a - lo) / (hi - lo))) : kBar;
    std::string bar = "|" + std::string(fill, '#') + std::string(kBar - fill, ' ') + "|";
    std::printf("  %6g%%  %8.4f  %-18s  %s", p.percent(), a, Interval(p.accuracy()).c_str(),
                bar.c_str());
    if (p.has_random_pairs()) {
      std::printf("  %.4f ± %.4f", p.random_pairs().mean(), p.random_pairs().sd());
    }
    std::printf("\n");
  }
  const auto& f = r.fit();
  std::printf("  fit R(x) = r - (r - a) exp(-b x): r=%.4f a=%.4f b=%.4g, R^2=%.3f%s\n", f.r(),
              f.a(), f.b(), f.r_squared(), f.converged() ? "" : " (not converged)");
  if (!r.reached()) {
    std::printf("  recommendation: none; the fitted curve never reaches %g%% of its plateau\n",
                100 * r.target_share());
  } else if (r.curve_size() > 0 && r.percent() <= r.curve(0).percent() && f.a() >= f.r()) {
    std::printf(
        "  recommendation: the smallest budget measured, %g%% = %s %s: the fitted curve falls "
        "with the budget (a=%.3f above r=%.3f), so more data does not help this method\n",
        r.percent(), Thousands(pairs ? r.examples() / 2 : r.examples()).c_str(),
        pairs ? "pairs" : "examples", f.a(), f.r());
  } else {
    const int64_t units = pairs ? r.examples() / 2 : r.examples();
    std::printf("  recommendation: %g%% of the plateau (r=%.3f) at %.3g%% = %s %s; %s\n",
                100 * r.target_share(), f.r(), r.percent(), Thousands(units).c_str(),
                pairs ? "pairs" : "examples", r.extrapolated() ? "extrapolated" : "measured");
  }
  std::printf("  in %.1f s\n", r.duration_seconds());
}

}  // namespace

int EvaluateCommand(Context& ctx, const Args& args) {
  constexpr char kUsage[] =
      "evaluate DATASET (--selection SEL_ID [--count N] | --method M --budget 5%|N "
      "[--unit pair|example] [--seed N]) [--split-seed N] [--test-pairs N] [--train-pairs N] "
      "[--random-seeds N]";
  const auto& pos = args.positional();
  if (pos.size() != 1) return Usage(kUsage);
  if (auto unknown = args.Unknown({"selection", "count", "method", "budget", "unit", "seed",
                                   "split-seed", "test-pairs", "train-pairs", "random-seeds",
                                   "json", "async", "request-id"});
      !unknown.empty()) {
    return Usage("evaluate: unknown option --" + unknown);
  }
  v1::EvaluateSelectionRequest request;
  v1::SelectRequest select;
  select.set_dataset(pos[0]);
  if (std::string error = ParseCommon(args, request.mutable_proxy(), &select); !error.empty()) {
    return Usage(error);
  }
  if (auto id = args.Get("selection")) {
    if (args.Has("method") || args.Has("budget") || args.Has("unit") || args.Has("seed")) {
      return Usage("evaluate: --selection or --method/--budget, not both");
    }
    request.set_selection_id(*id);
    if (auto count = args.Get("count")) {
      int64_t n = 0;
      if (!ParseInt(*count, &n)) return Usage("--count must be a number");
      request.set_count(n);
    }
  } else {
    if (args.Has("count")) return Usage("evaluate: --count goes with --selection");
    auto budget = args.Get("budget");
    if (!budget)
      return Usage(std::string("evaluate: --selection or --budget is needed\n  ") + kUsage);
    if (!ParseBudget(*budget, select.mutable_budget())) {
      return Usage("--budget: '" + *budget + "' is neither N, N% nor a fraction");
    }
    *request.mutable_select() = std::move(select);
  }
  request.set_request_id(args.GetOr("request-id", ""));
  if (args.Has("async")) return StartOperation(ctx, args, "evaluate", request);

  ProgressBar bar("evaluate", "s");
  auto result = ctx.client->Evaluate(request, BarFor(bar));
  bar.Finish();
  if (!result.ok()) {
    return Fail("evaluate", grpc::Status(static_cast<grpc::StatusCode>(result.status().code()),
                                         std::string(result.status().message())));
  }
  if (result->dataset() != pos[0]) {
    std::fprintf(stderr, "curation: evaluate: selection %s belongs to dataset %s, not %s\n",
                 result->selection_id().c_str(), result->dataset().c_str(), pos[0].c_str());
    return 1;
  }
  return ShowEvaluation(ctx, args, *result);
}

int ShowEvaluation(const Context& ctx, const Args&, const v1::Evaluation& evaluation) {
  if (ctx.json) {
    std::printf("%s\n", ToJson(evaluation).c_str());
  } else {
    PrintEvaluation(evaluation);
  }
  return 0;
}

int RecommendCommand(Context& ctx, const Args& args) {
  constexpr char kUsage[] =
      "recommend DATASET [--method M] [--unit pair|example] [--seed N] "
      "[--budgets 0.5,1,2,5,10,25,50,100] [--target 0.95] [--with-random] [--svg FILE] "
      "[--split-seed N] [--test-pairs N] [--train-pairs N] [--random-seeds N]";
  const auto& pos = args.positional();
  if (pos.size() != 1) return Usage(kUsage);
  if (auto unknown = args.Unknown({"method", "unit", "seed", "budgets", "target", "with-random",
                                   "svg", "split-seed", "test-pairs", "train-pairs", "random-seeds",
                                   "json", "async", "request-id"});
      !unknown.empty()) {
    return Usage("recommend: unknown option --" + unknown);
  }
  v1::RecommendBudgetRequest request;
  request.set_dataset(pos[0]);
  if (std::string error = ParseCommon(args, request.mutable_proxy(), request.mutable_select());
      !error.empty()) {
    return Usage(error);
  }
  if (auto budgets = args.Get("budgets")) {
    std::stringstream in(*budgets);
    for (std::string item; std::getline(in, item, ',');) {
      if (!item.empty() && item.back() == '%') item.pop_back();
      double b = 0;
      if (!ParseDouble(item, &b)) return Usage("--budgets: '" + item + "' is not a number");
      request.add_budgets_percent(b);
    }
  }
  if (auto target = args.Get("target")) {
    double t = 0;
    if (!ParseDouble(*target, &t)) return Usage("--target must be a number in (0, 1)");
    request.set_target_share(t);
  }
  request.set_with_random(args.Has("with-random"));
  request.set_request_id(args.GetOr("request-id", ""));
  if (args.Has("async")) return StartOperation(ctx, args, "recommend", request);

  ProgressBar bar("recommend", "s");
  auto result = ctx.client->RecommendBudget(request, BarFor(bar));
  bar.Finish();
  if (!result.ok()) {
    return Fail("recommend", grpc::Status(static_cast<grpc::StatusCode>(result.status().code()),
                                          std::string(result.status().message())));
  }
  return ShowRecommendation(ctx, args, *result);
}

int ShowRecommendation(const Context& ctx, const Args& args,
                       const v1::BudgetRecommendation& recommendation) {
  const v1::BudgetRecommendation* result = &recommendation;
  if (auto path = args.Get("svg")) {
    std::ofstream out(*path);
    out << LearningCurveSvg(
        *result, "Learning curve: " + std::string(MethodName(result->method())) + " on " +
                     result->dataset());
    out.close();
    if (!out) {
      std::fprintf(stderr, "curation: recommend: cannot write %s\n", path->c_str());
      return 1;
    }
  }
  if (ctx.json) {
    std::printf("%s\n", ToJson(*result).c_str());
  } else {
    PrintRecommendation(*result);
  }
  return 0;
}

}  // namespace curation::cli
