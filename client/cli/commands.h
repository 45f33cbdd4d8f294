// The subcommands of `curation`. Each takes the parsed arguments and returns the process
// exit code: 0 on success, 1 when the server refused or failed, 2 for a usage error.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "client/cli/args.h"
#include "curation/v1/admin.grpc.pb.h"
#include "curation/v1/curation.grpc.pb.h"

namespace curation::cli {

struct Context {
  std::string server;
  std::string token;  // bearer token, "" for none
  std::unique_ptr<v1::CurationService::Stub> stub;
  std::unique_ptr<v1::AdminService::Stub> admin;
  bool json = false;  // print replies as JSON instead of prose

  // A ClientContext with the token and a deadline of `seconds` from now.
  std::unique_ptr<grpc::ClientContext> Call(double seconds) const;
};

int DatasetsCommand(Context& ctx, const Args& args);
int IngestCommand(Context& ctx, const Args& args);
int ExamplesCommand(Context& ctx, const Args& args);
int SelectCommand(Context& ctx, const Args& args);
int SelectionsCommand(Context& ctx, const Args& args);
int ExportCommand(Context& ctx, const Args& args);
int AdminCommand(Context& ctx, const Args& args);

// Prints "curation: <what>: <CODE>: <message>" and returns 1.
int Fail(const std::string& what, const grpc::Status& status);
// Prints "curation: <message>" and returns 2.
int Usage(const std::string& message);
// A proto as indented JSON.
std::string ToJson(const google::protobuf::Message& message);

}  // namespace curation::cli
