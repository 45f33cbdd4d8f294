// The catalog's commit of a selection, on a real RocksDB store: numbering, counters, the
// tenant's storage, the operation written with it, and refusals that change nothing.
#include "server/catalog.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "server/selection_ids.h"
#include "tests/support/scratch_dir.h"

namespace curation::server {
namespace {

class CommitSelectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::ScratchDir("catalog-commit");
    std::filesystem::remove_all(dir);
    store_ = *store::Store::Open(dir, {});
    SetSelectionIdKey("0123456789abcdef-catalog-test");
    tenants_ = *TenantRegistry::Load(store_.get(), /*ensure_default=*/false);
    v1::Tenant t;
    t.set_name("t");
    ASSERT_TRUE(tenants_->Create(t).ok());
    storage::DatasetRecord record;
    record.set_tenant("t");
    record.mutable_dataset()->set_name("d");
    record.mutable_dataset()->set_kind(v1::DATASET_KIND_PAIRS);
    catalog_ = *Catalog::Load(store_.get(), tenants_.get());
    dataset_ = *catalog_->Create(record);
  }

  static v1::Selection MadeSelection(int items) {
    v1::Selection s;
    s.set_dataset("d");
    s.set_method(v1::SELECTION_METHOD_RANDOM);
    for (int i = 0; i < items; ++i) s.add_items()->set_example_id("e" + std::to_string(i));
    s.mutable_summary()->set_selected_count(items);
    return s;
  }

  static storage::OperationRecord Operation(const std::string& id) {
    storage::OperationRecord op;
    op.set_tenant("t");
    op.mutable_operation()->set_name("operations/" + id);
    return op;
  }

  int64_t TenantBytes() { return (*tenants_->Find("t"))->View().usage().stored_bytes(); }

  std::unique_ptr<store::Store> store_;
  std::unique_ptr<TenantRegistry> tenants_;
  std::unique_ptr<Catalog> catalog_;
  std::shared_ptr<DatasetState> dataset_;
};

TEST_F(CommitSelectionTest, NumbersCountsAndWritesTheOperationWithIt) {
  const auto done = [](storage::OperationRecord* r) { r->mutable_operation()->set_done(true); };
  const int64_t before = TenantBytes();
  storage::OperationRecord op = Operation(std::string(32, 'a'));
  ASSERT_TRUE(CommitSelection(*dataset_, MadeSelection(5), *store_, *tenants_, &op, done).ok());
  storage::OperationRecord op2 = Operation(std::string(32, 'b'));
  ASSERT_TRUE(CommitSelection(*dataset_, MadeSelection(3), *store_, *tenants_, &op2, done).ok());

  const storage::DatasetRecord record = dataset_->Snapshot();
  EXPECT_EQ(record.next_selection_seq(), 2);
  EXPECT_EQ(record.dataset().selection_count(), 2);
  EXPECT_EQ(op2.selection_seq(), 1);
  // The operation holds the selection without its items, and is stored done.
  EXPECT_TRUE(op2.operation().done());
  EXPECT_EQ(op2.operation().selection().items_size(), 0);
  auto stored_op = store_->GetOperation("t", std::string(32, 'b'));
  ASSERT_TRUE(stored_op.ok());
  EXPECT_TRUE(stored_op->operation().done());
  EXPECT_EQ(stored_op->operation().selection().id(), op2.operation().selection().id());
  // The selection is stored under its seq with its items and an id that verifies.
  auto stored = store_->GetSelection(record.internal_id(), 1);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->items_size(), 3);
  auto parsed = ParseSelectionId(stored->id());
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->seq, 1);
  // Its bytes are the dataset's and the tenant's.
  const int64_t added = record.dataset().stored_bytes();
  EXPECT_GT(added, 0);
  EXPECT_EQ(TenantBytes() - before, added);
  // The dataset's record in the store has the same counters.
  auto on_disk = store_->GetDataset("t", "d");
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(on_disk->next_selection_seq(), 2);
  EXPECT_EQ(on_disk->dataset().stored_bytes(), added);
}

TEST_F(CommitSelectionTest, OverTheStorageQuotaOrOnADeletedDatasetNothingChanges) {
  v1::Quotas quotas;
  quotas.set_max_stored_bytes(TenantBytes() + 100);
  ASSERT_TRUE(tenants_->UpdateQuotas("t", quotas).ok());
  bool succeeded = false;
  const auto done = [&](storage::OperationRecord*) { succeeded = true; };
  storage::OperationRecord op = Operation(std::string(32, 'c'));
  absl::Status s = CommitSelection(*dataset_, MadeSelection(1000), *store_, *tenants_, &op, done);
  ASSERT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_NE(s.message().find("max_stored_bytes"), std::string::npos);
  EXPECT_FALSE(succeeded);
  EXPECT_EQ(dataset_->Snapshot().next_selection_seq(), 0);
  EXPECT_TRUE(
      absl::IsNotFound(store_->GetSelection(dataset_->Snapshot().internal_id(), 0).status()));
  EXPECT_TRUE(absl::IsNotFound(store_->GetOperation("t", std::string(32, 'c')).status()));

  ASSERT_TRUE(catalog_->Delete("t", "d").ok());
  s = CommitSelection(*dataset_, MadeSelection(1), *store_, *tenants_, &op, done);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_FALSE(succeeded);
}

}  // namespace
}  // namespace curation::server
