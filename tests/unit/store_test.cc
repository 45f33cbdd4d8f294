// The RocksDB store on a real database directory: records round-trip, batches are atomic,
// deletes leave nothing behind, and everything survives reopening.
#include "store/store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <tuple>

#include "absl/strings/match.h"
#include "rocksdb/db.h"
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

TEST(StoreTest, AGivenInternalIdIsUsedOnceAndTheLocalCounterSkipsIt) {
  auto store = Store::Open(TempDir("given-id"), {});
  ASSERT_TRUE(store.ok());
  auto local = (*store)->CreateDataset(NewDataset("local"));
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local->internal_id(), 1u);
  storage::DatasetRecord given = NewDataset("given");
  given.set_internal_id(100);
  auto created = (*store)->CreateDataset(given);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->internal_id(), 100u);
  EXPECT_EQ((*store)->GetDataset("t", "given")->internal_id(), 100u);
  // The same id again, under another name or tenant: refused.
  storage::DatasetRecord again = NewDataset("other", "u");
  again.set_internal_id(100);
  EXPECT_TRUE(absl::IsAlreadyExists((*store)->CreateDataset(again).status()));
  // So is an id that only rows hold (a deleted record's leftovers, an interrupted import).
  ASSERT_TRUE((*store)->PutProjection(50, "pca").ok());
  storage::DatasetRecord rows_only = NewDataset("rows-only");
  rows_only.set_internal_id(50);
  auto refused = (*store)->CreateDataset(rows_only);
  EXPECT_TRUE(absl::IsAlreadyExists(refused.status())) << refused.status();
  EXPECT_TRUE(absl::IsNotFound((*store)->GetDataset("t", "rows-only").status()));
  // A local allocation comes after the given id, never onto it.
  auto next = (*store)->CreateDataset(NewDataset("next"));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->internal_id(), 101u);
  // A given id below the counter leaves the counter where it is.
  storage::DatasetRecord low = NewDataset("low");
  low.set_internal_id(7);
  ASSERT_TRUE((*store)->CreateDataset(low).ok());
  EXPECT_EQ((*store)->CreateDataset(NewDataset("after-low"))->internal_id(), 102u);
}

// Every row of a closed database, by column family and key, read with RocksDB itself so that
// the comparison does not trust the Store's own readers.
using AllRows = std::map<std::string, std::map<std::string, std::string>>;

AllRows ReadAllRows(const std::string& dir) {
  std::vector<std::string> names;
  EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const std::string& name : names) families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  const rocksdb::Status s =
      rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, families, &handles, &db);
  EXPECT_TRUE(s.ok()) << s.ToString();
  AllRows out;
  if (!s.ok()) return out;
  for (size_t i = 0; i < handles.size(); ++i) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[i]));
    auto& rows = out[names[i]];
    for (it->SeekToFirst(); it->Valid(); it->Next())
      rows[it->key().ToString()] = it->value().ToString();
    EXPECT_TRUE(it->status().ok());
  }
  for (auto* handle : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
  delete db;
  return out;
}

std::string BigEndian(uint64_t v) {
  std::string out;
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
  return out;
}

// The rows of dataset t/<name> (internal id `id`) that a move carries, picked from `all` by the
// layout store.h documents: its record, the rows keyed by its id, its done operations and
// their request_id entries.
AllRows RowsOfDataset(const AllRows& all, const std::string& name, uint64_t id) {
  AllRows out;
  const std::string prefix = BigEndian(id);
  for (const auto& [family, rows] : all) {
    if (family == "default" || family == "tenants" || family == "tokens") continue;
    auto& picked = out[family];
    std::map<std::string, std::string> moved_ops;  // id -> request_id
    for (const auto& [key, value] : rows) {
      if (family == "datasets") {
        if (key == "t/" + name) picked[key] = value;
      } else if (family == "operations") {
        storage::OperationRecord op;
        if (key[0] == 'o' && op.ParseFromString(value) && op.dataset_internal_id() == id &&
            op.operation().done()) {
          picked[key] = value;
          moved_ops[op.operation().name().substr(strlen("operations/"))] =
              op.operation().metadata().request_id();
        }
      } else if (absl::StartsWith(key, prefix)) {
        picked[key] = value;
      }
    }
    if (family != "operations") continue;
    for (const auto& [key, value] : rows) {
      auto op = moved_ops.find(value);
      if (key[0] == 'r' && op != moved_ops.end() && key == std::string("rt\0", 3) + op->second) {
        picked[key] = value;
      }
    }
  }
  return out;
}

AllRows WithoutDefault(AllRows rows) {
  rows.erase("default");
  rows.erase("tenants");
  rows.erase("tokens");
  return rows;
}

storage::OperationRecord Op(char id, uint64_t dataset_id, bool done,
                            const std::string& request_id) {
  storage::OperationRecord op;
  op.set_tenant("t");
  op.mutable_operation()->set_name("operations/" + std::string(32, id));
  op.mutable_operation()->set_done(done);
  op.mutable_operation()->mutable_metadata()->set_request_id(request_id);
  op.set_dataset_internal_id(dataset_id);
  op.set_selection_seq(0);
  return op;
}

// Source store for the move tests: dataset "other" (id 1) and dataset "d" (id 2) with rows in
// every column family, done and unfinished operations, and another dataset's operation.
storage::DatasetRecord FillSource(Store& store) {
  auto other = store.CreateDataset(NewDataset("other"));
  EXPECT_TRUE(store.WriteExamples(*other, {Write(0, "x", 9)}).ok());
  auto d = store.CreateDataset(NewDataset("d"));
  EXPECT_EQ(d->internal_id(), 2u);
  EXPECT_TRUE(store.PutProjection(d->internal_id(), std::string("pca\0bytes", 9)).ok());
  std::vector<ExampleWrite> writes;
  for (int i = 0; i < 5; ++i) {
    writes.push_back(Write(i, "e" + std::to_string(i), static_cast<float>(i)));
    writes.back().original_vectors = std::string(12, static_cast<char>('a' + i));
  }
  d->set_next_seq(5);
  d->mutable_dataset()->set_example_count(5);
  EXPECT_TRUE(store.WriteExamples(*d, writes).ok());
  v1::Selection selection;
  selection.add_items()->set_example_id("e1");
  d->set_next_selection_seq(2);
  storage::OperationRecord with_request = Op('a', d->internal_id(), true, "req-a");
  EXPECT_TRUE(store.PutSelection(*d, 0, selection, &with_request).ok());
  EXPECT_TRUE(store.PutOperation(with_request).ok());  // its request_id entry
  EXPECT_TRUE(store.PutSelection(*d, 1, selection).ok());
  EXPECT_TRUE(store.PutOperation(Op('b', d->internal_id(), true, "")).ok());
  EXPECT_TRUE(store.PutOperation(Op('c', d->internal_id(), false, "req-c")).ok());  // running
  EXPECT_TRUE(store.PutOperation(Op('e', other->internal_id(), true, "req-e")).ok());
  return *store.GetDataset("t", "d");
}

std::vector<storage::DatasetRows> ExportAll(const Store& store, const storage::DatasetRecord& d,
                                            int64_t max_chunk_bytes) {
  std::vector<storage::DatasetRows> chunks;
  const absl::Status s = store.ExportDataset(d, max_chunk_bytes, [&](storage::DatasetRows rows) {
    chunks.push_back(std::move(rows));
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
  return chunks;
}

// A stream of `chunks` for ImportDataset that fails with UNAVAILABLE after `fail_after`.
std::function<absl::StatusOr<std::optional<storage::DatasetRows>>()> Feed(
    std::vector<storage::DatasetRows> chunks, size_t fail_after = SIZE_MAX) {
  auto next = std::make_shared<size_t>(0);
  return [chunks = std::move(chunks), next,
          fail_after]() -> absl::StatusOr<std::optional<storage::DatasetRows>> {
    if (*next == fail_after) return absl::UnavailableError("the source went away");
    if (*next == chunks.size()) return std::optional<storage::DatasetRows>();
    return std::optional<storage::DatasetRows>(chunks[(*next)++]);
  };
}

TEST(StoreTest, AnExportedDatasetImportsByteForByte) {
  const std::string source_dir = TempDir("export-source");
  const std::string dest_dir = TempDir("export-dest");
  storage::DatasetRecord d;
  {
    auto source = Store::Open(source_dir, {});
    auto dest = Store::Open(dest_dir, {});
    ASSERT_TRUE(source.ok() && dest.ok());
    d = FillSource(**source);
    std::vector<storage::DatasetRows> chunks = ExportAll(**source, d, 100);
    ASSERT_GT(chunks.size(), 3u);
    ASSERT_GT(chunks[0].rows_size(), 0);
    EXPECT_EQ(chunks[0].rows(0).column_family(), "datasets");
    for (const auto& chunk : chunks) {
      int64_t bytes = 0;
      for (const auto& row : chunk.rows()) bytes += row.key().size() + row.value().size();
      // A chunk is at most 100 bytes of keys and values, or one larger row.
      EXPECT_TRUE(bytes <= 100 || chunk.rows_size() == 1) << bytes;
    }
    auto imported = (*dest)->ImportDataset(Feed(chunks));
    ASSERT_TRUE(imported.ok()) << imported.status();
    EXPECT_EQ(imported->record.SerializeAsString(), d.SerializeAsString());
    EXPECT_EQ(imported->operations, 2);  // 'a' and 'b'; 'c' is running, 'e' is another's
    EXPECT_GT(imported->operation_bytes, 0);
    // The destination's own datasets get ids after the imported one.
    EXPECT_EQ((*dest)->CreateDataset(NewDataset("local"))->internal_id(), d.internal_id() + 1);
    ASSERT_TRUE((*dest)->DeleteDataset(*(*dest)->GetDataset("t", "local")).ok());
    // Readable through the Store at once.
    EXPECT_EQ((*dest)->GetExample(d.internal_id(), 3)->example().id(), "e3");
    EXPECT_EQ((*dest)->GetSelection(d.internal_id(), 0)->items(0).example_id(), "e1");
    EXPECT_TRUE((*dest)->GetOperation("t", std::string(32, 'a'))->operation().done());
    EXPECT_EQ(**(*dest)->FindOperationByRequestId("t", "req-a"), std::string(32, 'a'));
    EXPECT_TRUE(absl::IsNotFound((*dest)->GetOperation("t", std::string(32, 'c')).status()));
    // Importing it again is refused.
    EXPECT_TRUE(absl::IsAlreadyExists((*dest)->ImportDataset(Feed(chunks)).status()));
  }
  const AllRows expected = RowsOfDataset(ReadAllRows(source_dir), "d", d.internal_id());
  EXPECT_EQ(expected.at("examples").size(), 5u);
  EXPECT_EQ(expected.at("originals").size(), 5u);
  EXPECT_EQ(expected.at("selections").size(), 2u);
  EXPECT_EQ(expected.at("projections").size(), 1u);
  EXPECT_EQ(expected.at("operations").size(), 3u);  // 'a', its request_id, 'b'
  EXPECT_TRUE(WithoutDefault(ReadAllRows(dest_dir)) == expected);
}

TEST(StoreTest, ImportRefusesDuplicatesAndRowsOfAnotherDataset) {
  auto source = Store::Open(TempDir("refuse-source"), {});
  auto dest = Store::Open(TempDir("refuse-dest"), {});
  ASSERT_TRUE(source.ok() && dest.ok());
  const storage::DatasetRecord d = FillSource(**source);
  const std::vector<storage::DatasetRows> chunks = ExportAll(**source, d, 1 << 20);
  ASSERT_EQ(chunks.size(), 1u);
  // A dataset of that name, or one with that internal id, at the destination.
  storage::DatasetRecord same_id = NewDataset("elsewhere", "u");
  same_id.set_internal_id(d.internal_id());
  ASSERT_TRUE((*dest)->CreateDataset(same_id).ok());
  EXPECT_TRUE(absl::IsAlreadyExists((*dest)->ImportDataset(Feed(chunks)).status()));
  ASSERT_TRUE((*dest)->DeleteDataset(same_id).ok());
  auto same_name = (*dest)->CreateDataset(NewDataset("d"));
  ASSERT_TRUE(same_name.ok());
  EXPECT_TRUE(absl::IsAlreadyExists((*dest)->ImportDataset(Feed(chunks)).status()));
  EXPECT_EQ((*dest)->GetDataset("t", "d")->internal_id(), same_name->internal_id());
  ASSERT_TRUE((*dest)->DeleteDataset(*same_name).ok());
  auto with_row = [&](const std::string& family, const std::string& key, const std::string& value) {
    std::vector<storage::DatasetRows> bad = chunks;
    // In a chunk of its own after the good rows, so that those are written first.
    storage::DatasetRows::Row* row = bad.emplace_back().add_rows();
    row->set_column_family(family);
    row->set_key(key);
    row->set_value(value);
    return bad;
  };
  const uint64_t id = d.internal_id();
  const storage::OperationRecord others = Op('e', 1, true, "");
  storage::OperationRecord unfinished = Op('f', id, false, "");
  struct Case {
    std::string what;
    std::vector<storage::DatasetRows> chunks;
    std::string field;
  };
  const int last = chunks[0].rows_size();  // the injected row's index
  const std::string at = "rows[" + std::to_string(last) + "]";
  std::vector<Case> cases = {
      {"another dataset's example", with_row("examples", BigEndian(1) + BigEndian(0), "x"),
       at + ".key"},
      {"a short key", with_row("embeddings", BigEndian(id), "x"), at + ".key"},
      {"a column family that holds no dataset rows", with_row("tokens", "abc", "x"),
       at + ".column_family"},
      {"a second dataset record", with_row("datasets", "t/d", d.SerializeAsString()),
       at + ".column_family"},
      {"another dataset's operation",
       with_row("operations", std::string("ot\0", 3) + std::string(32, 'e'),
                others.SerializeAsString()),
       at + ".value"},
      {"an unfinished operation",
       with_row("operations", std::string("ot\0", 3) + std::string(32, 'f'),
                unfinished.SerializeAsString()),
       at + ".value"},
      {"an operation under another tenant's key",
       with_row("operations", std::string("ou\0", 3) + std::string(32, 'a'),
                Op('a', id, true, "").SerializeAsString()),
       at + ".key"},
      {"a request_id entry naming no imported operation",
       with_row("operations", std::string("rt\0", 3) + "req-x", std::string(32, 'e')),
       at + ".value"},
  };
  std::vector<storage::DatasetRows> headless = chunks;
  headless[0].mutable_rows()->SwapElements(0, 1);
  cases.push_back({"no record first", headless, "rows[0].column_family"});
  for (const Case& c : cases) {
    const absl::Status s = (*dest)->ImportDataset(Feed(c.chunks)).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << c.what << ": " << s;
    EXPECT_TRUE(absl::StartsWith(s.message(), c.field)) << c.what << ": " << s;
    EXPECT_TRUE(absl::IsNotFound((*dest)->GetDataset("t", "d").status())) << c.what;
  }
  EXPECT_TRUE(absl::IsInvalidArgument((*dest)->ImportDataset(Feed({})).status()));

  // With the way clear, the same chunks import (over every refused attempt's leftovers).
  auto imported = (*dest)->ImportDataset(Feed(chunks));
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ((*dest)->GetDataset("t", "d")->SerializeAsString(), d.SerializeAsString());
}

TEST(StoreTest, AnInterruptedImportLeavesNoDatasetAndARetryClearsItsRows) {
  const std::string source_dir = TempDir("interrupt-source");
  const std::string dest_dir = TempDir("interrupt-dest");
  storage::DatasetRecord d;
  {
    auto source = Store::Open(source_dir, {});
    ASSERT_TRUE(source.ok());
    d = FillSource(**source);
    const std::vector<storage::DatasetRows> chunks = ExportAll(**source, d, 100);
    ASSERT_GT(chunks.size(), 3u);
    {
      // The first attempt carries a row the dataset no longer has (as if it came from an
      // older snapshot), then the source goes away.
      std::vector<storage::DatasetRows> stale = chunks;
      storage::DatasetRows::Row* row = stale[1].add_rows();
      row->set_column_family("examples");
      row->set_key(BigEndian(d.internal_id()) + BigEndian(999));
      storage::ExampleRecord stale_example;
      stale_example.mutable_example()->set_id("stale");
      row->set_value(stale_example.SerializeAsString());
      auto dest = Store::Open(dest_dir, {});
      ASSERT_TRUE(dest.ok());
      const absl::Status s = (*dest)->ImportDataset(Feed(stale, 3)).status();
      EXPECT_TRUE(absl::IsUnavailable(s)) << s;
      EXPECT_TRUE(absl::IsNotFound((*dest)->GetDataset("t", "d").status()));
      // Written, yet no dataset holds it.
      EXPECT_EQ((*dest)->GetExample(d.internal_id(), 999)->example().id(), "stale");
    }
    // After a restart, the retry starts over.
    auto dest = Store::Open(dest_dir, {});
    ASSERT_TRUE(dest.ok());
    auto imported = (*dest)->ImportDataset(Feed(chunks));
    ASSERT_TRUE(imported.ok()) << imported.status();
    EXPECT_TRUE(absl::IsNotFound((*dest)->GetExample(d.internal_id(), 999).status()));
  }
  EXPECT_TRUE(WithoutDefault(ReadAllRows(dest_dir)) ==
              RowsOfDataset(ReadAllRows(source_dir), "d", d.internal_id()));
}

TEST(StoreTest, ExportChecksItsArgumentsAndStopsAtTheCallersError) {
  auto store = Store::Open(TempDir("export-args"), {});
  ASSERT_TRUE(store.ok());
  const storage::DatasetRecord d = FillSource(**store);
  auto ignore = [](storage::DatasetRows) { return absl::OkStatus(); };
  EXPECT_TRUE(absl::IsInvalidArgument((*store)->ExportDataset(d, 0, ignore)));
  storage::DatasetRecord wrong_id = d;
  wrong_id.set_internal_id(d.internal_id() + 7);
  EXPECT_TRUE(absl::IsNotFound((*store)->ExportDataset(wrong_id, 100, ignore)));
  EXPECT_TRUE(absl::IsNotFound((*store)->ExportDataset(NewDataset("absent"), 100, ignore)));
  int calls = 0;
  const absl::Status s = (*store)->ExportDataset(d, 100, [&](storage::DatasetRows) {
    ++calls;
    return absl::CancelledError("the destination hung up");
  });
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
  EXPECT_EQ(calls, 1);
}

TEST(StoreTest, DeleteOperationsOfRemovesOnlyThatDatasetsOperations) {
  auto store = Store::Open(TempDir("delete-ops"), {});
  ASSERT_TRUE(store.ok());
  const storage::DatasetRecord d = FillSource(**store);
  auto bytes = (*store)->DeleteOperationsOf("t", d.internal_id());
  ASSERT_TRUE(bytes.ok());
  EXPECT_GT(*bytes, 0);
  for (char id : {'a', 'b', 'c'}) {
    EXPECT_TRUE(absl::IsNotFound((*store)->GetOperation("t", std::string(32, id)).status()));
  }
  EXPECT_FALSE((*(*store)->FindOperationByRequestId("t", "req-a")).has_value());
  EXPECT_TRUE((*store)->GetOperation("t", std::string(32, 'e')).ok());
  EXPECT_TRUE((*(*store)->FindOperationByRequestId("t", "req-e")).has_value());
}

}  // namespace
}  // namespace curation::store
