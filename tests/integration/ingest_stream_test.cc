// IngestStream's pipeline (message i embedded while i-1 is written and i+1 read) keeps the
// results of writing the messages one after the other: duplicates and id clashes across
// messages, error indexes counted over the whole stream, messages before a refused one
// stored, and every record acknowledged.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/integration/server_process.h"

namespace curation::testing {
namespace {

v1::Example Pair(const std::string& id, int n) {
  v1::Example e;
  e.set_id(id);
  e.mutable_pair()->set_prompt(absl::StrCat("Question number ", n, "?"));
  e.mutable_pair()->set_chosen(absl::StrCat("A careful answer about ", n, "."));
  e.mutable_pair()->set_rejected(absl::StrCat("Whatever ", n));
  return e;
}

class IngestStreamTest : public ::testing::Test {
 protected:
  void Start(const std::string& name, const std::vector<std::string>& flags = {}) {
    server_ = ServerProcess::Start(MakeTempDir(name) + "/db", flags);
    stub_ = server_->Stub();
    v1::CreateDatasetRequest create;
    create.mutable_dataset()->set_name("d");
    v1::Dataset created;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->CreateDataset(&context, create, &created).ok());
  }

  // Streams `messages` (the first names the dataset) and returns the call's status.
  grpc::Status Stream(std::vector<v1::IngestExamplesRequest> messages,
                      v1::IngestExamplesResponse* summary) {
    grpc::ClientContext context;
    auto stream = stub_->IngestStream(&context, summary);
    messages.front().set_dataset("d");
    for (const auto& m : messages) {
      if (!stream->Write(m)) break;
    }
    stream->WritesDone();
    return stream->Finish();
  }

  int64_t ExampleCount() {
    v1::GetDatasetRequest request;
    request.set_name("d");
    v1::Dataset reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->GetDataset(&context, request, &reply).ok());
    return reply.example_count();
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::CurationService::Stub> stub_;
};

TEST_F(IngestStreamTest, ManyMessagesAddUpAsIfWrittenOneByOne) {
  Start("stream-many");
  // 40 messages of 100 records (large enough to take the fair queue's path), where
  //   - every message repeats the last record of the one before (a duplicate),
  //   - message 7 holds an invalid record at its position 3 (stream index 703),
  //   - message 20 reuses id "m19-50" for different content (stream index 2010),
  //   - message 30 is empty.
  std::vector<v1::IngestExamplesRequest> messages(40);
  int64_t expected_accepted = 0, expected_duplicates = 0;
  for (int m = 0; m < 40; ++m) {
    if (m == 30) continue;
    for (int i = 0; i < 100; ++i) {
      v1::Example e = Pair(absl::StrCat("m", m, "-", i), m * 1000 + i);
      if (i == 0 && m > 0 && m != 31) {
        e = Pair(absl::StrCat("m", m - 1, "-99"), (m - 1) * 1000 + 99);
        ++expected_duplicates;
      } else if (m == 7 && i == 3) {
        e.mutable_pair()->clear_chosen();
      } else if (m == 20 && i == 10) {
        e = Pair("m19-50", 424242);
      } else {
        ++expected_accepted;
      }
      *messages[m].add_examples() = e;
    }
  }
  v1::IngestExamplesResponse summary;
  grpc::Status s = Stream(messages, &summary);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(summary.accepted(), expected_accepted);
  EXPECT_EQ(summary.duplicates(), expected_duplicates);
  EXPECT_EQ(summary.rejected(), 2);
  ASSERT_EQ(summary.errors_size(), 2);
  EXPECT_EQ(summary.errors(0).index(), 703);
  EXPECT_EQ(summary.errors(0).field(), "examples[703].pair.chosen");
  EXPECT_EQ(summary.errors(1).index(), 2010);
  EXPECT_EQ(summary.errors(1).field(), "examples[2010].id");
  EXPECT_EQ(summary.example_count(), expected_accepted);
  EXPECT_EQ(ExampleCount(), expected_accepted);

  // The same stream again: every valid record comes back a duplicate, nothing new is stored.
  v1::IngestExamplesResponse again;
  s = Stream(messages, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.accepted(), 0);
  EXPECT_EQ(again.duplicates(), expected_accepted + expected_duplicates);
  EXPECT_EQ(again.rejected(), 2);
  EXPECT_EQ(ExampleCount(), expected_accepted);
}

TEST_F(IngestStreamTest, MessagesBeforeARefusedOneAreStored) {
  Start("stream-refused", {"--max_records_per_request=100"});
  std::vector<v1::IngestExamplesRequest> messages(4);
  for (int m = 0; m < 4; ++m) {
    const int n = m == 2 ? 101 : 100;  // message 2 is over the limit
    for (int i = 0; i < n; ++i) *messages[m].add_examples() = Pair("", m * 1000 + i);
  }
  v1::IngestExamplesResponse summary;
  grpc::Status s = Stream(messages, &summary);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("messages[2].examples"), std::string::npos) << s.error_message();
  EXPECT_EQ(ExampleCount(), 200);

  // Resending the first two messages: all 200 acknowledged as stored.
  messages.resize(2);
  v1::IngestExamplesResponse again;
  s = Stream(messages, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.duplicates(), 200);
  EXPECT_EQ(again.accepted(), 0);
}

}  // namespace
}  // namespace curation::testing
