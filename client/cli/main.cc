// curation: the command-line client of the curation service.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "client/cli/commands.h"

namespace {

constexpr char kUsage[] = R"(usage: curation [--server HOST:PORT] [--json] COMMAND ...

  datasets create NAME [--kind pairs|unpaired] [--dim D] [--description TEXT]
                          without --dim the server embeds texts with its built-in embedder;
                          with --dim every record must carry D-dimensional vectors
  datasets list | get NAME | delete NAME
  ingest DATASET FILE [--batch N] [--strict]
                          FILE: JSONL, JSONL.gz or a JSON array, in TRL {prompt, chosen,
                          rejected}, Anthropic HH {chosen, rejected}, KTO {prompt, completion,
                          label} or PandaLM format
  examples get DATASET ID... [--embeddings]
  select DATASET --budget 10%|0.1|5000 [--method isa|random] [--unit pair|example]
                 [--seed N] [--name NAME] [--covariance diag|spherical|full] [--ids-out FILE]
  selections list DATASET | get SELECTION_ID [--items N]
  export SELECTION_ID [--format trl|kto] [-o FILE]

The server defaults to $CURATION_SERVER, else 127.0.0.1:50051.
)";

}  // namespace

int main(int argc, char** argv) {
  using curation::cli::Context;
  Context ctx;
  const char* env = std::getenv("CURATION_SERVER");
  ctx.server = env != nullptr && *env != '\0' ? env : "127.0.0.1:50051";
  int i = 1;
  // Global options come before the command.
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--server" && i + 1 < argc) {
      ctx.server = argv[++i];
    } else if (arg.rfind("--server=", 0) == 0) {
      ctx.server = arg.substr(9);
    } else if (arg == "--json") {
      ctx.json = true;
    } else if (arg == "-h" || arg == "--help" || arg == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      break;
    }
  }
  if (i >= argc) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[i];
  grpc::ChannelArguments channel_args;
  // Selections of large datasets are big messages; the server caps them itself.
  channel_args.SetMaxReceiveMessageSize(256 << 20);
  channel_args.SetMaxSendMessageSize(64 << 20);
  ctx.stub = curation::v1::CurationService::NewStub(
      grpc::CreateCustomChannel(ctx.server, grpc::InsecureChannelCredentials(), channel_args));

  const curation::cli::Args args(argc, argv, i + 1,
                                 {"strict", "embeddings", "json", "help", "progress"});
  if (!args.error().empty()) return curation::cli::Usage(args.error());
  if (args.Has("json")) ctx.json = true;
  if (command == "datasets") return DatasetsCommand(ctx, args);
  if (command == "ingest") return IngestCommand(ctx, args);
  if (command == "examples") return ExamplesCommand(ctx, args);
  if (command == "select") return SelectCommand(ctx, args);
  if (command == "selections") return SelectionsCommand(ctx, args);
  if (command == "export") return ExportCommand(ctx, args);
  std::fprintf(stderr, "curation: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
