// `curation select`, `curation selections ...` and `curation export`.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "client/cli/commands.h"
#include "client/cli/progress.h"

namespace curation::cli {
namespace {

// "10%" and "0.1" are shares of the pool; "5000" is a count.
bool ParseBudget(const std::string& text, v1::Budget* budget) {
  try {
    size_t used = 0;
    if (!text.empty() && text.back() == '%') {
      const double percent = std::stod(text.substr(0, text.size() - 1), &used);
      if (used != text.size() - 1) return false;
      budget->set_fraction(percent / 100.0);
      return true;
    }
    if (text.find_first_of(".eE") != std::string::npos) {
      budget->set_fraction(std::stod(text, &used));
      return used == text.size();
    }
    budget->set_count(std::stoll(text, &used));
    return used == text.size();
  } catch (...) {
    return false;
  }
}

const char* MethodName(v1::SelectionMethod m) {
  switch (m) {
    case v1::SELECTION_METHOD_ISA:
      return "isa";
    case v1::SELECTION_METHOD_RANDOM:
      return "random";
    default:
      return "?";
  }
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
  if (sum.has_fit()) {
    std::string weights;
    for (double w : sum.fit().weights()) {
      if (!weights.empty()) weights += "/";
      weights += std::to_string(w).substr(0, 5);
    }
    std::printf("  mixture: %d iterations, %s, mean log-likelihood %.4g, weights %s\n",
                sum.fit().iterations(), sum.fit().converged() ? "converged" : "NOT converged",
                sum.fit().mean_log_likelihood(), weights.c_str());
  }
  if (s.method() != v1::SELECTION_METHOD_RANDOM) {
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
  if (auto unknown = args.Unknown(
          {"budget", "method", "unit", "seed", "name", "covariance", "ids-out", "json"});
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
  const std::string method = args.GetOr("method", "isa");
  if (method == "isa") {
    request.set_method(v1::SELECTION_METHOD_ISA);
  } else if (method == "random") {
    request.set_method(v1::SELECTION_METHOD_RANDOM);
  } else {
    return Usage("--method must be isa or random");
  }
  if (auto unit = args.Get("unit")) {
    if (*unit == "pair") {
      request.set_unit(v1::SELECTION_UNIT_PAIR);
    } else if (*unit == "example") {
      request.set_unit(v1::SELECTION_UNIT_EXAMPLE);
    } else {
      return Usage("--unit must be pair or example");
    }
  }
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
  try {
    request.set_seed(std::stoull(args.GetOr("seed", "0")));
  } catch (...) {
    return Usage("--seed must be a non-negative number");
  }
  request.set_display_name(args.GetOr("name", ""));

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
  if (pos.size() != 1) return Usage("export SELECTION_ID [--format trl|kto] [-o FILE]");
  if (auto unknown = args.Unknown({"format", "output", "json"}); !unknown.empty()) {
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
