// Every bad input gets a precise status naming the field, and changes nothing.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

class ValidationRpcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("validation"));
    // Small limits, so that the limit checks are cheap to reach.
    server_ =
        ServerProcess::Start(*dir_ + "/db", {"--max-text-bytes", "2000", "--max-message-bytes",
                                             "200000", "--max-records-per-request", "50"})
            .release();
    stub_ = server_->Stub().release();
    for (auto [name, dim] : {std::pair{"text", 0}, std::pair{"vec", 3}}) {
      v1::CreateDatasetRequest request;
      *request.mutable_dataset() = MakeDataset(name, v1::DATASET_KIND_PAIRS, dim);
      v1::Dataset reply;
      grpc::ClientContext context;
      ASSERT_TRUE(stub_->CreateDataset(&context, request, &reply).ok());
    }
  }
  static void TearDownTestSuite() {
    delete stub_;
    delete server_;
    delete dir_;
  }

  static v1::Example Pair(const std::string& tag) {
    v1::Example e;
    e.mutable_pair()->set_prompt("What is " + tag + "?");
    e.mutable_pair()->set_chosen("A good answer about " + tag);
    e.mutable_pair()->set_rejected("A bad answer about " + tag);
    return e;
  }

  static v1::Example VecPair(const std::string& tag, std::vector<float> c, std::vector<float> r) {
    v1::Example e = Pair(tag);
    for (float v : c) e.mutable_pair()->add_chosen_embedding(v);
    for (float v : r) e.mutable_pair()->add_rejected_embedding(v);
    return e;
  }

  // Ingests one bad record between two good ones; expects exactly the bad one rejected at
  // `field` and returns its reason.
  std::string ExpectRejected(const std::string& dataset, const v1::Example& bad,
                             const std::string& field) {
    const int64_t before = Count(dataset);
    v1::IngestExamplesRequest request;
    request.set_dataset(dataset);
    const std::string tag = std::to_string(counter_++);
    const bool vec = dataset == "vec";
    *request.add_examples() =
        vec ? VecPair("good1" + tag, {1, 2, 3}, {3, 2, 1}) : Pair("good1" + tag);
    *request.add_examples() = bad;
    *request.add_examples() =
        vec ? VecPair("good2" + tag, {1, 0, 3}, {0, 2, 1}) : Pair("good2" + tag);
    v1::IngestExamplesResponse reply;
    grpc::ClientContext context;
    grpc::Status s = stub_->IngestExamples(&context, request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(reply.accepted(), 2);
    EXPECT_EQ(reply.rejected(), 1);
    EXPECT_EQ(Count(dataset), before + 2);
    if (reply.errors_size() != 1) {
      ADD_FAILURE() << "expected one error";
      return "";
    }
    EXPECT_EQ(reply.errors(0).index(), 1);
    EXPECT_EQ(reply.errors(0).field(), field);
    return reply.errors(0).reason();
  }

  static int64_t Count(const std::string& dataset) {
    v1::GetDatasetRequest request;
    request.set_name(dataset);
    v1::Dataset reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->GetDataset(&context, request, &reply).ok());
    return reply.example_count();
  }

  static std::string* dir_;
  static ServerProcess* server_;
  static v1::CurationService::Stub* stub_;
  static int counter_;
};

std::string* ValidationRpcTest::dir_ = nullptr;
ServerProcess* ValidationRpcTest::server_ = nullptr;
v1::CurationService::Stub* ValidationRpcTest::stub_ = nullptr;
int ValidationRpcTest::counter_ = 0;

TEST_F(ValidationRpcTest, EmptyTexts) {
  v1::Example e = Pair("x");
  e.mutable_pair()->set_chosen("   \n");
  EXPECT_EQ(ExpectRejected("text", e, "examples[1].pair.chosen"), "must not be empty");
  e = Pair("y");
  e.mutable_pair()->clear_prompt();
  ExpectRejected("text", e, "examples[1].pair.prompt");
  e = Pair("z");
  e.mutable_pair()->set_rejected(e.pair().chosen());
  ExpectRejected("text", e, "examples[1].pair.rejected");
}

TEST_F(ValidationRpcTest, FieldLength) {
  v1::Example e = Pair("long");
  e.mutable_pair()->set_rejected(std::string(2001, 'a'));
  EXPECT_NE(ExpectRejected("text", e, "examples[1].pair.rejected").find("limit is 2000"),
            std::string::npos);
  e = Pair("id");
  e.set_id(std::string(300, 'i'));
  ExpectRejected("text", e, "examples[1].id");
}

TEST_F(ValidationRpcTest, WrongShapeForDataset) {
  v1::Example e;
  e.mutable_unpaired()->set_prompt("p");
  e.mutable_unpaired()->set_completion("c");
  e.mutable_unpaired()->set_label(v1::LABEL_DESIRABLE);
  ExpectRejected("text", e, "examples[1].pair");
  // Vectors sent to a dataset that embeds on its own.
  e = VecPair("v", {1, 2, 3}, {1, 2, 3});
  ExpectRejected("text", e, "examples[1].pair.chosen_embedding");
}

TEST_F(ValidationRpcTest, EmbeddingDimensionMismatch) {
  v1::Example e = VecPair("dim", {1, 2}, {1, 2, 3});
  EXPECT_NE(ExpectRejected("vec", e, "examples[1].pair.chosen_embedding").find("dimension is 3"),
            std::string::npos);
  e = Pair("missing");
  ExpectRejected("vec", e, "examples[1].pair.chosen_embedding");
}

TEST_F(ValidationRpcTest, NanAndInfinity) {
  ExpectRejected("vec", VecPair("nan", {1, NAN, 3}, {1, 2, 3}),
                 "examples[1].pair.chosen_embedding[1]");
  ExpectRejected("vec", VecPair("inf", {1, 2, 3}, {1, 2, -INFINITY}),
                 "examples[1].pair.rejected_embedding[2]");
}

TEST_F(ValidationRpcTest, UnknownDataset) {
  v1::IngestExamplesRequest request;
  request.set_dataset("nope");
  *request.add_examples() = Pair("a");
  v1::IngestExamplesResponse reply;
  grpc::ClientContext context;
  grpc::Status s = stub_->IngestExamples(&context, request, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("nope"), std::string::npos);

  v1::SelectRequest select;
  select.set_dataset("nope");
  select.mutable_budget()->set_count(1);
  v1::Selection sel;
  grpc::ClientContext c2;
  EXPECT_EQ(stub_->Select(&c2, select, &sel).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::GetSelectionRequest gs;
  gs.set_id("sel-99-0");
  grpc::ClientContext c3;
  EXPECT_EQ(stub_->GetSelection(&c3, gs, &sel).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ValidationRpcTest, BadDatasetDefinitions) {
  struct Case {
    v1::Dataset dataset;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({MakeDataset("", v1::DATASET_KIND_PAIRS, 0), "dataset.name"});
  cases.push_back({MakeDataset("has space", v1::DATASET_KIND_PAIRS, 0), "dataset.name"});
  cases.push_back({MakeDataset("big", v1::DATASET_KIND_PAIRS, 100000), "dataset.embedding.dim"});
  v1::Dataset builtin_with_dim = MakeDataset("d", v1::DATASET_KIND_PAIRS, 0);
  builtin_with_dim.mutable_embedding()->set_dim(5);
  cases.push_back({builtin_with_dim, "dataset.embedding.dim"});
  for (const Case& c : cases) {
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = c.dataset;
    v1::Dataset reply;
    grpc::ClientContext context;
    grpc::Status s = stub_->CreateDataset(&context, request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(s.error_message().rfind(c.field + ":", 0), 0u) << s.error_message();
  }
  v1::CreateDatasetRequest dup;
  *dup.mutable_dataset() = MakeDataset("text", v1::DATASET_KIND_PAIRS, 0);
  v1::Dataset reply;
  grpc::ClientContext context;
  EXPECT_EQ(stub_->CreateDataset(&context, dup, &reply).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(ValidationRpcTest, RequestLimits) {
  const int64_t before = Count("text");
  // Too many records in one message: the whole request fails, nothing is stored.
  v1::IngestExamplesRequest request;
  request.set_dataset("text");
  for (int i = 0; i < 51; ++i) *request.add_examples() = Pair("many" + std::to_string(i));
  v1::IngestExamplesResponse reply;
  {
    grpc::ClientContext context;
    grpc::Status s = stub_->IngestExamples(&context, request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message().rfind("examples:", 0), 0u) << s.error_message();
  }
  // A message over --max-message-bytes is refused by gRPC before it reaches a handler.
  request.clear_examples();
  for (int i = 0; i < 50; ++i) {
    v1::Example e = Pair("big" + std::to_string(i));
    e.mutable_pair()->set_chosen(std::string(1990, 'x') + std::to_string(i));
    e.mutable_pair()->set_rejected(std::string(1990, 'y') + std::to_string(i));
    e.mutable_pair()->set_prompt(std::string(1990, 'z') + std::to_string(i));
    *request.add_examples() = e;
  }
  ASSERT_GT(request.ByteSizeLong(), 200000u);
  {
    grpc::ClientContext context;
    grpc::Status s = stub_->IngestExamples(&context, request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  }
  EXPECT_EQ(Count("text"), before);
}

TEST_F(ValidationRpcTest, Budgets) {
  // Make sure the dataset has a few pairs.
  v1::IngestExamplesRequest request;
  request.set_dataset("text");
  for (int i = 0; i < 5; ++i) *request.add_examples() = Pair("budget" + std::to_string(i));
  v1::IngestExamplesResponse reply;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->IngestExamples(&context, request, &reply).ok());
  }
  const int64_t pool = Count("text");
  struct Case {
    v1::Budget budget;
    std::string field;
  };
  std::vector<Case> cases(5);
  cases[0].budget.set_count(pool + 1);
  cases[0].field = "budget.count";
  cases[1].budget.set_count(0);
  cases[1].field = "budget.count";
  cases[2].budget.set_count(-3);
  cases[2].field = "budget.count";
  cases[3].budget.set_fraction(1.5);
  cases[3].field = "budget.fraction";
  cases[4].field = "budget";  // unset
  for (const Case& c : cases) {
    v1::SelectRequest select;
    select.set_dataset("text");
    *select.mutable_budget() = c.budget;
    v1::Selection sel;
    grpc::ClientContext context;
    grpc::Status s = stub_->Select(&context, select, &sel);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.budget.DebugString();
    EXPECT_EQ(s.error_message().rfind(c.field + ":", 0), 0u) << s.error_message();
  }
  // Nothing was stored by the refused selections.
  v1::ListSelectionsRequest list;
  list.set_dataset("text");
  v1::ListSelectionsResponse listed;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->ListSelections(&context, list, &listed).ok());
  EXPECT_EQ(listed.selections_size(), 0);
}

TEST_F(ValidationRpcTest, EmptyDatasetCannotBeSelected) {
  v1::CreateDatasetRequest create;
  *create.mutable_dataset() = MakeDataset("empty", v1::DATASET_KIND_PAIRS, 0);
  v1::Dataset d;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->CreateDataset(&context, create, &d).ok());
  }
  v1::SelectRequest select;
  select.set_dataset("empty");
  select.mutable_budget()->set_fraction(0.5);
  v1::Selection sel;
  grpc::ClientContext context;
  EXPECT_EQ(stub_->Select(&context, select, &sel).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace curation::testing
