// A cluster of three real members on Debian's real etcd, all on loopback (issue 13): tokens
// and tenants shared through etcd, placement, forwarding (unary and streaming), concurrent
// creates, a member killed during ingest, etcd stopped and restarted, and a dataset moved
// while a client ingests into it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <map>
#include <set>
#include <thread>

#include "tests/integration/local_cluster.h"
#include "tests/integration/test_data.h"
#include "tests/support/scratch_dir.h"

namespace curation::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ClusterTest : public ::testing::Test {
 protected:
  void StartCluster(std::vector<std::string> flags = {}) {
    cluster_ = std::make_unique<LocalCluster>(
        ScratchDir(::testing::UnitTest::GetInstance()->current_test_info()->name()), 3,
        std::move(flags));
    token_ = cluster_->MakeTenant(0, "team");
  }

  grpc::Status Create(int via, const std::string& name, const std::string& member = "",
                      v1::Dataset* out = nullptr) {
    auto stub = cluster_->Data(via);
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = MakeDataset(name, v1::DATASET_KIND_PAIRS, 0);
    request.set_member(member);
    v1::Dataset reply;
    grpc::Status s = stub->CreateDataset(&context, request, &reply);
    if (out != nullptr) *out = reply;
    return s;
  }

  grpc::Status Get(int via, const std::string& name, v1::Dataset* out) {
    auto stub = cluster_->Data(via);
    grpc::ClientContext context;
    Authorize(&context, token_);
    context.set_deadline(std::chrono::system_clock::now() + seconds(10));
    v1::GetDatasetRequest request;
    request.set_name(name);
    return stub->GetDataset(&context, request, out);
  }

  // Ingests examples [from, to) of `pairs` with ids "<prefix>-<i>".
  grpc::Status Ingest(int via, const std::string& dataset, const std::vector<v1::Example>& pairs,
                      int from, int to, const std::string& prefix = "p") {
    auto stub = cluster_->Data(via);
    grpc::ClientContext context;
    Authorize(&context, token_);
    context.set_deadline(std::chrono::system_clock::now() + seconds(60));
    v1::IngestExamplesRequest request;
    request.set_dataset(dataset);
    for (int i = from; i < to; ++i) {
      v1::Example* e = request.add_examples();
      *e = pairs[i % pairs.size()];
      e->set_id(prefix + "-" + std::to_string(i));
      // Distinct content per id, so none is a duplicate of another.
      e->mutable_pair()->set_prompt(e->pair().prompt() + " #" + std::to_string(i));
    }
    v1::IngestExamplesResponse reply;
    grpc::Status s = stub->IngestExamples(&context, request, &reply);
    if (s.ok() && reply.accepted() + reply.duplicates() != to - from) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "rejected " + std::to_string(reply.rejected()));
    }
    return s;
  }

  // Which of `ids` the dataset holds, read through member `via`.
  std::set<std::string> Held(int via, const std::string& dataset,
                             const std::vector<std::string>& ids) {
    std::set<std::string> held;
    auto stub = cluster_->Data(via);
    for (size_t at = 0; at < ids.size(); at += 1000) {
      grpc::ClientContext context;
      Authorize(&context, token_);
      v1::GetExamplesRequest request;
      request.set_dataset(dataset);
      for (size_t i = at; i < std::min(ids.size(), at + 1000); ++i) request.add_ids(ids[i]);
      v1::GetExamplesResponse reply;
      grpc::Status s = stub->GetExamples(&context, request, &reply);
      EXPECT_TRUE(s.ok()) << s.error_message();
      for (const auto& e : reply.examples()) held.insert(e.id());
    }
    return held;
  }

  std::unique_ptr<LocalCluster> cluster_;
  std::string token_;
};

TEST_F(ClusterTest, ATokenMadeOnOneMemberWorksOnAllAndItsRevocationReachesAll) {
  StartCluster();
  // The tenant and token were made through m1; use them on m3.
  ASSERT_TRUE(Create(2, "d1").ok());
  v1::Dataset d;
  ASSERT_TRUE(Get(2, "d1", &d).ok());

  // Revoke through m2 (find the token's id through m3).
  auto admin = cluster_->Admin(2);
  std::string id;
  {
    grpc::ClientContext context;
    Authorize(&context, cluster_->admin_token());
    v1::ListTokensRequest request;
    request.set_tenant("team");
    v1::ListTokensResponse reply;
    ASSERT_TRUE(admin->ListTokens(&context, request, &reply).ok());
    ASSERT_EQ(reply.tokens_size(), 1);
    id = reply.tokens(0).id();
  }
  {
    grpc::ClientContext context;
    Authorize(&context, cluster_->admin_token());
    v1::RevokeTokenRequest request;
    request.set_id(id);
    v1::Token reply;
    ASSERT_TRUE(cluster_->Admin(1)->RevokeToken(&context, request, &reply).ok());
  }
  // Every member refuses it within a few seconds.
  for (int m = 0; m < 3; ++m) {
    grpc::Status s;
    for (auto until = std::chrono::steady_clock::now() + seconds(10);
         std::chrono::steady_clock::now() < until;) {
      s = Get(m, "d1", &d);
      if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << "member " << m;
  }
}

TEST_F(ClusterTest, DatasetsCreatedThroughDifferentMembersSpreadOverTheMembers) {
  StartCluster();
  std::map<std::string, int> per_member;
  for (int i = 0; i < 6; ++i) {
    v1::Dataset d;
    grpc::Status s = Create(i % 3, "spread" + std::to_string(i), "", &d);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_FALSE(d.member().empty());
    ++per_member[d.member()];
  }
  EXPECT_EQ(per_member.size(), 3u) << "every member holds some of the datasets";
  // Every member lists all six, each with its member.
  for (int m = 0; m < 3; ++m) {
    auto stub = cluster_->Data(m);
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::ListDatasetsRequest request;
    v1::ListDatasetsResponse reply;
    ASSERT_TRUE(stub->ListDatasets(&context, request, &reply).ok());
    ASSERT_EQ(reply.datasets_size(), 6) << "via member " << m;
    std::map<std::string, int> listed;
    for (const auto& d : reply.datasets()) ++listed[d.member()];
    EXPECT_EQ(listed, per_member);
  }
  // Pages of two walk the merged list in name order, whatever member holds what.
  auto stub = cluster_->Data(1);
  std::vector<std::string> names;
  std::string token;
  do {
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::ListDatasetsRequest request;
    request.set_page_size(2);
    request.set_page_token(token);
    v1::ListDatasetsResponse reply;
    ASSERT_TRUE(stub->ListDatasets(&context, request, &reply).ok());
    for (const auto& d : reply.datasets()) names.push_back(d.name());
    token = reply.next_page_token();
  } while (!token.empty());
  EXPECT_EQ(names, (std::vector<std::string>{"spread0", "spread1", "spread2", "spread3", "spread4",
                                             "spread5"}));
  // Admins see the members with their datasets.
  grpc::ClientContext context;
  Authorize(&context, cluster_->admin_token());
  v1::ListMembersResponse members;
  ASSERT_TRUE(cluster_->Admin(0)->ListMembers(&context, {}, &members).ok());
  ASSERT_EQ(members.members_size(), 3);
  for (const auto& m : members.members()) {
    EXPECT_TRUE(m.healthy()) << m.name() << ": " << m.detail();
    EXPECT_FALSE(m.address().empty());
  }
}

TEST_F(ClusterTest, IngestThroughOneSelectThroughAnotherExportThroughAThird) {
  StartCluster();
  v1::Dataset d;
  ASSERT_TRUE(Create(0, "far", "m3", &d).ok());
  EXPECT_EQ(d.member(), "m3");
  const auto pairs = HhPairs(200);
  // A stream through m2 into the dataset on m3.
  {
    auto stub = cluster_->Data(1);
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::IngestExamplesResponse reply;
    auto writer = stub->IngestStream(&context, &reply);
    for (int batch = 0; batch < 4; ++batch) {
      v1::IngestExamplesRequest request;
      if (batch == 0) request.set_dataset("far");
      for (int i = batch * 50; i < (batch + 1) * 50; ++i) {
        *request.add_examples() = pairs[i];
        request.mutable_examples()->rbegin()->set_id("x" + std::to_string(i));
      }
      ASSERT_TRUE(writer->Write(request));
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(reply.accepted(), 200);
  }
  ASSERT_TRUE(Get(0, "far", &d).ok());
  EXPECT_EQ(d.example_count(), 200);
  EXPECT_EQ(d.member(), "m3");
  // Select through m1.
  v1::Selection selection;
  {
    auto stub = cluster_->Data(0);
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::SelectRequest request;
    request.set_dataset("far");
    request.mutable_budget()->set_fraction(0.1);
    grpc::Status s = stub->Select(&context, request, &selection);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(selection.items_size(), 20);
  }
  // Export through m2 (a server stream forwarded from m3).
  {
    auto stub = cluster_->Data(1);
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::ExportSelectionRequest request;
    request.set_selection_id(selection.id());
    request.set_format(v1::EXPORT_FORMAT_TRL);
    auto reader = stub->ExportSelection(&context, request);
    v1::ExportSelectionResponse chunk;
    std::set<std::string> exported;
    while (reader->Read(&chunk)) {
      for (const auto& r : chunk.records()) exported.insert(r.id());
    }
    grpc::Status s = reader->Finish();
    ASSERT_TRUE(s.ok()) << s.error_message();
    std::set<std::string> selected;
    for (const auto& item : selection.items()) selected.insert(item.example_id());
    EXPECT_EQ(exported, selected);
  }
  // The selection by id and the operations are found from any member.
  for (int m = 0; m < 3; ++m) {
    auto stub = cluster_->Data(m);
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::GetSelectionRequest request;
    request.set_id(selection.id());
    v1::Selection got;
    grpc::Status s = stub->GetSelection(&context, request, &got);
    ASSERT_TRUE(s.ok()) << "member " << m << ": " << s.error_message();
    EXPECT_EQ(got.id(), selection.id());
    grpc::ClientContext list_context;
    Authorize(&list_context, token_);
    v1::ListOperationsResponse ops;
    ASSERT_TRUE(stub->ListOperations(&list_context, {}, &ops).ok());
    ASSERT_EQ(ops.operations_size(), 1) << "member " << m;
    grpc::ClientContext get_context;
    Authorize(&get_context, token_);
    v1::GetOperationRequest get;
    get.set_name(ops.operations(0).name());
    v1::Operation op;
    s = stub->GetOperation(&get_context, get, &op);
    ASSERT_TRUE(s.ok()) << "member " << m << ": " << s.error_message();
    EXPECT_TRUE(op.done());
  }
}

TEST_F(ClusterTest, ConcurrentCreatesOfOneNameMakeExactlyOneDataset) {
  StartCluster();
  for (int round = 0; round < 5; ++round) {
    const std::string name = "same" + std::to_string(round);
    std::vector<grpc::Status> results(3);
    std::vector<std::thread> threads;
    for (int m = 0; m < 3; ++m) {
      threads.emplace_back([&, m] { results[m] = Create(m, name); });
    }
    for (auto& t : threads) t.join();
    int ok = 0;
    int exists = 0;
    for (const auto& s : results) {
      ok += s.ok();
      exists += s.error_code() == grpc::StatusCode::ALREADY_EXISTS;
    }
    EXPECT_EQ(ok, 1) << name;
    EXPECT_EQ(exists, 2) << name;
  }
  grpc::ClientContext context;
  Authorize(&context, token_);
  v1::ListDatasetsResponse reply;
  ASSERT_TRUE(cluster_->Data(2)->ListDatasets(&context, {}, &reply).ok());
  EXPECT_EQ(reply.datasets_size(), 5);
}

TEST_F(ClusterTest, AMemberKilledDuringIngestMakesOnlyItsDatasetsUnavailable) {
  StartCluster();
  ASSERT_TRUE(Create(0, "on3", "m3").ok());
  ASSERT_TRUE(Create(0, "on2", "m2").ok());
  const auto pairs = HhPairs(100);
  std::vector<std::string> acknowledged;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int batch = 0; !stop; ++batch) {
      if (Ingest(0, "on3", pairs, batch * 20, batch * 20 + 20).ok()) {
        for (int i = batch * 20; i < batch * 20 + 20; ++i) {
          acknowledged.push_back("p-" + std::to_string(i));
        }
      }
    }
  });
  std::this_thread::sleep_for(milliseconds(1500));
  cluster_->Kill(2);
  std::this_thread::sleep_for(milliseconds(500));
  stop = true;
  writer.join();
  ASSERT_FALSE(acknowledged.empty());

  v1::Dataset d;
  grpc::Status down = Get(0, "on3", &d);
  EXPECT_EQ(down.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(down.error_message().find("m3"), std::string::npos) << down.error_message();
  // The rest of the cluster goes on.
  EXPECT_TRUE(Get(1, "on2", &d).ok());
  EXPECT_TRUE(Ingest(0, "on2", pairs, 0, 20).ok());
  EXPECT_TRUE(Create(1, "fresh").ok());

  cluster_->Restart(2);
  grpc::Status back;
  for (auto until = std::chrono::steady_clock::now() + seconds(30);
       std::chrono::steady_clock::now() < until;) {
    back = Get(0, "on3", &d);
    if (back.ok()) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  ASSERT_TRUE(back.ok()) << back.error_message();
  const std::set<std::string> held = Held(1, "on3", acknowledged);
  EXPECT_EQ(held.size(), std::set<std::string>(acknowledged.begin(), acknowledged.end()).size());
  EXPECT_GE(d.example_count(), static_cast<int64_t>(held.size()));
}

TEST_F(ClusterTest, WithEtcdStoppedKnownDatasetsWorkAndMetadataChangesAreUnavailable) {
  StartCluster({"--cluster-lease-seconds=3"});
  ASSERT_TRUE(Create(0, "known", "m2").ok());
  const auto pairs = HhPairs(40);
  cluster_->etcd().Stop();
  v1::Dataset d;
  // Reads and (while the lease lasts) writes on known datasets go on, forwarded as before.
  EXPECT_TRUE(Get(0, "known", &d).ok());
  grpc::Status early = Ingest(2, "known", pairs, 0, 20);
  EXPECT_TRUE(early.ok()) << early.error_message();
  // Metadata changes need etcd.
  grpc::Status create = Create(1, "new");
  EXPECT_EQ(create.error_code(), grpc::StatusCode::UNAVAILABLE) << create.error_message();
  {
    grpc::ClientContext context;
    Authorize(&context, cluster_->admin_token());
    v1::CreateTokenRequest request;
    request.set_tenant("team");
    request.set_role(v1::ROLE_READER);
    v1::CreateTokenResponse reply;
    grpc::Status s = cluster_->Admin(0)->CreateToken(&context, request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  }
  // Past the lease, the owner accepts no writes (it may have been replaced), reads go on.
  std::this_thread::sleep_for(seconds(4));
  grpc::Status late = Ingest(0, "known", pairs, 20, 40);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::UNAVAILABLE) << late.error_message();
  EXPECT_NE(late.error_message().find("lease"), std::string::npos) << late.error_message();
  EXPECT_TRUE(Get(2, "known", &d).ok());
  EXPECT_EQ(d.example_count(), 20);

  ASSERT_TRUE(cluster_->etcd().Restart());
  const auto restarted = std::chrono::steady_clock::now();
  grpc::Status again;
  for (auto until = restarted + seconds(30); std::chrono::steady_clock::now() < until;) {
    again = Ingest(0, "known", pairs, 20, 40);
    if (again.ok()) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_TRUE(again.ok()) << again.error_message();
  std::printf("writes resumed %.1f s after etcd answered again\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count());
  grpc::Status created;
  for (auto until = std::chrono::steady_clock::now() + seconds(30);
       std::chrono::steady_clock::now() < until;) {
    created = Create(1, "new");
    if (created.ok()) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_TRUE(created.ok()) << created.error_message();
  ASSERT_TRUE(Get(1, "known", &d).ok());
  EXPECT_EQ(d.example_count(), 40);
}

TEST_F(ClusterTest, ADatasetMovedWhileAClientIngestsLosesNothing) {
  StartCluster();
  ASSERT_TRUE(Create(0, "moving", "m2").ok());
  const auto pairs = HhPairs(100);
  std::vector<std::string> acknowledged;
  std::atomic<bool> stop{false};
  std::atomic<int> retries{0};
  std::thread writer([&] {
    for (int batch = 0; !stop; ++batch) {
      // A client's retry loop: UNAVAILABLE (the move's freeze) is retried until it lands.
      while (true) {
        grpc::Status s = Ingest(0, "moving", pairs, batch * 10, batch * 10 + 10);
        if (s.ok()) break;
        ASSERT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
        ++retries;
        std::this_thread::sleep_for(milliseconds(50));
      }
      for (int i = batch * 10; i < batch * 10 + 10; ++i) {
        acknowledged.push_back("p-" + std::to_string(i));
      }
    }
  });
  std::this_thread::sleep_for(milliseconds(1000));
  {
    grpc::ClientContext context;
    Authorize(&context, cluster_->admin_token());
    v1::MoveDatasetRequest request;
    request.set_tenant("team");
    request.set_dataset("moving");
    request.set_to_member("m3");
    v1::MoveDatasetResponse reply;
    grpc::Status s = cluster_->Admin(0)->MoveDataset(&context, request, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(reply.from_member(), "m2");
    EXPECT_EQ(reply.to_member(), "m3");
  }
  std::this_thread::sleep_for(milliseconds(1000));
  stop = true;
  writer.join();
  v1::Dataset d;
  ASSERT_TRUE(Get(1, "moving", &d).ok());
  EXPECT_EQ(d.member(), "m3");
  EXPECT_EQ(d.example_count(), static_cast<int64_t>(acknowledged.size()));
  EXPECT_EQ(Held(2, "moving", acknowledged).size(), acknowledged.size());
  // The source no longer holds it: killing it leaves the dataset available.
  cluster_->Kill(1);
  EXPECT_TRUE(Get(0, "moving", &d).ok());
  std::printf("writes retried during the move: %d\n", retries.load());
}

TEST_F(ClusterTest, CallsNamingMembersAreCheckedAndChangeNothing) {
  StartCluster();
  grpc::Status s = Create(0, "d", "nope");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("member:", 0), 0u) << s.error_message();
  s = Create(0, "d", std::string(200, 'm'));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  v1::Dataset d;
  EXPECT_EQ(Get(1, "d", &d).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(Create(0, "d", "m2").ok());

  auto move = [&](const std::string& token, const std::string& tenant, const std::string& dataset,
                  const std::string& to) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::MoveDatasetRequest request;
    request.set_tenant(tenant);
    request.set_dataset(dataset);
    request.set_to_member(to);
    v1::MoveDatasetResponse reply;
    return cluster_->Admin(0)->MoveDataset(&context, request, &reply);
  };
  const std::string& admin = cluster_->admin_token();
  struct Case {
    std::string tenant, dataset, to;
    grpc::StatusCode code;
    std::string field;
  };
  for (const Case& c : std::vector<Case>{
           {"", "d", "m3", grpc::StatusCode::INVALID_ARGUMENT, "tenant"},
           {"team", std::string(65, 'x'), "m3", grpc::StatusCode::INVALID_ARGUMENT, "dataset"},
           {"team", "d", "", grpc::StatusCode::INVALID_ARGUMENT, "to_member"},
           {"team", "d", std::string(129, 'm'), grpc::StatusCode::INVALID_ARGUMENT, "to_member"},
           {"team", "d", "nope", grpc::StatusCode::INVALID_ARGUMENT, "to_member"},
           {"team", "d", "m2", grpc::StatusCode::INVALID_ARGUMENT, "to_member"},
           {"team", "absent", "m3", grpc::StatusCode::NOT_FOUND, ""},
           {"other", "d", "m3", grpc::StatusCode::NOT_FOUND, ""},
       }) {
    s = move(admin, c.tenant, c.dataset, c.to);
    EXPECT_EQ(s.error_code(), c.code)
        << c.tenant << "/" << c.dataset << " -> " << c.to << ": " << s.error_message();
    if (!c.field.empty()) {
      EXPECT_EQ(s.error_message().rfind(c.field + ":", 0), 0u) << s.error_message();
    }
  }
  // Only admins move datasets and list members.
  EXPECT_EQ(move(token_, "team", "d", "m3").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  {
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::ListMembersResponse reply;
    EXPECT_EQ(cluster_->Admin(2)->ListMembers(&context, {}, &reply).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  ASSERT_TRUE(Get(0, "d", &d).ok());
  EXPECT_EQ(d.member(), "m2");
}

TEST_F(ClusterTest, AReadersCreateAndDeleteLeaveNoTraceInTheDirectory) {
  StartCluster();
  std::string reader;
  {
    grpc::ClientContext context;
    Authorize(&context, cluster_->admin_token());
    v1::CreateTokenRequest request;
    request.set_tenant("team");
    request.set_role(v1::ROLE_READER);
    v1::CreateTokenResponse reply;
    ASSERT_TRUE(cluster_->Admin(0)->CreateToken(&context, request, &reply).ok());
    reader = reply.secret();
  }
  ASSERT_TRUE(Create(0, "kept", "m2").ok());
  const std::string writer = token_;
  token_ = reader;
  EXPECT_EQ(Create(0, "fresh", "m3").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  for (int via : {0, 1}) {  // forwarded to m2, and on m2 itself
    auto stub = cluster_->Data(via);
    grpc::ClientContext context;
    Authorize(&context, reader);
    v1::DeleteDatasetRequest request;
    request.set_name("kept");
    v1::DeleteDatasetResponse reply;
    EXPECT_EQ(stub->DeleteDataset(&context, request, &reply).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  token_ = writer;
  // The reader's create reserved nothing; its delete marked nothing.
  EXPECT_TRUE(Create(2, "fresh").ok());
  grpc::Status again = Create(2, "kept");
  EXPECT_EQ(again.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(again.error_message().find("deleted"), std::string::npos) << again.error_message();
}

TEST_F(ClusterTest, ASecondProcessCannotTakeALiveMembersName) {
  StartCluster({"--cluster-lease-seconds=2"});
  const std::string dir = ScratchDir("impostor");
  try {
    ServerProcess::Start(dir,
                         {"--listen=127.0.0.1:" + std::to_string(FreePort()),
                          "--cluster-etcd=http://" + cluster_->etcd().endpoint(), "--member=m1",
                          "--advertise=127.0.0.1:1", "--cluster-lease-seconds=2"});
    ADD_FAILURE() << "a second m1 started";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("member name m1 is held by a live process"),
              std::string::npos)
        << e.what();
  }
  // The real m1 still serves as m1.
  grpc::ClientContext context;
  Authorize(&context, cluster_->admin_token());
  v1::ListMembersResponse members;
  ASSERT_TRUE(cluster_->Admin(1)->ListMembers(&context, {}, &members).ok());
  ASSERT_EQ(members.members_size(), 3);
  EXPECT_EQ(members.members(0).address(), cluster_->address(0));
  EXPECT_TRUE(members.members(0).healthy());
}

TEST_F(ClusterTest, TheCliListsMembersPlacesAndMovesDatasets) {
  StartCluster();
  CommandResult r = RunCli(cluster_->address(1),
                           {"--token", token_, "datasets", "create", "cli", "--member", "m1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("on cluster member m1"), std::string::npos) << r.out;
  r = RunCli(cluster_->address(2), {"--token", token_, "ingest", "cli",
                                    TestDataPath("hh-rlhf-harmless-sample.jsonl.gz")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCli(cluster_->address(0), {"--token", cluster_->admin_token(), "admin", "datasets", "move",
                                    "cli", "--tenant", "team", "--to", "m2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("moved team/cli from m1 to m2: 499 examples"), std::string::npos) << r.out;
  r = RunCli(cluster_->address(2), {"--token", cluster_->admin_token(), "cluster", "members"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int m = 0; m < 3; ++m) {
    EXPECT_NE(r.out.find(cluster_->address(m)), std::string::npos) << r.out;
  }
  EXPECT_EQ(r.out.find("DOWN"), std::string::npos) << r.out;
  r = RunCli(cluster_->address(0), {"--token", token_, "datasets", "get", "cli"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("cli: 499 pairs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("on cluster member m2"), std::string::npos) << r.out;
  // Moving it without the --to is a usage error, not a call.
  r = RunCli(cluster_->address(0), {"--token", cluster_->admin_token(), "admin", "datasets", "move",
                                    "cli", "--tenant", "team"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

TEST(SingleServerTest, ClusterFieldsAndCallsAreRefusedWithoutACluster) {
  auto server = ServerProcess::Start(ScratchDir("single"));
  auto stub = server->Stub();
  grpc::ClientContext context;
  v1::CreateDatasetRequest request;
  *request.mutable_dataset() = MakeDataset("d", v1::DATASET_KIND_PAIRS, 0);
  request.set_member("m1");
  v1::Dataset reply;
  grpc::Status s = stub->CreateDataset(&context, request, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("member:", 0), 0u) << s.error_message();
  auto admin = v1::AdminService::NewStub(
      grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext list_context;
  v1::ListMembersResponse members;
  EXPECT_EQ(admin->ListMembers(&list_context, {}, &members).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace curation::testing
