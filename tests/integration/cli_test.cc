// The curation CLI end to end against the real server, on the bundled real samples.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "tests/integration/server_process.h"

namespace curation::testing {
namespace {

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(CliTest, IngestSelectExport) {
  const std::string dir = MakeTempDir("cli-flow");
  auto server = ServerProcess::Start(dir + "/db");
  const std::string addr = server->address();

  CommandResult r = RunCli(addr, {"datasets", "create", "hh"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("created hh"), std::string::npos);

  r = RunCli(addr,
             {"ingest", "hh", TestDataPath("hh-rlhf-harmless-sample.jsonl.gz"), "--batch", "64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The sample's 500 real pairs include one whose chosen answer is empty.
  EXPECT_NE(r.out.find("499 accepted, 0 duplicates, 1 rejected"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("pair.chosen: must not be empty"), std::string::npos) << r.err;

  r = RunCli(addr, {"ingest", "hh", TestDataPath("hh-rlhf-harmless-sample.jsonl.gz")});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("0 accepted, 499 duplicates"), std::string::npos) << r.out;

  r = RunCli(addr, {"--json", "datasets", "get", "hh"});
  ASSERT_EQ(r.exit_code, 0);
  auto dataset = nlohmann::json::parse(r.out);
  EXPECT_EQ(dataset["example_count"], "499");  // int64 is a JSON string in proto3 JSON
  EXPECT_EQ(dataset["indexed_vectors"], "998");

  const std::string ids = dir + "/ids.txt";
  r = RunCli(addr, {"select", "hh", "--budget", "10%", "--method", "isa", "--ids-out", ids});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("isa chose 50 of 499 pairs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mixture:"), std::string::npos);
  EXPECT_EQ(Lines(ids).size(), 50u);
  const std::string selection_id = r.out.substr(0, r.out.find(' '));

  r = RunCli(addr, {"select", "hh", "--budget", "20", "--method", "random", "--seed", "4", "--unit",
                    "example"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("random chose 20 of 998 examples"), std::string::npos) << r.out;

  r = RunCli(addr, {"selections", "list", "hh"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find(selection_id), std::string::npos);

  const std::string out = dir + "/subset.jsonl";
  r = RunCli(addr, {"export", selection_id, "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = Lines(out);
  ASSERT_EQ(lines.size(), 50u);
  std::vector<std::string> selected = Lines(ids);
  for (size_t i = 0; i < lines.size(); ++i) {
    auto record = nlohmann::json::parse(lines[i]);
    EXPECT_TRUE(record.contains("prompt") && record.contains("chosen") &&
                record.contains("rejected"));
    EXPECT_EQ(record["id"], selected[i]);
  }
  r = RunCli(addr, {"export", selection_id, "--format", "kto", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  lines = Lines(out);
  ASSERT_EQ(lines.size(), 100u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["label"], true);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["label"], false);
}

TEST(CliTest, PandaLmAndKtoFiles) {
  const std::string dir = MakeTempDir("cli-formats");
  auto server = ServerProcess::Start(dir + "/db");
  const std::string addr = server->address();
  ASSERT_EQ(RunCli(addr, {"datasets", "create", "panda"}).exit_code, 0);
  CommandResult r = RunCli(addr, {"ingest", "panda", TestDataPath("pandalm-sample.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Ties and split votes are not preferences: the reader skips them and says so.
  EXPECT_NE(r.out.find("skipped"), std::string::npos) << r.out;

  const std::string kto = dir + "/kto.jsonl";
  {
    std::ofstream f(kto);
    f << R"({"prompt": "Name a prime.", "completion": "7", "label": true})"
      << "\n";
    f << R"({"prompt": "Name a prime.", "completion": "9", "label": false})"
      << "\n";
    f << R"({"prompt": "Name a prime.", "completion": "", "label": true})"
      << "\n";
    f << "{not json\n";
  }
  ASSERT_EQ(RunCli(addr, {"datasets", "create", "k", "--kind", "unpaired"}).exit_code, 0);
  r = RunCli(addr, {"ingest", "k", kto});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("2 accepted, 0 duplicates, 2 rejected"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find(":3: examples[2].unpaired.completion"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(":4"), std::string::npos) << r.err;
  r = RunCli(addr, {"ingest", "k", kto, "--strict"});
  EXPECT_EQ(r.exit_code, 1);
}

// A damaged container (here a gzip stream cut in half) repeats its error on every read: the
// ingest reports it once and ends with what came before, instead of reading forever.
TEST(CliTest, TruncatedGzipEndsTheIngest) {
  const std::string dir = MakeTempDir("cli-truncated");
  auto server = ServerProcess::Start(dir + "/db");
  const std::string addr = server->address();
  std::string bytes;
  {
    std::ifstream in(TestDataPath("hh-rlhf-harmless-sample.jsonl.gz"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string cut = dir + "/cut.jsonl.gz";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  ASSERT_EQ(RunCli(addr, {"datasets", "create", "hh"}).exit_code, 0);
  CommandResult r = RunCli(addr, {"ingest", "hh", cut});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("truncated gzip stream"), std::string::npos) << r.err;
  // Reported once, not once per read.
  EXPECT_EQ(r.err.find("truncated gzip stream"), r.err.rfind("truncated gzip stream")) << r.err;
  EXPECT_NE(r.out.find(" accepted, 0 duplicates, 2 rejected"), std::string::npos) << r.out;
}

TEST(CliTest, ErrorsAreReadable) {
  const std::string dir = MakeTempDir("cli-errors");
  auto server = ServerProcess::Start(dir + "/db");
  const std::string addr = server->address();
  CommandResult r = RunCli(addr, {"select", "missing", "--budget", "10%"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  r = RunCli(addr, {"select", "missing", "--budget", "ten"});
  EXPECT_EQ(r.exit_code, 2);
  r = RunCli(addr, {"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  r = RunCli(addr, {"datasets", "create", "x", "--colour", "red"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--colour"), std::string::npos);
}

// The contract of --async: the job it starts is the synchronous command's job, so waiting for
// it prints what the synchronous command prints and selects the same examples.
TEST(CliTest, AsyncOperations) {
  const std::string dir = MakeTempDir("cli-operations");
  auto server = ServerProcess::Start(dir + "/db");
  const std::string addr = server->address();
  ASSERT_EQ(RunCli(addr, {"datasets", "create", "hh"}).exit_code, 0);
  ASSERT_EQ(
      RunCli(addr, {"ingest", "hh", TestDataPath("hh-rlhf-harmless-sample.jsonl.gz")}).exit_code,
      0);
  const std::vector<std::string> select = {"select",   "hh",  "--budget", "10%",
                                           "--method", "isa", "--seed",   "7"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = select;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };

  const std::string sync_ids = dir + "/sync.txt", async_ids = dir + "/async.txt";
  CommandResult r = RunCli(addr, with({"--ids-out", sync_ids}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string sync_out = r.out;

  r = RunCli(addr, with({"--async"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  const std::string name = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(name.rfind("operations/", 0), 0u) << name;
  EXPECT_EQ(name.size(), std::string("operations/").size() + 32) << name;
  EXPECT_EQ(r.out, name + "\n");  // the name alone, for scripts

  r = RunCli(addr, {"operations", "wait", name, "--ids-out", async_ids});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(async_ids), Lines(sync_ids));
  ASSERT_EQ(Lines(sync_ids).size(), 50u);
  // The same report as the synchronous select, but for the new selection's id and duration.
  EXPECT_NE(r.out.find("isa chose 50 of 499 pairs"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.substr(r.out.find("  mixture:")), sync_out.substr(sync_out.find("  mixture:")));

  r = RunCli(addr, {"operations", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(name + "  select hh: SUCCEEDED"), std::string::npos) << r.out;
  r = RunCli(addr, {"operations", "list", "--dataset", "other"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find(name), std::string::npos) << r.out;

  r = RunCli(addr, {"--json", "operations", "get", name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto op = nlohmann::json::parse(r.out);
  EXPECT_EQ(op["name"], name);
  EXPECT_EQ(op["done"], true);
  EXPECT_EQ(op["metadata"]["state"], "OPERATION_STATE_SUCCEEDED");
  EXPECT_EQ(op["selection"]["items"].size(), 50u);

  r = RunCli(addr, {"operations", "get", "operations/0123456789abcdef0123456789abcdef"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  r = RunCli(addr, {"operations", "wait", "operations/0123456789abcdef0123456789abcdef"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;

  // Cancelling a done operation changes nothing and is not an error.
  r = RunCli(addr, {"operations", "cancel", name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("SUCCEEDED"), std::string::npos) << r.out;

  // An idempotency key: the same request twice is one operation; another request with the
  // key is refused.
  r = RunCli(addr, with({"--async", "--request-id", "nightly-7"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string keyed = r.out;
  EXPECT_NE(keyed, name + "\n");
  r = RunCli(addr, with({"--async", "--request-id", "nightly-7"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, keyed);
  r = RunCli(addr, {"select", "hh", "--budget", "5%", "--async", "--request-id", "nightly-7"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ALREADY_EXISTS"), std::string::npos) << r.err;
  // The synchronous form with the key waits for that same job.
  r = RunCli(addr, with({"--request-id", "nightly-7", "--ids-out", async_ids}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(async_ids), Lines(sync_ids));

  // --json --async prints the operation.
  r = RunCli(addr, {"--json", "select", "hh", "--budget", "20", "--method", "random", "--async"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  op = nlohmann::json::parse(r.out);
  EXPECT_EQ(op["metadata"]["kind"], "OPERATION_KIND_SELECT");
  EXPECT_EQ(op["metadata"]["dataset"], "hh");
  r = RunCli(addr, {"select", "hh", "--budget", "20", "--async", "--ids-out", async_ids});
  EXPECT_EQ(r.exit_code, 2);

  // Evaluate and recommend as jobs: waiting prints the synchronous commands' reports.
  r = RunCli(addr, {"evaluate", "hh", "--method", "random", "--budget", "10%", "--test-pairs", "80",
                    "--random-seeds", "2", "--async"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCli(addr, {"operations", "wait", r.out.substr(0, r.out.find('\n'))});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("evaluate hh: random (pair units), selected now"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("verdict:"), std::string::npos) << r.out;
  r = RunCli(addr, {"recommend", "hh", "--method", "random", "--budgets", "10,25,100",
                    "--test-pairs", "80", "--async"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string svg = dir + "/curve.svg";
  r = RunCli(addr, {"operations", "wait", r.out.substr(0, r.out.find('\n')), "--svg", svg});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("recommend hh: random (pair units)"), std::string::npos) << r.out;
  EXPECT_FALSE(Lines(svg).empty());

  // A long job (about 20 s on 2 cores: 20 restarts of 1,000 EM iterations that never
  // converge) cancelled: whichever comes first, the exit code of wait says which it was.
  r = RunCli(addr, {"select",    "hh",      "--budget",     "10%",  "--method",     "isa",
                    "--unit",    "example", "--covariance", "full", "--components", "8",
                    "--pca-dim", "32",      "--n-init",     "20",   "--max-iter",   "1000",
                    "--tol",     "1e-300",  "--async"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string long_job = r.out.substr(0, r.out.find('\n'));
  // --timeout ends the wait, not the job: exit 3 and the state it is in.
  r = RunCli(addr, {"operations", "wait", long_job, "--timeout", "0.2"});
  if (r.exit_code != 0) {
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_TRUE(r.out.find("RUNNING") != std::string::npos ||
                r.out.find("QUEUED") != std::string::npos)
        << r.out;
    EXPECT_NE(r.err.find("is still"), std::string::npos) << r.err;
  }
  r = RunCli(addr, {"operations", "cancel", long_job});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const CommandResult waited = RunCli(addr, {"operations", "wait", long_job});
  r = RunCli(addr, {"--json", "operations", "get", long_job});
  ASSERT_EQ(nlohmann::json::parse(r.out)["done"], true) << r.out;
  const bool succeeded =
      nlohmann::json::parse(r.out)["metadata"]["state"] == "OPERATION_STATE_SUCCEEDED";
  r = waited;
  if (succeeded) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
  } else {
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("select " + long_job + ": CANCELLED"), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace curation::testing
