// The curation CLI end to end against the real server, on the bundled real samples.
#include <gtest/gtest.h>

#include <fstream>
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

}  // namespace
}  // namespace curation::testing
