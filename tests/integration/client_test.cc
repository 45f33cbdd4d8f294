// The C++ client library against the real server: retries while the server is not up yet,
// deadlines on every call, tokens, health.
#include "curation/client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "tests/integration/server_process.h"

namespace curation::testing {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

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

}  // namespace
}  // namespace curation::testing
