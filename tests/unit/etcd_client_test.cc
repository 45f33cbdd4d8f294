// The etcd client against Debian's real etcd, started per test on loopback ports.
#include "cluster/etcd_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/etcd_process.h"
#include "tests/support/scratch_dir.h"

namespace curation::cluster {
namespace {

using curation::testing::EtcdProcess;
using curation::testing::ScratchDir;
using std::chrono::milliseconds;

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    etcd_ = EtcdProcess::Start(ScratchDir(std::string("etcd-") + info->name()));
    ASSERT_NE(etcd_, nullptr);
    auto client = EtcdClient::Create({etcd_->endpoint()});
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  std::unique_ptr<EtcdProcess> etcd_;
  std::unique_ptr<EtcdClient> client_;
};

// Compacts etcd's history up to `revision` through its JSON gateway: the trimmed protos leave
// out the Compact call, which the client has no use for.
bool Compact(const std::string& endpoint, int64_t revision) {
  const int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  const std::string body = "{\"revision\":\"" + std::to_string(revision) + "\",\"physical\":true}";
  const std::string reply =
      testing::HttpExchange(port,
                            "POST /v3/kv/compaction HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                            "Content-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body);
  return reply.rfind("HTTP/1.0 200", 0) == 0 || reply.rfind("HTTP/1.1 200", 0) == 0;
}

// What a watch delivered, for the test thread to wait on.
class Collector {
 public:
  EtcdClient::EventsFn OnEvents() {
    return [this](const std::vector<WatchEvent>& batch) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.insert(events_.end(), batch.begin(), batch.end());
      cv_.notify_all();
    };
  }
  EtcdClient::ErrorFn OnError() {
    return [this](const absl::Status& status) {
      std::lock_guard<std::mutex> lock(mu_);
      errors_.push_back(status);
      cv_.notify_all();
    };
  }
  // The events once there are at least `n` (or what came within `timeout`).
  std::vector<WatchEvent> WaitFor(size_t n, milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
    return events_;
  }
  // The errors once there is at least one (or none after 20 s).
  std::vector<absl::Status> WaitForError() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return !errors_.empty(); });
    return errors_;
  }
  std::vector<absl::Status> errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<WatchEvent> events_;
  std::vector<absl::Status> errors_;
};

TEST_F(EtcdClientTest, PutGetAndPrefixInKeyOrderWithRevision) {
  auto absent = client_->Get("p/a");
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_FALSE(absent->has_value());

  ASSERT_TRUE(client_->Put("p/b", "2").ok());
  ASSERT_TRUE(client_->Put("q/outside", "x").ok());
  auto first_a = client_->Put("p/a", "1");
  ASSERT_TRUE(first_a.ok()) << first_a.status();
  auto second_a = client_->Put("p/a", "1bis");
  ASSERT_TRUE(second_a.ok());
  EXPECT_GT(*second_a, *first_a);
  auto last = client_->Put("p/c", std::string("3\0z", 3));
  ASSERT_TRUE(last.ok());

  auto a = client_->Get("p/a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->value, "1bis");
  EXPECT_EQ((*a)->create_revision, *first_a);
  EXPECT_EQ((*a)->mod_revision, *second_a);
  EXPECT_EQ((*a)->version, 2);
  EXPECT_EQ((*a)->lease, 0);

  int64_t revision = 0;
  auto listed = client_->GetPrefix("p/", &revision);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].key, "p/a");
  EXPECT_EQ((*listed)[1].key, "p/b");
  EXPECT_EQ((*listed)[2].key, "p/c");
  EXPECT_EQ((*listed)[2].value, std::string("3\0z", 3));
  EXPECT_EQ(revision, *last);

  // The empty prefix is every key.
  auto all = client_->GetPrefix("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);

  auto deleted = client_->DeletePrefix("p/");
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 3);
  auto left = client_->GetPrefix("");
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].key, "q/outside");
}

TEST_F(EtcdClientTest, PutIfCreatesOnlyWhenAbsentAndComparesModRevision) {
  auto created = client_->PutIf("k", "v1", 0);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);

  std::optional<KeyValue> current;
  auto again = client_->PutIf("k", "v2", 0, 0, &current);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->value, "v1");
  const int64_t v1_revision = current->mod_revision;

  auto swapped = client_->PutIf("k", "v2", v1_revision);
  ASSERT_TRUE(swapped.ok());
  EXPECT_TRUE(*swapped);
  auto stale = client_->PutIf("k", "v3", v1_revision, 0, &current);
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(*stale);
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->value, "v2");

  // A revision on an absent key fails and reports the absence.
  auto on_absent = client_->PutIf("absent", "x", v1_revision, 0, &current);
  ASSERT_TRUE(on_absent.ok());
  EXPECT_FALSE(*on_absent);
  EXPECT_FALSE(current.has_value());

  EXPECT_EQ(client_->PutIf("k", "x", -1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EtcdClientTest, RacingCreatesHaveExactlyOneWinner) {
  constexpr int kKeys = 20;
  for (int key = 0; key < kKeys; ++key) {
    const std::string name = "race/" + std::to_string(key);
    std::atomic<int> ready{0};
    bool won[2] = {false, false};
    absl::Status errors[2];
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < 2) {
        }
        auto result = client_->PutIf(name, "thread" + std::to_string(t), 0);
        if (!result.ok()) errors[t] = result.status();
        won[t] = result.ok() && *result;
      });
    }
    for (auto& thread : threads) thread.join();
    ASSERT_TRUE(errors[0].ok() && errors[1].ok()) << errors[0] << " " << errors[1];
    ASSERT_NE(won[0], won[1]) << name;
    auto stored = client_->Get(name);
    ASSERT_TRUE(stored.ok() && stored->has_value());
    EXPECT_EQ((*stored)->value, won[0] ? "thread0" : "thread1");
  }
}

TEST_F(EtcdClientTest, DeleteIfComparesModRevision) {
  auto revision = client_->Put("d", "v");
  ASSERT_TRUE(revision.ok());
  auto wrong = client_->DeleteIf("d", *revision - 1);
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_FALSE(*wrong);
  EXPECT_TRUE(client_->Get("d")->has_value());

  auto right = client_->DeleteIf("d", *revision);
  ASSERT_TRUE(right.ok());
  EXPECT_TRUE(*right);
  EXPECT_FALSE(client_->Get("d")->has_value());
  auto gone = client_->DeleteIf("d", *revision);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(*gone);
  EXPECT_EQ(client_->DeleteIf("d", 0).status().code(), absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(client_->Put("d", "v").ok());
  EXPECT_EQ(*client_->Delete("d"), 1);
  EXPECT_EQ(*client_->Delete("d"), 0);
}

TEST_F(EtcdClientTest, LeasedKeysGoWhenTheLeaseExpires) {
  auto lease = client_->GrantLease(2);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put("leased", "v", *lease).ok());
  auto held = client_->Get("leased");
  ASSERT_TRUE(held.ok() && held->has_value());
  EXPECT_EQ((*held)->lease, *lease);

  // No keep-alive: etcd expires it after ~2 s (bounded wait, not a timing assertion).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool present = true;
  while (present && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(200));
    auto got = client_->Get("leased");
    ASSERT_TRUE(got.ok()) << got.status();
    present = got->has_value();
  }
  EXPECT_FALSE(present);
  EXPECT_EQ(client_->KeepAlive(*lease).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->RevokeLease(*lease).code(), absl::StatusCode::kNotFound);
}

TEST_F(EtcdClientTest, KeepAliveKeepsLeasedKeysAndRevokeDeletesThem) {
  auto lease = client_->GrantLease(2);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put("kept", "v", *lease).ok());
  // Three TTLs of renewals every 0.5 s.
  for (int i = 0; i < 12; ++i) {
    std::this_thread::sleep_for(milliseconds(500));
    auto ttl = client_->KeepAlive(*lease);
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    EXPECT_GE(*ttl, 1);
  }
  auto kept = client_->Get("kept");
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept->has_value());

  ASSERT_TRUE(client_->RevokeLease(*lease).ok());
  EXPECT_FALSE(client_->Get("kept")->has_value());
  EXPECT_EQ(client_->KeepAlive(*lease).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EtcdClientTest, GrantLeaseChecksTheTtl) {
  EXPECT_EQ(client_->GrantLease(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->GrantLease(9'000'000'001).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(client_->GrantLease(9'000'000'000).ok());
}

TEST_F(EtcdClientTest, WatchDeliversPutsAndDeletesInOrder) {
  ASSERT_TRUE(client_->Put("w/before", "old").ok());
  int64_t revision = 0;
  ASSERT_TRUE(client_->GetPrefix("w/", &revision).ok());
  Collector collector;
  auto watch = client_->WatchPrefix("w/", revision + 1, collector.OnEvents(), collector.OnError());
  ASSERT_TRUE(client_->Put("w/a", "1").ok());
  ASSERT_TRUE(client_->Put("elsewhere", "x").ok());
  ASSERT_TRUE(client_->Put("w/b", "2").ok());
  ASSERT_TRUE(client_->Delete("w/a").ok());
  ASSERT_TRUE(client_->Put("w/b", "3").ok());

  auto events = collector.WaitFor(4);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events[0].kv.key, "w/a");
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[1].kv.key, "w/b");
  EXPECT_EQ(events[2].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(events[2].kv.key, "w/a");
  EXPECT_EQ(events[2].kv.version, 0);
  EXPECT_EQ(events[3].kv.value, "3");
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GT(events[i].kv.mod_revision, events[i - 1].kv.mod_revision);
  }
  EXPECT_TRUE(collector.errors().empty());
}

TEST_F(EtcdClientTest, WatchFromAnOldRevisionReplaysHistory) {
  auto first = client_->Put("h/a", "1");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(client_->Put("h/a", "2").ok());
  Collector collector;
  auto watch = client_->WatchPrefix("h/", *first, collector.OnEvents());
  auto events = collector.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[1].kv.value, "2");
}

TEST_F(EtcdClientTest, WatchFromACompactedRevisionIsOutOfRangeAndResumesFromNow) {
  auto first = client_->Put("c/a", "1");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(client_->Put("c/a", "2").ok());
  auto third = client_->Put("c/a", "3");
  ASSERT_TRUE(third.ok());
  ASSERT_TRUE(Compact(etcd_->endpoint(), *third));

  Collector collector;
  auto watch = client_->WatchPrefix("c/", *first, collector.OnEvents(), collector.OnError());
  // The watch resumes from "now", some time after the error: put until a put arrives.
  std::vector<WatchEvent> events;
  for (int i = 0; i < 100 && events.empty(); ++i) {
    ASSERT_TRUE(client_->Put("c/after", std::to_string(i)).ok());
    events = collector.WaitFor(1, milliseconds(200));
  }
  ASSERT_FALSE(events.empty());
  for (const auto& event : events) {
    EXPECT_EQ(event.kv.key, "c/after");
    EXPECT_GT(event.kv.mod_revision, *third);
  }
  auto errors = collector.errors();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code(), absl::StatusCode::kOutOfRange) << errors[0];
}

TEST_F(EtcdClientTest, WatchResumesAfterEtcdRestartsWithoutLosingAPut) {
  Collector collector;
  int64_t revision = 0;
  ASSERT_TRUE(client_->GetPrefix("r/", &revision).ok());
  auto watch = client_->WatchPrefix("r/", revision + 1, collector.OnEvents(), collector.OnError());
  ASSERT_TRUE(client_->Put("r/1", "before").ok());
  ASSERT_EQ(collector.WaitFor(1).size(), 1u);

  etcd_->Stop();
  ASSERT_TRUE(etcd_->Restart());
  auto after = client_->Put("r/2", "after");
  ASSERT_TRUE(after.ok()) << after.status();

  auto events = collector.WaitFor(2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kv.key, "r/1");
  EXPECT_EQ(events[1].kv.key, "r/2");
  EXPECT_EQ(events[1].kv.mod_revision, *after);
  auto errors = collector.errors();
  ASSERT_GE(errors.size(), 1u);
  EXPECT_EQ(errors[0].code(), absl::StatusCode::kUnavailable) << errors[0];

  // Nothing delivered twice after the reconnect.
  ASSERT_TRUE(client_->Put("r/3", "later").ok());
  events = collector.WaitFor(3);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].kv.key, "r/3");
}

TEST_F(EtcdClientTest, EveryCallIsUnavailableWhileEtcdIsDown) {
  auto lease = client_->GrantLease(60);
  ASSERT_TRUE(lease.ok());
  auto client = EtcdClient::Create({etcd_->endpoint()}, {.call_timeout = milliseconds(500)});
  ASSERT_TRUE(client.ok());
  etcd_->Stop();

  std::vector<absl::Status> statuses = {
      (*client)->Get("k").status(),          (*client)->GetPrefix("k").status(),
      (*client)->Put("k", "v").status(),     (*client)->PutIf("k", "v", 0).status(),
      (*client)->DeleteIf("k", 1).status(),  (*client)->Delete("k").status(),
      (*client)->DeletePrefix("k").status(), (*client)->GrantLease(10).status(),
      (*client)->KeepAlive(*lease).status(), (*client)->RevokeLease(*lease),
  };
  for (size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_EQ(statuses[i].code(), absl::StatusCode::kUnavailable) << i << ": " << statuses[i];
    EXPECT_NE(statuses[i].message().find("etcd unreachable (" + etcd_->endpoint() + ")"),
              std::string::npos)
        << statuses[i];
  }

  // A watch on a dead etcd reports the break and still stops when destroyed.
  Collector collector;
  {
    auto watch = (*client)->WatchPrefix("k", 0, collector.OnEvents(), collector.OnError());
    ASSERT_FALSE(collector.WaitForError().empty());
    // Several reconnections fail within this, but the break is reported once.
    std::this_thread::sleep_for(milliseconds(500));
  }
  ASSERT_EQ(collector.errors().size(), 1u);
  EXPECT_EQ(collector.errors()[0].code(), absl::StatusCode::kUnavailable);
}

TEST_F(EtcdClientTest, SticksToTheEndpointThatAnswers) {
  // First a port nothing listens on: a socket's OS-chosen port, closed again.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  const std::string dead_endpoint = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto client = EtcdClient::Create({dead_endpoint, "http://" + etcd_->endpoint()},
                                   {.call_timeout = milliseconds(1000)});
  ASSERT_TRUE(client.ok()) << client.status();
  for (int i = 0; i < 5; ++i) {
    auto put = (*client)->Put("k", std::to_string(i));
    ASSERT_TRUE(put.ok()) << put.status();
  }
  EXPECT_EQ((*(*client)->Get("k"))->value, "4");
}

TEST(EtcdClientCreateTest, RejectsEmptyAndMalformedEndpoints) {
  const std::vector<std::vector<std::string>> bad = {
      {},          {""},           {"localhost"}, {":2379"},          {"host:"},
      {"host:0"},  {"host:65536"}, {"host:port"}, {"https://h:2379"}, {"a b:1"},
      {"h:1", ""},
  };
  for (const auto& endpoints : bad) {
    auto client = EtcdClient::Create(endpoints);
    ASSERT_FALSE(client.ok());
    EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument) << client.status();
    EXPECT_NE(client.status().message().find("endpoints"), std::string::npos) << client.status();
  }
  EXPECT_TRUE(EtcdClient::Create({"http://127.0.0.1:2379", "[::1]:2379", "etcd-0:1"}).ok());
  EXPECT_EQ(EtcdClient::Create({"h:1"}, {.call_timeout = milliseconds(0)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EtcdClient::Create({"h:1"}, {.call_timeout = std::chrono::hours(1)}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace curation::cluster
