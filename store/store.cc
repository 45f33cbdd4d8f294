#include "store/store.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <cstring>
#include <filesystem>
#include <iterator>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/backup_engine.h"
#include "rocksdb/write_batch.h"

namespace curation::store {
namespace {

// ExampleRecord.example's id and unpaired label, read without parsing (or copying) the texts:
// start-up reads every example, and the texts are most of their bytes.
bool ParseExampleHead(const rocksdb::Slice& bytes, std::string* id, v1::Label* label) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  *label = v1::LABEL_UNSPECIFIED;
  id->clear();
  const auto length_delimited = [](uint32_t tag, int field) {
    return tag == WireFormatLite::MakeTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  };
  while (const uint32_t tag = in.ReadTag()) {
    if (!length_delimited(tag, 1)) {  // ExampleRecord.example
      if (!WireFormatLite::SkipField(&in, tag)) return false;
      continue;
    }
    uint32_t size = 0;
    if (!in.ReadVarint32(&size)) return false;
    const auto example = in.PushLimit(static_cast<int>(size));
    while (const uint32_t inner = in.ReadTag()) {
      if (length_delimited(inner, 1)) {  // Example.id
        if (!WireFormatLite::ReadString(&in, id)) return false;
      } else if (length_delimited(inner, 3)) {  // Example.unpaired
        uint32_t unpaired_size = 0;
        if (!in.ReadVarint32(&unpaired_size)) return false;
        const auto unpaired = in.PushLimit(static_cast<int>(unpaired_size));
        while (const uint32_t field = in.ReadTag()) {
          if (field == WireFormatLite::MakeTag(3, WireFormatLite::WIRETYPE_VARINT)) {
            uint32_t value = 0;
            if (!in.ReadVarint32(&value)) return false;
            *label = static_cast<v1::Label>(value);
          } else if (!WireFormatLite::SkipField(&in, field)) {
            return false;
          }
        }
        if (!in.ConsumedEntireMessage()) return false;
        in.PopLimit(unpaired);
      } else if (!WireFormatLite::SkipField(&in, inner)) {
        return false;
      }
    }
    if (!in.ConsumedEntireMessage()) return false;
    in.PopLimit(example);
  }
  return in.ConsumedEntireMessage();
}

constexpr char kNextDatasetIdKey[] = "next_dataset_id";

void AppendBigEndian(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

uint64_t ReadBigEndian(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string DatasetKey(absl::string_view tenant, absl::string_view name) {
  return absl::StrCat(tenant, "/", name);
}

std::string DatasetKey(const storage::DatasetRecord& record) {
  return DatasetKey(record.tenant(), record.dataset().name());
}

std::string Prefix(uint64_t dataset_id) {
  std::string key;
  AppendBigEndian(&key, dataset_id);
  return key;
}

std::string SeqKey(uint64_t dataset_id, int64_t seq) {
  std::string key = Prefix(dataset_id);
  AppendBigEndian(&key, static_cast<uint64_t>(seq));
  return key;
}

std::string IdKey(uint64_t dataset_id, absl::string_view id) {
  std::string key = Prefix(dataset_id);
  key.append(id.data(), id.size());
  return key;
}

std::string OperationKey(absl::string_view tenant, absl::string_view id) {
  return absl::StrCat("o", tenant, absl::string_view("\0", 1), id);
}

std::string RequestIdKey(absl::string_view tenant, absl::string_view request_id) {
  return absl::StrCat("r", tenant, absl::string_view("\0", 1), request_id);
}

// The id part of an operation's name, "operations/<id>".
absl::string_view OperationId(const storage::OperationRecord& record) {
  absl::string_view name = record.operation().name();
  const size_t slash = name.find('/');
  return slash == absl::string_view::npos ? name : name.substr(slash + 1);
}

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat(what, ": not found"));
  return absl::InternalError(absl::StrCat(what, ": rocksdb: ", s.ToString()));
}

template <typename Message>
absl::StatusOr<Message> Parse(const std::string& bytes, absl::string_view what) {
  Message m;
  if (!m.ParseFromString(bytes)) return absl::DataLossError(absl::StrCat("corrupt ", what));
  return m;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir, const Options& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  // Acknowledged writes must survive a crash: never run without the WAL, and recover to the
  // last consistent point rather than refuse to open after a torn tail.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;

  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.OptimizeLevelStyleCompaction();
  // Every ingested record looks its id up (FindId), and in a bulk load nearly every lookup
  // misses: without filters each miss walks the memtable's skip list and reads a block of
  // every SST file that may hold the key. Whole-key Bloom filters, in the memtable and in
  // the files, answer most misses from a few bits (about 1% false positives at 10 bits a
  // key). Files written before this setting simply have no filter and are read as before.
  rocksdb::ColumnFamilyOptions ids_options = cf_options;
  ids_options.memtable_prefix_bloom_size_ratio = 0.02;
  ids_options.memtable_whole_key_filtering = true;
  rocksdb::BlockBasedTableOptions ids_table;
  ids_table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  ids_table.whole_key_filtering = true;
  ids_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(ids_table));
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, cf_options},
      {"datasets", cf_options},
      {"examples", cf_options},
      {"embeddings", cf_options},
      {"ids", ids_options},
      {"selections", cf_options},
      {"tenants", cf_options},
      {"tokens", cf_options},
      {"operations", cf_options},
      {"projections", cf_options},
      {"originals", cf_options},
  };
  auto store = std::unique_ptr<Store>(new Store());
  store->sync_ = options.sync;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, dir, families, &store->handles_, &db);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("open ", dir, ": ", s.ToString()));
  store->db_.reset(db);
  store->datasets_ = store->handles_[1];
  store->examples_ = store->handles_[2];
  store->embeddings_ = store->handles_[3];
  store->ids_ = store->handles_[4];
  store->selections_ = store->handles_[5];
  store->tenants_ = store->handles_[6];
  store->tokens_ = store->handles_[7];
  store->operations_ = store->handles_[8];
  store->projections_ = store->handles_[9];
  store->originals_ = store->handles_[10];
  return store;
}

Store::~Store() {
  if (db_ == nullptr) return;
  db_->FlushWAL(/*sync=*/true).PermitUncheckedError();
  // Memtables to SST files on a clean close: otherwise the next start replays the WAL into
  // memtables (up to hundreds of MB of a bulk load), slower and resident until they flush.
  db_->Flush(rocksdb::FlushOptions(), handles_).PermitUncheckedError();
  for (auto* handle : handles_) db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
}

absl::StatusOr<storage::DatasetRecord> Store::CreateDataset(storage::DatasetRecord record) {
  std::lock_guard<std::mutex> lock(create_mu_);
  const std::string key = DatasetKey(record);
  std::string existing;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), datasets_, key, &existing);
  if (s.ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("dataset '", record.dataset().name(), "' already exists"));
  }
  if (!s.IsNotFound()) return FromRocks(s, "read dataset");

  rocksdb::WriteBatch batch;
  if (record.internal_id() != 0) {
    ASSIGN_OR_RETURN(const bool used, InternalIdInUse(record.internal_id(), false));
    if (used) {
      return absl::AlreadyExistsError(
          absl::StrCat("internal id ", record.internal_id(), " is in use"));
    }
    RETURN_IF_ERROR(BumpNextId(record.internal_id(), &batch));
  } else {
    ASSIGN_OR_RETURN(const uint64_t next_id, NextLocalId());
    record.set_internal_id(next_id);
    std::string next;
    AppendBigEndian(&next, next_id + 1);
    batch.Put(kNextDatasetIdKey, next);
  }
  batch.Put(datasets_, key, record.SerializeAsString());
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  if (absl::Status st = FromRocks(db_->Write(wo, &batch), "create dataset"); !st.ok()) return st;
  return record;
}

absl::StatusOr<uint64_t> Store::NextLocalId() const {
  std::string id_bytes;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), kNextDatasetIdKey, &id_bytes);
  if (s.IsNotFound()) return uint64_t{1};
  if (!s.ok()) return FromRocks(s, "read next dataset id");
  if (id_bytes.size() != 8) return absl::DataLossError("corrupt next dataset id");
  return ReadBigEndian(id_bytes.data());
}

absl::Status Store::BumpNextId(uint64_t dataset_id, rocksdb::WriteBatch* batch) const {
  ASSIGN_OR_RETURN(const uint64_t next_id, NextLocalId());
  if (next_id > dataset_id) return absl::OkStatus();
  std::string next;
  AppendBigEndian(&next, dataset_id + 1);
  batch->Put(kNextDatasetIdKey, next);
  return absl::OkStatus();
}

absl::StatusOr<bool> Store::InternalIdInUse(uint64_t dataset_id, bool records_only) const {
  // Dataset records are keyed by name: a scan, as rare as creations with a given id are.
  bool used = false;
  RETURN_IF_ERROR(ForEachDataset([&](storage::DatasetRecord record) {
    used = used || record.internal_id() == dataset_id;
    return absl::OkStatus();
  }));
  if (used || records_only) return used;
  const std::string begin = Prefix(dataset_id);
  const std::string end = Prefix(dataset_id + 1);
  for (auto* cf : {examples_, embeddings_, ids_, selections_, projections_, originals_}) {
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper(end);
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf));
    it->Seek(begin);
    if (it->Valid()) return true;
    RETURN_IF_ERROR(FromRocks(it->status(), "scan for an internal id"));
  }
  return false;
}

absl::StatusOr<storage::DatasetRecord> Store::GetDataset(absl::string_view tenant,
                                                         absl::string_view name) const {
  std::string bytes;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), datasets_, DatasetKey(tenant, name), &bytes);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  if (!s.ok()) return FromRocks(s, "read dataset");
  return Parse<storage::DatasetRecord>(bytes, "dataset record");
}

absl::StatusOr<std::vector<storage::DatasetRecord>> Store::ListDatasets(absl::string_view tenant,
                                                                        absl::string_view after,
                                                                        int limit) const {
  std::vector<storage::DatasetRecord> out;
  const std::string prefix = DatasetKey(tenant, "");
  const std::string start = DatasetKey(tenant, after);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), datasets_));
  for (it->Seek(start);
       it->Valid() && it->key().starts_with(prefix) && static_cast<int>(out.size()) < limit;
       it->Next()) {
    if (!after.empty() && it->key() == rocksdb::Slice(start)) continue;
    auto record = Parse<storage::DatasetRecord>(it->value().ToString(), "dataset record");
    if (!record.ok()) return record.status();
    out.push_back(*std::move(record));
  }
  if (absl::Status st = FromRocks(it->status(), "list datasets"); !st.ok()) return st;
  return out;
}

absl::Status Store::ForEachDataset(
    const std::function<absl::Status(storage::DatasetRecord)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), datasets_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto record = Parse<storage::DatasetRecord>(it->value().ToString(), "dataset record");
    if (!record.ok()) return record.status();
    if (absl::Status s = fn(*std::move(record)); !s.ok()) return s;
  }
  return FromRocks(it->status(), "scan datasets");
}

absl::Status Store::DeleteDataset(const storage::DatasetRecord& record) {
  const std::string begin = Prefix(record.internal_id());
  const std::string end = Prefix(record.internal_id() + 1);
  rocksdb::WriteBatch batch;
  batch.Delete(datasets_, DatasetKey(record));
  for (auto* cf : {examples_, embeddings_, ids_, selections_, originals_}) {
    batch.DeleteRange(cf, begin, end);
  }
  batch.Delete(projections_, begin);
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Write(wo, &batch), "delete dataset");
}

namespace {

// The column families that hold rows keyed by a dataset's internal id, by name, and the
// length of their keys (0: longer than the 8-byte internal id, e.g. "ids").
struct DatasetFamilyName {
  const char* name;
  size_t key_bytes;
};
constexpr DatasetFamilyName kDatasetFamilies[] = {
    {"projections", 8}, {"examples", 16},   {"embeddings", 16},
    {"ids", 0},         {"selections", 16}, {"originals", 16},
};

// Releases a snapshot when the export ends, however it ends.
class SnapshotHolder {
 public:
  explicit SnapshotHolder(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~SnapshotHolder() { db_->ReleaseSnapshot(snapshot_); }
  SnapshotHolder(const SnapshotHolder&) = delete;
  SnapshotHolder& operator=(const SnapshotHolder&) = delete;
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

std::string OperationsBegin(absl::string_view tenant) { return OperationKey(tenant, ""); }
// Keys of one tenant's operations sort between "o<tenant>\0" and "o<tenant>\1".
std::string OperationsEnd(absl::string_view tenant) {
  return absl::StrCat("o", tenant, absl::string_view("\1", 1));
}

}  // namespace

rocksdb::ColumnFamilyHandle* Store::DatasetFamily(absl::string_view name) const {
  rocksdb::ColumnFamilyHandle* const handles[] = {projections_, examples_,   embeddings_,
                                                  ids_,         selections_, originals_};
  for (size_t i = 0; i < std::size(kDatasetFamilies); ++i) {
    if (name == kDatasetFamilies[i].name) return handles[i];
  }
  return nullptr;
}

absl::Status Store::ExportDataset(
    const storage::DatasetRecord& record, int64_t max_chunk_bytes,
    const std::function<absl::Status(storage::DatasetRows)>& fn) const {
  if (max_chunk_bytes < 1) return InvalidField("max_chunk_bytes", "must be at least 1");
  SnapshotHolder snapshot(db_.get());
  rocksdb::ReadOptions read;
  read.snapshot = snapshot.get();
  read.fill_cache = false;  // a whole dataset, read once
  const std::string key = DatasetKey(record);
  const auto not_found =
      absl::NotFoundError(absl::StrCat("dataset '", record.dataset().name(), "' (internal id ",
                                       record.internal_id(), ") not found"));
  std::string record_bytes;
  rocksdb::Status s = db_->Get(read, datasets_, key, &record_bytes);
  if (s.IsNotFound()) return not_found;
  RETURN_IF_ERROR(FromRocks(s, "read dataset"));
  ASSIGN_OR_RETURN(const storage::DatasetRecord stored,
                   Parse<storage::DatasetRecord>(record_bytes, "dataset record"));
  const uint64_t dataset_id = stored.internal_id();
  if (dataset_id != record.internal_id()) return not_found;

  storage::DatasetRows chunk;
  int64_t chunk_bytes = 0;
  auto add = [&](absl::string_view family, const rocksdb::Slice& k,
                 const rocksdb::Slice& v) -> absl::Status {
    const int64_t bytes = static_cast<int64_t>(k.size() + v.size());
    if (chunk.rows_size() > 0 && chunk_bytes + bytes > max_chunk_bytes) {
      RETURN_IF_ERROR(fn(std::move(chunk)));
      chunk.Clear();
      chunk_bytes = 0;
    }
    storage::DatasetRows::Row* row = chunk.add_rows();
    row->set_column_family(std::string(family));
    row->set_key(k.data(), k.size());
    row->set_value(v.data(), v.size());
    chunk_bytes += bytes;
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(add("datasets", key, record_bytes));
  const std::string begin = Prefix(dataset_id);
  const std::string end = Prefix(dataset_id + 1);
  for (const DatasetFamilyName& family : kDatasetFamilies) {
    rocksdb::ReadOptions ro = read;
    rocksdb::Slice upper(end);
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, DatasetFamily(family.name)));
    for (it->Seek(begin); it->Valid(); it->Next()) {
      RETURN_IF_ERROR(add(family.name, it->key(), it->value()));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("scan ", family.name)));
  }
  // The dataset's done operations, each followed by its request_id entry.
  const std::string ops_begin = OperationsBegin(stored.tenant());
  const std::string ops_end = OperationsEnd(stored.tenant());
  rocksdb::ReadOptions ro = read;
  rocksdb::Slice lower_bound(ops_begin), upper_bound(ops_end);
  ro.iterate_lower_bound = &lower_bound;
  ro.iterate_upper_bound = &upper_bound;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, operations_));
  storage::OperationRecord op;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!op.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("corrupt operation");
    }
    if (op.dataset_internal_id() != dataset_id || !op.operation().done()) continue;
    RETURN_IF_ERROR(add("operations", it->key(), it->value()));
    const std::string& request_id = op.operation().metadata().request_id();
    if (request_id.empty()) continue;
    const std::string request_key = RequestIdKey(stored.tenant(), request_id);
    std::string id;
    s = db_->Get(read, operations_, request_key, &id);
    if (s.IsNotFound()) continue;
    RETURN_IF_ERROR(FromRocks(s, "read operation request id"));
    if (id == OperationId(op)) RETURN_IF_ERROR(add("operations", request_key, id));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan operations"));
  if (chunk.rows_size() > 0) return fn(std::move(chunk));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Store::DeleteOperationsOf(absl::string_view tenant, uint64_t dataset_id,
                                                  rocksdb::WriteBatch* batch) const {
  const std::string begin = OperationsBegin(tenant);
  const std::string end = OperationsEnd(tenant);
  rocksdb::ReadOptions ro;
  rocksdb::Slice lower_bound(begin), upper_bound(end);
  ro.iterate_lower_bound = &lower_bound;
  ro.iterate_upper_bound = &upper_bound;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, operations_));
  storage::OperationRecord op;
  int64_t bytes = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!op.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("corrupt operation");
    }
    if (op.dataset_internal_id() != dataset_id) continue;
    batch->Delete(operations_, it->key());
    bytes += static_cast<int64_t>(it->value().size());
    const std::string& request_id = op.operation().metadata().request_id();
    if (request_id.empty()) continue;
    // Only the entry that names this operation: the request_id may name another by now.
    const std::string request_key = RequestIdKey(tenant, request_id);
    std::string id;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), operations_, request_key, &id);
    if (s.IsNotFound()) continue;
    RETURN_IF_ERROR(FromRocks(s, "read operation request id"));
    if (id == OperationId(op)) batch->Delete(operations_, request_key);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan operations"));
  return bytes;
}

absl::StatusOr<int64_t> Store::DeleteOperationsOf(absl::string_view tenant, uint64_t dataset_id) {
  rocksdb::WriteBatch batch;
  ASSIGN_OR_RETURN(const int64_t bytes, DeleteOperationsOf(tenant, dataset_id, &batch));
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  RETURN_IF_ERROR(FromRocks(db_->Write(wo, &batch), "delete operations"));
  return bytes;
}

absl::StatusOr<Store::Imported> Store::ImportDataset(
    const std::function<absl::StatusOr<std::optional<storage::DatasetRows>>()>& next) {
  Imported out;
  std::string record_key, record_bytes, prefix, request_prefix;
  // The imported operations' request_ids, by operation id: a request_id entry must name one.
  std::map<std::string, std::string> operations;
  int64_t index = 0;               // the row's position in the whole import, for error messages
  rocksdb::WriteOptions unsynced;  // the record's synced write makes them durable
  while (true) {
    ASSIGN_OR_RETURN(std::optional<storage::DatasetRows> chunk, next());
    if (!chunk.has_value()) break;
    rocksdb::WriteBatch batch;
    for (const storage::DatasetRows::Row& row : chunk->rows()) {
      const std::string field = absl::StrCat("rows[", index++, "]");
      const std::string& family = row.column_family();
      if (record_key.empty()) {
        if (family != "datasets") {
          return InvalidField(absl::StrCat(field, ".column_family"),
                              "the first row must be the dataset's record (\"datasets\")");
        }
        if (!out.record.ParseFromString(row.value()) || out.record.internal_id() == 0 ||
            out.record.tenant().empty() || out.record.dataset().name().empty()) {
          return InvalidField(absl::StrCat(field, ".value"),
                              "not a dataset record with a tenant, a name and an internal id");
        }
        if (row.key() != DatasetKey(out.record)) {
          return InvalidField(absl::StrCat(field, ".key"), "not the record's tenant/name");
        }
        RETURN_IF_ERROR(BeginImport(out.record));
        record_key = row.key();
        record_bytes = row.value();
        prefix = Prefix(out.record.internal_id());
        request_prefix = RequestIdKey(out.record.tenant(), "");
        continue;
      }
      const std::string& key = row.key();
      if (family == "operations") {
        if (!key.empty() && key[0] == 'o') {
          storage::OperationRecord op;
          if (!op.ParseFromString(row.value())) {
            return InvalidField(absl::StrCat(field, ".value"), "not an operation record");
          }
          if (op.tenant() != out.record.tenant() ||
              op.dataset_internal_id() != out.record.internal_id()) {
            return InvalidField(absl::StrCat(field, ".value"),
                                "an operation of another tenant or dataset");
          }
          if (!op.operation().done()) {
            return InvalidField(absl::StrCat(field, ".value"),
                                "an operation not done; only done operations move");
          }
          const absl::string_view id = OperationId(op);
          if (id.empty() || key != OperationKey(op.tenant(), id)) {
            return InvalidField(absl::StrCat(field, ".key"), "not the operation's key");
          }
          std::string existing;
          rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), operations_, key, &existing);
          if (s.ok()) {
            return absl::AlreadyExistsError(
                absl::StrCat("operation '", op.operation().name(), "' already exists"));
          }
          if (!s.IsNotFound()) return FromRocks(s, "read operation");
          operations[std::string(id)] = op.operation().metadata().request_id();
          ++out.operations;
          out.operation_bytes += static_cast<int64_t>(row.value().size());
        } else if (absl::StartsWith(key, request_prefix)) {
          auto it = operations.find(row.value());
          if (it == operations.end() || it->second.empty() ||
              key.compare(request_prefix.size(), std::string::npos, it->second) != 0) {
            return InvalidField(absl::StrCat(field, ".value"),
                                "a request_id entry that names no operation imported with it");
          }
          std::string existing;
          rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), operations_, key, &existing);
          if (s.ok()) continue;  // the destination's own operation keeps its request_id
          if (!s.IsNotFound()) return FromRocks(s, "read operation request id");
        } else {
          return InvalidField(absl::StrCat(field, ".key"),
                              "not a key of the dataset tenant's operations");
        }
        batch.Put(operations_, key, row.value());
        ++out.rows;
        continue;
      }
      rocksdb::ColumnFamilyHandle* handle = DatasetFamily(family);
      if (handle == nullptr) {
        return InvalidField(absl::StrCat(field, ".column_family"),
                            absl::StrCat("'", absl::string_view(family).substr(0, 64),
                                         "' is not a column family of a dataset's rows"));
      }
      size_t key_bytes = 0;
      for (const DatasetFamilyName& f : kDatasetFamilies) {
        if (family == f.name) key_bytes = f.key_bytes;
      }
      const bool sized = key_bytes == 0 ? key.size() > prefix.size() : key.size() == key_bytes;
      if (!sized || !absl::StartsWith(key, prefix)) {
        return InvalidField(
            absl::StrCat(field, ".key"),
            absl::StrCat("not a ", family, " key of internal id ", out.record.internal_id()));
      }
      batch.Put(handle, key, row.value());
      ++out.rows;
    }
    RETURN_IF_ERROR(FromRocks(db_->Write(unsynced, &batch), "import rows"));
  }
  if (record_key.empty()) {
    return InvalidField("rows", "empty; the first row must be the dataset's record");
  }
  // The record last, so the dataset exists only with all its rows.
  std::lock_guard<std::mutex> lock(create_mu_);
  RETURN_IF_ERROR(CheckImportable(out.record));
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(BumpNextId(out.record.internal_id(), &batch));
  batch.Put(datasets_, record_key, record_bytes);
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  RETURN_IF_ERROR(FromRocks(db_->Write(wo, &batch), "import dataset record"));
  ++out.rows;
  return out;
}

absl::Status Store::CheckImportable(const storage::DatasetRecord& record) const {
  std::string existing;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), datasets_, DatasetKey(record), &existing);
  if (s.ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("dataset '", record.dataset().name(), "' already exists"));
  }
  if (!s.IsNotFound()) return FromRocks(s, "read dataset");
  ASSIGN_OR_RETURN(const bool used, InternalIdInUse(record.internal_id(), /*records_only=*/true));
  if (used) {
    return absl::AlreadyExistsError(
        absl::StrCat("a dataset with internal id ", record.internal_id(), " exists"));
  }
  return absl::OkStatus();
}

absl::Status Store::BeginImport(const storage::DatasetRecord& record) {
  std::lock_guard<std::mutex> lock(create_mu_);
  RETURN_IF_ERROR(CheckImportable(record));
  // No record holds the id, so any rows of it are an interrupted import's: remove them.
  const std::string begin = Prefix(record.internal_id());
  const std::string end = Prefix(record.internal_id() + 1);
  rocksdb::WriteBatch batch;
  for (const DatasetFamilyName& family : kDatasetFamilies) {
    batch.DeleteRange(DatasetFamily(family.name), begin, end);
  }
  ASSIGN_OR_RETURN(const int64_t ignored,
                   DeleteOperationsOf(record.tenant(), record.internal_id(), &batch));
  (void)ignored;
  // Local ids never reach the imported one, even while it is being written.
  RETURN_IF_ERROR(BumpNextId(record.internal_id(), &batch));
  rocksdb::WriteOptions wo;
  wo.sync = false;
  return FromRocks(db_->Write(wo, &batch), "clear an interrupted import");
}

absl::StatusOr<std::optional<IdEntry>> Store::FindId(uint64_t dataset_id,
                                                     absl::string_view id) const {
  std::string bytes;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ids_, IdKey(dataset_id, id), &bytes);
  if (s.IsNotFound()) return std::optional<IdEntry>();
  if (!s.ok()) return FromRocks(s, "read id");
  if (bytes.size() < 8) return absl::DataLossError("corrupt id entry");
  return std::optional<IdEntry>(
      IdEntry{static_cast<int64_t>(ReadBigEndian(bytes.data())), bytes.substr(8)});
}

absl::Status Store::WriteExamples(const storage::DatasetRecord& updated,
                                  const std::vector<ExampleWrite>& examples, bool defer_sync) {
  const uint64_t ds = updated.internal_id();
  rocksdb::WriteBatch batch;
  for (const ExampleWrite& w : examples) {
    const std::string key = SeqKey(ds, w.seq);
    batch.Put(examples_, key, w.record.SerializeAsString());
    batch.Put(embeddings_, key, w.vectors);
    if (!w.original_vectors.empty()) batch.Put(originals_, key, w.original_vectors);
    std::string id_value;
    AppendBigEndian(&id_value, static_cast<uint64_t>(w.seq));
    id_value += w.record.content_hash();
    batch.Put(ids_, IdKey(ds, w.record.example().id()), id_value);
  }
  batch.Put(datasets_, DatasetKey(updated), updated.SerializeAsString());
  rocksdb::WriteOptions wo;
  wo.sync = sync_ && !defer_sync;
  return FromRocks(db_->Write(wo, &batch), "write examples");
}

absl::Status Store::SyncWal() {
  if (!sync_) return absl::OkStatus();
  absl::Status s = FromRocks(db_->SyncWAL(), "sync the WAL");
  if (s.ok()) wal_syncs_.fetch_add(1, std::memory_order_relaxed);
  return s;
}

absl::StatusOr<storage::ExampleRecord> Store::GetExample(uint64_t dataset_id, int64_t seq) const {
  std::string bytes;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), examples_, SeqKey(dataset_id, seq), &bytes);
  if (!s.ok()) return FromRocks(s, absl::StrCat("example #", seq));
  return Parse<storage::ExampleRecord>(bytes, "example record");
}

absl::StatusOr<std::string> Store::GetEmbedding(uint64_t dataset_id, int64_t seq) const {
  std::string bytes;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), embeddings_, SeqKey(dataset_id, seq), &bytes);
  if (!s.ok()) return FromRocks(s, absl::StrCat("embedding #", seq));
  return bytes;
}

absl::StatusOr<std::optional<std::string>> Store::GetOriginalVectors(uint64_t dataset_id,
                                                                     int64_t seq) const {
  std::string bytes;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), originals_, SeqKey(dataset_id, seq), &bytes);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, absl::StrCat("original vectors #", seq));
  return std::optional<std::string>(std::move(bytes));
}

absl::Status Store::PutProjection(uint64_t dataset_id, const std::string& projection) {
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Put(wo, projections_, Prefix(dataset_id), projection), "write projection");
}

absl::StatusOr<std::string> Store::GetProjection(uint64_t dataset_id) const {
  std::string bytes;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), projections_, Prefix(dataset_id), &bytes);
  if (!s.ok()) return FromRocks(s, "projection");
  return bytes;
}

absl::Status Store::ForEachEmbedding(
    uint64_t dataset_id,
    const std::function<void(int64_t seq, const uint8_t* codes, size_t bytes)>& fn) const {
  const std::string begin = Prefix(dataset_id);
  const std::string end = Prefix(dataset_id + 1);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  // A full scan at start-up: keep it out of the block cache.
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, embeddings_));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    const rocksdb::Slice v = it->value();
    fn(static_cast<int64_t>(ReadBigEndian(it->key().data() + 8)),
       reinterpret_cast<const uint8_t*>(v.data()), v.size());
  }
  return FromRocks(it->status(), "scan embeddings");
}

absl::Status Store::ForEachExample(
    uint64_t dataset_id,
    const std::function<bool(int64_t seq, const storage::ExampleRecord&)>& fn) const {
  const std::string begin = Prefix(dataset_id);
  const std::string end = Prefix(dataset_id + 1);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, examples_));
  storage::ExampleRecord record;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (!record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("corrupt example record");
    }
    if (!fn(static_cast<int64_t>(ReadBigEndian(it->key().data() + 8)), record)) break;
  }
  return FromRocks(it->status(), "scan examples");
}

absl::Status Store::ForEachExampleHead(
    uint64_t dataset_id,
    const std::function<void(int64_t seq, const std::string& id, v1::Label label)>& fn) const {
  const std::string begin = Prefix(dataset_id);
  const std::string end = Prefix(dataset_id + 1);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper(end);
  ro.iterate_upper_bound = &upper;
  ro.fill_cache = false;  // a full scan at start-up
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, examples_));
  std::string id;
  v1::Label label = v1::LABEL_UNSPECIFIED;
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (!ParseExampleHead(it->value(), &id, &label)) {
      return absl::DataLossError("corrupt example record");
    }
    fn(static_cast<int64_t>(ReadBigEndian(it->key().data() + 8)), id, label);
  }
  return FromRocks(it->status(), "scan examples");
}

absl::Status Store::PutSelection(const storage::DatasetRecord& updated, int64_t seq,
                                 const v1::Selection& selection,
                                 const storage::OperationRecord* operation) {
  rocksdb::WriteBatch batch;
  if (operation != nullptr) {
    batch.Put(operations_, OperationKey(operation->tenant(), OperationId(*operation)),
              operation->SerializeAsString());
  }
  batch.Put(selections_, SeqKey(updated.internal_id(), seq), selection.SerializeAsString());
  batch.Put(datasets_, DatasetKey(updated), updated.SerializeAsString());
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Write(wo, &batch), "write selection");
}

absl::Status Store::PutOperation(const storage::OperationRecord& record, bool defer_sync) {
  rocksdb::WriteBatch batch;
  const absl::string_view id = OperationId(record);
  batch.Put(operations_, OperationKey(record.tenant(), id), record.SerializeAsString());
  const std::string& request_id = record.operation().metadata().request_id();
  if (!request_id.empty()) {
    batch.Put(operations_, RequestIdKey(record.tenant(), request_id),
              rocksdb::Slice(id.data(), id.size()));
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync_ && !defer_sync;
  return FromRocks(db_->Write(wo, &batch), "write operation");
}

absl::StatusOr<storage::OperationRecord> Store::GetOperation(absl::string_view tenant,
                                                             absl::string_view id) const {
  std::string bytes;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), operations_, OperationKey(tenant, id), &bytes);
  if (s.IsNotFound()) return absl::NotFoundError("operation not found");
  if (!s.ok()) return FromRocks(s, "read operation");
  return Parse<storage::OperationRecord>(bytes, "operation");
}

absl::StatusOr<std::optional<std::string>> Store::FindOperationByRequestId(
    absl::string_view tenant, absl::string_view request_id) const {
  std::string id;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), operations_, RequestIdKey(tenant, request_id), &id);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "read operation request id");
  return std::optional<std::string>(std::move(id));
}

absl::StatusOr<std::vector<storage::OperationRecord>> Store::ListOperations(
    absl::string_view tenant, absl::string_view before, int limit) const {
  std::vector<storage::OperationRecord> out;
  const std::string lower = OperationKey(tenant, "");
  // Keys of this tenant sort between "o<tenant>\0" and "o<tenant>\1".
  const std::string upper = before.empty() ? absl::StrCat("o", tenant, absl::string_view("\1", 1))
                                           : OperationKey(tenant, before);
  rocksdb::ReadOptions ro;
  rocksdb::Slice lower_bound(lower), upper_bound(upper);
  ro.iterate_lower_bound = &lower_bound;
  ro.iterate_upper_bound = &upper_bound;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, operations_));
  for (it->SeekToLast(); it->Valid() && static_cast<int>(out.size()) < limit; it->Prev()) {
    auto record = Parse<storage::OperationRecord>(it->value().ToString(), "operation");
    if (!record.ok()) return record.status();
    out.push_back(*std::move(record));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "list operations");
  return out;
}

absl::Status Store::ForEachOperation(
    const std::function<absl::Status(storage::OperationRecord)>& fn) const {
  rocksdb::ReadOptions ro;
  const std::string lower = "o", upper = "p";
  rocksdb::Slice lower_bound(lower), upper_bound(upper);
  ro.iterate_lower_bound = &lower_bound;
  ro.iterate_upper_bound = &upper_bound;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, operations_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto record = Parse<storage::OperationRecord>(it->value().ToString(), "operation");
    if (!record.ok()) return record.status();
    if (absl::Status s = fn(*std::move(record)); !s.ok()) return s;
  }
  return FromRocks(it->status(), "scan operations");
}

absl::Status Store::DeleteOperation(const storage::OperationRecord& record) {
  rocksdb::WriteBatch batch;
  batch.Delete(operations_, OperationKey(record.tenant(), OperationId(record)));
  const std::string& request_id = record.operation().metadata().request_id();
  if (!request_id.empty()) batch.Delete(operations_, RequestIdKey(record.tenant(), request_id));
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Write(wo, &batch), "delete operation");
}

absl::StatusOr<v1::Selection> Store::GetSelection(uint64_t dataset_id, int64_t seq) const {
  std::string bytes;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), selections_, SeqKey(dataset_id, seq), &bytes);
  if (s.IsNotFound()) return absl::NotFoundError("selection not found");
  if (!s.ok()) return FromRocks(s, "read selection");
  return Parse<v1::Selection>(bytes, "selection");
}

absl::StatusOr<std::vector<std::pair<int64_t, v1::Selection>>> Store::ListSelections(
    uint64_t dataset_id, int64_t before, int limit) const {
  std::vector<std::pair<int64_t, v1::Selection>> out;
  const std::string lower = Prefix(dataset_id);
  rocksdb::ReadOptions ro;
  rocksdb::Slice lower_bound(lower);
  ro.iterate_lower_bound = &lower_bound;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, selections_));
  // Newest first: walk backwards from just below `before`.
  for (it->SeekForPrev(SeqKey(dataset_id, before - 1));
       it->Valid() && static_cast<int>(out.size()) < limit; it->Prev()) {
    v1::Selection selection;
    if (!selection.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("corrupt selection");
    }
    selection.clear_items();
    out.emplace_back(static_cast<int64_t>(ReadBigEndian(it->key().data() + 8)),
                     std::move(selection));
  }
  if (absl::Status st = FromRocks(it->status(), "list selections"); !st.ok()) return st;
  return out;
}

absl::Status Store::CreateTenant(const v1::Tenant& tenant) {
  std::lock_guard<std::mutex> lock(create_mu_);
  std::string existing;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), tenants_, tenant.name(), &existing);
  if (s.ok())
    return absl::AlreadyExistsError(absl::StrCat("tenant '", tenant.name(), "' already exists"));
  if (!s.IsNotFound()) return FromRocks(s, "read tenant");
  return PutTenant(tenant);
}

absl::Status Store::PutTenant(const v1::Tenant& tenant) {
  v1::Tenant stored = tenant;
  stored.clear_usage();  // derived from the datasets at start-up
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Put(wo, tenants_, stored.name(), stored.SerializeAsString()),
                   "write tenant");
}

absl::StatusOr<std::vector<v1::Tenant>> Store::ListTenants() const {
  std::vector<v1::Tenant> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), tenants_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto tenant = Parse<v1::Tenant>(it->value().ToString(), "tenant");
    if (!tenant.ok()) return tenant.status();
    out.push_back(*std::move(tenant));
  }
  if (absl::Status st = FromRocks(it->status(), "list tenants"); !st.ok()) return st;
  return out;
}

absl::Status Store::PutToken(const storage::TokenRecord& token) {
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Put(wo, tokens_, token.token().id(), token.SerializeAsString()),
                   "write token");
}

absl::StatusOr<std::vector<storage::TokenRecord>> Store::ListTokens() const {
  std::vector<storage::TokenRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), tokens_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto token = Parse<storage::TokenRecord>(it->value().ToString(), "token");
    if (!token.ok()) return token.status();
    out.push_back(*std::move(token));
  }
  if (absl::Status st = FromRocks(it->status(), "list tokens"); !st.ok()) return st;
  return out;
}

absl::StatusOr<std::pair<uint32_t, int64_t>> Store::CreateBackup(const std::string& backup_dir) {
  std::lock_guard<std::mutex> lock(backup_mu_);
  rocksdb::BackupEngine* raw = nullptr;
  rocksdb::Status s = rocksdb::BackupEngine::Open(rocksdb::Env::Default(),
                                                  rocksdb::BackupEngineOptions(backup_dir), &raw);
  if (!s.ok()) return FromRocks(s, "open backup engine");
  std::unique_ptr<rocksdb::BackupEngine> engine(raw);
  // Flushing first puts everything in SST files, so the backup needs no WAL replay.
  rocksdb::CreateBackupOptions options;
  options.flush_before_backup = true;
  rocksdb::BackupID id = 0;
  s = engine->CreateNewBackup(options, db_.get(), &id);
  if (!s.ok()) return FromRocks(s, "create backup");
  // This backup's own figures, by its id: not "the newest", which another process writing
  // to the same directory could have replaced.
  rocksdb::BackupInfo info;
  s = engine->GetBackupInfo(id, &info);
  if (!s.ok()) return FromRocks(s, "read the new backup's info");
  return std::make_pair(static_cast<uint32_t>(id), static_cast<int64_t>(info.size));
}

absl::Status Store::RestoreBackup(const std::string& backup_dir, const std::string& data_dir,
                                  uint32_t backup_id) {
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(data_dir) / "CURRENT", ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(data_dir, " already holds a database; restore into an empty directory"));
  }
  rocksdb::BackupEngineReadOnly* raw = nullptr;
  rocksdb::Status s = rocksdb::BackupEngineReadOnly::Open(
      rocksdb::Env::Default(), rocksdb::BackupEngineOptions(backup_dir), &raw);
  if (!s.ok()) return FromRocks(s, "open backups");
  std::unique_ptr<rocksdb::BackupEngineReadOnly> engine(raw);
  std::vector<rocksdb::BackupInfo> infos;
  engine->GetBackupInfo(&infos);
  if (infos.empty()) return absl::NotFoundError(absl::StrCat("no backup in ", backup_dir));
  if (backup_id == 0) {
    return FromRocks(engine->RestoreDBFromLatestBackup(data_dir, data_dir), "restore");
  }
  return FromRocks(engine->RestoreDBFromBackup(backup_id, data_dir, data_dir),
                   absl::StrCat("restore backup ", backup_id));
}

absl::StatusOr<std::string> Store::GetOrCreateMeta(absl::string_view key,
                                                   const std::string& initial) {
  std::lock_guard<std::mutex> lock(create_mu_);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(),
                               rocksdb::Slice(key.data(), key.size()), &value);
  if (s.ok()) return value;
  if (!s.IsNotFound()) return FromRocks(s, absl::StrCat("read ", key));
  rocksdb::WriteOptions wo;
  wo.sync = true;  // a secret handed out must never be regenerated after a crash
  s = db_->Put(wo, db_->DefaultColumnFamily(), rocksdb::Slice(key.data(), key.size()), initial);
  if (!s.ok()) return FromRocks(s, absl::StrCat("write ", key));
  return initial;
}

uint64_t Store::GetIntProperty(const std::string& property) const {
  uint64_t total = 0;
  for (auto* handle : handles_) {
    uint64_t value = 0;
    if (db_->GetIntProperty(handle, property, &value)) total += value;
  }
  return total;
}

}  // namespace curation::store
