// Quota arithmetic of the tenant registry on a real store.
#include "server/tenants.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "tests/support/scratch_dir.h"

namespace curation::server {
namespace {

std::unique_ptr<store::Store> OpenStore(const std::string& name) {
  const std::string dir = testing::ScratchDir("tenants-" + name);
  std::filesystem::remove_all(dir);  // Store::Open creates it
  return *store::Store::Open(dir, {});
}

TEST(TenantRegistryTest, ReservationsCountAgainstTheQuota) {
  auto store = OpenStore("reserve");
  auto registry = *TenantRegistry::Load(store.get(), false);
  v1::Tenant t;
  t.set_name("t");
  t.mutable_quotas()->set_max_examples(100);
  ASSERT_TRUE(registry->Create(t).ok());
  auto state = *registry->Find("t");
  // Two requests in flight at once cannot both take the last 60.
  auto first = registry->AdmitIngest(*state, 60, 1000);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(registry->AdmitIngest(*state, 60, 1000).status()));
  // Duplicates are not stored: only what was written counts once committed.
  registry->CommitIngest(*state, *first, 20, 300);
  EXPECT_EQ(state->View().usage().examples(), 20);
  EXPECT_EQ(state->View().usage().stored_bytes(), 300);
  EXPECT_TRUE(registry->AdmitIngest(*state, 60, 1000).ok());
}

TEST(TenantRegistryTest, DefaultTenantAndUnknownTenants) {
  auto store = OpenStore("default");
  auto registry = *TenantRegistry::Load(store.get(), /*ensure_default=*/true);
  EXPECT_TRUE(registry->Find("default").ok());
  EXPECT_TRUE(absl::IsNotFound(registry->Find("nobody").status()));
  // Quotas persist; usage does not (it is derived from the datasets).
  v1::Quotas q;
  q.set_max_datasets(3);
  ASSERT_TRUE(registry->UpdateQuotas("default", q).ok());
  auto again = *TenantRegistry::Load(store.get(), true);
  EXPECT_EQ((*again->Find("default"))->View().quotas().max_datasets(), 3);
}

TEST(TenantRegistryTest, FewLargeRecordsQueueByBytes) {
  // 3 records are far below the record threshold, but 60 MB of text embed for seconds: the
  // batch must wait its turn on an ingest worker, never run on the caller's (gRPC) thread.
  auto store = OpenStore("bytes");
  auto registry = *TenantRegistry::Load(store.get(), true);
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  registry->RunIngest("default", 3, int64_t{60} << 20,
                      [&] { ran_on = std::this_thread::get_id(); });
  EXPECT_NE(ran_on, caller);
  // A small batch in records and bytes still runs at once on the caller's thread.
  registry->RunIngest("default", 3, 4096, [&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, caller);
}

}  // namespace
}  // namespace curation::server
