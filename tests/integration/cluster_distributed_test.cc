// Selections over a dataset partitioned over three real members on Debian's real etcd (issue
// 14): every method in its distributed form, random and ISA against the same data held whole
// by one member, evaluation and budget recommendation, exports, and members killed and
// restarted while a distributed selection runs.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "curation/cluster/v1/member.grpc.pb.h"
#include "tests/integration/local_cluster.h"
#include "tests/integration/test_data.h"
#include "tests/support/scratch_dir.h"

namespace curation::testing {
namespace {

using std::chrono::seconds;

constexpr int kPairs = 1500;
constexpr int kDim = 16;
constexpr int kRetrySeconds = 20;

// Ids that sort in ingest order, so that the proxy's split of the partitioned dataset (pairs
// in id order) is the split of the whole one (pairs in ingest order).
std::string PairId(int i) {
  char id[16];
  std::snprintf(id, sizeof(id), "p%06d", i);
  return id;
}

// Pairs whose vectors come from four clusters, chosen a little toward a preferred direction:
// structure for ISA's mixture and for the proxy to learn.
std::vector<v1::Example> MakePairs() {
  std::mt19937_64 rng(14);
  std::normal_distribution<float> noise(0, 1);
  std::vector<std::vector<float>> centres(4, std::vector<float>(kDim));
  for (auto& c : centres) {
    for (float& v : c) v = 4 * noise(rng);
  }
  std::vector<v1::Example> pairs;
  for (int i = 0; i < kPairs; ++i) {
    v1::Example e;
    e.set_id(PairId(i));
    v1::PreferencePair* p = e.mutable_pair();
    p->set_prompt("prompt " + std::to_string(i));
    p->set_chosen("chosen " + std::to_string(i));
    p->set_rejected("rejected " + std::to_string(i));
    const auto& c = centres[i % 4];
    for (int d = 0; d < kDim; ++d) {
      const float base = c[d] + noise(rng);
      p->add_chosen_embedding(base + (d == 0 ? 0.8f : 0.0f) + 0.3f * noise(rng));
      p->add_rejected_embedding(base - (d == 0 ? 0.8f : 0.0f) + 0.3f * noise(rng));
    }
    pairs.push_back(std::move(e));
  }
  return pairs;
}

class DistributedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new LocalCluster(ScratchDir("cluster_distributed"), 3,
                                {"--cluster-lease-seconds=3", "--cluster-partition-retry-seconds=" +
                                                                  std::to_string(kRetrySeconds)});
    token_ = new std::string(cluster_->MakeTenant(0, "team"));
    const std::vector<v1::Example> pairs = MakePairs();
    Create("whole", 0);
    Create("parts", 3);
    for (const char* name : {"whole", "parts"}) {
      for (int at = 0; at < kPairs; at += 500) {
        auto stub = cluster_->Data(at / 500 % 3);
        grpc::ClientContext context;
        Authorize(&context, *token_);
        v1::IngestExamplesRequest request;
        request.set_dataset(name);
        for (int i = at; i < std::min(kPairs, at + 500); ++i) *request.add_examples() = pairs[i];
        v1::IngestExamplesResponse reply;
        grpc::Status s = stub->IngestExamples(&context, request, &reply);
        ASSERT_TRUE(s.ok()) << s.error_message();
        ASSERT_EQ(reply.accepted(), std::min(kPairs, at + 500) - at);
      }
    }
  }
  static void TearDownTestSuite() {
    delete cluster_;
    delete token_;
  }

  static void Create(const std::string& name, int partitions) {
    auto stub = cluster_->Data(0);
    grpc::ClientContext context;
    Authorize(&context, *token_);
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = MakeDataset(name, v1::DATASET_KIND_PAIRS, kDim);
    request.set_partitions(partitions);
    v1::Dataset reply;
    grpc::Status s = stub->CreateDataset(&context, request, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  static v1::Dataset Get(const std::string& name) {
    auto stub = cluster_->Data(1);
    grpc::ClientContext context;
    Authorize(&context, *token_);
    v1::GetDatasetRequest request;
    request.set_name(name);
    v1::Dataset reply;
    grpc::Status s = stub->GetDataset(&context, request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return reply;
  }

  // The member index (0-based) holding partition `p` of "parts".
  static int MemberOfPartition(int p) {
    const v1::Dataset d = Get("parts");
    const std::string& name = d.partition_members(p);
    return std::stoi(name.substr(1)) - 1;
  }

  static v1::SelectRequest Request(const std::string& dataset, v1::SelectionMethod method,
                                   double fraction = 0.05, uint64_t seed = 7) {
    v1::SelectRequest r;
    r.set_dataset(dataset);
    r.set_method(method);
    r.mutable_budget()->set_fraction(fraction);
    r.set_seed(seed);
    return r;
  }

  static grpc::Status Select(int via, const v1::SelectRequest& request, v1::Selection* out) {
    auto stub = cluster_->Data(via);
    grpc::ClientContext context;
    Authorize(&context, *token_);
    context.set_deadline(std::chrono::system_clock::now() + seconds(120));
    return stub->Select(&context, request, out);
  }

  static std::vector<std::string> Ids(const v1::Selection& s) {
    std::vector<std::string> ids;
    for (const auto& item : s.items()) ids.push_back(item.example_id());
    return ids;
  }

  static v1::Operation Wait(int via, const std::string& name) {
    auto stub = cluster_->Data(via);
    v1::Operation op;
    for (int attempt = 0; attempt < 60 && !op.done(); ++attempt) {
      grpc::ClientContext context;
      Authorize(&context, *token_);
      context.set_deadline(std::chrono::system_clock::now() + seconds(15));
      v1::WaitOperationRequest request;
      request.set_name(name);
      request.set_timeout_seconds(10);
      grpc::Status s = stub->WaitOperation(&context, request, &op);
      if (!s.ok()) std::this_thread::sleep_for(seconds(1));
    }
    return op;
  }

  static LocalCluster* cluster_;
  static std::string* token_;
};

LocalCluster* DistributedTest::cluster_ = nullptr;
std::string* DistributedTest::token_ = nullptr;

TEST_F(DistributedTest, ThePartitionsHoldTheWholeDatasetOnThreeMembers) {
  const v1::Dataset whole = Get("whole");
  const v1::Dataset parts = Get("parts");
  EXPECT_EQ(whole.example_count(), kPairs);
  EXPECT_EQ(parts.example_count(), kPairs);
  ASSERT_EQ(parts.partition_members_size(), 3);
  EXPECT_EQ(
      std::set<std::string>(parts.partition_members().begin(), parts.partition_members().end())
          .size(),
      3u);
  EXPECT_EQ(parts.member(), parts.partition_members(0));
}

TEST_F(DistributedTest, RandomAndIsaSelectWhatOneNodeSelects) {
  for (uint64_t seed : {1, 7, 99}) {
    v1::Selection whole, parts;
    ASSERT_TRUE(Select(0, Request("whole", v1::SELECTION_METHOD_RANDOM, 0.05, seed), &whole).ok());
    grpc::Status s = Select(2, Request("parts", v1::SELECTION_METHOD_RANDOM, 0.05, seed), &parts);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(Ids(parts), Ids(whole)) << "seed " << seed;
    EXPECT_EQ(parts.summary().distributed().partitions(), 3);
    EXPECT_EQ(parts.summary().pool_size(), kPairs);
  }
  v1::Selection whole, parts;
  ASSERT_TRUE(Select(0, Request("whole", v1::SELECTION_METHOD_ISA, 0.05), &whole).ok());
  grpc::Status s = Select(1, Request("parts", v1::SELECTION_METHOD_ISA, 0.05), &parts);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Ids(parts), Ids(whole));
  ASSERT_EQ(parts.items_size(), whole.items_size());
  for (int i = 0; i < parts.items_size(); ++i) {
    EXPECT_NEAR(parts.items(i).score(), whole.items(i).score(), 1e-6) << i;
  }
  EXPECT_NEAR(parts.summary().fit().mean_log_likelihood(),
              whole.summary().fit().mean_log_likelihood(), 1e-6);
  EXPECT_GT(parts.summary().distributed().rounds(), 2);
}

TEST_F(DistributedTest, TheCliShowsHowASelectionRanOverThePartitions) {
  CommandResult selected = RunCli(cluster_->address(2), {"--token", *token_, "select", "parts",
                                                         "--budget", "5%", "--method", "isa"});
  ASSERT_EQ(selected.exit_code, 0) << selected.err;
  EXPECT_NE(selected.out.find("isa chose 75 of 1500 pairs"), std::string::npos) << selected.out;
  EXPECT_NE(selected.out.find("partitions: 3,"), std::string::npos) << selected.out;
}

TEST_F(DistributedTest, EveryOtherMethodSelectsDistinctExamplesOfTheDataset) {
  std::set<std::string> all;
  for (int i = 0; i < kPairs; ++i) all.insert(PairId(i));
  for (v1::SelectionMethod method :
       {v1::SELECTION_METHOD_HERDING, v1::SELECTION_METHOD_FACILITY_LOCATION,
        v1::SELECTION_METHOD_KCENTER, v1::SELECTION_METHOD_DEDUP}) {
    v1::SelectRequest request = Request("parts", method, 0.04);
    // The pairs lie in four tight clusters: at the default 0.95 few rows are far enough apart.
    if (method == v1::SELECTION_METHOD_DEDUP) request.mutable_filter()->set_dedup_threshold(0.999);
    v1::Selection parts;
    grpc::Status s = Select(1, request, &parts);
    ASSERT_TRUE(s.ok()) << method << ": " << s.error_message();
    const std::vector<std::string> ids = Ids(parts);
    EXPECT_EQ(ids.size(), 60u) << method;
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size()) << method;
    for (const auto& id : ids) EXPECT_TRUE(all.count(id)) << method << " " << id;
    EXPECT_EQ(parts.summary().distributed().partitions(), 3) << method;
    EXPECT_GT(parts.summary().distributed().bytes_from_partitions(), 0) << method;
  }
}

TEST_F(DistributedTest, TheDedupPreFilterRunsOnEveryPartitionAndAcrossThem) {
  for (v1::SelectionMethod method :
       {v1::SELECTION_METHOD_ISA, v1::SELECTION_METHOD_HERDING, v1::SELECTION_METHOD_RANDOM,
        v1::SELECTION_METHOD_FACILITY_LOCATION}) {
    v1::SelectRequest request = Request("parts", method, 0.04);
    request.mutable_filter()->set_dedup_threshold(0.999);
    v1::Selection parts;
    grpc::Status s = Select(2, request, &parts);
    ASSERT_TRUE(s.ok()) << method << ": " << s.error_message();
    const std::vector<std::string> ids = Ids(parts);
    EXPECT_EQ(ids.size(), 60u) << method;
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size()) << method;
  }
}

TEST_F(DistributedTest, AStoredSelectionExportsItsExamplesFromEveryPartition) {
  v1::Selection parts;
  grpc::Status s = Select(0, Request("parts", v1::SELECTION_METHOD_HERDING, 0.2), &parts);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(parts.items_size(), 300);
  // Through every member: the export reaches the selection's home and its examples' partitions.
  for (int via = 0; via < 3; ++via) {
    auto stub = cluster_->Data(via);
    grpc::ClientContext context;
    Authorize(&context, *token_);
    v1::ExportSelectionRequest request;
    request.set_selection_id(parts.id());
    auto reader = stub->ExportSelection(&context, request);
    v1::ExportSelectionResponse message;
    std::vector<v1::ExportedRecord> records;
    while (reader->Read(&message)) {
      for (const auto& r : message.records()) records.push_back(r);
    }
    s = reader->Finish();
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(records.size(), 300u);
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(records[i].id(), parts.items(static_cast<int>(i)).example_id());
      const int n = std::stoi(records[i].id().substr(1));
      EXPECT_EQ(records[i].prompt(), "prompt " + std::to_string(n));
      EXPECT_EQ(records[i].chosen(), "chosen " + std::to_string(n));
    }
  }
}

TEST_F(DistributedTest, APartitionWithNoExamplesTakesPartLikeTheOthers) {
  // Two pairs over three partitions: at least one partition holds none.
  Create("tiny", 3);
  const std::vector<v1::Example> pairs = MakePairs();
  {
    auto stub = cluster_->Data(0);
    grpc::ClientContext context;
    Authorize(&context, *token_);
    v1::IngestExamplesRequest request;
    request.set_dataset("tiny");
    *request.add_examples() = pairs[0];
    *request.add_examples() = pairs[1];
    v1::IngestExamplesResponse reply;
    ASSERT_TRUE(stub->IngestExamples(&context, request, &reply).ok());
    ASSERT_EQ(reply.accepted(), 2);
  }
  for (v1::SelectionMethod method :
       {v1::SELECTION_METHOD_RANDOM, v1::SELECTION_METHOD_HERDING, v1::SELECTION_METHOD_KCENTER}) {
    v1::SelectRequest request = Request("tiny", method);
    request.mutable_budget()->set_count(2);
    v1::Selection out;
    grpc::Status s = Select(1, request, &out);
    ASSERT_TRUE(s.ok()) << method << ": " << s.error_message();
    EXPECT_EQ(std::set<std::string>({out.items(0).example_id(), out.items(1).example_id()}),
              std::set<std::string>({PairId(0), PairId(1)}));
  }
}

TEST_F(DistributedTest, WhatDoesNotDistributeIsRefusedNamingTheField) {
  v1::SelectRequest filtered = Request("parts", v1::SELECTION_METHOD_HERDING);
  (*filtered.mutable_filter()->mutable_metadata_equals())["source"] = "x";
  v1::Selection out;
  grpc::Status s = Select(0, filtered, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("filter"), std::string::npos) << s.error_message();

  v1::SelectRequest ranked = Request("parts", v1::SELECTION_METHOD_HERDING);
  ranked.set_ranking(true);
  s = Select(0, ranked, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("ranking"), std::string::npos) << s.error_message();

  v1::SelectRequest projected = Request("parts", v1::SELECTION_METHOD_ISA);
  projected.mutable_isa()->set_pca_dim(4);
  s = Select(0, projected, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("isa.pca_dim"), std::string::npos) << s.error_message();

  // A member's partition steps are for members: a client (even with a valid token) is refused.
  auto stub = cluster::v1::MemberService::NewStub(
      grpc::CreateChannel(cluster_->address(0), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  Authorize(&context, *token_);
  cluster::v1::PartitionStepRequest request;
  request.set_tenant("team");
  request.set_dataset("parts");
  request.mutable_summarize();
  cluster::v1::PartitionStepResponse reply;
  s = stub->PartitionStep(&context, request, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
}

TEST_F(DistributedTest, EvaluationOfAPartitionedDatasetEqualsOneNodes) {
  // Random selections are the same on both, the proxy's split is the same (ids sort in ingest
  // order), so every figure must be too.
  auto evaluate = [](const std::string& dataset, v1::Evaluation* out) {
    auto stub = cluster_->Data(2);
    grpc::ClientContext context;
    Authorize(&context, *token_);
    context.set_deadline(std::chrono::system_clock::now() + seconds(120));
    v1::EvaluateSelectionRequest request;
    *request.mutable_select() = Request(dataset, v1::SELECTION_METHOD_RANDOM, 0.1);
    request.mutable_proxy()->set_test_pairs(300);
    auto reader = stub->EvaluateSelection(&context, request);
    v1::EvaluateSelectionProgress message;
    while (reader->Read(&message)) {
      if (message.has_evaluation()) *out = message.evaluation();
    }
    return reader->Finish();
  };
  v1::Evaluation whole, parts;
  grpc::Status s = evaluate("whole", &whole);
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = evaluate("parts", &parts);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(parts.test_pairs(), whole.test_pairs());
  EXPECT_EQ(parts.pool_pairs(), whole.pool_pairs());
  EXPECT_EQ(parts.subset().correct(), whole.subset().correct());
  EXPECT_EQ(parts.full().correct(), whole.full().correct());
  EXPECT_NEAR(parts.random_pairs().mean(), whole.random_pairs().mean(), 1e-12);
  EXPECT_GT(parts.full().accuracy(), 0.6);
}

TEST_F(DistributedTest, AnEvaluationIsAdmittedForTheWholeDatasetNotItsHomePartition) {
  // The proxy gathers every partition's pairs on the home member: the admission estimate must
  // be the whole dataset's, as one node's is, not the home partition's third of it.
  auto estimate = [](const std::string& dataset) {
    v1::Selection selection;
    EXPECT_TRUE(Select(0, Request(dataset, v1::SELECTION_METHOD_RANDOM, 0.1), &selection).ok());
    auto stub = cluster_->Data(1);
    grpc::ClientContext context;
    Authorize(&context, *token_);
    v1::EvaluateSelectionRequest request;
    request.set_selection_id(selection.id());
    v1::Operation op;
    grpc::Status s = stub->StartEvaluation(&context, request, &op);
    EXPECT_TRUE(s.ok()) << s.error_message();
    Wait(1, op.name());
    return op.metadata().estimated_memory_bytes();
  };
  // jobs/cost.cc's fixed 16 MiB would hide the part that grows with the pairs.
  const int64_t fixed = int64_t{16} << 20;
  const int64_t whole = estimate("whole") - fixed;
  const int64_t parts = estimate("parts") - fixed;
  ASSERT_GT(whole, 0);
  EXPECT_GT(parts, whole * 8 / 10) << parts << " vs one node's " << whole;
  EXPECT_LT(parts, whole * 12 / 10) << parts << " vs one node's " << whole;
}

TEST_F(DistributedTest, BudgetRecommendationRunsOnAPartitionedDataset) {
  auto stub = cluster_->Data(0);
  grpc::ClientContext context;
  Authorize(&context, *token_);
  context.set_deadline(std::chrono::system_clock::now() + seconds(180));
  v1::RecommendBudgetRequest request;
  request.set_dataset("parts");
  request.mutable_select()->set_method(v1::SELECTION_METHOD_HERDING);
  for (double b : {2.0, 5.0, 10.0, 25.0, 100.0}) request.add_budgets_percent(b);
  request.mutable_proxy()->set_test_pairs(300);
  auto reader = stub->RecommendBudget(&context, request);
  v1::RecommendBudgetProgress message;
  v1::BudgetRecommendation rec;
  while (reader->Read(&message)) {
    if (message.has_recommendation()) rec = message.recommendation();
  }
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(rec.curve_size(), 5);
  EXPECT_EQ(rec.pool_pairs(), kPairs - 300);
  for (const auto& point : rec.curve()) EXPECT_GT(point.accuracy().pairs(), 0);
}

TEST_F(DistributedTest, AMemberRestartedDuringASelectionDoesNotLoseIt) {
  v1::Selection expected;
  ASSERT_TRUE(Select(0, Request("whole", v1::SELECTION_METHOD_RANDOM, 0.05, 5), &expected).ok());
  // Partition 1's member goes down as the job starts, and comes back: the job waits for it.
  const int victim = MemberOfPartition(1);
  const int home = MemberOfPartition(0);
  auto stub = cluster_->Data(home);
  v1::Operation op;
  {
    grpc::ClientContext context;
    Authorize(&context, *token_);
    cluster_->Kill(victim);
    grpc::Status s =
        stub->StartSelect(&context, Request("parts", v1::SELECTION_METHOD_RANDOM, 0.05, 5), &op);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  std::this_thread::sleep_for(seconds(1));
  cluster_->Restart(victim);
  op = Wait(home, op.name());
  ASSERT_TRUE(op.done());
  ASSERT_TRUE(op.has_selection()) << op.error().message();
  EXPECT_EQ(Ids(op.selection()), Ids(expected));

  // The coordinator itself killed during a selection: the operation is durable, and the
  // restarted member runs it again to the same result.
  {
    grpc::ClientContext context;
    Authorize(&context, *token_);
    grpc::Status s =
        stub->StartSelect(&context, Request("parts", v1::SELECTION_METHOD_RANDOM, 0.05, 5), &op);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  cluster_->Kill(home);
  cluster_->Restart(home);
  op = Wait(home, op.name());
  ASSERT_TRUE(op.done());
  ASSERT_TRUE(op.has_selection()) << op.error().message();
  EXPECT_EQ(Ids(op.selection()), Ids(expected));
}

TEST_F(DistributedTest, APartitionThatStaysDownFailsTheSelectionNamingItsMember) {
  const int victim = MemberOfPartition(2);
  const int home = MemberOfPartition(0);
  const std::string victim_name = cluster_->name(victim);
  cluster_->Kill(victim);
  v1::Selection out;
  const auto started = std::chrono::steady_clock::now();
  grpc::Status s = Select(home, Request("parts", v1::SELECTION_METHOD_HERDING), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_NE(s.error_message().find(victim_name), std::string::npos) << s.error_message();
  // It waited for the member first (the flag's retry period), then gave up.
  EXPECT_GE(std::chrono::steady_clock::now() - started, seconds(kRetrySeconds - 1));
  cluster_->Restart(victim);
  s = Select(home, Request("parts", v1::SELECTION_METHOD_HERDING), &out);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

}  // namespace
}  // namespace curation::testing
