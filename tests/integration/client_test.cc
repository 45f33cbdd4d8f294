// The C++ client library against the real server: retries while the server is not up yet,
// deadlines on every call, tokens, health.
#include "curation/client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "tests/integration/server_process.h"
#include "tests/support/etcd_process.h"  // FreePort

namespace curation::testing {
namespace {

TEST(ClientTest, RetriesUntilTheServerIsUp) {
  const std::string dir = MakeTempDir("client-retry");
  const int port = FreePort();
  client::Options options;
  options.server = "127.0.0.1:" + std::to_string(port);
  options.initial_backoff = std::chrono::milliseconds(100);
  options.max_attempts = 12;  // 100 ms doubling: minutes of patience, far more than needed
  auto c = client::Client::Connect(options);
  ASSERT_TRUE(c.ok());

  std::unique_ptr<ServerProcess> server;
  std::thread starter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    server = ServerProcess::Start(dir + "/db", {"--listen", options.server});
  });
  v1::GetDatasetRequest request;
  request.set_name("nothing-here");
  v1::Dataset reply;
  // Refused connections (UNAVAILABLE) are retried; the answer comes from the server.
  grpc::Status s = (*c)->GetDataset(request, &reply);
  starter.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  auto serving = (*c)->Serving();
  ASSERT_TRUE(serving.ok());
  EXPECT_TRUE(*serving);
}

TEST(ClientTest, GivesUpAfterMaxAttemptsAndSetsDeadlines) {
  client::Options options;
  options.server = "127.0.0.1:" + std::to_string(FreePort());  // nobody listens
  options.initial_backoff = std::chrono::milliseconds(10);
  options.max_attempts = 3;
  options.timeout = std::chrono::milliseconds(1500);
  auto c = client::Client::Connect(options);
  ASSERT_TRUE(c.ok());
  v1::ListDatasetsRequest request;
  v1::ListDatasetsResponse reply;
  EXPECT_EQ((*c)->ListDatasets(request, &reply).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto context = (*c)->NewContext();
  const auto left = context->deadline() - std::chrono::system_clock::now();
  EXPECT_GT(left, std::chrono::milliseconds(1000));
  EXPECT_LE(left, std::chrono::milliseconds(1500));
  client::Options bad = options;
  bad.tls_cert_chain = "cert without key";
  EXPECT_FALSE(client::Client::Connect(bad).ok());
}

TEST(ClientTest, SendsTheToken) {
  const std::string dir = MakeTempDir("client-token");
  std::ofstream(dir + "/admin") << "client-test-admin-token-0123456789\n";
  auto server =
      ServerProcess::Start(dir + "/db", {"--auth=true", "--admin-token-file", dir + "/admin"});
  client::Options options;
  options.server = server->address();
  auto anonymous = client::Client::Connect(options);
  options.token = "client-test-admin-token-0123456789";
  auto admin = client::Client::Connect(options);
  v1::ListTenantsRequest request;
  v1::ListTenantsResponse reply;
  EXPECT_EQ((*anonymous)->ListTenants(request, &reply).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE((*admin)->ListTenants(request, &reply).ok());
}

// Pairs with distinct texts for the built-in embedder.
v1::IngestExamplesRequest SyntheticPairs(const std::string& dataset, int n) {
  v1::IngestExamplesRequest request;
  request.set_dataset(dataset);
  for (int i = 0; i < n; ++i) {
    auto* pair = request.add_examples()->mutable_pair();
    pair->set_prompt("How do I sort " + std::to_string(i) + " numbers in topic " +
                     std::to_string(i % 7) + "?");
    pair->set_chosen("Use a merge sort on the " + std::to_string(i) + " numbers, variant " +
                     std::to_string(i % 5) + ".");
    pair->set_rejected("Shuffle them until sorted, attempt " + std::to_string(i) + ".");
  }
  return request;
}

TEST(ClientTest, Operations) {
  const std::string dir = MakeTempDir("client-operations");
  auto server = ServerProcess::Start(dir + "/db");
  client::Options options;
  options.server = server->address();
  auto c = client::Client::Connect(options);
  ASSERT_TRUE(c.ok());
  client::Client& client = **c;
  v1::CreateDatasetRequest create;
  create.mutable_dataset()->set_name("ops");
  v1::Dataset dataset;
  ASSERT_TRUE(client.CreateDataset(create, &dataset).ok());
  v1::IngestExamplesResponse ingested;
  ASSERT_TRUE(client.IngestExamples(SyntheticPairs("ops", 60), &ingested).ok());
  ASSERT_EQ(ingested.accepted(), 60);

  v1::SelectRequest select;
  select.set_dataset("ops");
  select.mutable_budget()->set_count(12);
  select.set_method(v1::SELECTION_METHOD_HERDING);
  select.set_request_id("client-test-1");
  v1::Operation started;
  grpc::Status s = client.StartSelect(select, &started);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(started.name().rfind("operations/", 0), 0u);
  EXPECT_EQ(started.metadata().kind(), v1::OPERATION_KIND_SELECT);
  EXPECT_EQ(started.metadata().request_id(), "client-test-1");

  std::vector<v1::Operation> seen;
  auto done =
      client.AwaitOperation(started.name(), std::chrono::minutes(5), std::chrono::milliseconds(100),
                            [&](const v1::Operation& op) { seen.push_back(op); });
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_TRUE(done->done());
  EXPECT_EQ(done->metadata().state(), v1::OPERATION_STATE_SUCCEEDED);
  EXPECT_TRUE(client::OperationStatus(*done).ok());
  ASSERT_TRUE(done->has_selection());
  EXPECT_EQ(done->selection().items_size(), 12);
  // Every reply reached the callback, the last one the done operation.
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().done());

  // The synchronous Select of the same request selects the same examples.
  v1::SelectRequest plain = select;
  plain.clear_request_id();
  v1::Selection sync;
  s = client.Select(plain, &sync);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(sync.items_size(), 12);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(sync.items(i).example_id(), done->selection().items(i).example_id());
  }

  // The idempotency key: the same request is the same operation, done, with its result.
  v1::Operation again;
  ASSERT_TRUE(client.StartSelect(select, &again).ok());
  EXPECT_EQ(again.name(), started.name());
  EXPECT_TRUE(again.done());
  v1::SelectRequest other = select;
  other.mutable_budget()->set_count(13);
  EXPECT_EQ(client.StartSelect(other, &again).error_code(), grpc::StatusCode::ALREADY_EXISTS);

  v1::GetOperationRequest get;
  get.set_name("operations/0123456789abcdef0123456789abcdef");
  v1::Operation missing;
  EXPECT_EQ(client.GetOperation(get, &missing).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(client.AwaitOperation(get.name()).status().code(), absl::StatusCode::kNotFound);

  // List, one operation per page: every page is followed to the one started above.
  v1::ListOperationsRequest list;
  list.set_dataset("ops");
  list.set_page_size(1);
  std::vector<std::string> names;
  do {
    v1::ListOperationsResponse page;
    ASSERT_TRUE(client.ListOperations(list, &page).ok());
    EXPECT_LE(page.operations_size(), 1);
    for (const auto& op : page.operations()) names.push_back(op.name());
    list.set_page_token(page.next_page_token());
  } while (!list.page_token().empty());
  EXPECT_NE(std::find(names.begin(), names.end(), started.name()), names.end());
  // The synchronous Select is a job too, so there are two.
  EXPECT_EQ(names.size(), 2u);

  // Cancelling a done operation returns it unchanged.
  v1::CancelOperationRequest cancel;
  cancel.set_name(started.name());
  v1::Operation cancelled;
  ASSERT_TRUE(client.CancelOperation(cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.metadata().state(), v1::OPERATION_STATE_SUCCEEDED);

  // An evaluation as a job; a bounded wait returns the operation whether or not it is done.
  v1::EvaluateSelectionRequest evaluate;
  evaluate.set_selection_id(sync.id());
  evaluate.mutable_proxy()->set_test_pairs(10);
  evaluate.mutable_proxy()->set_random_seeds(2);
  ASSERT_TRUE(client.StartEvaluation(evaluate, &started).ok());
  EXPECT_EQ(started.metadata().kind(), v1::OPERATION_KIND_EVALUATE);
  done = client.AwaitOperation(started.name(), std::chrono::minutes(5));
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_TRUE(done->has_evaluation()) << done->DebugString();
  EXPECT_EQ(done->evaluation().selection_id(), sync.id());
}

// Start* without a request_id is not resent after UNAVAILABLE (a lost reply may have queued
// the job); with one it is, and the server's answer arrives once it is up.
TEST(ClientTest, StartIsRetriedOnlyWithARequestId) {
  const std::string dir = MakeTempDir("client-start-retry");
  client::Options options;
  options.server = "127.0.0.1:" + std::to_string(FreePort());
  options.initial_backoff = std::chrono::milliseconds(100);
  options.max_attempts = 12;
  auto c = client::Client::Connect(options);
  ASSERT_TRUE(c.ok());
  v1::SelectRequest select;
  select.set_dataset("nothing-here");
  select.mutable_budget()->set_count(1);
  std::unique_ptr<ServerProcess> server;
  std::thread starter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    server = ServerProcess::Start(dir + "/db", {"--listen", options.server});
  });
  // Nobody listens yet: one attempt each, UNAVAILABLE at once (retried, they would wait for
  // the server and get its NOT_FOUND, as the keyed call below does).
  v1::Operation op;
  EXPECT_EQ((*c)->StartSelect(select, &op).error_code(), grpc::StatusCode::UNAVAILABLE);
  v1::Selection selection;
  EXPECT_EQ((*c)->Select(select, &selection).error_code(), grpc::StatusCode::UNAVAILABLE);
  select.set_request_id("retry-me");
  grpc::Status s = (*c)->StartSelect(select, &op);
  starter.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

}  // namespace
}  // namespace curation::testing
