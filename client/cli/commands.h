// The subcommands of `curation`. Each takes the parsed arguments and returns the process
// exit code: 0 on success, 1 when the server refused or failed, 2 for a usage error.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "client/cli/args.h"
#include "curation/client.h"

namespace curation::cli {

struct Context {
  std::unique_ptr<client::Client> client;
  bool json = false;  // print replies as JSON instead of prose
};

int DatasetsCommand(Context& ctx, const Args& args);
int IngestCommand(Context& ctx, const Args& args);
int ExamplesCommand(Context& ctx, const Args& args);
int SelectCommand(Context& ctx, const Args& args);
int SelectionsCommand(Context& ctx, const Args& args);
int ExportCommand(Context& ctx, const Args& args);
int EvaluateCommand(Context& ctx, const Args& args);
int RecommendCommand(Context& ctx, const Args& args);
int AdminCommand(Context& ctx, const Args& args);
int ClusterCommand(Context& ctx, const Args& args);
int HealthCommand(Context& ctx, const Args& args);
int OperationsCommand(Context& ctx, const Args& args);

// `select`, `evaluate` and `recommend` with --async: start the job and print the operation's
// name (with --json, the operation), so that scripts can hold on to it. Options that act on
// the result (--ids-out, --scores-svg, --svg) are a usage error here: they go with
// `operations wait`, which has the result.
int StartOperation(Context& ctx, const Args& args, const std::string& what,
                   const v1::SelectRequest& request);
int StartOperation(Context& ctx, const Args& args, const std::string& what,
                   const v1::EvaluateSelectionRequest& request);
int StartOperation(Context& ctx, const Args& args, const std::string& what,
                   const v1::RecommendBudgetRequest& request);

// What `select`, `evaluate` and `recommend` print for their result, and write with their
// output options in `args` (--ids-out and --scores-svg; --svg); with ctx.json, the result as
// JSON. `operations wait` and `operations get` print a job's result with these, so a result
// reads the same however it was run. Return the exit code.
int ShowSelection(const Context& ctx, const Args& args, const v1::Selection& selection);
int ShowEvaluation(const Context& ctx, const Args& args, const v1::Evaluation& evaluation);
int ShowRecommendation(const Context& ctx, const Args& args,
                       const v1::BudgetRecommendation& recommendation);

// Prints "curation: <what>: <CODE>: <message>" and returns 1.
int Fail(const std::string& what, const grpc::Status& status);
// Prints "curation: <message>" and returns 2.
int Usage(const std::string& message);
// A proto as indented JSON.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace curation::cli
