// `curation select`, `curation selections ...` and `curation export`.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <utility>
#include <vector>

#include "client/cli/commands.h"
#include "client/cli/progress.h"
#include "client/cli/selection_args.h"
#include "client/cli/svg.h"

namespace curation::cli {
namespace {

// Parses option `name` into `out` if given; false (after printing usage) if it is not a
// number of the type.
template <typename T>
bool ParseNumber(const Args& args, const std::string& name, T* out, bool* given = nullptr) {
  auto text = args.Get(name);
  if (given != nullptr) *given = text.has_value();
  if (!text) return true;
  try {
    size_t used = 0;
    if constexpr (std::is_floating_point_v<T>) {
      *out = static_cast<T>(std::stod(*text, &used));
    } else {
      *out = static_cast<T>(std::stoll(*text, &used));
    }
    if (used == text->size()) return true;
  } catch (...) {
  }
  Usage("--" + name + ": '" + *text + "' is not a number");
  return false;
}

const char* SideName(v1::Side side) {
  return side == v1::SIDE_CHOSEN ? "chosen" : side == v1::SIDE_REJECTED ? "rejected" : "";
}

void PrintSelection(const v1::Selection& s, int items) {
  const auto& sum = s.summary();
  const bool pairs = s.unit() == v1::SELECTION_UNIT_PAIR;
  std::printf(
      "%s on %s: %s chose %lld of %lld %s (%.1f%%) in %.2f s%s%s\n", s.id().c_str(),
      s.dataset().c_str(), MethodName(s.method()), static_cast<long long>(sum.selected_count()),
      static_cast<long long>(sum.pool_size()), pairs ? "pairs" : "examples",
      100.0 * sum.selected_count() / std::max<int64_t>(1, sum.pool_size()), sum.duration_seconds(),
      s.display_name().empty() ? "" : ", named ", s.display_name().c_str());
  if (sum.filtered_out() > 0) {
    std::printf("  filter: %lld %s left out before the method ran\n",
                static_cast<long long>(sum.filtered_out()), pairs ? "pairs" : "examples");
  }
  if (sum.has_distributed()) {
    const auto& run = sum.distributed();
    std::printf("  partitions: %d, %lld rounds, %.1f KB from them, %.1f KB to them\n",
                run.partitions(), static_cast<long long>(run.rounds()),
                run.bytes_from_partitions() / 1024.0, run.bytes_to_partitions() / 1024.0);
  }
  if (sum.ranked()) {
    std::printf("  ranking: all %d items stored in order; the selection is the first %lld\n",
                s.items_size(), static_cast<long long>(sum.selected_count()));
  }
  if (sum.has_fit()) {
    std::string weights;
    for (double w : sum.fit().weights()) {
      if (!weights.empty()) weights += "/";
      weights += std::to_string(w).substr(0, 5);
    }
    std::printf("  mixture: %d iterations, %s, mean log-likelihood %.4g, weights %s\n",
                sum.fit().iterations(), sum.fit().converged() ? "converged" : "NOT converged",
                sum.fit().mean_log_likelihood(), weights.c_str());
    if (s.isa().pca_dim() > 0) {
      std::printf("  pca: %d dimensions kept %.1f%% of the variance\n", s.isa().pca_dim(),
                  100.0 * sum.fit().retained_variance());
    }
  }
  if (s.method() != v1::SELECTION_METHOD_RANDOM && s.method() != v1::SELECTION_METHOD_DEDUP) {
    std::printf("  scores: %.6g to %.6g, mean %.6g\n", sum.min_score(), sum.max_score(),
                sum.mean_score());
  }
  if (sum.desirable_count() + sum.undesirable_count() > 0) {
    std::printf("  labels: %lld desirable, %lld undesirable\n",
                static_cast<long long>(sum.desirable_count()),
                static_cast<long long>(sum.undesirable_count()));
  }
  for (int i = 0; i < items && i < s.items_size(); ++i) {
    const auto& item = s.items(i);
    std::printf("  %3d. %s %s score %.6g\n", i + 1, item.example_id().c_str(),
                SideName(item.side()), item.score());
  }
}

}  // namespace

int SelectCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  if (pos.size() != 1) return Usage("select DATASET --budget B");
  if (auto unknown = args.Unknown({"budget",      "method",     "unit",           "seed",
                                   "name",        "covariance", "components",     "n-init",
                                   "init",        "pca-dim",    "max-iter",       "tol",
                                   "neighbours",  "stochastic", "where",          "min-chars",
                                   "max-chars",   "dedup",      "balance-labels", "desirable-share",
                                   "stratify-by", "ranking",    "scores-svg",     "ids-out",
                                   "json",        "async",      "request-id"});
      !unknown.empty()) {
    return Usage("select: unknown option --" + unknown);
  }
  v1::SelectRequest request;
  request.set_dataset(pos[0]);
  auto budget = args.Get("budget");
  if (!budget) return Usage("select: --budget is required (e.g. 10% or 5000)");
  if (!ParseBudget(*budget, request.mutable_budget())) {
    return Usage("--budget: '" + *budget + "' is neither N, N% nor a fraction");
  }
  // Without --method the server picks the dataset kind's default (and records it).
  if (auto method = args.Get("method")) {
    auto parsed = ParseMethod(*method);
    if (!parsed) return Usage(std::string("--method must be ") + kMethodChoices);
    request.set_method(*parsed);
  }
  if (auto unit = args.Get("unit")) {
    auto parsed = ParseUnit(*unit);
    if (!parsed) return Usage("--unit must be pair or example");
    request.set_unit(*parsed);
  }
  // ISA options: given at all, they go to the server, which refuses them for other methods.
  if (auto cov = args.Get("covariance")) {
    if (*cov == "diag") {
      request.mutable_isa()->set_covariance(v1::COVARIANCE_DIAG);
    } else if (*cov == "spherical") {
      request.mutable_isa()->set_covariance(v1::COVARIANCE_SPHERICAL);
    } else if (*cov == "full") {
      request.mutable_isa()->set_covariance(v1::COVARIANCE_FULL);
    } else {
      return Usage("--covariance must be diag, spherical or full");
    }
  }
  if (auto init = args.Get("init")) {
    if (*init == "kmeans") {
      request.mutable_isa()->set_init(v1::MIXTURE_INIT_KMEANS);
    } else if (*init == "kmeans++") {
      request.mutable_isa()->set_init(v1::MIXTURE_INIT_KMEANS_PLUS_PLUS);
    } else {
      return Usage("--init must be kmeans or kmeans++");
    }
  }
  {
    int32_t components = 0, n_init = 0, pca_dim = 0, max_iter = 0;
    double tol = 0;
    bool g1, g2, g3, g4, g5;
    if (!ParseNumber(args, "components", &components, &g1) ||
        !ParseNumber(args, "n-init", &n_init, &g2) ||
        !ParseNumber(args, "pca-dim", &pca_dim, &g3) ||
        !ParseNumber(args, "max-iter", &max_iter, &g4) || !ParseNumber(args, "tol", &tol, &g5)) {
      return 2;
    }
    if (g1) request.mutable_isa()->set_components(components);
    if (g2) request.mutable_isa()->set_n_init(n_init);
    if (g3) request.mutable_isa()->set_pca_dim(pca_dim);
    if (g4) request.mutable_isa()->set_max_iter(max_iter);
    if (g5) request.mutable_isa()->set_tol(tol);
  }
  {
    int32_t neighbours = 0;
    bool given = false;
    if (!ParseNumber(args, "neighbours", &neighbours, &given)) return 2;
    if (given) request.mutable_facility_location()->set_neighbours(neighbours);
    if (args.Has("stochastic")) request.mutable_facility_location()->set_stochastic(true);
  }
  for (const std::string& where : args.GetAll("where")) {
    const auto eq = where.find('=');
    if (eq == std::string::npos || eq == 0) return Usage("--where takes KEY=VALUE");
    (*request.mutable_filter()->mutable_metadata_equals())[where.substr(0, eq)] =
        where.substr(eq + 1);
  }
  {
    int64_t min_chars = 0, max_chars = 0;
    double dedup = 0, share = 0;
    bool g1, g2, g3, g4;
    if (!ParseNumber(args, "min-chars", &min_chars, &g1) ||
        !ParseNumber(args, "max-chars", &max_chars, &g2) ||
        !ParseNumber(args, "dedup", &dedup, &g3) ||
        !ParseNumber(args, "desirable-share", &share, &g4)) {
      return 2;
    }
    if (g1) request.mutable_filter()->set_min_chars(min_chars);
    if (g2) request.mutable_filter()->set_max_chars(max_chars);
    if (g3) request.mutable_filter()->set_dedup_threshold(dedup);
    if (g4) request.mutable_constraints()->set_desirable_share(share);
  }
  if (args.Has("balance-labels")) request.mutable_constraints()->set_balance_labels(true);
  if (auto key = args.Get("stratify-by")) request.mutable_constraints()->set_stratify_by(*key);
  if (args.Has("ranking")) request.set_ranking(true);
  try {
    request.set_seed(std::stoull(args.GetOr("seed", "0")));
  } catch (...) {
    return Usage("--seed must be a non-negative number");
  }
  request.set_display_name(args.GetOr("name", ""));
  request.set_request_id(args.GetOr("request-id", ""));
  if (args.Has("async")) return StartOperation(ctx, args, "select", request);

  // The streaming form, so that a long fit shows its progress.
  v1::Selection reply;
  auto call = ctx.client->NewContext(std::chrono::hours(6));
  auto stream = ctx.client->curation().SelectStream(call.get(), request);
  ProgressBar bar("select", "s");
  v1::SelectProgress update;
  while (stream->Read(&update)) {
    if (update.has_selection()) {
      reply = update.selection();
    } else {
      bar.Update(update.progress().fraction(), 1.0,
                 static_cast<int64_t>(update.progress().elapsed_seconds()));
    }
  }
  grpc::Status s = stream->Finish();
  bar.Finish();
  if (!s.ok()) return Fail("select", s);
  return ShowSelection(ctx, args, reply);
}

int ShowSelection(const Context& ctx, const Args& args, const v1::Selection& reply) {
  if (auto path = args.Get("ids-out")) {
    std::ofstream out(*path);
    for (const auto& item : reply.items()) {
      out << item.example_id();
      if (item.side() != v1::SIDE_UNSPECIFIED) out << '\t' << SideName(item.side());
      out << '\n';
    }
    if (!out) {
      std::fprintf(stderr, "curation: select: cannot write %s\n", path->c_str());
      return 1;
    }
  }
  if (auto path = args.Get("scores-svg")) {
    // The selection's scores, and for a ranking a second chart of the whole pool's.
    const int selected =
        static_cast<int>(std::min<int64_t>(reply.summary().selected_count(), reply.items_size()));
    std::vector<double> scores;
    for (int i = 0; i < selected; ++i) scores.push_back(reply.items(i).score());
    std::string svg = HistogramSvg(std::string(MethodName(reply.method())) + " scores of the " +
                                       std::to_string(selected) + " selected",
                                   scores, 30);
    if (reply.summary().ranked()) {
      std::vector<double> all;
      for (const auto& item : reply.items()) all.push_back(item.score());
      // Two charts side by side in one file: the second is nested with an offset.
      const std::string second = HistogramSvg(
          std::string(MethodName(reply.method())) + " scores of the whole ranking", all, 30);
      const auto close = svg.rfind("</svg>");
      svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1280\" height=\"400\">\n" +
            svg.substr(0, close) + "</svg>\n<svg x=\"640\"" + second.substr(4) + "</svg>\n";
    }
    std::ofstream out(*path);
    out << svg;
    if (!out) {
      std::fprintf(stderr, "curation: select: cannot write %s\n", path->c_str());
      return 1;
    }
  }
  if (ctx.json) {
    std::printf("%s\n", ToJson(reply).c_str());
  } else {
    PrintSelection(reply, 5);
  }
  return 0;
}

int SelectionsCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  if (pos.size() != 2 || (pos[0] != "list" && pos[0] != "get")) {
    return Usage("selections list DATASET | selections get SELECTION_ID");
  }
  if (pos[0] == "list") {
    v1::ListSelectionsRequest request;
    request.set_dataset(pos[1]);
    request.set_page_size(200);
    int count = 0;
    do {
      v1::ListSelectionsResponse reply;
      grpc::Status s = ctx.client->ListSelections(request, &reply);
      if (!s.ok()) return Fail("selections list", s);
      for (const auto& sel : reply.selections()) {
        ++count;
        if (ctx.json) {
          std::printf("%s\n", ToJson(sel).c_str());
        } else {
          PrintSelection(sel, 0);
        }
      }
      request.set_page_token(reply.next_page_token());
    } while (!request.page_token().empty());
    if (!ctx.json && count == 0) std::printf("no selections\n");
    return 0;
  }
  v1::GetSelectionRequest request;
  request.set_id(pos[1]);
  int items = 10;
  try {
    items = std::stoi(args.GetOr("items", "10"));
  } catch (...) {
    return Usage("--items must be a number");
  }
  v1::Selection reply;
  grpc::Status s = ctx.client->GetSelection(request, &reply);
  if (!s.ok()) return Fail("selections get", s);
  if (ctx.json) {
    std::printf("%s\n", ToJson(reply).c_str());
  } else {
    PrintSelection(reply, items);
  }
  return 0;
}

int ExportCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  if (pos.size() != 1) {
    return Usage("export SELECTION_ID [--format trl|kto] [--count N] [-o FILE]");
  }
  if (auto unknown = args.Unknown({"format", "output", "count", "json"}); !unknown.empty()) {
    return Usage("export: unknown option --" + unknown);
  }
  v1::ExportSelectionRequest request;
  request.set_selection_id(pos[0]);
  if (auto format = args.Get("format")) {
    if (*format == "trl") {
      request.set_format(v1::EXPORT_FORMAT_TRL);
    } else if (*format == "kto") {
      request.set_format(v1::EXPORT_FORMAT_KTO);
    } else {
      return Usage("--format must be trl or kto");
    }
  }
  {
    int64_t count = 0;
    if (!ParseNumber(args, "count", &count)) return 2;
    request.set_count(count);
  }
  std::ofstream file;
  const auto path = args.Get("output");
  if (path && *path != "-") {
    file.open(*path);
    if (!file) {
      std::fprintf(stderr, "curation: export: cannot write %s\n", path->c_str());
      return 1;
    }
  }
  std::ostream& out = file.is_open() ? static_cast<std::ostream&>(file) : std::cout;
  auto call = ctx.client->NewContext(std::chrono::hours(7 * 24));
  auto stream = ctx.client->curation().ExportSelection(call.get(), request);
  v1::ExportSelectionResponse message;
  ProgressBar bar("export", "records");
  int64_t written = 0;
  while (stream->Read(&message)) {
    for (const auto& r : message.records()) {
      nlohmann::ordered_json line;
      line["prompt"] = r.prompt();
      if (r.completion().empty()) {
        line["chosen"] = r.chosen();
        line["rejected"] = r.rejected();
      } else {
        line["completion"] = r.completion();
        line["label"] = r.label();
      }
      line["id"] = r.id();
      // Invalid UTF-8 from a client would make dump() throw; replace it instead.
      out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
      ++written;
    }
    bar.Update(static_cast<double>(message.sent()), static_cast<double>(message.total()), written);
  }
  grpc::Status s = stream->Finish();
  bar.Finish();
  if (!s.ok()) return Fail("export", s);
  out.flush();
  if (!out) {
    std::fprintf(stderr, "curation: export: write failed\n");
    return 1;
  }
  if (file.is_open()) {
    std::printf("exported %lld records of %s to %s\n", static_cast<long long>(written),
                pos[0].c_str(), path->c_str());
  }
  return 0;
}

}  // namespace curation::cli
