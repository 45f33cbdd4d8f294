// A tenant's quota over a cluster of two real members on Debian's real etcd (issue 13): usage
// on one member counts against an ingest on the other, and GetTenant on either shows the
// tenant's total over the cluster.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "tests/integration/local_cluster.h"
#include "tests/integration/test_data.h"
#include "tests/support/scratch_dir.h"

namespace curation::testing {
namespace {

// Usage travels by publication (at most once a second) and watch: waits up to 10 s.
bool Eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

class ClusterQuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<LocalCluster>(ScratchDir("cluster-quota"), 2);
    token_ = cluster_->MakeTenant(0, "q");
    pairs_ = HhPairs(64);
  }

  grpc::Status CreateOn(const std::string& name, const std::string& member) {
    grpc::ClientContext context;
    Authorize(&context, token_);
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = MakeDataset(name, v1::DATASET_KIND_PAIRS, 0);
    request.set_member(member);
    v1::Dataset reply;
    return cluster_->Data(0)->CreateDataset(&context, request, &reply);
  }

  // Ingests `count` new pairs into `dataset` through member `via`.
  grpc::Status Ingest(int via, const std::string& dataset, int count) {
    grpc::ClientContext context;
    Authorize(&context, token_);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::IngestExamplesRequest request;
    request.set_dataset(dataset);
    for (int i = 0; i < count; ++i, ++next_) {
      v1::Example* e = request.add_examples();
      *e = pairs_[next_ % pairs_.size()];
      e->set_id("e" + std::to_string(next_));
      e->mutable_pair()->set_prompt(e->pair().prompt() + " #" + std::to_string(next_));
    }
    v1::IngestExamplesResponse reply;
    grpc::Status s = cluster_->Data(via)->IngestExamples(&context, request, &reply);
    if (s.ok() && reply.accepted() != count) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "accepted " + std::to_string(reply.accepted()));
    }
    return s;
  }

  int64_t ExamplesSeenBy(int via) {
    grpc::ClientContext context;
    Authorize(&context, cluster_->admin_token());
    v1::GetTenantRequest request;
    request.set_name("q");
    v1::Tenant reply;
    if (!cluster_->Admin(via)->GetTenant(&context, request, &reply).ok()) return -1;
    return reply.usage().examples();
  }

  std::unique_ptr<LocalCluster> cluster_;
  std::string token_;
  std::vector<v1::Example> pairs_;
  int next_ = 0;
};

TEST_F(ClusterQuotaTest, UsageOnOneMemberCountsAgainstAnIngestOnTheOther) {
  {
    grpc::ClientContext context;
    Authorize(&context, cluster_->admin_token());
    v1::UpdateTenantQuotasRequest request;
    request.set_name("q");
    request.mutable_quotas()->set_max_examples(30);
    v1::Tenant reply;
    // Through the other member than the tenant was made on: quotas travel too.
    ASSERT_TRUE(cluster_->Admin(1)->UpdateTenantQuotas(&context, request, &reply).ok());
  }
  ASSERT_TRUE(CreateOn("a", cluster_->name(0)).ok());
  ASSERT_TRUE(CreateOn("b", cluster_->name(1)).ok());
  grpc::Status s = Ingest(1, "a", 20);  // through m2, stored on m1
  ASSERT_TRUE(s.ok()) << s.error_message();
  // Both members' GetTenant show the cluster's 20 once m1 has published.
  ASSERT_TRUE(Eventually([&] { return ExamplesSeenBy(1) == 20; })) << ExamplesSeenBy(1);
  EXPECT_EQ(ExamplesSeenBy(0), 20);

  // 15 alone would fit in 30 on m2, which holds nothing yet; with m1's 20 they do not.
  s = Ingest(0, "b", 15);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("max_examples"), std::string::npos) << s.error_message();
  s = Ingest(0, "b", 10);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(Eventually([&] { return ExamplesSeenBy(0) == 30 && ExamplesSeenBy(1) == 30; }));
  // Full over the cluster: m1 refuses too.
  EXPECT_EQ(Ingest(1, "a", 1).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

}  // namespace
}  // namespace curation::testing
