// The datasets the server has open: for each, its latest durable record and its vector index.
//
// Writes to one dataset (ingest, selection bookkeeping, delete) hold that dataset's
// write_mu, so sequence numbers and counts are assigned by one writer at a time; reads of
// the index take the index's own shared lock and never wait for a write to disk.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "absl/status/statusor.h"
#include "curation/storage/records.pb.h"
#include "index/vector_index.h"
#include "server/tenants.h"
#include "store/store.h"

namespace curation::server {

struct DatasetState {
  std::mutex write_mu;
  storage::DatasetRecord record;  // guarded by write_mu
  bool deleted = false;           // guarded by write_mu; set once the store forgot it
  std::unique_ptr<index::VectorIndex> index;

  // A copy of the record, taken under write_mu.
  storage::DatasetRecord Snapshot() {
    std::lock_guard<std::mutex> lock(write_mu);
    return record;
  }
};

class Catalog {
 public:
  // Opens every dataset of the store, rebuilds its index from the stored vectors, and counts
  // it into its tenant's usage. `progress(done, total)` is called after each dataset.
  static absl::StatusOr<std::unique_ptr<Catalog>> Load(
      store::Store* store, TenantRegistry* tenants,
      const std::function<void(int64_t done, int64_t total)>& progress = nullptr);

  // The tenant's open dataset, or nullptr.
  std::shared_ptr<DatasetState> Find(const std::string& tenant, const std::string& name) const;
  // Creates the dataset (of record.tenant()) in the store and opens it. ALREADY_EXISTS if
  // the tenant has a dataset of that name.
  absl::StatusOr<std::shared_ptr<DatasetState>> Create(storage::DatasetRecord record);
  // Deletes the dataset from the store and closes it. Returns its last record.
  absl::StatusOr<storage::DatasetRecord> Delete(const std::string& tenant, const std::string& name);

  int64_t size() const;

 private:
  explicit Catalog(store::Store* store) : store_(store) {}
  static std::shared_ptr<DatasetState> Open(storage::DatasetRecord record);

  store::Store* store_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<DatasetState>> datasets_;  // by "tenant/name"
};

}  // namespace curation::server
