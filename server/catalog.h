// The datasets the server has open: for each, its latest durable record and its vector index.
//
// Writes to one dataset (ingest, selection bookkeeping, delete) hold that dataset's
// write_mu, so sequence numbers and counts are assigned by one writer at a time. Readers
// never wait for a write to disk: the record's copy has its own short lock (record_mu, held
// only to copy or replace it) and the index its own shared lock.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "curation/storage/records.pb.h"
#include "index/vector_index.h"
#include "selection/pca.h"
#include "server/tenants.h"
#include "store/store.h"

namespace curation::server {

struct DatasetState {
  std::mutex write_mu;
  // Written only under write_mu and record_mu both (Publish); so a writer holding write_mu may
  // read it directly, anyone else reads a Snapshot.
  storage::DatasetRecord record;
  bool deleted = false;  // guarded by write_mu; set once the store forgot it
  // Being moved to another server (Catalog::BeginMove): writes are refused, reads go on.
  // Written under write_mu, so a writer holding it sees a settled value; others may peek.
  std::atomic<bool> moving{false};
  std::unique_ptr<index::VectorIndex> index;
  // A projected dataset's PCA (EmbeddingConfig.projection), once its first ingest fitted it;
  // set and read under write_mu.
  std::shared_ptr<const selection::Pca> projection;
  int64_t projection_fit_rows = 0;  // what it was fitted on, for the dataset's record
  double projection_retained_variance = 0;

  // A copy of the latest durable record.
  storage::DatasetRecord Snapshot() {
    std::lock_guard<std::mutex> lock(record_mu);
    return record;
  }
  // Replaces the record after its write is durable. Requires write_mu held.
  void Publish(storage::DatasetRecord updated) {
    std::lock_guard<std::mutex> lock(record_mu);
    record = std::move(updated);
  }

 private:
  std::mutex record_mu;
};

// OK, or UNAVAILABLE "dataset <name> is being moved; retry shortly" while the dataset (of
// that name) is being moved. Writers call it holding write_mu, before they change anything.
absl::Status CheckNotMoving(const DatasetState& dataset, absl::string_view name);

// Commits a selection made for `record` (a select operation of the dataset's tenant): assigns
// the dataset's next selection number and an id (selection_ids.h), counts the selection into
// the dataset's and the tenant's stored_bytes, and writes the selection, the dataset's record
// and the operation, marked done by `succeed` and holding the selection without its items,
// in one write; then publishes the dataset's record. RESOURCE_EXHAUSTED (max_stored_bytes)
// NOT_FOUND (the dataset was deleted) or UNAVAILABLE (it is being moved) change nothing.
// Takes the dataset's write_mu.
absl::Status CommitSelection(DatasetState& dataset, v1::Selection selection, store::Store& store,
                             TenantRegistry& tenants, storage::OperationRecord* record,
                             const std::function<void(storage::OperationRecord*)>& succeed);

class Catalog {
 public:
  // Opens every dataset of the store, rebuilds its index from the stored vectors, and counts
  // it into its tenant's usage. `progress(done, total)` is called after each dataset.
  static absl::StatusOr<std::unique_ptr<Catalog>> Load(
      store::Store* store, TenantRegistry* tenants,
      const std::function<void(int64_t done, int64_t total)>& progress = nullptr);

  // The tenant's open dataset, or nullptr.
  std::shared_ptr<DatasetState> Find(const std::string& tenant, const std::string& name) const;
  // The tenant's open dataset with this internal id, or nullptr. Answers from memory only,
  // so callers can refuse another tenant's ids before anything is read from the store.
  std::shared_ptr<DatasetState> FindByInternalId(const std::string& tenant,
                                                 uint64_t internal_id) const;
  // Creates the dataset (of record.tenant()) in the store and opens it. ALREADY_EXISTS if
  // the tenant has a dataset of that name.
  absl::StatusOr<std::shared_ptr<DatasetState>> Create(storage::DatasetRecord record);
  // Deletes the dataset from the store and closes it. Returns its last record. UNAVAILABLE
  // while it is being moved.
  absl::StatusOr<storage::DatasetRecord> Delete(const std::string& tenant, const std::string& name);

  // Moving a dataset to another server. BeginMove freezes it: once the write in flight (if
  // any) has finished, every write to it is refused with UNAVAILABLE (CheckNotMoving) and
  // changes nothing, while reads go on. Returns its record, which no write changes until
  // EndMove: the one to export (Store::ExportDataset). FAILED_PRECONDITION, naming the
  // count, if `active_operations(internal id)` (its queued and running operations) is not 0,
  // so no job straddles a move; also if it is being moved already. NOT_FOUND if absent.
  absl::StatusOr<storage::DatasetRecord> BeginMove(
      const std::string& tenant, const std::string& name,
      const std::function<int64_t(uint64_t internal_id)>& active_operations);
  // Ends a move BeginMove began. `moved`: the destination has it, so the local copy is
  // deleted with its operations (Store::DeleteOperationsOf) and the tenant's usage given back
  // as DeleteDataset does; else the dataset takes writes again. FAILED_PRECONDITION if it is
  // not being moved, NOT_FOUND if absent.
  absl::Status EndMove(const std::string& tenant, const std::string& name, bool moved);
  // Opens a dataset Store::ImportDataset wrote (as Load does: the index rebuilt from the
  // stored vectors) and counts it, and `operation_bytes` of operations imported with it
  // (Store::Imported), into its tenant's usage. The imported done operations need nothing
  // more: jobs::Operations reads done operations from the store. ALREADY_EXISTS if the
  // tenant has an open dataset of that name; NOT_FOUND if the store has no dataset of that
  // tenant, name and internal id; DATA_LOSS if its rows do not match its record.
  absl::StatusOr<std::shared_ptr<DatasetState>> Adopt(const storage::DatasetRecord& record,
                                                      int64_t operation_bytes = 0);

  int64_t size() const;
  // Bytes the encoded vectors of every open dataset take in memory (VectorIndex's blocks).
  int64_t VectorMemoryBytes() const;

 private:
  Catalog(store::Store* store, TenantRegistry* tenants) : store_(store), tenants_(tenants) {}
  static std::shared_ptr<DatasetState> Open(storage::DatasetRecord record);
  // Opens a stored dataset: its projection, and its index from the stored vectors.
  static absl::StatusOr<std::shared_ptr<DatasetState>> OpenStored(store::Store* store,
                                                                  storage::DatasetRecord record);
  // Deletes the dataset from the store and closes it. Requires state.write_mu.
  absl::Status DeleteLocked(const std::string& tenant, const std::string& name,
                            const std::shared_ptr<DatasetState>& state);

  store::Store* store_;
  TenantRegistry* tenants_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<DatasetState>> datasets_;  // by "tenant/name"
};

// The stored vectors of example `seq` of the dataset `record` describes, as its client sees
// them (GetExamples with include_embeddings): the client's own vectors if the dataset keeps
// them, else the ones its selections see (projected, if it projects), decoded to float32. One
// vector for an unpaired example; chosen then rejected for a pair (`pair`). DATA_LOSS if they
// are missing or not the size the record says.
absl::StatusOr<std::vector<float>> ReadVectors(const store::Store& store,
                                               const storage::DatasetRecord& record, int64_t seq,
                                               bool pair);

}  // namespace curation::server
