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

constexpr int kCycles = 8;

TEST(CrashRecoveryTest, AcknowledgedDataSurvivesSigkill) {
  const std::string dir = MakeTempDir("crash");
  const std::string db = dir + "/db";
  const std::vector<v1::Example> pairs = HhPairs(499);
  ASSERT_EQ(pairs.size(), 499u);
  std::vector<std::string> acked_ids;
  std::vector<std::string> acked_selections;
  // Acknowledged streams whose ids were not learnt before the kill: [begin, end) of pairs.
  std::vector<std::pair<size_t, size_t>> pending_stream;
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
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    auto server = ServerProcess::Start(db);
    auto stub = server->Stub();
    std::mutex mu;
    std::atomic<bool> stop{false};
    // The writer alternates unary batches and streams of three messages, remembering what
    // was acknowledged (a stream's records only once its final summary arrived).
    std::thread writer([&] {
      for (int round = 0; !stop && next < pairs.size(); ++round) {
        const size_t end = std::min(pairs.size(), next + (round % 2 == 0 ? 10 : 30));
        std::vector<std::string> ids;
        if (round % 2 == 0) {
          v1::IngestExamplesRequest request;
          request.set_dataset("crash");
          for (size_t i = next; i < end; ++i) *request.add_examples() = pairs[i];
          v1::IngestExamplesResponse reply;
          grpc::ClientContext context;
          if (!stub->IngestExamples(&context, request, &reply).ok()) break;
          ids.assign(reply.ids().begin(), reply.ids().end());
        } else {
          grpc::ClientContext context;
          v1::IngestExamplesResponse summary;
          auto stream = stub->IngestStream(&context, &summary);
          bool written = true;
          for (size_t from = next; from < end && written; from += 10) {
            v1::IngestExamplesRequest message;
            if (from == next) message.set_dataset("crash");
            for (size_t i = from; i < std::min(end, from + 10); ++i) {
              *message.add_examples() = pairs[i];
            }
            written = stream->Write(message);
          }
          stream->WritesDone();
          if (!stream->Finish().ok()) break;
          if (summary.accepted() + summary.duplicates() != static_cast<int64_t>(end - next)) break;
          // Streams report no ids; the server's id for a record without one is its hash,
          // which a unary re-send (below) returns.
          v1::IngestExamplesRequest resend;
          resend.set_dataset("crash");
          for (size_t i = next; i < end; ++i) *resend.add_examples() = pairs[i];
          v1::IngestExamplesResponse reply;
          grpc::ClientContext ids_context;
          if (!stub->IngestExamples(&ids_context, resend, &reply).ok()) {
            // The stream was acknowledged; its ids are learnt after the restart instead.
            std::lock_guard<std::mutex> lock(mu);
            pending_stream.emplace_back(next, end);
            next = end;
            break;
          }
          if (reply.duplicates() != static_cast<int64_t>(end - next)) break;
          ids.assign(reply.ids().begin(), reply.ids().end());
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          for (auto& id : ids) acked_ids.push_back(id);
          next = end;
        }
        // Paced, so that the ingest spans several kill cycles.
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
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
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 250));
    server->Signal(SIGKILL);
    stop = true;
    writer.join();
    selector.join();
  }
  ASSERT_GT(acked_ids.size(), 0u);

  auto server = ServerProcess::Start(db);
  auto stub = server->Stub();
  // Records of acknowledged streams must all be there: re-sent, they are all duplicates.
  for (auto [begin, end] : pending_stream) {
    v1::IngestExamplesRequest resend;
    resend.set_dataset("crash");
    for (size_t i = begin; i < end; ++i) *resend.add_examples() = pairs[i];
    v1::IngestExamplesResponse reply;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->IngestExamples(&context, resend, &reply).ok());
    EXPECT_EQ(reply.duplicates(), static_cast<int64_t>(end - begin));
    for (const auto& id : reply.ids()) acked_ids.push_back(id);
  }
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
  for (size_t i = 0; i < next; ++i) *resend.add_examples() = pairs[i];
  v1::IngestExamplesResponse reply;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->IngestExamples(&context, resend, &reply).ok());
  EXPECT_EQ(reply.duplicates(), static_cast<int64_t>(next));
  EXPECT_EQ(reply.accepted(), 0);
  std::printf("crash cycles: %d, acknowledged records: %zu, acknowledged selections: %zu\n",
              kCycles, acked_ids.size(), acked_selections.size());
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
