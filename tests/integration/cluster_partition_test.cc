// Partitioned datasets (issue 14) on three real members and Debian's real etcd, authentication
// on: placement of the partitions, ingest split by example id with per-record results in the
// caller's numbering, reads and lists merged over the partitions, delete, the limits, a member
// killed under an ingest, and concurrent creates of one name.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "tests/integration/local_cluster.h"
#include "tests/integration/test_data.h"
#include "tests/support/scratch_dir.h"

namespace curation::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kDim = 4;

// A valid pair with distinct content for each `i`; its vectors are client-supplied (kDim), so
// that ingest costs no embedding.
v1::Example Pair(int i, const std::string& id) {
  v1::Example e;
  e.set_id(id);
  e.mutable_pair()->set_prompt("prompt " + std::to_string(i));
  e.mutable_pair()->set_chosen("chosen answer " + std::to_string(i));
  e.mutable_pair()->set_rejected("rejected answer " + std::to_string(i));
  for (int d = 0; d < kDim; ++d) {
    e.mutable_pair()->add_chosen_embedding(static_cast<float>((i * 7 + d) % 13) / 13.0f);
    e.mutable_pair()->add_rejected_embedding(static_cast<float>((i * 5 + d) % 11) / 11.0f);
  }
  return e;
}

class ClusterPartitionTest : public ::testing::Test {
 protected:
  void StartCluster() {
    cluster_ = std::make_unique<LocalCluster>(
        ScratchDir(::testing::UnitTest::GetInstance()->current_test_info()->name()), 3);
    token_ = cluster_->MakeTenant(0, "team");
  }

  grpc::Status Create(int via, const std::string& name, int partitions, v1::Dataset* out = nullptr,
                      const std::string& member = "") {
    grpc::ClientContext context;
    Authorize(&context, token_);
    context.set_deadline(std::chrono::system_clock::now() + seconds(30));
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = MakeDataset(name, v1::DATASET_KIND_PAIRS, kDim);
    request.set_partitions(partitions);
    request.set_member(member);
    v1::Dataset reply;
    grpc::Status s = cluster_->Data(via)->CreateDataset(&context, request, &reply);
    if (out != nullptr) *out = reply;
    return s;
  }

  // `as_partition`: asks the member for its own partition only, as a member spreading a call
  // over the partitions does (the header every forwarded call carries).
  grpc::Status Get(int via, const std::string& name, v1::Dataset* out, bool as_partition = false) {
    grpc::ClientContext context;
    Authorize(&context, token_);
    if (as_partition) context.AddMetadata("x-curation-forwarded-by", "test");
    context.set_deadline(std::chrono::system_clock::now() + seconds(10));
    v1::GetDatasetRequest request;
    request.set_name(name);
    return cluster_->Data(via)->GetDataset(&context, request, out);
  }

  grpc::Status Ingest(int via, const std::string& dataset, const std::vector<v1::Example>& batch,
                      v1::IngestExamplesResponse* reply) {
    grpc::ClientContext context;
    Authorize(&context, token_);
    context.set_deadline(std::chrono::system_clock::now() + seconds(60));
    v1::IngestExamplesRequest request;
    request.set_dataset(dataset);
    for (const v1::Example& e : batch) *request.add_examples() = e;
    return cluster_->Data(via)->IngestExamples(&context, request, reply);
  }

  grpc::Status GetExamples(int via, const std::string& dataset, const std::vector<std::string>& ids,
                           v1::GetExamplesResponse* reply) {
    grpc::ClientContext context;
    Authorize(&context, token_);
    context.set_deadline(std::chrono::system_clock::now() + seconds(30));
    v1::GetExamplesRequest request;
    request.set_dataset(dataset);
    for (const std::string& id : ids) request.add_ids(id);
    return cluster_->Data(via)->GetExamples(&context, request, reply);
  }

  // Every dataset of the tenant as member `via` lists them, `page_size` a page.
  std::vector<v1::Dataset> List(int via, int page_size) {
    std::vector<v1::Dataset> out;
    v1::ListDatasetsRequest request;
    request.set_page_size(page_size);
    do {
      grpc::ClientContext context;
      Authorize(&context, token_);
      v1::ListDatasetsResponse reply;
      grpc::Status s = cluster_->Data(via)->ListDatasets(&context, request, &reply);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) break;
      out.insert(out.end(), reply.datasets().begin(), reply.datasets().end());
      request.set_page_token(reply.next_page_token());
    } while (!request.page_token().empty());
    return out;
  }

  int IndexOf(const std::string& member) const {
    for (int i = 0; i < cluster_->size(); ++i) {
      if (cluster_->name(i) == member) return i;
    }
    ADD_FAILURE() << "no member " << member;
    return 0;
  }

  std::unique_ptr<LocalCluster> cluster_;
  std::string token_;
};

TEST_F(ClusterPartitionTest, IngestReadListAndDeleteSpanThePartitions) {
  StartCluster();
  v1::Dataset created;
  grpc::Status s = Create(1, "big", 3, &created);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(created.partition_members_size(), 3);
  EXPECT_EQ(
      std::set<std::string>(created.partition_members().begin(), created.partition_members().end())
          .size(),
      3u);
  EXPECT_EQ(created.member(), created.partition_members(0));
  ASSERT_TRUE(Create(0, "whole", 0).ok());

  // ~3,000 pairs in batches of 500 through every member in turn. Of each batch: every tenth
  // record has no id (the server names it by its content), every 25th repeats the record
  // before it (a duplicate within the call), every 50th is invalid (a vector of the wrong
  // size), and the first 20 of each batch after the first repeat records of the previous
  // batch (duplicates across calls, on whichever partition holds them).
  std::set<std::string> stored;  // the ids the dataset must hold
  std::vector<v1::Example> previous;
  std::vector<std::string> previous_expect;
  int64_t accepted = 0;
  for (int b = 0; b < 6; ++b) {
    std::vector<v1::Example> batch;
    std::vector<std::string> expect_id;  // "" rejected, "h*" server-named, else the id
    for (int k = 0; k < 500; ++k) {
      const int i = b * 500 + k;
      if (b > 0 && k < 20) {
        batch.push_back(previous[static_cast<size_t>(k) + 100]);
        expect_id.push_back(previous_expect[static_cast<size_t>(k) + 100]);
        continue;
      }
      if (k % 25 == 24) {
        batch.push_back(batch.back());
        expect_id.push_back(expect_id.back());
        continue;
      }
      v1::Example e = Pair(i, k % 10 == 3 ? "" : "p-" + std::to_string(i));
      if (k % 50 == 7) {
        e.mutable_pair()->mutable_chosen_embedding()->RemoveLast();
        expect_id.push_back("");
      } else {
        expect_id.push_back(e.id().empty() ? "h" : e.id());
      }
      batch.push_back(std::move(e));
    }
    v1::IngestExamplesResponse reply;
    s = Ingest(b % 3, "big", batch, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(reply.ids_size(), 500);
    int64_t rejected = 0;
    for (int k = 0; k < 500; ++k) {
      const std::string& want = expect_id[static_cast<size_t>(k)];
      if (want.empty()) {
        ++rejected;
        EXPECT_EQ(reply.ids(k), "") << k;
      } else if (want == "h") {
        EXPECT_EQ(reply.ids(k).size(), 33u) << k;
        EXPECT_EQ(reply.ids(k)[0], 'h') << k;
        stored.insert(reply.ids(k));
      } else {
        EXPECT_EQ(reply.ids(k), want) << k;
        stored.insert(want);
      }
    }
    // One error per rejected record, at its index in this call and naming it there.
    ASSERT_EQ(reply.rejected(), rejected);
    ASSERT_EQ(reply.errors_size(), rejected);
    for (const v1::RecordError& e : reply.errors()) {
      EXPECT_TRUE(expect_id[static_cast<size_t>(e.index())].empty()) << e.index();
      EXPECT_EQ(e.field().rfind("examples[" + std::to_string(e.index()) + "]", 0), 0u) << e.field();
    }
    EXPECT_EQ(reply.accepted() + reply.duplicates() + reply.rejected(), 500);
    EXPECT_GE(reply.duplicates(), b > 0 ? 20 + 19 : 19);
    accepted += reply.accepted();
    EXPECT_EQ(reply.example_count(), accepted);
    previous = batch;
    previous_expect = expect_id;
  }
  EXPECT_EQ(accepted, static_cast<int64_t>(stored.size()));

  // The same batch again: all duplicates or rejections, nothing new.
  {
    v1::IngestExamplesResponse reply;
    ASSERT_TRUE(Ingest(2, "big", previous, &reply).ok());
    EXPECT_EQ(reply.accepted(), 0);
    EXPECT_EQ(reply.example_count(), accepted);
  }

  // Each partition holds some, on its own member, and they add up to the dataset.
  v1::Dataset whole;
  ASSERT_TRUE(Get(2, "big", &whole).ok());
  EXPECT_EQ(whole.example_count(), accepted);
  EXPECT_EQ(whole.member(), created.member());
  ASSERT_EQ(whole.partition_members_size(), 3);
  int64_t sum = 0;
  for (const std::string& member : whole.partition_members()) {
    v1::Dataset part;
    ASSERT_TRUE(Get(IndexOf(member), "big", &part, /*as_partition=*/true).ok());
    EXPECT_GT(part.example_count(), accepted / 6) << member;
    sum += part.example_count();
  }
  EXPECT_EQ(sum, accepted);

  // Reads across the partitions come back in the caller's order.
  std::vector<std::string> ids(stored.begin(), stored.end());
  std::mt19937 rng(7);
  std::shuffle(ids.begin(), ids.end(), rng);
  {
    std::vector<std::string> some(ids.begin(), ids.begin() + 900);
    v1::GetExamplesResponse reply;
    s = GetExamples(1, "big", some, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(reply.examples_size(), 900);
    for (int k = 0; k < 900; ++k) EXPECT_EQ(reply.examples(k).id(), some[static_cast<size_t>(k)]);
  }
  // Every stored example is readable, once.
  std::multiset<std::string> read;
  for (size_t at = 0; at < ids.size(); at += 1000) {
    std::vector<std::string> page(ids.begin() + static_cast<long>(at),
                                  ids.begin() + static_cast<long>(std::min(ids.size(), at + 1000)));
    v1::GetExamplesResponse reply;
    ASSERT_TRUE(GetExamples(0, "big", page, &reply).ok());
    for (const v1::Example& e : reply.examples()) read.insert(e.id());
  }
  EXPECT_EQ(read.size(), stored.size());
  EXPECT_EQ(std::set<std::string>(read.begin(), read.end()), stored);
  // A missing id is named by its index in the caller's request.
  {
    std::vector<std::string> some = {ids[0], ids[1], "absent", ids[2]};
    v1::GetExamplesResponse reply;
    s = GetExamples(0, "big", some, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(s.error_message().rfind("ids[2]", 0), 0u) << s.error_message();
  }

  // Every member lists it once, with the counts summed, page after page.
  for (int via = 0; via < 3; ++via) {
    for (int page_size : {1, 100}) {
      const std::vector<v1::Dataset> listed = List(via, page_size);
      ASSERT_EQ(listed.size(), 2u) << via << " " << page_size;
      EXPECT_EQ(listed[0].name(), "big");
      EXPECT_EQ(listed[0].example_count(), accepted);
      EXPECT_EQ(listed[0].partition_members_size(), 3);
      EXPECT_EQ(listed[0].member(), created.member());
      EXPECT_EQ(listed[1].name(), "whole");
      EXPECT_EQ(listed[1].partition_members_size(), 0);
    }
  }

  // A partitioned dataset does not move.
  {
    grpc::ClientContext context;
    Authorize(&context, cluster_->admin_token());
    v1::MoveDatasetRequest request;
    request.set_tenant("team");
    request.set_dataset("big");
    request.set_to_member(created.partition_members(1));
    v1::MoveDatasetResponse reply;
    s = cluster_->Admin(0)->MoveDataset(&context, request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  }

  // Deleting it deletes every partition.
  {
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::DeleteDatasetRequest request;
    request.set_name("big");
    v1::DeleteDatasetResponse reply;
    s = cluster_->Data(0)->DeleteDataset(&context, request, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(reply.deleted_examples(), accepted);
  }
  v1::Dataset gone;
  EXPECT_EQ(Get(1, "big", &gone).error_code(), grpc::StatusCode::NOT_FOUND);
  for (int m = 0; m < 3; ++m) {
    EXPECT_EQ(Get(m, "big", &gone, /*as_partition=*/true).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(List(2, 10).size(), 1u);
  // The name is free again, partitioned or not.
  EXPECT_TRUE(Create(2, "big", 2).ok());
}

TEST_F(ClusterPartitionTest, PartitionCountsPastEachBoundAreRefused) {
  StartCluster();
  for (int partitions : {65, -1}) {
    grpc::Status s = Create(0, "d", partitions);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << partitions;
    EXPECT_EQ(s.error_message().rfind("partitions", 0), 0u) << s.error_message();
  }
  grpc::Status s = Create(1, "d", 4);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find('4'), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find('3'), std::string::npos) << s.error_message();
  // Partitions would each fit their own projection.
  {
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = MakeDataset("d", v1::DATASET_KIND_PAIRS, 64);
    request.mutable_dataset()->mutable_embedding()->mutable_projection()->set_dim(8);
    request.set_partitions(2);
    v1::Dataset reply;
    s = cluster_->Data(2)->CreateDataset(&context, request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message().rfind("dataset.embedding.projection", 0), 0u) << s.error_message();
  }
  // Nothing was reserved by the refusals.
  EXPECT_TRUE(List(0, 10).empty());
  // `member` holds partition 0.
  v1::Dataset d;
  ASSERT_TRUE(Create(0, "d", 2, &d, "m3").ok());
  ASSERT_EQ(d.partition_members_size(), 2);
  EXPECT_EQ(d.partition_members(0), "m3");
  EXPECT_NE(d.partition_members(1), "m3");

  // A single server takes 0 or 1 only.
  auto single = ServerProcess::Start(MakeTempDir("partition-single"));
  ASSERT_NE(single, nullptr);
  for (int partitions : {2, -1}) {
    grpc::ClientContext context;
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = MakeDataset("d", v1::DATASET_KIND_PAIRS, kDim);
    request.set_partitions(partitions);
    v1::Dataset reply;
    s = single->Stub()->CreateDataset(&context, request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message().rfind("partitions", 0), 0u) << s.error_message();
  }
  grpc::ClientContext context;
  v1::CreateDatasetRequest request;
  *request.mutable_dataset() = MakeDataset("d", v1::DATASET_KIND_PAIRS, kDim);
  request.set_partitions(1);
  v1::Dataset reply;
  EXPECT_TRUE(single->Stub()->CreateDataset(&context, request, &reply).ok());
}

TEST_F(ClusterPartitionTest, ConcurrentCreatesOfOnePartitionedNameMakeOne) {
  StartCluster();
  for (const std::string name : {"a", "b", "c"}) {
    std::vector<grpc::Status> results(3);
    std::vector<std::thread> threads;
    for (int m = 0; m < 3; ++m) {
      threads.emplace_back([&, m] { results[static_cast<size_t>(m)] = Create(m, name, 3); });
    }
    for (auto& t : threads) t.join();
    int ok = 0;
    int exists = 0;
    for (const auto& r : results) {
      ok += r.ok();
      exists += r.error_code() == grpc::StatusCode::ALREADY_EXISTS;
    }
    EXPECT_EQ(ok, 1) << name;
    EXPECT_EQ(exists, 2) << name;
    // Each member holds exactly one partition of it.
    for (int m = 0; m < 3; ++m) {
      v1::Dataset part;
      grpc::Status s = Get(m, name, &part, /*as_partition=*/true);
      EXPECT_TRUE(s.ok()) << name << " on " << m << ": " << s.error_message();
    }
  }
  const std::vector<v1::Dataset> listed = List(1, 100);
  ASSERT_EQ(listed.size(), 3u);
  for (const v1::Dataset& d : listed) EXPECT_EQ(d.partition_members_size(), 3);
}

TEST_F(ClusterPartitionTest, AKilledPartitionFailsTheIngestUntilItIsBackThenARetryCompletes) {
  StartCluster();
  v1::Dataset created;
  ASSERT_TRUE(Create(0, "d", 3, &created).ok());
  // Kill the member of a partition other than the home, and ingest through another one.
  const int down = IndexOf(created.partition_members(2));
  const int via = (down + 1) % 3;
  std::vector<v1::Example> batch;
  for (int i = 0; i < 300; ++i) batch.push_back(Pair(i, i % 2 ? "" : "k-" + std::to_string(i)));
  cluster_->Kill(down);
  v1::IngestExamplesResponse reply;
  grpc::Status s = Ingest(via, "d", batch, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find(cluster_->name(down)), std::string::npos) << s.error_message();

  cluster_->Restart(down);
  for (auto until = std::chrono::steady_clock::now() + seconds(30);
       std::chrono::steady_clock::now() < until;) {
    reply.Clear();
    s = Ingest(via, "d", batch, &reply);
    if (s.ok()) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  ASSERT_TRUE(s.ok()) << s.error_message();
  // What the first try stored on the partitions that were up comes back as duplicates.
  EXPECT_EQ(reply.accepted() + reply.duplicates(), 300);
  EXPECT_EQ(reply.rejected(), 0);
  EXPECT_EQ(reply.example_count(), 300);
  v1::Dataset d;
  ASSERT_TRUE(Get(down, "d", &d).ok());
  EXPECT_EQ(d.example_count(), 300);

  // A delete that misses a partition answers UNAVAILABLE naming its member; the name stays
  // taken, and a retry once the member is back finishes the delete.
  cluster_->Kill(down);
  auto remove = [&] {
    grpc::ClientContext context;
    Authorize(&context, token_);
    context.set_deadline(std::chrono::system_clock::now() + seconds(10));
    v1::DeleteDatasetRequest request;
    request.set_name("d");
    v1::DeleteDatasetResponse ignored;
    return cluster_->Data(via)->DeleteDataset(&context, request, &ignored);
  };
  s = remove();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find(cluster_->name(down)), std::string::npos) << s.error_message();
  EXPECT_EQ(Create(via, "d", 2).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  cluster_->Restart(down);
  for (auto until = std::chrono::steady_clock::now() + seconds(30);
       std::chrono::steady_clock::now() < until;) {
    s = remove();
    if (s.ok()) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  ASSERT_TRUE(s.ok()) << s.error_message();
  for (int m = 0; m < 3; ++m) {
    EXPECT_EQ(Get(m, "d", &d, /*as_partition=*/true).error_code(), grpc::StatusCode::NOT_FOUND)
        << m;
  }
  EXPECT_TRUE(Create(via, "d", 3).ok());
}

TEST_F(ClusterPartitionTest, ACreateThatCannotMakeEveryPartitionLeavesNothing) {
  StartCluster();
  // m3 dies but stays registered until its lease runs out: the create places a partition on
  // it, fails, and undoes the partitions it made on m1 and m2.
  cluster_->Kill(2);
  grpc::Status s = Create(0, "u", 3);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_NE(s.error_message().find("m3"), std::string::npos) << s.error_message();
  v1::Dataset d;
  for (int m = 0; m < 2; ++m) {
    EXPECT_EQ(Get(m, "u", &d, /*as_partition=*/true).error_code(), grpc::StatusCode::NOT_FOUND)
        << m;
  }
  EXPECT_EQ(Get(1, "u", &d).error_code(), grpc::StatusCode::NOT_FOUND);
  // Each try while m3 is still registered fails and undoes itself the same way; once its
  // registration is gone, three partitions no longer fit, and two fit on the members left.
  for (auto until = std::chrono::steady_clock::now() + seconds(20);
       std::chrono::steady_clock::now() < until;) {
    s = Create(0, "u", 3);
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    std::this_thread::sleep_for(milliseconds(250));
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  s = Create(1, "u", 2, &d);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(std::set<std::string>(d.partition_members().begin(), d.partition_members().end()),
            (std::set<std::string>{"m1", "m2"}));
  EXPECT_EQ(d.example_count(), 0);
}

TEST_F(ClusterPartitionTest, AStreamIsSplitLikeABatchAndTheCliShowsThePartitions) {
  StartCluster();
  CommandResult created = RunCli(cluster_->address(1), {"--token", token_, "datasets", "create",
                                                        "s", "--partitions", "3", "--dim", "4"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_NE(created.out.find("3 partitions"), std::string::npos) << created.out;

  // Three messages of 200; stream index 150 and 420 are invalid, and message 2 repeats the
  // first 50 records of message 0 (without ids for the even ones: named by content).
  std::vector<v1::IngestExamplesRequest> messages(3);
  std::vector<v1::Example> all;
  for (int i = 0; i < 600; ++i) {
    v1::Example e = i >= 400 && i < 450 ? all[static_cast<size_t>(i - 400)]
                                        : Pair(i, i % 2 == 0 ? "" : "s-" + std::to_string(i));
    if (i == 150 || i == 420) e.mutable_pair()->clear_chosen();
    all.push_back(e);
    *messages[static_cast<size_t>(i / 200)].add_examples() = e;
  }
  messages[0].set_dataset("s");
  grpc::ClientContext context;
  Authorize(&context, token_);
  context.set_deadline(std::chrono::system_clock::now() + seconds(60));
  v1::IngestExamplesResponse reply;
  auto stream = cluster_->Data(2)->IngestStream(&context, &reply);
  for (const auto& m : messages) ASSERT_TRUE(stream->Write(m));
  ASSERT_TRUE(stream->WritesDone());
  grpc::Status s = stream->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(reply.ids_size(), 0);
  ASSERT_EQ(reply.errors_size(), 2);
  EXPECT_EQ(reply.errors(0).index(), 150);
  EXPECT_EQ(reply.errors(0).field().rfind("examples[150]", 0), 0u) << reply.errors(0).field();
  EXPECT_EQ(reply.errors(1).index(), 420);
  EXPECT_EQ(reply.errors(1).field().rfind("examples[420]", 0), 0u) << reply.errors(1).field();
  EXPECT_EQ(reply.rejected(), 2);
  EXPECT_EQ(reply.duplicates(), 49);  // 420 is the invalid one of the 50
  EXPECT_EQ(reply.accepted(), 549);
  EXPECT_EQ(reply.example_count(), 549);

  CommandResult got = RunCli(cluster_->address(0), {"--token", token_, "datasets", "get", "s"});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_NE(got.out.find("549 pairs"), std::string::npos) << got.out;
  EXPECT_NE(got.out.find("3 partitions"), std::string::npos) << got.out;

  // The CLI's --partitions past the members is the server's refusal.
  CommandResult refused = RunCli(cluster_->address(0), {"--token", token_, "datasets", "create",
                                                        "t", "--partitions", "5", "--dim", "4"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("partitions"), std::string::npos) << refused.err;
}

}  // namespace
}  // namespace curation::testing
