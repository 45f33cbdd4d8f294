// `curation operations ...` and the --async form of `select`, `evaluate` and `recommend`:
// jobs that run on the server whether or not the client stays connected, looked up, waited
// for and cancelled by their operation's name.
#include <google/protobuf/util/time_util.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "client/cli/commands.h"
#include "client/cli/progress.h"

namespace curation::cli {
namespace {

// What `operations wait` exits with when --timeout ran out before the operation was done, so
// that a script can tell "ask again" from "failed" (1) and "succeeded" (0).
constexpr int kStillRunning = 3;

const char* KindName(v1::OperationKind kind) {
  switch (kind) {
    case v1::OPERATION_KIND_SELECT:
      return "select";
    case v1::OPERATION_KIND_EVALUATE:
      return "evaluate";
    case v1::OPERATION_KIND_RECOMMEND_BUDGET:
      return "recommend";
    default:
      return "operation";
  }
}

// Users may type the id alone; the API's names carry the collection.
std::string OperationName(const std::string& text) {
  return text.find('/') == std::string::npos ? "operations/" + text : text;
}

std::string Time(const google::protobuf::Timestamp& t) {
  return google::protobuf::util::TimeUtil::ToString(t);
}

double Seconds(const google::protobuf::Timestamp& from, const google::protobuf::Timestamp& to) {
  return google::protobuf::util::TimeUtil::DurationToMilliseconds(to - from) / 1000.0;
}

// One line: name, kind, dataset, state, and what the state says (queue position, progress,
// duration or error).
void PrintOperationLine(const v1::Operation& op) {
  const auto& m = op.metadata();
  std::string detail;
  char buf[64];
  switch (m.state()) {
    case v1::OPERATION_STATE_QUEUED:
      detail = " (" + std::to_string(m.queue_position()) + " to start before it)";
      break;
    case v1::OPERATION_STATE_RUNNING:
      std::snprintf(buf, sizeof buf, " %.0f%% after %.1f s", 100 * m.progress().fraction(),
                    m.progress().elapsed_seconds());
      detail = buf;
      if (!m.progress().stage().empty()) detail += ": " + m.progress().stage();
      break;
    case v1::OPERATION_STATE_SUCCEEDED:
      std::snprintf(buf, sizeof buf, " in %.2f s", Seconds(m.start_time(), m.end_time()));
      detail = buf;
      break;
    default:
      // A cancelled job's code would only repeat its state.
      if (op.has_error() && op.error().code() != static_cast<int>(grpc::StatusCode::CANCELLED)) {
        detail = ": " + absl::StatusCodeToString(static_cast<absl::StatusCode>(op.error().code()));
      }
      if (op.has_error()) detail += ": " + op.error().message();
  }
  std::printf("%s  %s %s: %s%s%s%s\n", op.name().c_str(), KindName(m.kind()), m.dataset().c_str(),
              client::StateName(m.state()).c_str(), detail.c_str(),
              m.request_id().empty() ? "" : "  request-id ", m.request_id().c_str());
}

void PrintOperationDetails(const v1::Operation& op) {
  PrintOperationLine(op);
  const auto& m = op.metadata();
  std::string times = "  created " + Time(m.create_time());
  if (m.has_start_time()) times += ", started " + Time(m.start_time());
  if (m.has_end_time()) times += ", ended " + Time(m.end_time());
  if (m.has_expire_time()) times += ", kept until " + Time(m.expire_time());
  std::printf("%s\n", times.c_str());
  std::printf("  estimated %.1f MB and %.1f s; started %d time%s\n",
              m.estimated_memory_bytes() / 1e6, m.estimated_seconds(), m.attempts(),
              m.attempts() == 1 ? "" : "s");
}

// The result of a done, successful operation, printed as the command that runs it
// synchronously prints it.
int ShowResult(const Context& ctx, const Args& args, const v1::Operation& op) {
  switch (op.result_case()) {
    case v1::Operation::kSelection:
      return ShowSelection(ctx, args, op.selection());
    case v1::Operation::kEvaluation:
      return ShowEvaluation(ctx, args, op.evaluation());
    case v1::Operation::kRecommendation:
      return ShowRecommendation(ctx, args, op.recommendation());
    default:
      std::fprintf(stderr, "curation: %s holds no result this CLI knows\n", op.name().c_str());
      return 1;
  }
}

// The operation's own failure as the synchronous command would report it ("curation: select
// operations/...: CANCELLED: ..."), or 0 if it did not fail.
int FailedOperation(const v1::Operation& op) {
  grpc::Status s = client::OperationStatus(op);
  if (s.ok()) return 0;
  return Fail(std::string(KindName(op.metadata().kind())) + " " + op.name(), s);
}

template <typename Request>
int Start(Context& ctx, const Args& args, const std::string& what, const Request& request,
          grpc::Status (client::Client::*start)(const Request&, v1::Operation*)) {
  for (const char* option : {"ids-out", "scores-svg", "svg"}) {
    if (args.Has(option)) {
      return Usage(what + " --async: --" + option + " goes with `operations wait`");
    }
  }
  v1::Operation op;
  grpc::Status s = ((*ctx.client).*start)(request, &op);
  if (!s.ok()) return Fail(what, s);
  if (ctx.json) {
    std::printf("%s\n", ToJson(op).c_str());
  } else {
    std::printf("%s\n", op.name().c_str());
  }
  return 0;
}

int List(Context& ctx, const Args& args) {
  v1::ListOperationsRequest request;
  request.set_dataset(args.GetOr("dataset", ""));
  request.set_page_token(args.GetOr("page-token", ""));
  // Without --page-size every page is fetched; with it, one page and the token for the next.
  const bool one_page = args.Has("page-size");
  request.set_page_size(200);
  if (one_page) {
    try {
      request.set_page_size(std::stoi(*args.Get("page-size")));
    } catch (...) {
      return Usage("--page-size must be a number");
    }
  }
  int count = 0;
  do {
    v1::ListOperationsResponse reply;
    grpc::Status s = ctx.client->ListOperations(request, &reply);
    if (!s.ok()) return Fail("operations list", s);
    for (const auto& op : reply.operations()) {
      ++count;
      if (ctx.json) {
        std::printf("%s\n", ToJson(op).c_str());
      } else {
        PrintOperationLine(op);
      }
    }
    request.set_page_token(reply.next_page_token());
    if (one_page && !request.page_token().empty()) {
      std::fprintf(stderr, "more: --page-token %s\n", request.page_token().c_str());
      break;
    }
  } while (!request.page_token().empty());
  if (!ctx.json && count == 0) std::printf("no operations\n");
  return 0;
}

int Wait(Context& ctx, const Args& args, const std::string& name) {
  double timeout_seconds = 0;
  if (auto t = args.Get("timeout")) {
    try {
      size_t used = 0;
      timeout_seconds = std::stod(*t, &used);
      if (used != t->size() || timeout_seconds < 0) throw std::invalid_argument(*t);
    } catch (...) {
      return Usage("--timeout must be a non-negative number of seconds (0: no limit)");
    }
  }
  // On a terminal, short waits keep the bar moving; otherwise long ones save calls (the
  // server answers as soon as the operation is done either way).
  const bool terminal = isatty(STDERR_FILENO) == 1;
  const auto poll = terminal ? std::chrono::milliseconds(500) : std::chrono::seconds(30);
  std::optional<ProgressBar> bar;
  auto show = [&bar](const v1::Operation& op) {
    if (op.done()) return;
    if (!bar) bar.emplace(KindName(op.metadata().kind()), "s");
    const auto& p = op.metadata().progress();
    bar->Update(p.fraction(), 1.0, static_cast<int64_t>(p.elapsed_seconds()));
  };
  auto op = ctx.client->AwaitOperation(
      name, std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)), poll, show);
  if (bar) bar->Finish();
  if (!op.ok()) {
    return Fail("operations wait", grpc::Status(static_cast<grpc::StatusCode>(op.status().code()),
                                                std::string(op.status().message())));
  }
  if (!op->done()) {
    ctx.json ? (void)std::printf("%s\n", ToJson(*op).c_str()) : PrintOperationLine(*op);
    std::fprintf(stderr, "curation: operations wait: %s is still %s after %g s\n",
                 op->name().c_str(), client::StateName(op->metadata().state()).c_str(),
                 timeout_seconds);
    return kStillRunning;
  }
  if (int failed = FailedOperation(*op); failed != 0) return failed;
  return ShowResult(ctx, args, *op);
}

}  // namespace

int StartOperation(Context& ctx, const Args& args, const std::string& what,
                   const v1::SelectRequest& request) {
  return Start(ctx, args, what, request, &client::Client::StartSelect);
}

int StartOperation(Context& ctx, const Args& args, const std::string& what,
                   const v1::EvaluateSelectionRequest& request) {
  return Start(ctx, args, what, request, &client::Client::StartEvaluation);
}

int StartOperation(Context& ctx, const Args& args, const std::string& what,
                   const v1::RecommendBudgetRequest& request) {
  return Start(ctx, args, what, request, &client::Client::StartRecommendBudget);
}

int OperationsCommand(Context& ctx, const Args& args) {
  constexpr char kUsage[] =
      "operations list [--dataset D] [--page-size N [--page-token T]] | get NAME | "
      "wait NAME [--timeout S] | cancel NAME";
  const auto& pos = args.positional();
  if (pos.empty()) return Usage(kUsage);
  const std::string& verb = pos[0];
  if (verb == "list") {
    if (pos.size() != 1) return Usage(kUsage);
    if (auto unknown = args.Unknown({"dataset", "page-size", "page-token", "json"});
        !unknown.empty()) {
      return Usage("operations list: unknown option --" + unknown);
    }
    return List(ctx, args);
  }
  if (pos.size() != 2 || (verb != "get" && verb != "wait" && verb != "cancel")) {
    return Usage(kUsage);
  }
  const std::string name = OperationName(pos[1]);
  if (verb == "wait") {
    if (auto unknown = args.Unknown({"timeout", "ids-out", "scores-svg", "svg", "json"});
        !unknown.empty()) {
      return Usage("operations wait: unknown option --" + unknown);
    }
    return Wait(ctx, args, name);
  }
  if (auto unknown = args.Unknown({"json"}); !unknown.empty()) {
    return Usage("operations " + verb + ": unknown option --" + unknown);
  }
  v1::Operation op;
  grpc::Status s;
  if (verb == "get") {
    v1::GetOperationRequest request;
    request.set_name(name);
    s = ctx.client->GetOperation(request, &op);
  } else {
    v1::CancelOperationRequest request;
    request.set_name(name);
    s = ctx.client->CancelOperation(request, &op);
  }
  if (!s.ok()) return Fail("operations " + verb, s);
  if (ctx.json) {
    std::printf("%s\n", ToJson(op).c_str());
  } else {
    PrintOperationDetails(op);
  }
  // A cancel that worked succeeded, whatever the job's state; `get` of a job that failed or
  // was cancelled reports that as `wait` does.
  if (verb == "get") {
    if (int failed = FailedOperation(op); failed != 0) return failed;
    if (!ctx.json && op.done()) return ShowResult(ctx, args, op);
  }
  return 0;
}

}  // namespace curation::cli
