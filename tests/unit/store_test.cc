// The RocksDB store on a real database directory: records round-trip, batches are atomic,
// deletes leave nothing behind, and everything survives reopening.
#include "store/store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <tuple>

#include "tests/support/scratch_dir.h"

namespace curation::store {
namespace {

// Store::Open creates the directory itself, so hand it a path that does not exist yet.
std::string TempDir(const std::string& name) {
  const std::string dir = testing::ScratchDir("store-" + name);
  std::filesystem::remove_all(dir);
  return dir;
}

storage::DatasetRecord NewDataset(const std::string& name, const std::string& tenant = "t") {
  storage::DatasetRecord r;
  r.set_tenant(tenant);
  r.mutable_dataset()->set_name(name);
  r.mutable_dataset()->set_kind(v1::DATASET_KIND_PAIRS);
  r.mutable_dataset()->mutable_embedding()->set_dim(2);
  return r;
}

ExampleWrite Write(int64_t seq, const std::string& id, float x) {
  ExampleWrite w;
  w.seq = seq;
  w.record.mutable_example()->set_id(id);
  w.record.mutable_example()->mutable_pair()->set_prompt("p" + id);
  w.record.set_content_hash("hash-" + id);
  const float v[4] = {x, x + 1, x + 2, x + 3};
  w.vectors.assign(reinterpret_cast<const char*>(v), sizeof v);
  return w;
}

TEST(StoreTest, DatasetsExamplesAndSelectionsRoundTrip) {
  const std::string dir = TempDir("roundtrip");
  {
    auto store = Store::Open(dir, {});
    ASSERT_TRUE(store.ok()) << store.status();
    auto a = (*store)->CreateDataset(NewDataset("a"));
    auto b = (*store)->CreateDataset(NewDataset("b"));
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NE(a->internal_id(), b->internal_id());
    EXPECT_TRUE(absl::IsAlreadyExists((*store)->CreateDataset(NewDataset("a")).status()));

    storage::DatasetRecord updated = *a;
    updated.set_next_seq(2);
    updated.mutable_dataset()->set_example_count(2);
    ASSERT_TRUE((*store)->WriteExamples(updated, {Write(0, "x", 1), Write(1, "y", 5)}).ok());
    v1::Selection sel;
    sel.set_id("sel-1-0");
    sel.add_items()->set_example_id("y");
    updated.set_next_selection_seq(1);
    ASSERT_TRUE((*store)->PutSelection(updated, 0, sel).ok());
  }
  auto store = Store::Open(dir, {});
  ASSERT_TRUE(store.ok());
  auto a = (*store)->GetDataset("t", "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->dataset().example_count(), 2);
  EXPECT_EQ(a->next_selection_seq(), 1);
  auto id = (*store)->FindId(a->internal_id(), "y");
  ASSERT_TRUE(id.ok() && id->has_value());
  EXPECT_EQ((*id)->seq, 1);
  EXPECT_EQ((*id)->content_hash, "hash-y");
  EXPECT_FALSE((*(*store)->FindId(a->internal_id(), "z")).has_value());
  auto ex = (*store)->GetExample(a->internal_id(), 1);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->example().pair().prompt(), "py");
  std::vector<int64_t> seqs;
  std::vector<float> firsts;
  ASSERT_TRUE((*store)
                  ->ForEachEmbedding(a->internal_id(),
                                     [&](int64_t seq, const uint8_t* v, size_t n) {
                                       EXPECT_EQ(n, 4 * sizeof(float));
                                       seqs.push_back(seq);
                                       float first;
                                       std::memcpy(&first, v, sizeof first);
                                       firsts.push_back(first);
                                     })
                  .ok());
  EXPECT_EQ(seqs, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(firsts, (std::vector<float>{1, 5}));
  // Dataset b's rows are separate.
  auto b = (*store)->GetDataset("t", "b");
  int rows = 0;
  ASSERT_TRUE(
      (*store)
          ->ForEachEmbedding(b->internal_id(), [&](int64_t, const uint8_t*, size_t) { ++rows; })
          .ok());
  EXPECT_EQ(rows, 0);
  auto sel = (*store)->GetSelection(a->internal_id(), 0);
  ASSERT_TRUE(sel.ok());
  EXPECT_EQ(sel->items(0).example_id(), "y");
  auto listed = (*store)->ListSelections(a->internal_id(), INT64_MAX, 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].second.items_size(), 0);  // lists leave items out
}

// Start-up reads ids and labels without parsing texts; what it reads must be what a full parse
// of the same records gives, whatever else the records hold.
TEST(StoreTest, ExampleHeadsAreTheIdsAndLabelsOfTheFullRecords) {
  const std::string dir = TempDir("heads");
  auto store = Store::Open(dir, {});
  ASSERT_TRUE(store.ok());
  auto d = (*store)->CreateDataset(NewDataset("h"));
  ASSERT_TRUE(d.ok());
  std::vector<ExampleWrite> writes;
  for (int i = 0; i < 6; ++i) {
    ExampleWrite w = Write(i, "id-" + std::string(i * 40, 'z') + std::to_string(i), i);
    if (i % 2 == 1) {
      v1::UnpairedExample* u = w.record.mutable_example()->mutable_unpaired();
      u->set_prompt("a prompt");
      u->set_completion(std::string(1000, 'c'));
      u->set_label(i == 3 ? v1::LABEL_DESIRABLE : v1::LABEL_UNDESIRABLE);
    } else {
      w.record.mutable_example()->mutable_pair()->set_chosen(std::string(300, 'x'));
    }
    (*w.record.mutable_example()->mutable_metadata())["source"] = "test";
    writes.push_back(std::move(w));
  }
  storage::DatasetRecord updated = *d;
  updated.set_next_seq(6);
  ASSERT_TRUE((*store)->WriteExamples(updated, writes).ok());
  std::vector<std::tuple<int64_t, std::string, int>> full, heads;
  ASSERT_TRUE((*store)
                  ->ForEachExample(d->internal_id(),
                                   [&](int64_t seq, const storage::ExampleRecord& r) {
                                     full.emplace_back(seq, r.example().id(),
                                                       r.example().unpaired().label());
                                     return true;
                                   })
                  .ok());
  ASSERT_TRUE((*store)
                  ->ForEachExampleHead(d->internal_id(),
                                       [&](int64_t seq, const std::string& id, v1::Label label) {
                                         heads.emplace_back(seq, id, label);
                                       })
                  .ok());
  EXPECT_EQ(heads, full);
  ASSERT_EQ(heads.size(), 6u);
  EXPECT_EQ(std::get<2>(heads[3]), v1::LABEL_DESIRABLE);
  EXPECT_EQ(std::get<2>(heads[1]), v1::LABEL_UNDESIRABLE);
}

TEST(StoreTest, ListIsOrderedAndPaged) {
  auto store = Store::Open(TempDir("list"), {});
  ASSERT_TRUE(store.ok());
  for (const char* name : {"m", "c", "x", "a"})
    ASSERT_TRUE((*store)->CreateDataset(NewDataset(name)).ok());
  auto first = (*store)->ListDatasets("t", "", 2);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].dataset().name(), "a");
  EXPECT_EQ((*first)[1].dataset().name(), "c");
  auto second = (*store)->ListDatasets("t", "c", 10);
  ASSERT_EQ(second->size(), 2u);
  EXPECT_EQ((*second)[0].dataset().name(), "m");
  EXPECT_EQ((*second)[1].dataset().name(), "x");
}

TEST(StoreTest, DeleteRemovesEveryRowOfTheDataset) {
  auto store = Store::Open(TempDir("delete"), {});
  ASSERT_TRUE(store.ok());
  auto a = (*store)->CreateDataset(NewDataset("a"));
  auto b = (*store)->CreateDataset(NewDataset("b"));
  ASSERT_TRUE((*store)->WriteExamples(*a, {Write(0, "x", 1)}).ok());
  ASSERT_TRUE((*store)->WriteExamples(*b, {Write(0, "x", 9)}).ok());
  ASSERT_TRUE((*store)->PutSelection(*a, 0, v1::Selection()).ok());
  ASSERT_TRUE((*store)->DeleteDataset(*a).ok());
  EXPECT_TRUE(absl::IsNotFound((*store)->GetDataset("t", "a").status()));
  EXPECT_TRUE(absl::IsNotFound((*store)->GetExample(a->internal_id(), 0).status()));
  EXPECT_TRUE(absl::IsNotFound((*store)->GetSelection(a->internal_id(), 0).status()));
  EXPECT_FALSE((*(*store)->FindId(a->internal_id(), "x")).has_value());
  // The neighbour is untouched.
  EXPECT_TRUE((*(*store)->FindId(b->internal_id(), "x")).has_value());
  // A new dataset of the old name gets a new internal id, so old keys cannot resurface.
  auto again = (*store)->CreateDataset(NewDataset("a"));
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again->internal_id(), b->internal_id());
}

TEST(StoreTest, TenantsAreSeparateNamespaces) {
  auto store = Store::Open(TempDir("tenants"), {});
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->CreateDataset(NewDataset("x", "team-a")).ok());
  ASSERT_TRUE((*store)->CreateDataset(NewDataset("x", "team-b")).ok());
  ASSERT_TRUE((*store)->CreateDataset(NewDataset("y", "team-ab")).ok());
  auto a = (*store)->ListDatasets("team-a", "", 10);
  ASSERT_TRUE(a.ok());
  // "team-ab/y" shares the prefix "team-a" but belongs to another tenant.
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].tenant(), "team-a");
  EXPECT_TRUE(absl::IsNotFound((*store)->GetDataset("team-c", "x").status()));
  int all = 0;
  ASSERT_TRUE((*store)
                  ->ForEachDataset([&](storage::DatasetRecord) {
                    ++all;
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(all, 3);
}

TEST(StoreTest, TenantsTokensAndBackupRestore) {
  const std::string dir = TempDir("backup-db");
  const std::string backups = TempDir("backup-dir");
  const std::string restored = TempDir("backup-restored");
  {
    auto store = Store::Open(dir, {});
    ASSERT_TRUE(store.ok());
    v1::Tenant tenant;
    tenant.set_name("team");
    tenant.mutable_quotas()->set_max_examples(10);
    ASSERT_TRUE((*store)->CreateTenant(tenant).ok());
    EXPECT_TRUE(absl::IsAlreadyExists((*store)->CreateTenant(tenant)));
    storage::TokenRecord token;
    token.mutable_token()->set_id("abc");
    token.set_secret_hash("hash");
    ASSERT_TRUE((*store)->PutToken(token).ok());
    auto d = (*store)->CreateDataset(NewDataset("d"));
    ASSERT_TRUE((*store)->WriteExamples(*d, {Write(0, "x", 1)}).ok());
    auto backup = (*store)->CreateBackup(backups);
    ASSERT_TRUE(backup.ok()) << backup.status();
    EXPECT_GT(backup->second, 0);
  }
  ASSERT_TRUE(Store::RestoreLatestBackup(backups, restored).ok());
  // Never over an existing database.
  EXPECT_TRUE(absl::IsFailedPrecondition(Store::RestoreLatestBackup(backups, restored)));
  auto store = Store::Open(restored, {});
  ASSERT_TRUE(store.ok());
  auto tenants = (*store)->ListTenants();
  ASSERT_EQ(tenants->size(), 1u);
  EXPECT_EQ((*tenants)[0].quotas().max_examples(), 10);
  EXPECT_EQ((*store)->ListTokens()->size(), 1u);
  auto d = (*store)->GetDataset("t", "d");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE((*store)->GetExample(d->internal_id(), 0).ok());
}

}  // namespace
}  // namespace curation::store
