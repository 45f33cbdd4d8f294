#include "server/ingestor.h"

#include <omp.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "index/codec.h"
#include "server/validation.h"

namespace curation::server {

namespace {

int8_t IndexLabel(const v1::Example& example) {
  return example.unpaired().label() == v1::LABEL_DESIRABLE ? index::kDesirable
                                                           : index::kUndesirable;
}

}  // namespace

std::string Ingestor::ContentHash(const v1::Example& example) {
  // The digest of "pair" or "unpaired" followed by the length-prefixed texts (and the label),
  // fed to one reused context: no copy of the texts, and no digest fetch per record.
  struct Sha256 {
    Sha256() : md(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx(EVP_MD_CTX_new()) {}
    ~Sha256() {
      EVP_MD_CTX_free(ctx);
      EVP_MD_free(md);
    }
    EVP_MD* md;
    EVP_MD_CTX* ctx;
  };
  thread_local Sha256 sha;
  EVP_DigestInit_ex2(sha.ctx, sha.md, nullptr);
  auto add = [](absl::string_view s) {
    // Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
    const uint64_t n = s.size();
    EVP_DigestUpdate(sha.ctx, &n, sizeof(n));
    EVP_DigestUpdate(sha.ctx, s.data(), s.size());
  };
  if (example.has_pair()) {
    EVP_DigestUpdate(sha.ctx, "pair", 4);
    add(example.pair().prompt());
    add(example.pair().chosen());
    add(example.pair().rejected());
  } else {
    EVP_DigestUpdate(sha.ctx, "unpaired", 8);
    add(example.unpaired().prompt());
    add(example.unpaired().completion());
    const char label = static_cast<char>(example.unpaired().label());
    EVP_DigestUpdate(sha.ctx, &label, 1);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(sha.ctx, digest, &size);
  return std::string(reinterpret_cast<const char*>(digest), size);
}

absl::Status Ingestor::EncodeVectors(DatasetState& dataset, const v1::Dataset& config,
                                     std::vector<Prepared::Row>& pending) const {
  const bool pairs = config.kind() == v1::DATASET_KIND_PAIRS;
  const int sides = pairs ? 2 : 1;
  const int64_t in_dim = config.embedding().dim();
  const v1::Projection& projection = config.embedding().projection();
  const int64_t vectors = static_cast<int64_t>(pending.size()) * sides;
  const index::Encoding encoding = dataset.index->encoding();
  const int out_dim = dataset.index->dim();
  const size_t code_bytes = dataset.index->code_bytes();
  std::shared_ptr<const selection::Pca> pca;
  std::vector<float> projected;
  if (projection.dim() > 0 && !pending.empty()) {
    std::vector<float> originals(vectors * in_dim);
    for (size_t j = 0; j < pending.size(); ++j) {
      std::copy(pending[j].embedding.begin(), pending[j].embedding.end(),
                originals.begin() + j * sides * in_dim);
    }
    const selection::MatrixView view{originals.data(), vectors, in_dim};
    projected.resize(vectors * out_dim);
    bool fitted_now = false;
    {
      std::lock_guard<std::mutex> lock(dataset.write_mu);
      if (dataset.deleted) return absl::NotFoundError("dataset was deleted during the ingest");
      RETURN_IF_ERROR(CheckNotMoving(dataset, dataset.record.dataset().name()));
      pca = dataset.projection;
      if (pca == nullptr) {
        // The first ingest fits the projection on its own vectors. A PCA of out_dim
        // components from fewer than 2 * out_dim vectors would mostly describe noise.
        const int64_t needed = 2 * static_cast<int64_t>(projection.dim());
        if (vectors < needed) {
          return InvalidField(
              "examples", absl::StrCat("the first ingest into a projected dataset fits its PCA "
                                       "on its vectors and needs at least ",
                                       needed, " (2 x projection.dim); this one has ", vectors));
        }
        selection::PcaOptions options;
        options.dim = projection.dim();
        ASSIGN_OR_RETURN(selection::Pca fitted, selection::Pca::Train(view, options));
        const double retained = fitted.Apply(view, projected.data());
        RETURN_IF_ERROR(store_->PutProjection(dataset.record.internal_id(), fitted.Serialize()));
        dataset.projection = std::make_shared<const selection::Pca>(std::move(fitted));
        dataset.projection_fit_rows = vectors;
        dataset.projection_retained_variance = retained;
        pca = dataset.projection;
        fitted_now = true;
      }
    }
    // A projection, once fitted, is never replaced: project outside the lock.
    if (!fitted_now) pca->Apply(view, projected.data());
  }
  // On the calling thread: encoding costs a few ns a value, and an OpenMP team's workers would
  // spin after every batch (see Prepare).
  for (size_t j = 0; j < pending.size(); ++j) {
    Prepared::Row& p = pending[j];
    p.vectors.resize(code_bytes * sides);
    uint8_t* code = reinterpret_cast<uint8_t*>(p.vectors.data());
    const float* values =
        pca != nullptr ? projected.data() + j * sides * out_dim : p.embedding.data();
    for (int side = 0; side < sides; ++side) {
      index::Encode(encoding, values + side * out_dim, out_dim, code + side * code_bytes);
    }
    if (pca != nullptr && projection.keep_original()) {
      const size_t original_bytes = index::CodeBytes(encoding, static_cast<int>(in_dim));
      p.original_vectors.resize(original_bytes * sides);
      uint8_t* original = reinterpret_cast<uint8_t*>(p.original_vectors.data());
      for (int side = 0; side < sides; ++side) {
        index::Encode(encoding, p.embedding.data() + side * in_dim, static_cast<int>(in_dim),
                      original + side * original_bytes);
      }
    }
  }
  return absl::OkStatus();
}

std::string Ingestor::HashId(const std::string& content_hash) {
  return "h" + absl::BytesToHexString(content_hash.substr(0, 16));
}

absl::StatusOr<int64_t> Ingestor::IngestBatch(
    DatasetState& dataset, const google::protobuf::RepeatedPtrField<v1::Example>& examples,
    int64_t first_index, bool report_ids, v1::IngestExamplesResponse* summary,
    bool defer_sync) const {
  // Commit takes the stored records' texts; these belong to the caller.
  google::protobuf::RepeatedPtrField<v1::Example> owned = examples;
  return Commit(dataset, &owned, first_index, Prepare(dataset, examples, first_index), report_ids,
                summary, defer_sync);
}

Ingestor::Prepared Ingestor::Prepare(
    DatasetState& dataset, const google::protobuf::RepeatedPtrField<v1::Example>& examples,
    int64_t first_index) const {
  Prepared prepared;
  prepared.config = dataset.Snapshot().dataset();
  const v1::Dataset& config = prepared.config;
  const bool pairs = config.kind() == v1::DATASET_KIND_PAIRS;
  const bool builtin = config.embedding().source() != v1::EmbeddingConfig::SOURCE_CLIENT;
  const int dim = config.embedding().dim();
  const int n = examples.size();
  std::vector<Prepared::Row>& pending = prepared.rows;
  pending.reserve(n);

  // Validation and hashing need no lock; only the id checks against the store must see
  // every earlier write, so they happen in Commit, under write_mu.
  for (int i = 0; i < n; ++i) {
    const v1::Example& ex = examples[i];
    const std::string path = absl::StrCat("examples[", first_index + i, "]");
    if (auto error = CheckExample(ex, config, limits_, path)) {
      v1::RecordError& e = prepared.errors.emplace_back();
      e.set_index(first_index + i);
      e.set_field(std::move(error->field));
      e.set_reason(std::move(error->reason));
      continue;
    }
    Prepared::Row p;
    p.index = i;
    p.hash = ContentHash(ex);
    p.id = ex.id().empty() ? HashId(p.hash) : ex.id();
    pending.push_back(std::move(p));
  }

  // Embedding is the costly step of a bulk load; records are independent, so spread them
  // over the batch's share of the cores: omp_get_max_threads(), which the fair-sharing rules
  // (TenantRegistry::RunIngest) set on this thread. Plain threads rather than an OpenMP team:
  // libgomp's workers spin for a while after each batch, and on a small machine that spinning
  // takes the core from the thread writing the previous batch of a stream (it was 15% of the
  // server's CPU in a bulk load on 2 cores). Threads inherit this thread's nice value.
  const int width = pairs ? 2 * dim : dim;
  auto embed_row = [&](Prepared::Row& p) {
    const v1::Example& ex = examples[p.index];
    p.embedding.resize(width);
    if (builtin) {
      // One buffer a thread for "prompt\ncompletion": no allocation per text.
      thread_local std::string text;
      auto embed = [&](const std::string& prompt, const std::string& completion, float* out) {
        text.assign(prompt);
        text.push_back('\n');
        text.append(completion);
        embedder_->Embed(text, out);
      };
      if (pairs) {
        embed(ex.pair().prompt(), ex.pair().chosen(), p.embedding.data());
        embed(ex.pair().prompt(), ex.pair().rejected(), p.embedding.data() + dim);
      } else {
        embed(ex.unpaired().prompt(), ex.unpaired().completion(), p.embedding.data());
      }
    } else if (pairs) {
      std::copy(ex.pair().chosen_embedding().begin(), ex.pair().chosen_embedding().end(),
                p.embedding.begin());
      std::copy(ex.pair().rejected_embedding().begin(), ex.pair().rejected_embedding().end(),
                p.embedding.begin() + dim);
    } else {
      std::copy(ex.unpaired().embedding().begin(), ex.unpaired().embedding().end(),
                p.embedding.begin());
    }
  };
  constexpr size_t kChunk = 16;  // rows a thread takes at a time
  const size_t chunks = (pending.size() + kChunk - 1) / kChunk;
  const int threads = static_cast<int>(
      std::min<size_t>(chunks, static_cast<size_t>(std::max(1, omp_get_max_threads()))));
  std::atomic<size_t> next_chunk{0};
  auto work = [&] {
    for (size_t c; (c = next_chunk.fetch_add(1)) < chunks;) {
      const size_t end = std::min(pending.size(), (c + 1) * kChunk);
      for (size_t j = c * kChunk; j < end; ++j) embed_row(pending[j]);
    }
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (std::thread& t : helpers) t.join();
  return prepared;
}

absl::StatusOr<int64_t> Ingestor::Commit(DatasetState& dataset,
                                         google::protobuf::RepeatedPtrField<v1::Example>* examples,
                                         int64_t first_index, Prepared prepared, bool report_ids,
                                         v1::IngestExamplesResponse* summary,
                                         bool defer_sync) const {
  const int n = examples->size();
  std::vector<std::string> ids(report_ids ? n : 0);
  std::vector<Prepared::Row>& pending = prepared.rows;
  auto reject = [&](int i, std::string field, std::string reason) {
    auto* e = summary->add_errors();
    e->set_index(first_index + i);
    e->set_field(std::move(field));
    e->set_reason(std::move(reason));
    summary->set_rejected(summary->rejected() + 1);
  };
  for (v1::RecordError& e : prepared.errors) {
    *summary->add_errors() = std::move(e);
    summary->set_rejected(summary->rejected() + 1);
  }
  // The settings EncodeVectors reads (kind, dim, projection) are fixed at creation, so
  // Prepare's snapshot serves.
  RETURN_IF_ERROR(EncodeVectors(dataset, prepared.config, pending));

  std::lock_guard<std::mutex> lock(dataset.write_mu);
  if (dataset.deleted) return absl::NotFoundError("dataset was deleted during the ingest");
  RETURN_IF_ERROR(CheckNotMoving(dataset, dataset.record.dataset().name()));
  const int64_t duplicates_before = summary->duplicates();
  storage::DatasetRecord updated = dataset.record;
  const bool pairs = updated.dataset().kind() == v1::DATASET_KIND_PAIRS;
  const size_t code_bytes = dataset.index->code_bytes();
  if (dataset.projection != nullptr && updated.dataset().embedding().projection().fit_rows() == 0) {
    // The first batch of the projection (or one after a batch whose write failed) records it.
    v1::Projection* projection =
        updated.mutable_dataset()->mutable_embedding()->mutable_projection();
    projection->set_fit_rows(dataset.projection_fit_rows);
    projection->set_retained_variance(dataset.projection_retained_variance);
  }
  const int64_t bytes_before = updated.dataset().stored_bytes();
  v1::Dataset* counts = updated.mutable_dataset();
  std::vector<store::ExampleWrite> writes;
  writes.reserve(pending.size());
  // id -> content hash, this batch; both point into `pending`, which no longer grows.
  absl::flat_hash_map<absl::string_view, const std::string*> batch_ids;
  batch_ids.reserve(pending.size());
  std::vector<int64_t> seqs;
  seqs.reserve(pending.size());
  for (Prepared::Row& p : pending) {
    v1::Example& ex = (*examples)[p.index];
    const std::string* seen_hash = nullptr;
    if (auto it = batch_ids.find(p.id); it != batch_ids.end()) seen_hash = it->second;
    std::optional<store::IdEntry> stored;
    if (seen_hash == nullptr) {
      auto found = store_->FindId(updated.internal_id(), p.id);
      if (!found.ok()) return found.status();
      stored = *std::move(found);
      if (stored) seen_hash = &stored->content_hash;
    }
    if (seen_hash != nullptr) {
      if (*seen_hash == p.hash) {
        summary->set_duplicates(summary->duplicates() + 1);
        if (report_ids) ids[p.index] = p.id;
      } else {
        reject(p.index, absl::StrCat("examples[", first_index + p.index, "].id"),
               absl::StrCat("id '", p.id, "' already holds a different example"));
      }
      continue;
    }
    store::ExampleWrite w;
    w.seq = updated.next_seq();
    updated.set_next_seq(w.seq + 1);
    v1::Example* stored_example = w.record.mutable_example();
    stored_example->Swap(&ex);  // `ex` is not read again; an id repeated later reads p.id
    stored_example->set_id(p.id);
    if (pairs) {
      stored_example->mutable_pair()->clear_chosen_embedding();
      stored_example->mutable_pair()->clear_rejected_embedding();
    } else {
      stored_example->mutable_unpaired()->clear_embedding();
      if (stored_example->unpaired().label() == v1::LABEL_DESIRABLE) {
        counts->set_desirable_count(counts->desirable_count() + 1);
      } else {
        counts->set_undesirable_count(counts->undesirable_count() + 1);
      }
    }
    w.record.set_content_hash(p.hash);
    w.vectors = std::move(p.vectors);
    w.original_vectors = std::move(p.original_vectors);
    counts->set_example_count(counts->example_count() + 1);
    counts->set_stored_bytes(counts->stored_bytes() + w.record.ByteSizeLong() + w.vectors.size() +
                             w.original_vectors.size());
    if (report_ids) ids[p.index] = p.id;
    batch_ids[p.id] = &p.hash;
    seqs.push_back(w.seq);
    writes.push_back(std::move(w));
  }
  if (!writes.empty()) {
    if (absl::Status s = store_->WriteExamples(updated, writes, defer_sync); !s.ok()) {
      // Nothing of the batch is stored; the counts were only in `updated`.
      return s;
    }
    std::string codes;
    codes.reserve(writes.size() * code_bytes * (pairs ? 2 : 1));
    std::vector<std::string> written_ids;
    written_ids.reserve(writes.size());
    std::vector<int8_t> labels;
    for (auto& w : writes) {
      codes += w.vectors;
      if (!pairs) labels.push_back(IndexLabel(w.record.example()));
      written_ids.push_back(std::move(*w.record.mutable_example()->mutable_id()));
    }
    dataset.index->AddEncoded(seqs, reinterpret_cast<const uint8_t*>(codes.data()), written_ids,
                              labels);
    dataset.Publish(std::move(updated));
  }
  // A duplicate is acknowledged as stored, but the write that stored it may be another
  // stream's, not yet fsync'd (defer_sync). A synced write of this batch covers it (an fsync
  // of the WAL covers every earlier entry); without one, sync now, before the reply.
  if (!defer_sync && writes.empty() && summary->duplicates() > duplicates_before) {
    if (absl::Status s = store_->SyncWal(); !s.ok()) return s;
  }
  summary->set_accepted(summary->accepted() + static_cast<int64_t>(writes.size()));
  summary->set_example_count(dataset.record.dataset().example_count());
  if (report_ids) {
    for (auto& id : ids) summary->add_ids(std::move(id));
  }
  return dataset.record.dataset().stored_bytes() - bytes_before;
}

}  // namespace curation::server
