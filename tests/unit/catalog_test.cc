// The catalog on real RocksDB stores: the commit of a selection (numbering, counters, the
// tenant's storage, the operation written with it, refusals that change nothing), and moving
// a dataset between two stores (freeze, export, import, adopt, end).
#include "server/catalog.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/status.h"
#include "jobs/operations.h"
#include "server/ingestor.h"
#include "server/job_runner.h"
#include "server/selection_ids.h"
#include "server/telemetry.h"
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

// One server's durable state and catalog, for moves between two of them.
struct Side {
  explicit Side(const std::string& name) {
    const std::string dir = testing::ScratchDir("catalog-move-" + name);
    std::filesystem::remove_all(dir);
    store = *store::Store::Open(dir, {});
    tenants = *TenantRegistry::Load(store.get(), /*ensure_default=*/false);
    v1::Tenant t;
    t.set_name("t");
    EXPECT_TRUE(tenants->Create(t).ok());
    catalog = *Catalog::Load(store.get(), tenants.get());
  }
  v1::TenantUsage Usage() { return (*tenants->Find("t"))->View().usage(); }

  std::unique_ptr<store::Store> store;
  std::unique_ptr<TenantRegistry> tenants;
  std::unique_ptr<Catalog> catalog;
};

class MoveTest : public ::testing::Test {
 protected:
  static constexpr int kPairs = 8;

  void SetUp() override {
    SetSelectionIdKey("0123456789abcdef-catalog-test");
    // A projected dataset that keeps the client's vectors: rows in every column family.
    storage::DatasetRecord record;
    record.set_tenant("t");
    record.mutable_dataset()->set_name("d");
    record.mutable_dataset()->set_kind(v1::DATASET_KIND_PAIRS);
    v1::EmbeddingConfig* embedding = record.mutable_dataset()->mutable_embedding();
    embedding->set_source(v1::EmbeddingConfig::SOURCE_CLIENT);
    embedding->set_dim(4);
    embedding->mutable_projection()->set_dim(2);
    embedding->mutable_projection()->set_keep_original(true);
    ASSERT_TRUE((*source_.tenants->Find("t"))->View().name() == "t");
    ASSERT_TRUE(source_.tenants->AdmitDataset(**source_.tenants->Find("t")).ok());
    dataset_ = *source_.catalog->Create(record);
    ASSERT_TRUE(Ingest(0, kPairs).ok());
    // A stored selection and its done operation; the operation's bytes counted into the
    // tenant's storage as jobs::Operations does.
    op_ = Operation('a');
    v1::Selection selection;
    selection.set_dataset("d");
    for (int i = 0; i < 3; ++i) selection.add_items()->set_example_id("e" + std::to_string(i));
    ASSERT_TRUE(
        CommitSelection(*dataset_, selection, *source_.store, *source_.tenants, &op_,
                        [](storage::OperationRecord* r) { r->mutable_operation()->set_done(true); })
            .ok());
    ASSERT_TRUE(
        source_.tenants->AddStoredBytes("t", static_cast<int64_t>(op_.ByteSizeLong()), false).ok());
  }

  storage::OperationRecord Operation(char id) {
    storage::OperationRecord op;
    op.set_tenant("t");
    op.mutable_operation()->set_name("operations/" + std::string(32, id));
    op.set_dataset_internal_id(dataset_->Snapshot().internal_id());
    return op;
  }

  // Ingests pairs first..first+count-1 into the source's "d" (client vectors).
  absl::Status Ingest(int first, int count) {
    google::protobuf::RepeatedPtrField<v1::Example> examples;
    for (int i = first; i < first + count; ++i) {
      v1::Example* e = examples.Add();
      e->set_id("e" + std::to_string(i));
      e->mutable_pair()->set_prompt("prompt " + std::to_string(i));
      e->mutable_pair()->set_chosen("yes");
      e->mutable_pair()->set_rejected("no");
      for (int j = 0; j < 4; ++j) {
        e->mutable_pair()->add_chosen_embedding(static_cast<float>((i * 7 + j * 3) % 11));
        e->mutable_pair()->add_rejected_embedding(static_cast<float>((i * 5 + j * 2) % 13));
      }
    }
    Ingestor ingestor(source_.store.get(), nullptr, Limits{});
    v1::IngestExamplesResponse summary;
    absl::StatusOr<int64_t> grown = ingestor.IngestBatch(*dataset_, examples, 0, false, &summary);
    if (!grown.ok()) return grown.status();
    if (summary.rejected() != 0) return absl::InternalError(summary.DebugString());
    source_.tenants->CommitIngest(**source_.tenants->Find("t"), {}, summary.accepted(), *grown);
    return absl::OkStatus();
  }

  // The source's export of `record`, imported at the destination.
  absl::StatusOr<store::Store::Imported> Copy(const storage::DatasetRecord& record) {
    std::vector<storage::DatasetRows> chunks;
    RETURN_IF_ERROR(source_.store->ExportDataset(record, 256, [&](storage::DatasetRows rows) {
      chunks.push_back(std::move(rows));
      return absl::OkStatus();
    }));
    size_t next = 0;
    return dest_.store->ImportDataset([&]() -> absl::StatusOr<std::optional<storage::DatasetRows>> {
      if (next == chunks.size()) return std::nullopt;
      return chunks[next++];
    });
  }

  static int64_t NoJobs(uint64_t) { return 0; }

  Side source_{"source"};
  Side dest_{"dest"};
  std::shared_ptr<DatasetState> dataset_;
  storage::OperationRecord op_;
};

TEST_F(MoveTest, TheDestinationAdoptsTheDatasetWithItsIndexSelectionsAndOperations) {
  const v1::TenantUsage before = source_.Usage();
  ASSERT_EQ(before.examples(), kPairs);
  ASSERT_EQ(before.datasets(), 1);
  auto frozen = source_.catalog->BeginMove("t", "d", NoJobs);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  auto imported = Copy(*frozen);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->operations, 1);
  auto adopted = dest_.catalog->Adopt(imported->record, imported->operation_bytes);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_TRUE(absl::IsAlreadyExists(dest_.catalog->Adopt(imported->record).status()));

  // The same record, index and projection as the source's.
  const storage::DatasetRecord record = (*adopted)->Snapshot();
  EXPECT_EQ(record.SerializeAsString(), dataset_->Snapshot().SerializeAsString());
  EXPECT_EQ((*adopted)->index->examples(), kPairs);
  EXPECT_EQ((*adopted)->index->vectors(), dataset_->index->vectors());
  EXPECT_EQ((*adopted)->index->dim(), 2);
  ASSERT_NE((*adopted)->projection, nullptr);
  EXPECT_EQ((*adopted)->projection->Serialize(), dataset_->projection->Serialize());
  EXPECT_EQ(dest_.catalog->Find("t", "d"), *adopted);
  for (int64_t seq : {0, kPairs - 1}) {
    EXPECT_EQ(*ReadVectors(*dest_.store, record, seq, true),
              *ReadVectors(*source_.store, dataset_->Snapshot(), seq, true));
  }
  // The tenant's usage at the destination is the source's, the operation's bytes included.
  const v1::TenantUsage usage = dest_.Usage();
  EXPECT_EQ(usage.examples(), before.examples());
  EXPECT_EQ(usage.datasets(), 1);
  EXPECT_EQ(usage.stored_bytes(), before.stored_bytes());

  // The done operation reads through jobs::Operations with its selection's items.
  jobs::Scheduler scheduler({}, [](const std::string&) { return jobs::TenantPolicy{}; });
  Metrics metrics(dest_.store.get(), dest_.tenants.get());
  ServiceJobRunner runner(dest_.store.get(), dest_.tenants.get(), &metrics);
  runner.SetCatalog(dest_.catalog.get());
  {
    jobs::Operations operations(dest_.store.get(), &scheduler, &runner, {});
    auto op = operations.Get("t", op_.operation().name());
    ASSERT_TRUE(op.ok()) << op.status();
    EXPECT_TRUE(op->done());
    EXPECT_EQ(op->selection().id(), op_.operation().selection().id());
    EXPECT_EQ(op->selection().items_size(), 3);
    EXPECT_EQ(operations.CountLive("t", record.internal_id()), 0);
  }

  // The source lets go: dataset, operations and usage.
  ASSERT_TRUE(source_.catalog->EndMove("t", "d", /*moved=*/true).ok());
  EXPECT_EQ(source_.catalog->Find("t", "d"), nullptr);
  EXPECT_TRUE(absl::IsNotFound(source_.store->GetDataset("t", "d").status()));
  EXPECT_TRUE(absl::IsNotFound(source_.store->GetOperation("t", std::string(32, 'a')).status()));
  const v1::TenantUsage after = source_.Usage();
  EXPECT_EQ(after.examples(), 0);
  EXPECT_EQ(after.datasets(), 0);
  EXPECT_EQ(after.stored_bytes(), 0);
  EXPECT_TRUE(absl::IsNotFound(source_.catalog->EndMove("t", "d", true)));
}

TEST_F(MoveTest, AMovingDatasetRefusesEveryWriteAndChangesNothingUntilTheMoveEnds) {
  // Not while jobs are queued or running on it; the count is named.
  auto busy = source_.catalog->BeginMove("t", "d", [](uint64_t) { return int64_t{2}; });
  EXPECT_TRUE(absl::IsFailedPrecondition(busy.status())) << busy.status();
  EXPECT_NE(busy.status().message().find("2 queued or running"), std::string::npos);
  EXPECT_FALSE(dataset_->moving.load());
  EXPECT_TRUE(absl::IsFailedPrecondition(source_.catalog->EndMove("t", "d", false)));

  uint64_t asked_about = 0;
  auto frozen = source_.catalog->BeginMove("t", "d", [&](uint64_t id) {
    asked_about = id;
    return int64_t{0};
  });
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  EXPECT_EQ(asked_about, frozen->internal_id());
  EXPECT_TRUE(absl::IsFailedPrecondition(source_.catalog->BeginMove("t", "d", NoJobs).status()));
  const std::string frozen_bytes = frozen->SerializeAsString();
  const v1::TenantUsage usage = source_.Usage();
  auto unavailable = [](const absl::Status& s) {
    return absl::IsUnavailable(s) && s.message() == "dataset d is being moved; retry shortly";
  };

  // An ingest batch (a stream's batches take the same path).
  absl::Status s = Ingest(kPairs, 2);
  EXPECT_TRUE(unavailable(s)) << s;
  // A selection's commit.
  storage::OperationRecord op = Operation('b');
  bool succeeded = false;
  s = CommitSelection(*dataset_, v1::Selection(), *source_.store, *source_.tenants, &op,
                      [&](storage::OperationRecord*) { succeeded = true; });
  EXPECT_TRUE(unavailable(s)) << s;
  EXPECT_FALSE(succeeded);
  // A delete.
  s = source_.catalog->Delete("t", "d").status();
  EXPECT_TRUE(unavailable(s)) << s;
  // A job's submission (the runner's Prepare), and its run.
  Metrics metrics(source_.store.get(), source_.tenants.get());
  ServiceJobRunner runner(source_.store.get(), source_.tenants.get(), &metrics);
  runner.SetCatalog(source_.catalog.get());
  storage::OperationRecord job;
  job.set_tenant("t");
  job.mutable_select()->set_dataset("d");
  job.mutable_select()->mutable_budget()->set_count(2);
  job.mutable_select()->set_method(v1::SELECTION_METHOD_RANDOM);
  s = runner.Prepare(&job).status();
  EXPECT_TRUE(unavailable(s)) << s;

  // Nothing changed, and reads go on.
  EXPECT_EQ(dataset_->Snapshot().SerializeAsString(), frozen_bytes);
  EXPECT_EQ(source_.store->GetDataset("t", "d")->SerializeAsString(), frozen_bytes);
  EXPECT_EQ(dataset_->index->examples(), kPairs);
  EXPECT_TRUE(absl::IsNotFound(source_.store->GetExample(frozen->internal_id(), kPairs).status()));
  EXPECT_TRUE(absl::IsNotFound(source_.store->GetSelection(frozen->internal_id(), 1).status()));
  EXPECT_TRUE(absl::IsNotFound(source_.store->GetOperation("t", std::string(32, 'b')).status()));
  EXPECT_EQ(source_.Usage().SerializeAsString(), usage.SerializeAsString());
  EXPECT_EQ(source_.catalog->Find("t", "d"), dataset_);
  EXPECT_TRUE(ReadVectors(*source_.store, *frozen, 0, true).ok());

  // The move failed: writes are taken again.
  ASSERT_TRUE(source_.catalog->EndMove("t", "d", /*moved=*/false).ok());
  EXPECT_FALSE(dataset_->moving.load());
  EXPECT_TRUE(absl::IsFailedPrecondition(source_.catalog->EndMove("t", "d", false)));
  ASSERT_TRUE(Ingest(kPairs, 2).ok());
  EXPECT_EQ(dataset_->index->examples(), kPairs + 2);
  EXPECT_TRUE(runner.Prepare(&job).ok());
  ASSERT_TRUE(CommitSelection(*dataset_, v1::Selection(), *source_.store, *source_.tenants, &op,
                              [&](storage::OperationRecord*) { succeeded = true; })
                  .ok());
  EXPECT_TRUE(succeeded);
  EXPECT_TRUE(source_.catalog->Delete("t", "d").ok());
}

TEST_F(MoveTest, AdoptRefusesADatasetTheStoreDoesNotHold) {
  storage::DatasetRecord absent = dataset_->Snapshot();
  EXPECT_TRUE(absl::IsNotFound(dest_.catalog->Adopt(absent).status()));
  // A record of that name but another internal id.
  auto frozen = source_.catalog->BeginMove("t", "d", NoJobs);
  ASSERT_TRUE(Copy(*frozen).ok());
  absent.set_internal_id(absent.internal_id() + 1);
  EXPECT_TRUE(absl::IsNotFound(dest_.catalog->Adopt(absent).status()));
  EXPECT_EQ(dest_.catalog->Find("t", "d"), nullptr);
  EXPECT_EQ(dest_.Usage().datasets(), 0);
}

}  // namespace
}  // namespace curation::server
