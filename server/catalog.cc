#include "server/catalog.h"

#include "absl/strings/str_cat.h"

namespace curation::server {
namespace {

std::string Key(const std::string& tenant, const std::string& name) {
  return absl::StrCat(tenant, "/", name);
}

}  // namespace

std::shared_ptr<DatasetState> Catalog::Open(storage::DatasetRecord record) {
  auto state = std::make_shared<DatasetState>();
  state->index = std::make_unique<index::VectorIndex>(
      record.dataset().embedding().dim(), record.dataset().kind() == v1::DATASET_KIND_PAIRS);
  state->record = std::move(record);
  return state;
}

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Load(
    store::Store* store, TenantRegistry* tenants,
    const std::function<void(int64_t done, int64_t total)>& progress) {
  auto catalog = std::unique_ptr<Catalog>(new Catalog(store));
  std::vector<storage::DatasetRecord> records;
  absl::Status listed = store->ForEachDataset([&](storage::DatasetRecord record) {
    records.push_back(std::move(record));
    return absl::OkStatus();
  });
  if (!listed.ok()) return listed;
  int64_t done = 0;
  for (storage::DatasetRecord& record : records) {
    const std::string key = Key(record.tenant(), record.dataset().name());
    const uint64_t id = record.internal_id();
    const int64_t expected = record.dataset().example_count();
    tenants->CountLoadedDataset(record.tenant(), expected, record.dataset().stored_bytes());
    auto state = Open(std::move(record));
    // Batches of rows keep FAISS's add() calls large without holding the dataset twice.
    std::vector<int64_t> seqs;
    std::vector<float> values;
    auto flush = [&] {
      state->index->Add(seqs, values.data());
      seqs.clear();
      values.clear();
    };
    absl::Status s = store->ForEachEmbedding(id, [&](int64_t seq, const float* v, size_t n) {
      seqs.push_back(seq);
      values.insert(values.end(), v, v + n);
      if (seqs.size() >= 4096) flush();
    });
    if (!s.ok()) return s;
    flush();
    if (state->index->examples() != expected) {
      return absl::DataLossError(absl::StrCat("dataset '", key, "': the record counts ", expected,
                                              " examples but ", state->index->examples(),
                                              " vectors are stored"));
    }
    catalog->datasets_[key] = std::move(state);
    if (progress) progress(++done, static_cast<int64_t>(records.size()));
  }
  return catalog;
}

std::shared_ptr<DatasetState> Catalog::Find(const std::string& tenant,
                                            const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = datasets_.find(Key(tenant, name));
  return it == datasets_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<DatasetState>> Catalog::Create(storage::DatasetRecord record) {
  auto stored = store_->CreateDataset(std::move(record));
  if (!stored.ok()) return stored.status();
  auto state = Open(*std::move(stored));
  std::unique_lock lock(mu_);
  datasets_[Key(state->record.tenant(), state->record.dataset().name())] = state;
  return state;
}

absl::StatusOr<storage::DatasetRecord> Catalog::Delete(const std::string& tenant,
                                                       const std::string& name) {
  std::shared_ptr<DatasetState> state = Find(tenant, name);
  if (state == nullptr) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  std::lock_guard<std::mutex> write(state->write_mu);
  if (state->deleted) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  if (absl::Status s = store_->DeleteDataset(state->record); !s.ok()) return s;
  state->deleted = true;
  std::unique_lock lock(mu_);
  auto it = datasets_.find(Key(tenant, name));
  if (it != datasets_.end() && it->second == state) datasets_.erase(it);
  return state->record;
}

int64_t Catalog::size() const {
  std::shared_lock lock(mu_);
  return static_cast<int64_t>(datasets_.size());
}

}  // namespace curation::server
