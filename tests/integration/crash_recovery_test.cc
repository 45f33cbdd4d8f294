// What the server acknowledged survives `kill -9`: records, selections, and an index that
// agrees with the store after the restart.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

TEST(CrashRecoveryTest, AcknowledgedDataSurvivesSigkill) {
  const std::string dir = MakeTempDir("crash");
  const std::string db = dir + "/db";
  const std::vector<v1::Example> pairs = HhPairs(400);
  ASSERT_EQ(pairs.size(), 400u);
  std::vector<std::string> acked_ids;
  std::vector<std::string> acked_selections;
  std::mt19937 rng(12345);

  {
    auto server = ServerProcess::Start(db);
    auto stub = server->Stub();
    v1::CreateDatasetRequest create;
    *create.mutable_dataset() = MakeDataset("crash", v1::DATASET_KIND_PAIRS, 0);
    v1::Dataset d;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->CreateDataset(&context, create, &d).ok());
  }  // killed with SIGKILL by the destructor: the dataset itself must survive too

  size_t next = 0;
  for (int cycle = 0; cycle < 4; ++cycle) {
    auto server = ServerProcess::Start(db);
    auto stub = server->Stub();
    std::mutex mu;
    std::atomic<bool> stop{false};
    // Writers: small unary batches, remembering what was acknowledged.
    std::thread writer([&] {
      while (!stop && next < pairs.size()) {
        v1::IngestExamplesRequest request;
        request.set_dataset("crash");
        const size_t end = std::min(pairs.size(), next + 10);
        for (size_t i = next; i < end; ++i) *request.add_examples() = pairs[i];
        v1::IngestExamplesResponse reply;
        grpc::ClientContext context;
        if (!stub->IngestExamples(&context, request, &reply).ok()) break;
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& id : reply.ids()) acked_ids.push_back(id);
        next = end;
      }
    });
    std::thread selector([&] {
      while (!stop) {
        v1::SelectRequest request;
        request.set_dataset("crash");
        request.mutable_budget()->set_fraction(0.2);
        v1::Selection sel;
        grpc::ClientContext context;
        grpc::Status s = stub->Select(&context, request, &sel);
        if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) continue;  // still empty
        if (!s.ok()) break;
        std::lock_guard<std::mutex> lock(mu);
        acked_selections.push_back(sel.id());
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    server->Signal(SIGKILL);
    stop = true;
    writer.join();
    selector.join();
  }
  ASSERT_GT(acked_ids.size(), 0u);

  auto server = ServerProcess::Start(db);
  auto stub = server->Stub();
  v1::GetDatasetRequest get;
  get.set_name("crash");
  v1::Dataset d;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->GetDataset(&context, get, &d).ok());
  }
  // A batch whose reply was lost in the kill may be stored without having been acknowledged,
  // so the store holds at least what was acknowledged.
  EXPECT_GE(d.example_count(), static_cast<int64_t>(acked_ids.size()));
  EXPECT_EQ(d.indexed_vectors(), 2 * d.example_count());
  for (size_t i = 0; i < acked_ids.size(); i += 100) {
    v1::GetExamplesRequest request;
    request.set_dataset("crash");
    for (size_t j = i; j < std::min(acked_ids.size(), i + 100); ++j) request.add_ids(acked_ids[j]);
    v1::GetExamplesResponse reply;
    grpc::ClientContext context;
    grpc::Status s = stub->GetExamples(&context, request, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(reply.examples_size(), request.ids_size());
  }
  for (const std::string& id : acked_selections) {
    v1::GetSelectionRequest request;
    request.set_id(id);
    v1::Selection sel;
    grpc::ClientContext context;
    grpc::Status s = stub->GetSelection(&context, request, &sel);
    EXPECT_TRUE(s.ok()) << id << ": " << s.error_message();
  }
  // Re-sending everything yields duplicates only for what is stored: nothing is stored twice.
  v1::IngestExamplesRequest resend;
  resend.set_dataset("crash");
  for (size_t i = 0; i < acked_ids.size(); ++i) *resend.add_examples() = pairs[i];
  v1::IngestExamplesResponse reply;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->IngestExamples(&context, resend, &reply).ok());
  EXPECT_EQ(reply.duplicates(), static_cast<int64_t>(acked_ids.size()));
  EXPECT_EQ(reply.accepted(), 0);
  std::printf("crash cycles: 4, acknowledged records: %zu, acknowledged selections: %zu\n",
              acked_ids.size(), acked_selections.size());
}

TEST(CrashRecoveryTest, SigtermDrainsAndExitsCleanly) {
  const std::string dir = MakeTempDir("sigterm");
  auto server = ServerProcess::Start(dir + "/db");
  auto stub = server->Stub();
  v1::CreateDatasetRequest create;
  *create.mutable_dataset() = MakeDataset("t", v1::DATASET_KIND_PAIRS, 0);
  v1::Dataset d;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->CreateDataset(&context, create, &d).ok());
  const int status = server->Signal(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto restarted = ServerProcess::Start(dir + "/db");
  auto stub2 = restarted->Stub();
  v1::GetDatasetRequest get;
  get.set_name("t");
  grpc::ClientContext c2;
  EXPECT_TRUE(stub2->GetDataset(&c2, get, &d).ok());
}

}  // namespace
}  // namespace curation::testing
