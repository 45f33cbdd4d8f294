// The durable state of the service: datasets, examples, embeddings and selections in one
// RocksDB database. This is the source of truth; the vector indexes are rebuilt from it.
//
// Layout (one column family each, keys big-endian so that a dataset's rows are contiguous
// and in sequence order):
//   datasets    tenant "/" name               -> storage::DatasetRecord
//   tenants     name                          -> curation.v1.Tenant (usage not stored)
//   tokens      token id                      -> storage::TokenRecord
//   examples    internal_id(8) seq(8)         -> storage::ExampleRecord (no vectors)
//   embeddings  internal_id(8) seq(8)         -> the example's vector codes (index/codec.h, in
//                                               the dataset's encoding; chosen then rejected)
//   ids         internal_id(8) example id     -> seq(8) content_hash(32)
//   selections  internal_id(8) selection seq(8) -> curation.v1.Selection
//   default     "next_dataset_id"             -> uint64
//   projections internal_id(8)                -> a projected dataset's PCA (selection::Pca)
//   originals   internal_id(8) seq(8)         -> the client's vector codes before projection
//   operations  "o" tenant "\0" id           -> storage::OperationRecord
//               "r" tenant "\0" request_id   -> operation id
//
// Every mutation is one WriteBatch written with the WAL (fsync'd when Options::sync is set),
// so a call that returned OK survives a crash of the process. Store is thread-safe; callers
// serialise read-modify-write sequences on one dataset themselves (see server/catalog.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "curation/storage/records.pb.h"
#include "curation/v1/admin.pb.h"
#include "curation/v1/curation.pb.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace curation::store {

// One accepted example, ready to be written.
struct ExampleWrite {
  int64_t seq = 0;
  storage::ExampleRecord record;  // record.example carries no embeddings
  // The example's encoded vectors (one code, or a pair's two: chosen then rejected). The store
  // keeps bytes; what they mean is the dataset's encoding's (index/codec.h).
  std::string vectors;
  // A projected dataset that keeps the client's vectors: their codes, before the projection.
  std::string original_vectors;
};

// What the ids column family knows about an example id.
struct IdEntry {
  int64_t seq = 0;
  std::string content_hash;
};

class Store {
 public:
  struct Options {
    // fsync the WAL on every write: acknowledged data then survives power loss too, not only
    // a crash of the process.
    bool sync = true;
  };

  // Opens (creating if missing) the database in `dir`.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir,
                                                     const Options& options);
  ~Store();

  // Stores `record` under its tenant and dataset name with a fresh internal id: the local
  // counter's next one, or record.internal_id() when non-zero (a cluster allocates ids
  // itself). ALREADY_EXISTS if the tenant has a dataset of that name, or if any row of a
  // given internal id exists (a dataset's record or rows); a given id moves the local
  // counter past it, so later local ids never collide with it. Returns the stored record.
  absl::StatusOr<storage::DatasetRecord> CreateDataset(storage::DatasetRecord record);
  // NOT_FOUND if absent.
  absl::StatusOr<storage::DatasetRecord> GetDataset(absl::string_view tenant,
                                                    absl::string_view name) const;
  // Up to `limit` of the tenant's datasets with names greater than `after`, in name order.
  absl::StatusOr<std::vector<storage::DatasetRecord>> ListDatasets(absl::string_view tenant,
                                                                   absl::string_view after,
                                                                   int limit) const;
  // Every dataset of every tenant, for start-up.
  absl::Status ForEachDataset(const std::function<absl::Status(storage::DatasetRecord)>& fn) const;
  // Removes the dataset and every row that belongs to it, atomically.
  absl::Status DeleteDataset(const storage::DatasetRecord& record);

  // Moving a dataset to another store. ExportDataset calls fn with the dataset's rows, read
  // from one snapshot, in chunks of at most `max_chunk_bytes` of keys and values (a larger
  // row travels alone): first its record (the "datasets" row), then every row keyed by its
  // internal id, then its done operations with their request_id entries (queued or running
  // ones are not exported: the caller ensures there are none, see Catalog::BeginMove).
  // Stops at fn's first error and returns it. NOT_FOUND if the store has no dataset of
  // `record`'s tenant, name and internal id; INVALID_ARGUMENT if max_chunk_bytes < 1.
  absl::Status ExportDataset(const storage::DatasetRecord& record, int64_t max_chunk_bytes,
                             const std::function<absl::Status(storage::DatasetRows)>& fn) const;
  // What ImportDataset wrote.
  struct Imported {
    storage::DatasetRecord record;
    int64_t rows = 0;
    int64_t operations = 0;
    int64_t operation_bytes = 0;  // their records' bytes, for the tenant's stored_bytes
  };
  // Writes the rows of ExportDataset's chunks, which `next` returns in order (nullopt after
  // the last; an error aborts the import and is returned). The first row must be the
  // dataset's record. ALREADY_EXISTS if the tenant has a dataset of that name or a dataset
  // with that internal id exists, or an imported operation's id is taken. The rows cross the
  // network, so each is checked: INVALID_ARGUMENT ("rows[i]...") for an unknown column
  // family, a key not of the dataset's internal id (or, for operations, not a done operation
  // of the dataset's tenant and internal id, or a request_id entry not naming one imported
  // with it). The record is written last, synced, so until then the dataset does not exist:
  // rows an interrupted import left behind are removed by the next import of that internal
  // id before it writes. A request_id the destination already uses for another operation
  // keeps that one. Moves the local id counter past the internal id as CreateDataset does.
  // One import of a given dataset at a time.
  absl::StatusOr<Imported> ImportDataset(
      const std::function<absl::StatusOr<std::optional<storage::DatasetRows>>()>& next);
  // Removes the tenant's operations of the dataset with internal id `dataset_id` (a dataset
  // moved away) and their request_id entries. Returns the bytes of the records removed.
  absl::StatusOr<int64_t> DeleteOperationsOf(absl::string_view tenant, uint64_t dataset_id);

  // The id's entry, or nullopt if the dataset has no example with that id.
  absl::StatusOr<std::optional<IdEntry>> FindId(uint64_t dataset_id, absl::string_view id) const;
  // Writes the examples, their vectors and ids, and the updated dataset record in one batch.
  // With `defer_sync` the batch reaches the WAL (so it survives the process, not yet power
  // loss) without an fsync of its own; a later SyncWal() or synced write makes it durable.
  // Bulk streams use it: one tenant's megabyte-sized fsyncs would otherwise sit in front of
  // every other tenant's small synced write in the one WAL.
  absl::Status WriteExamples(const storage::DatasetRecord& updated,
                             const std::vector<ExampleWrite>& examples, bool defer_sync = false);
  // Makes every write so far durable (fsyncs the WAL); a no-op unless Options::sync.
  absl::Status SyncWal();
  // WAL fsyncs SyncWal() has done since Open, for operators and tests: a reply that reports
  // records as stored must come after one (or after a synced write of its own).
  uint64_t wal_syncs() const { return wal_syncs_.load(std::memory_order_relaxed); }
  // NOT_FOUND if absent.
  absl::StatusOr<storage::ExampleRecord> GetExample(uint64_t dataset_id, int64_t seq) const;
  // The example's vector codes (ExampleWrite::vectors). NOT_FOUND if absent.
  absl::StatusOr<std::string> GetEmbedding(uint64_t dataset_id, int64_t seq) const;
  // The client's vectors before the projection (ExampleWrite::original_vectors), or nullopt
  // if the dataset keeps none.
  absl::StatusOr<std::optional<std::string>> GetOriginalVectors(uint64_t dataset_id,
                                                                int64_t seq) const;
  // A projected dataset's projection (selection::Pca::Serialize), stored (synced) before the
  // first examples it projected; NOT_FOUND if none.
  absl::Status PutProjection(uint64_t dataset_id, const std::string& projection);
  absl::StatusOr<std::string> GetProjection(uint64_t dataset_id) const;
  // Calls fn for every example's vector codes, in sequence order. `codes` is valid only
  // during the call.
  absl::Status ForEachEmbedding(
      uint64_t dataset_id,
      const std::function<void(int64_t seq, const uint8_t* codes, size_t bytes)>& fn) const;
  // Calls fn for every example of the dataset in sequence order; stops early if fn returns
  // false.
  absl::Status ForEachExample(
      uint64_t dataset_id,
      const std::function<bool(int64_t seq, const storage::ExampleRecord&)>& fn) const;

  // As ForEachExample, but reads only each example's id and (unpaired) label, skipping the
  // texts: what start-up needs, several times faster. `id` is valid only during the call.
  absl::Status ForEachExampleHead(
      uint64_t dataset_id,
      const std::function<void(int64_t seq, const std::string& id, v1::Label label)>& fn) const;

  // Stores a selection under (dataset, seq) together with the updated dataset record and,
  // if given, the operation that made it (done, holding the selection): one batch, so a crash
  // never leaves a stored selection whose operation would run again.
  absl::Status PutSelection(const storage::DatasetRecord& updated, int64_t seq,
                            const v1::Selection& selection,
                            const storage::OperationRecord* operation = nullptr);
  // NOT_FOUND if absent.
  absl::StatusOr<v1::Selection> GetSelection(uint64_t dataset_id, int64_t seq) const;
  // Up to `limit` selections with seq < `before` (newest first), without their items.
  absl::StatusOr<std::vector<std::pair<int64_t, v1::Selection>>> ListSelections(uint64_t dataset_id,
                                                                                int64_t before,
                                                                                int limit) const;

  // Operations, by tenant and id (see server-side jobs/operations.h). PutOperation creates
  // or replaces the record and, when the operation has a request_id, the request_id's entry.
  // `defer_sync` as for WriteExamples: for state changes that a crash may lose harmlessly.
  absl::Status PutOperation(const storage::OperationRecord& record, bool defer_sync = false);
  // NOT_FOUND if absent.
  absl::StatusOr<storage::OperationRecord> GetOperation(absl::string_view tenant,
                                                        absl::string_view id) const;
  // The id of the operation that `request_id` of `tenant` started, or nullopt.
  absl::StatusOr<std::optional<std::string>> FindOperationByRequestId(
      absl::string_view tenant, absl::string_view request_id) const;
  // Up to `limit` of the tenant's operations with ids below `before` (empty: from the
  // newest), newest first (ids sort by creation time).
  absl::StatusOr<std::vector<storage::OperationRecord>> ListOperations(absl::string_view tenant,
                                                                       absl::string_view before,
                                                                       int limit) const;
  // Every operation of every tenant, for start-up; stops at fn's first error.
  absl::Status ForEachOperation(
      const std::function<absl::Status(storage::OperationRecord)>& fn) const;
  // Removes the operation and its request_id entry.
  absl::Status DeleteOperation(const storage::OperationRecord& record);

  // Tenants. PutTenant creates or replaces; CreateTenant fails with ALREADY_EXISTS.
  absl::Status CreateTenant(const v1::Tenant& tenant);
  absl::Status PutTenant(const v1::Tenant& tenant);
  absl::StatusOr<std::vector<v1::Tenant>> ListTenants() const;

  // Tokens, by id; PutToken creates or replaces.
  absl::Status PutToken(const storage::TokenRecord& token);
  absl::StatusOr<std::vector<storage::TokenRecord>> ListTokens() const;

  // A consistent backup of the whole database as a new backup in `backup_dir` (RocksDB
  // BackupEngine layout). Returns its id and size. Calls are serialised: two BackupEngines on
  // one directory would race on its temporary files and each one's cleanup could delete the
  // other's.
  absl::StatusOr<std::pair<uint32_t, int64_t>> CreateBackup(const std::string& backup_dir);
  // Restores backup `backup_id` of `backup_dir` (0: the newest) into `data_dir`, which must
  // not hold a database yet (FAILED_PRECONDITION otherwise).
  static absl::Status RestoreBackup(const std::string& backup_dir, const std::string& data_dir,
                                    uint32_t backup_id = 0);
  static absl::Status RestoreLatestBackup(const std::string& backup_dir,
                                          const std::string& data_dir) {
    return RestoreBackup(backup_dir, data_dir, 0);
  }

  // The value of `key` in the default column family; if absent, stores `initial` there
  // (synced) and returns it. For server-wide secrets that must outlive restarts and travel
  // with backups.
  absl::StatusOr<std::string> GetOrCreateMeta(absl::string_view key, const std::string& initial);

  // Live figures for operators, e.g. "rocksdb.estimate-live-data-size".
  uint64_t GetIntProperty(const std::string& property) const;

 private:
  Store() = default;
  // The handle of a column family holding dataset rows, by name; null for any other name.
  rocksdb::ColumnFamilyHandle* DatasetFamily(absl::string_view name) const;
  // Whether a dataset record or any row keyed by `dataset_id` exists. Requires create_mu_.
  absl::StatusOr<bool> InternalIdInUse(uint64_t dataset_id, bool records_only) const;
  // ALREADY_EXISTS if the tenant has a dataset of record's name, or a dataset record holds
  // its internal id. Requires create_mu_.
  absl::Status CheckImportable(const storage::DatasetRecord& record) const;
  // Checks that `record` can be imported, removes an interrupted import's rows of its
  // internal id and moves the local id counter past it.
  absl::Status BeginImport(const storage::DatasetRecord& record);
  // The local counter's next internal id. Requires create_mu_.
  absl::StatusOr<uint64_t> NextLocalId() const;
  // Moves the local id counter past `dataset_id` in `batch`. Requires create_mu_.
  absl::Status BumpNextId(uint64_t dataset_id, rocksdb::WriteBatch* batch) const;
  // Deletes (in `batch`) the tenant's operations of `dataset_id` and their request_id
  // entries; returns their records' bytes.
  absl::StatusOr<int64_t> DeleteOperationsOf(absl::string_view tenant, uint64_t dataset_id,
                                             rocksdb::WriteBatch* batch) const;

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* datasets_ = nullptr;
  rocksdb::ColumnFamilyHandle* examples_ = nullptr;
  rocksdb::ColumnFamilyHandle* embeddings_ = nullptr;
  rocksdb::ColumnFamilyHandle* ids_ = nullptr;
  rocksdb::ColumnFamilyHandle* selections_ = nullptr;
  rocksdb::ColumnFamilyHandle* tenants_ = nullptr;
  rocksdb::ColumnFamilyHandle* tokens_ = nullptr;
  rocksdb::ColumnFamilyHandle* operations_ = nullptr;
  rocksdb::ColumnFamilyHandle* projections_ = nullptr;
  rocksdb::ColumnFamilyHandle* originals_ = nullptr;
  bool sync_ = true;
  // Serialises dataset creation (name check and id allocation) and GetOrCreateMeta.
  mutable std::mutex create_mu_;
  std::mutex backup_mu_;  // one CreateBackup at a time
  std::atomic<uint64_t> wal_syncs_{0};
};

}  // namespace curation::store
