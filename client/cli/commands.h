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
int HealthCommand(Context& ctx, const Args& args);

// Prints "curation: <what>: <CODE>: <message>" and returns 1.
int Fail(const std::string& what, const grpc::Status& status);
// Prints "curation: <message>" and returns 2.
int Usage(const std::string& message);
// A proto as indented JSON.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace curation::cli
