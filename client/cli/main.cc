// curation: the command-line client of the curation service.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "client/cli/commands.h"

namespace {

constexpr char kUsage[] = R"(usage: curation [--server HOST:PORT] [--token TOKEN] [--tls-ca FILE]
                [--tls-cert FILE --tls-key FILE] [--json] COMMAND ...

  datasets create NAME [--kind pairs|unpaired] [--dim D] [--description TEXT]
                       [--encoding sq8|float16|float32] [--project P [--keep-original]]
                       [--member M] [--partitions P]
                          without --dim the server embeds texts with its built-in embedder;
                          with --dim every record must carry D-dimensional vectors;
                          --encoding: how the server holds them (default: the server's, float16);
                          --project P: PCA to P dimensions, fitted on the first ingest;
                          --partitions P (cluster): spread over P members by example id
  datasets list | get NAME | delete NAME
  ingest DATASET FILE [--batch N] [--strict] [--embeddings VECTORS.npy]
                          FILE: JSONL, JSONL.gz or a JSON array, in TRL {prompt, chosen,
                          rejected}, Anthropic HH {chosen, rejected}, KTO {prompt, completion,
                          label} or PandaLM format
                          VECTORS.npy: float32/float16, row i for record i; shape (N, D)
                          unpaired, (N, 2, D) pairs ([:, 0] chosen, [:, 1] rejected)
  examples get DATASET ID... [--embeddings]
  select DATASET --budget 10%|0.1|5000 [--method M] [--unit pair|example] [--seed N]
                 [--name NAME] [--ranking] [--ids-out FILE] [--scores-svg FILE]
                          M: herding (the default), isa, random, facility_location, kcenter,
                          dedup. --ranking stores the whole pool's order (the budget is its
                          default prefix); --scores-svg draws a histogram of the scores
         isa:            [--components K] [--covariance diag|spherical|full] [--n-init N]
                         [--init kmeans|kmeans++] [--pca-dim D] [--max-iter N] [--tol X]
         facility_location: [--neighbours N] [--stochastic]
         filters:        [--where KEY=VALUE ...] [--min-chars N] [--max-chars N] [--dedup 0.95]
         constraints:    [--balance-labels [--desirable-share S]] [--stratify-by KEY]
  selections list DATASET | get SELECTION_ID [--items N]
  export SELECTION_ID [--format trl|kto] [--count N] [-o FILE]
                          --count: the first N items (default: the selection; for a ranking
                          any prefix)
  evaluate DATASET (--selection SEL_ID [--count N] | --method M --budget 5%|N
                   [--unit pair|example] [--seed N]) [--split-seed N] [--test-pairs N]
                   [--train-pairs N] [--random-seeds N]
                          the proxy reward model trained on the subset, on random subsets
                          of its size and on the whole pool, scored on held-out pairs
  recommend DATASET [--method M] [--unit pair|example] [--seed N]
                    [--budgets 0.5,1,2,5,10,25,50,100] [--target 0.95] [--with-random]
                    [--svg FILE] [--split-seed N] [--test-pairs N] [--train-pairs N]
                          the method's learning curve, the scaling law fitted to it and the
                          smallest budget reaching --target of its plateau
  select|evaluate|recommend ... --async [--request-id ID]
                          start the job on the server and print its operation's name (with
                          --json the operation); --request-id (also without --async) makes a
                          repeat of the same request return the same operation and result
  operations list [--dataset D] [--page-size N [--page-token T]]
  operations get NAME | cancel NAME
  operations wait NAME [--timeout S] [--ids-out FILE] [--scores-svg FILE] [--svg FILE]
                          waits (with a progress bar on a terminal) and prints the result as
                          select/evaluate/recommend print it; exit 1 if the job failed or was
                          cancelled, 3 if it is still running after --timeout seconds

  admin tenants create|set-quotas NAME [--max-examples N] [--max-bytes N] [--max-datasets N]
                [--max-selections N] [--max-queued-jobs N] [--weight W]
                [--max-job-seconds S] [--ingest-rate R] [--ingest-burst B]
  admin tenants list | get NAME
  admin tokens create --role reader|writer --tenant NAME | --role admin [--description D]
  admin tokens list [--tenant NAME] | revoke ID
  admin backup
  admin datasets move NAME --tenant T --to MEMBER
                          on a cluster: moves the dataset to another member (for draining
                          a node); writes wait meanwhile, nothing acknowledged is lost
  cluster members         on a cluster: every member, its address, datasets, stored bytes
                          and health
  health                  prints SERVING or NOT_SERVING; exit 0 only when SERVING

The server defaults to $CURATION_SERVER, else 127.0.0.1:50051; the token to $CURATION_TOKEN
(sent as "authorization: Bearer <token>"). With --tls-ca the connection uses TLS, verified
against that CA; --tls-cert/--tls-key add a client certificate for mutual TLS.
)";

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "curation: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  using curation::cli::Context;
  Context ctx;
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v != nullptr ? v : "");
  };
  curation::client::Options options;
  if (!env("CURATION_SERVER").empty()) options.server = env("CURATION_SERVER");
  options.token = env("CURATION_TOKEN");
  std::string tls_ca = env("CURATION_TLS_CA"), tls_cert, tls_key;
  int i = 1;
  // Global options come before the command.
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    std::string* target = nullptr;
    std::string name = arg.substr(0, arg.find('='));
    if (name == "--server") target = &options.server;
    if (name == "--token") target = &options.token;
    if (name == "--tls-ca") target = &tls_ca;
    if (name == "--tls-cert") target = &tls_cert;
    if (name == "--tls-key") target = &tls_key;
    if (target != nullptr) {
      if (arg.find('=') != std::string::npos) {
        *target = arg.substr(arg.find('=') + 1);
      } else if (i + 1 < argc) {
        *target = argv[++i];
      } else {
        return curation::cli::Usage(arg + " needs a value");
      }
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
  if (!tls_ca.empty()) options.tls_root_certs = ReadFileOrDie(tls_ca);
  if (tls_cert.empty() != tls_key.empty()) {
    return curation::cli::Usage("--tls-cert and --tls-key go together");
  }
  if (!tls_cert.empty()) {
    options.tls_cert_chain = ReadFileOrDie(tls_cert);
    options.tls_private_key = ReadFileOrDie(tls_key);
  }
  auto client = curation::client::Client::Connect(options);
  if (!client.ok()) return curation::cli::Usage(std::string(client.status().message()));
  ctx.client = *std::move(client);

  std::set<std::string> flags = {"strict",  "embeddings",  "keep-original", "json",
                                 "help",    "progress",    "stochastic",    "balance-labels",
                                 "ranking", "with-random", "async"};
  // `examples get --embeddings` is a switch; `ingest --embeddings FILE` names a file.
  if (command == "ingest") flags.erase("embeddings");
  const curation::cli::Args args(argc, argv, i + 1, flags);
  if (!args.error().empty()) return curation::cli::Usage(args.error());
  if (args.Has("json")) ctx.json = true;
  if (command == "datasets") return DatasetsCommand(ctx, args);
  if (command == "ingest") return IngestCommand(ctx, args);
  if (command == "examples") return ExamplesCommand(ctx, args);
  if (command == "select") return SelectCommand(ctx, args);
  if (command == "selections") return SelectionsCommand(ctx, args);
  if (command == "export") return ExportCommand(ctx, args);
  if (command == "evaluate") return EvaluateCommand(ctx, args);
  if (command == "recommend") return RecommendCommand(ctx, args);
  if (command == "operations") return OperationsCommand(ctx, args);
  if (command == "admin") return AdminCommand(ctx, args);
  if (command == "cluster") return ClusterCommand(ctx, args);
  if (command == "health") return HealthCommand(ctx, args);
  std::fprintf(stderr, "curation: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return 2;
}
