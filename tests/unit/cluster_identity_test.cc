// Tenants, tokens and quotas shared by cluster members through Debian's real etcd (issue 13):
// two members, each an Authenticator and a TenantRegistry over its own EtcdClient and
// EtcdIdentityStore, as two servers would hold them.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "cluster/etcd_identity_store.h"
#include "server/auth.h"
#include "server/identity_sync.h"
#include "server/tenants.h"
#include "tests/support/etcd_process.h"
#include "tests/support/scratch_dir.h"

namespace curation::cluster {
namespace {

using server::Authenticator;
using server::IdentitySync;
using server::TenantRegistry;

// Changes travel by watch: waits up to `limit` for `done`, and says whether it happened.
bool Eventually(const std::function<bool()>& done,
                std::chrono::seconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

// One member's view of the cluster. Members destroy in reverse order: the watches stop
// before what they feed goes.
struct Member {
  std::unique_ptr<EtcdClient> client;
  std::unique_ptr<EtcdIdentityStore> identity;
  std::unique_ptr<Authenticator> auth;
  std::unique_ptr<TenantRegistry> tenants;
  std::unique_ptr<IdentitySync> sync;
};

std::unique_ptr<Member> Join(const std::string& endpoint, const std::string& name,
                             store::Store* seed_from = nullptr) {
  auto m = std::make_unique<Member>();
  EtcdClient::Options options;
  options.call_timeout = std::chrono::milliseconds(1000);
  auto client = EtcdClient::Create({endpoint}, options);
  EXPECT_TRUE(client.ok()) << client.status();
  if (!client.ok()) return nullptr;
  m->client = *std::move(client);
  auto identity = MakeEtcdIdentityStore(m->client.get(), name, seed_from);
  EXPECT_TRUE(identity.ok()) << identity.status();
  if (!identity.ok()) return nullptr;
  m->identity = *std::move(identity);
  m->auth = *Authenticator::Load(m->identity.get(), /*enabled=*/true, "");
  m->tenants = *TenantRegistry::Load(m->identity.get(), /*ensure_default=*/false);
  IdentitySync::Options sync_options;
  sync_options.publish_every = std::chrono::milliseconds(100);
  auto sync = IdentitySync::Start(m->identity.get(), m->auth.get(), m->tenants.get(), sync_options);
  EXPECT_TRUE(sync.ok()) << sync.status();
  if (!sync.ok()) return nullptr;
  m->sync = *std::move(sync);
  m->sync->StartPublishing();
  return m;
}

class ClusterIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = curation::testing::ScratchDir(
        std::string("etcd-") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    etcd_ = curation::testing::EtcdProcess::Start(dir);
    ASSERT_NE(etcd_, nullptr) << "etcd did not start";
    one_ = Join(etcd_->endpoint(), "one");
    two_ = Join(etcd_->endpoint(), "two");
    ASSERT_NE(one_, nullptr);
    ASSERT_NE(two_, nullptr);
  }
  void TearDown() override {
    two_.reset();
    one_.reset();
  }

  static v1::Tenant MakeTenant(const std::string& name, int64_t max_examples = 0) {
    v1::Tenant t;
    t.set_name(name);
    t.mutable_quotas()->set_max_examples(max_examples);
    return t;
  }
  static std::string NewToken(Member& m, const std::string& tenant) {
    v1::CreateTokenRequest request;
    request.set_tenant(tenant);
    request.set_role(v1::ROLE_WRITER);
    auto created = m.auth->CreateToken(request);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? "Bearer " + created->secret() : "";
  }

  std::unique_ptr<curation::testing::EtcdProcess> etcd_;
  std::unique_ptr<Member> one_;
  std::unique_ptr<Member> two_;
};

TEST_F(ClusterIdentityTest, TokenCreatedOnOneMemberWorksOnTheOther) {
  ASSERT_TRUE(one_->tenants->Create(MakeTenant("acme")).ok());
  const std::string token = NewToken(*one_, "acme");
  EXPECT_TRUE(one_->auth->Resolve(token).ok());
  ASSERT_TRUE(Eventually([&] { return two_->auth->Resolve(token).ok(); }));
  auto caller = two_->auth->Resolve(token);
  EXPECT_EQ(caller->tenant, "acme");
  EXPECT_EQ(caller->role, v1::ROLE_WRITER);
  EXPECT_TRUE(two_->tenants->Find("acme").ok());
  EXPECT_TRUE(absl::IsUnauthenticated(two_->auth->Resolve(token + "x").status()));
  // Readable with etcdctl: the proto's JSON with its field names.
  auto stored = one_->client->Get("/curation/tenants/acme");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_NE((*stored)->value.find("\"name\":\"acme\""), std::string::npos) << (*stored)->value;
}

TEST_F(ClusterIdentityTest, RevocationOnOneMemberTakesEffectOnTheOther) {
  ASSERT_TRUE(one_->tenants->Create(MakeTenant("acme")).ok());
  const std::string token = NewToken(*one_, "acme");
  const std::string id = one_->auth->Resolve(token)->token_id;
  ASSERT_TRUE(Eventually([&] { return two_->auth->Resolve(token).ok(); }));
  auto revoked = two_->auth->RevokeToken(id);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_TRUE(revoked->revoked());
  EXPECT_TRUE(absl::IsUnauthenticated(two_->auth->Resolve(token).status()));
  EXPECT_TRUE(
      Eventually([&] { return absl::IsUnauthenticated(one_->auth->Resolve(token).status()); }));
  // And it stays revoked: both list it so.
  for (Member* m : {one_.get(), two_.get()}) {
    auto tokens = m->auth->ListTokens("acme");
    ASSERT_EQ(tokens.size(), 1u);
    EXPECT_TRUE(tokens[0].revoked());
  }
}

TEST_F(ClusterIdentityTest, OneOfTwoConcurrentCreationsOfANameWins) {
  for (int round = 0; round < 5; ++round) {
    const std::string name = "race" + std::to_string(round);
    absl::Status first, second;
    std::thread a([&] { first = one_->tenants->Create(MakeTenant(name, 10)).status(); });
    std::thread b([&] { second = two_->tenants->Create(MakeTenant(name, 20)).status(); });
    a.join();
    b.join();
    EXPECT_NE(first.ok(), second.ok()) << first << " / " << second;
    const absl::Status& loser = first.ok() ? second : first;
    EXPECT_TRUE(absl::IsAlreadyExists(loser)) << loser;
    // Both members end with the winner's quotas.
    const int64_t winner = first.ok() ? 10 : 20;
    for (Member* m : {one_.get(), two_.get()}) {
      EXPECT_TRUE(Eventually([&] {
        auto t = m->tenants->Find(name);
        return t.ok() && (*t)->View().quotas().max_examples() == winner;
      })) << name;
    }
  }
}

TEST_F(ClusterIdentityTest, QuotaUpdateOnOneMemberReachesTheOther) {
  ASSERT_TRUE(one_->tenants->Create(MakeTenant("acme", 100)).ok());
  ASSERT_TRUE(Eventually([&] { return two_->tenants->Find("acme").ok(); }));
  v1::Quotas q;
  q.set_max_examples(7);
  ASSERT_TRUE(two_->tenants->UpdateQuotas("acme", q).ok());
  EXPECT_TRUE(Eventually(
      [&] { return (*one_->tenants->Find("acme"))->View().quotas().max_examples() == 7; }));
  auto state = *one_->tenants->Find("acme");
  EXPECT_TRUE(absl::IsResourceExhausted(one_->tenants->AdmitIngest(*state, 8, 10).status()));
}

TEST_F(ClusterIdentityTest, QuotaCountsTheClusterTotal) {
  v1::Tenant t = MakeTenant("acme", 100);
  t.mutable_quotas()->set_max_datasets(2);
  t.mutable_quotas()->set_max_stored_bytes(10'000);
  ASSERT_TRUE(one_->tenants->Create(t).ok());
  ASSERT_TRUE(Eventually([&] { return two_->tenants->Find("acme").ok(); }));
  auto on_one = *one_->tenants->Find("acme");
  auto on_two = *two_->tenants->Find("acme");

  ASSERT_TRUE(one_->tenants->AdmitDataset(*on_one).ok());
  auto r = one_->tenants->AdmitIngest(*on_one, 60, 6000);
  ASSERT_TRUE(r.ok()) << r.status();
  one_->tenants->CommitIngest(*on_one, *r, 60, 6000);
  ASSERT_TRUE(Eventually([&] { return on_two->ClusterView().usage().examples() == 60; }));
  EXPECT_EQ(on_two->View().usage().examples(), 0);  // nothing of it is on two

  // 50 alone would fit on two; with one's 60 it does not.
  auto refused = two_->tenants->AdmitIngest(*on_two, 50, 100);
  EXPECT_TRUE(absl::IsResourceExhausted(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("60 on other members"), std::string::npos)
      << refused.status();
  auto fits = two_->tenants->AdmitIngest(*on_two, 40, 100);
  ASSERT_TRUE(fits.ok()) << fits.status();
  two_->tenants->CommitIngest(*on_two, *fits, 40, 100);
  // Bytes: 6000 on one, 100 on two; 4000 more would pass 10,000.
  EXPECT_TRUE(absl::IsResourceExhausted(two_->tenants->AddStoredBytes(*on_two, 4000, true)));
  EXPECT_TRUE(two_->tenants->AddStoredBytes(*on_two, 3000, true).ok());
  // Datasets: one on one, so two may create one more, not two.
  ASSERT_TRUE(two_->tenants->AdmitDataset(*on_two).ok());
  ASSERT_TRUE(Eventually([&] { return on_one->ClusterView().usage().datasets() == 2; }));
  EXPECT_TRUE(absl::IsResourceExhausted(one_->tenants->AdmitDataset(*on_one)));

  // GetTenant's figure is the cluster's total on both; a member's own key never counts twice.
  for (Member* m : {one_.get(), two_.get()}) {
    EXPECT_TRUE(Eventually([&] {
      v1::Tenant view = (*m->tenants->Find("acme"))->ClusterView();
      return view.usage().examples() == 100 && view.usage().stored_bytes() == 9100 &&
             view.usage().datasets() == 2;
    })) << (*m->tenants->Find("acme"))->ClusterView().DebugString();
  }

  // Usage that goes (a dataset deleted on one) frees room on two.
  one_->tenants->ReleaseDataset(*on_one, 60, 6000);
  EXPECT_TRUE(Eventually([&] { return on_two->ClusterView().usage().examples() == 40; }));
  EXPECT_TRUE(two_->tenants->AdmitIngest(*on_two, 60, 100).ok());
}

TEST_F(ClusterIdentityTest, EtcdDownAuthenticationWorksAdminWritesAreUnavailable) {
  ASSERT_TRUE(one_->tenants->Create(MakeTenant("acme")).ok());
  const std::string token = NewToken(*one_, "acme");
  const std::string id = one_->auth->Resolve(token)->token_id;
  ASSERT_TRUE(Eventually([&] { return two_->auth->Resolve(token).ok(); }));

  etcd_->Stop();
  EXPECT_TRUE(one_->auth->Resolve(token).ok());
  EXPECT_TRUE(two_->auth->Resolve(token).ok());
  v1::CreateTokenRequest request;
  request.set_tenant("acme");
  request.set_role(v1::ROLE_READER);
  auto created = two_->auth->CreateToken(request);
  EXPECT_TRUE(absl::IsUnavailable(created.status())) << created.status();
  EXPECT_NE(created.status().message().find("etcd"), std::string::npos) << created.status();
  auto tenant = one_->tenants->Create(MakeTenant("other"));
  EXPECT_TRUE(absl::IsUnavailable(tenant.status())) << tenant.status();
  EXPECT_NE(tenant.status().message().find("etcd"), std::string::npos) << tenant.status();
  // A revocation that could not be stored changes nothing.
  EXPECT_TRUE(absl::IsUnavailable(two_->auth->RevokeToken(id).status()));
  EXPECT_TRUE(two_->auth->Resolve(token).ok());
  EXPECT_TRUE(absl::IsUnavailable(
      two_->tenants->UpdateQuotas("acme", MakeTenant("acme", 5).quotas()).status()));
  EXPECT_EQ((*two_->tenants->Find("acme"))->View().quotas().max_examples(), 0);

  // Back up: once the clients have reconnected (their channels' business, hence the longer
  // wait), the watches resume and changes travel again.
  ASSERT_TRUE(etcd_->Restart());
  absl::Status last;
  ASSERT_TRUE(Eventually(
      [&] {
        last = two_->auth->RevokeToken(id).status();
        return last.ok();
      },
      std::chrono::seconds(30)))
      << last;
  EXPECT_TRUE(
      Eventually([&] { return absl::IsUnauthenticated(one_->auth->Resolve(token).status()); },
                 std::chrono::seconds(30)));
}

TEST(ClusterIdentitySeedTest, ASingleServersTenantsAndTokensSeedAnEmptyCluster) {
  const std::string base = curation::testing::ScratchDir("cluster-seed");
  auto etcd = curation::testing::EtcdProcess::Start(base + "/etcd");
  ASSERT_NE(etcd, nullptr);
  // A single server's RocksDB with a tenant and a token, as it stood before joining.
  std::filesystem::remove_all(base + "/db");
  auto db = *store::Store::Open(base + "/db", {});
  std::string token;
  {
    auto tenants = *TenantRegistry::Load(db.get(), false);
    auto auth = *Authenticator::Load(db.get(), true, "");
    v1::Tenant t;
    t.set_name("old");
    t.mutable_quotas()->set_max_examples(42);
    ASSERT_TRUE(tenants->Create(t).ok());
    v1::CreateTokenRequest request;
    request.set_tenant("old");
    request.set_role(v1::ROLE_READER);
    token = "Bearer " + auth->CreateToken(request)->secret();
  }
  auto one = Join(etcd->endpoint(), "one", db.get());
  auto two = Join(etcd->endpoint(), "two");
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  EXPECT_TRUE(two->auth->Resolve(token).ok());
  EXPECT_EQ((*two->tenants->Find("old"))->View().quotas().max_examples(), 42);

  // A cluster that has tenants is never seeded again, and nothing is overwritten.
  v1::Quotas q;
  q.set_max_examples(7);
  ASSERT_TRUE(two->tenants->UpdateQuotas("old", q).ok());
  auto other_db = *store::Store::Open(base + "/db2", {});
  {
    auto tenants = *TenantRegistry::Load(other_db.get(), false);
    v1::Tenant t;
    t.set_name("stranger");
    ASSERT_TRUE(tenants->Create(t).ok());
  }
  auto client = *EtcdClient::Create({etcd->endpoint()});
  auto three = MakeEtcdIdentityStore(client.get(), "three", other_db.get());
  ASSERT_TRUE(three.ok()) << three.status();
  auto again = (*three)->SeedFrom(db.get());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, 0);
  auto listed = *(*three)->ListTenants();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].name(), "old");
  EXPECT_EQ(listed[0].quotas().max_examples(), 7);
}

TEST(ClusterIdentityLimitsTest, MemberNamesAreChecked) {
  // No etcd needed: the name is checked before anything is sent.
  auto client = *EtcdClient::Create({"127.0.0.1:1"});
  for (const std::string& bad : {std::string(), std::string(129, 'm'), std::string("a/b")}) {
    auto identity = MakeEtcdIdentityStore(client.get(), bad, nullptr);
    EXPECT_TRUE(absl::IsInvalidArgument(identity.status())) << bad;
    EXPECT_NE(identity.status().message().find("member"), std::string::npos);
  }
  EXPECT_TRUE(MakeEtcdIdentityStore(client.get(), std::string(128, 'm'), nullptr).ok());
}

}  // namespace
}  // namespace curation::cluster
