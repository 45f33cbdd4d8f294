#include "server/catalog.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <optional>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "index/codec_proto.h"
#include "server/selection_ids.h"

namespace curation::server {
namespace {

std::string Key(const std::string& tenant, const std::string& name) {
  return absl::StrCat(tenant, "/", name);
}

}  // namespace

std::shared_ptr<DatasetState> Catalog::Open(storage::DatasetRecord record) {
  auto state = std::make_shared<DatasetState>();
  const v1::EmbeddingConfig& embedding = record.dataset().embedding();
  // A projected dataset's index holds the projected vectors.
  const int dim = embedding.projection().dim() > 0 ? embedding.projection().dim() : embedding.dim();
  state->index =
      std::make_unique<index::VectorIndex>(dim, record.dataset().kind() == v1::DATASET_KIND_PAIRS,
                                           index::FromProto(embedding.encoding()));
  state->record = std::move(record);
  return state;
}

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Load(
    store::Store* store, TenantRegistry* tenants,
    const std::function<void(int64_t done, int64_t total)>& progress) {
  auto catalog = std::unique_ptr<Catalog>(new Catalog(store, tenants));
  std::vector<storage::DatasetRecord> records;
  absl::Status listed = store->ForEachDataset([&](storage::DatasetRecord record) {
    records.push_back(std::move(record));
    return absl::OkStatus();
  });
  if (!listed.ok()) return listed;
  int64_t done = 0;
  for (storage::DatasetRecord& record : records) {
    const std::string key = Key(record.tenant(), record.dataset().name());
    tenants->CountLoadedDataset(record.tenant(), record.dataset().example_count(),
                                record.dataset().stored_bytes());
    ASSIGN_OR_RETURN(std::shared_ptr<DatasetState> state, OpenStored(store, std::move(record)));
    catalog->datasets_[key] = std::move(state);
    if (progress) progress(++done, static_cast<int64_t>(records.size()));
  }
  return catalog;
}

absl::StatusOr<std::shared_ptr<DatasetState>> Catalog::OpenStored(store::Store* store,
                                                                  storage::DatasetRecord record) {
  const std::string key = Key(record.tenant(), record.dataset().name());
  const uint64_t id = record.internal_id();
  const int64_t expected = record.dataset().example_count();
  const bool pairs = record.dataset().kind() == v1::DATASET_KIND_PAIRS;
  const v1::Projection projection = record.dataset().embedding().projection();
  auto state = Open(std::move(record));
  if (projection.fit_rows() > 0) {
    ASSIGN_OR_RETURN(const std::string bytes, store->GetProjection(id));
    ASSIGN_OR_RETURN(selection::Pca pca, selection::Pca::Deserialize(bytes));
    state->projection = std::make_shared<const selection::Pca>(std::move(pca));
    state->projection_fit_rows = projection.fit_rows();
    state->projection_retained_variance = projection.retained_variance();
  }
  // The index keeps ids and labels so that selections need no reads of the store; they
  // come from the example rows, a second scan next to the vectors'. The ids wait for their
  // vectors packed in one buffer: a std::string each would cost ~80 bytes, 800 MB at 10M.
  std::vector<int64_t> example_seqs;
  std::string id_chars;
  std::vector<size_t> id_ends;
  std::vector<int8_t> labels;
  // The record's count sizes the arrays up front (bounded, so a damaged record cannot ask
  // for absurd memory; the scan checks the count anyway).
  const size_t reserve = static_cast<size_t>(std::clamp<int64_t>(expected, 0, int64_t{1} << 26));
  example_seqs.reserve(reserve);
  id_ends.reserve(reserve);
  absl::Status scanned = store->ForEachExampleHead(
      id, [&](int64_t seq, const std::string& example_id, v1::Label label) {
        example_seqs.push_back(seq);
        id_chars += example_id;
        id_ends.push_back(id_chars.size());
        if (!pairs) {
          labels.push_back(label == v1::LABEL_DESIRABLE ? index::kDesirable : index::kUndesirable);
        }
      });
  if (!scanned.ok()) return scanned;
  // Batches of rows take the index's lock rarely without holding the dataset's codes twice.
  std::vector<int64_t> seqs;
  std::string codes;
  const size_t example_bytes = state->index->code_bytes() * (pairs ? 2 : 1);
  size_t added = 0;  // examples handed to the index so far
  bool aligned = true;
  std::vector<std::string> batch_ids;
  auto flush = [&] {
    batch_ids.clear();
    for (size_t i = added; i < added + seqs.size(); ++i) {
      const size_t begin = i == 0 ? 0 : id_ends[i - 1];
      batch_ids.emplace_back(id_chars, begin, id_ends[i] - begin);
    }
    const std::span<const int8_t> batch_labels =
        pairs ? std::span<const int8_t>()
              : std::span<const int8_t>(labels.data() + added, seqs.size());
    state->index->AddEncoded(seqs, reinterpret_cast<const uint8_t*>(codes.data()), batch_ids,
                             batch_labels);
    added += seqs.size();
    seqs.clear();
    codes.clear();
  };
  absl::Status s = store->ForEachEmbedding(id, [&](int64_t seq, const uint8_t* v, size_t n) {
    const size_t at = added + seqs.size();
    if (at >= example_seqs.size() || example_seqs[at] != seq || n != example_bytes) {
      aligned = false;
      return;
    }
    seqs.push_back(seq);
    codes.append(reinterpret_cast<const char*>(v), n);
    if (seqs.size() >= 4096) flush();
  });
  if (!s.ok()) return s;
  if (!aligned || added + seqs.size() != example_seqs.size()) {
    return absl::DataLossError(
        absl::StrCat("dataset '", key, "': the stored examples and vectors do not match"));
  }
  flush();
  if (state->index->examples() != expected) {
    return absl::DataLossError(absl::StrCat("dataset '", key, "': the record counts ", expected,
                                            " examples but ", state->index->examples(),
                                            " vectors are stored"));
  }
  return state;
}

absl::StatusOr<std::vector<float>> ReadVectors(const store::Store& store,
                                               const storage::DatasetRecord& record, int64_t seq,
                                               bool pair) {
  const uint64_t id = record.internal_id();
  const v1::EmbeddingConfig& embedding = record.dataset().embedding();
  std::string codes;
  int dim = embedding.dim();
  if (embedding.projection().keep_original()) {
    ASSIGN_OR_RETURN(std::optional<std::string> original, store.GetOriginalVectors(id, seq));
    if (!original.has_value()) {
      return absl::DataLossError(absl::StrCat("the original vectors of example #", seq));
    }
    codes = std::move(*original);
  } else {
    ASSIGN_OR_RETURN(codes, store.GetEmbedding(id, seq));
    if (embedding.projection().dim() > 0) dim = embedding.projection().dim();
  }
  const index::Encoding encoding = index::FromProto(embedding.encoding());
  const size_t code_bytes = index::CodeBytes(encoding, dim);
  const size_t vectors = pair ? 2 : 1;
  if (codes.size() != code_bytes * vectors) {
    return absl::DataLossError(absl::StrCat("the vectors of example #", seq, " are ", codes.size(),
                                            " bytes, not ", code_bytes * vectors));
  }
  std::vector<float> out(vectors * dim);
  for (size_t v = 0; v < vectors; ++v) {
    index::Decode(encoding, reinterpret_cast<const uint8_t*>(codes.data()) + v * code_bytes, dim,
                  out.data() + v * dim);
  }
  return out;
}

std::shared_ptr<DatasetState> Catalog::Find(const std::string& tenant,
                                            const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = datasets_.find(Key(tenant, name));
  return it == datasets_.end() ? nullptr : it->second;
}

std::shared_ptr<DatasetState> Catalog::FindByInternalId(const std::string& tenant,
                                                        uint64_t internal_id) const {
  std::shared_lock lock(mu_);
  // Keys are "tenant/name" and names hold no '/', so the tenant's datasets are one range.
  const std::string prefix = tenant + "/";
  for (auto it = datasets_.lower_bound(prefix);
       it != datasets_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    // The record's own tenant as well: a tenant named "a/b" shares the prefix of "a".
    const storage::DatasetRecord record = it->second->Snapshot();
    if (record.internal_id() == internal_id && record.tenant() == tenant) return it->second;
  }
  return nullptr;
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
  RETURN_IF_ERROR(CheckNotMoving(*state, name));
  RETURN_IF_ERROR(DeleteLocked(tenant, name, state));
  return state->record;
}

absl::Status Catalog::DeleteLocked(const std::string& tenant, const std::string& name,
                                   const std::shared_ptr<DatasetState>& state) {
  RETURN_IF_ERROR(store_->DeleteDataset(state->record));
  state->deleted = true;
  std::unique_lock lock(mu_);
  auto it = datasets_.find(Key(tenant, name));
  if (it != datasets_.end() && it->second == state) datasets_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<storage::DatasetRecord> Catalog::BeginMove(
    const std::string& tenant, const std::string& name,
    const std::function<int64_t(uint64_t internal_id)>& active_operations) {
  std::shared_ptr<DatasetState> state = Find(tenant, name);
  if (state == nullptr) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  std::lock_guard<std::mutex> write(state->write_mu);
  if (state->deleted) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  if (state->moving.load()) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", name, "' is being moved already"));
  }
  // Counted under write_mu, so a selection's commit cannot slip in between; a job submitted
  // from here on is refused (CheckNotMoving, in the job runner's Prepare and Run).
  const int64_t active = active_operations ? active_operations(state->record.internal_id()) : 0;
  if (active > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "dataset '", name, "' has ", active,
        " queued or running operation(s); wait for them or cancel them, then move it"));
  }
  state->moving.store(true);
  return state->record;
}

absl::Status Catalog::EndMove(const std::string& tenant, const std::string& name, bool moved) {
  std::shared_ptr<DatasetState> state = Find(tenant, name);
  if (state == nullptr) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  std::lock_guard<std::mutex> write(state->write_mu);
  if (state->deleted) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  if (!state->moving.load()) {
    return absl::FailedPreconditionError(absl::StrCat("dataset '", name, "' is not being moved"));
  }
  if (!moved) {
    state->moving.store(false);
    return absl::OkStatus();
  }
  // The operations first: if the dataset's delete then fails, it is still here (frozen) and
  // the destination has copies of them anyway.
  ASSIGN_OR_RETURN(const int64_t operation_bytes,
                   store_->DeleteOperationsOf(tenant, state->record.internal_id()));
  tenants_->AddStoredBytes(tenant, -operation_bytes, false).IgnoreError();
  RETURN_IF_ERROR(DeleteLocked(tenant, name, state));
  if (auto t = tenants_->Find(tenant); t.ok()) {
    tenants_->ReleaseDataset(**t, state->record.dataset().example_count(),
                             state->record.dataset().stored_bytes());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<DatasetState>> Catalog::Adopt(const storage::DatasetRecord& record,
                                                             int64_t operation_bytes) {
  const std::string key = Key(record.tenant(), record.dataset().name());
  const auto exists = absl::AlreadyExistsError(
      absl::StrCat("dataset '", record.dataset().name(), "' already exists"));
  if (Find(record.tenant(), record.dataset().name()) != nullptr) return exists;
  // The stored record, not the caller's copy: the index must match what the store holds.
  ASSIGN_OR_RETURN(storage::DatasetRecord stored,
                   store_->GetDataset(record.tenant(), record.dataset().name()));
  if (stored.internal_id() != record.internal_id()) {
    return absl::NotFoundError(absl::StrCat("dataset '", record.dataset().name(),
                                            "' with internal id ", record.internal_id(),
                                            " not found"));
  }
  const int64_t examples = stored.dataset().example_count();
  const int64_t bytes = stored.dataset().stored_bytes();
  ASSIGN_OR_RETURN(std::shared_ptr<DatasetState> state, OpenStored(store_, std::move(stored)));
  {
    std::unique_lock lock(mu_);
    if (!datasets_.emplace(key, state).second) return exists;
  }
  tenants_->CountLoadedDataset(record.tenant(), examples, bytes);
  tenants_->AddStoredBytes(record.tenant(), operation_bytes, false).IgnoreError();
  return state;
}

int64_t Catalog::size() const {
  std::shared_lock lock(mu_);
  return static_cast<int64_t>(datasets_.size());
}

int64_t Catalog::VectorMemoryBytes() const {
  std::shared_lock lock(mu_);
  int64_t bytes = 0;
  for (const auto& [key, state] : datasets_) bytes += state->index->vector_memory_bytes();
  return bytes;
}

absl::Status CheckNotMoving(const DatasetState& dataset, absl::string_view name) {
  if (!dataset.moving.load()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("dataset ", name, " is being moved; retry shortly"));
}

absl::Status CommitSelection(DatasetState& dataset, v1::Selection selection, store::Store& store,
                             TenantRegistry& tenants, storage::OperationRecord* record,
                             const std::function<void(storage::OperationRecord*)>& succeed) {
  std::lock_guard<std::mutex> lock(dataset.write_mu);
  if (dataset.deleted) return absl::NotFoundError("dataset was deleted during the selection");
  RETURN_IF_ERROR(CheckNotMoving(dataset, dataset.record.dataset().name()));
  storage::DatasetRecord updated = dataset.record;
  const int64_t seq = updated.next_selection_seq();
  updated.set_next_selection_seq(seq + 1);
  updated.mutable_dataset()->set_selection_count(updated.dataset().selection_count() + 1);
  selection.set_id(MakeSelectionId(updated, seq));
  *selection.mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  // A stored selection (a whole-pool ranking can be megabytes) is the tenant's storage like
  // its examples: counted into the dataset's stored_bytes (so a restart counts it again and a
  // delete releases it) and refused past max_stored_bytes, before anything is written.
  const int64_t bytes = static_cast<int64_t>(selection.ByteSizeLong());
  if (absl::Status s = tenants.AddStoredBytes(record->tenant(), bytes, /*enforce=*/true); !s.ok()) {
    return s;
  }
  updated.mutable_dataset()->set_stored_bytes(updated.dataset().stored_bytes() + bytes);
  v1::Selection* result = record->mutable_operation()->mutable_selection();
  *result = selection;
  result->clear_items();  // read from the stored selection when the operation is read
  record->set_selection_seq(seq);
  succeed(record);
  if (absl::Status s = store.PutSelection(updated, seq, selection, record); !s.ok()) {
    tenants.AddStoredBytes(record->tenant(), -bytes, false).IgnoreError();
    return s;
  }
  dataset.Publish(std::move(updated));
  return absl::OkStatus();
}

}  // namespace curation::server
