// Turns batches of client examples into durable rows: validates each record, names it
// (client id or content hash), drops duplicates, embeds it, writes the accepted ones in one
// RocksDB batch, and only then appends their vectors to the dataset's index.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "curation/v1/curation.pb.h"
#include "embedding/embedder.h"
#include "server/catalog.h"
#include "server/limits.h"
#include "store/store.h"

namespace curation::server {

class Ingestor {
 public:
  Ingestor(store::Store* store, const embedding::Embedder* embedder, const Limits& limits)
      : store_(store), embedder_(embedder), limits_(limits) {}

  // Ingests `examples` into `dataset` and adds the outcome to `summary` (counts, errors with
  // indexes offset by `first_index`, and the ids when `report_ids`). Returns the bytes the
  // dataset grew by. A non-OK status means nothing of this batch was stored (the dataset
  // vanished, or the write failed). With `defer_sync` the batch is written without its own
  // fsync (Store::WriteExamples); the caller syncs before it acknowledges. Without it, every
  // record the summary reports as accepted or duplicate is durable on return.
  absl::StatusOr<int64_t> IngestBatch(
      DatasetState& dataset, const google::protobuf::RepeatedPtrField<v1::Example>& examples,
      int64_t first_index, bool report_ids, v1::IngestExamplesResponse* summary,
      bool defer_sync = false) const;

  // IngestBatch in two steps, so that a stream can embed one message while it writes the one
  // before. Prepare validates, names and embeds `examples` (the costly, lock-free part; it
  // touches neither the store nor any summary, so it may run beside a Commit of the same
  // dataset). Commit then does the rest of IngestBatch, in the same contract, for the same
  // `examples` and `first_index`; Commits of one dataset's batches apply in call order.
  // Commit moves the records it stores out of `examples` (their texts are not copied), so
  // the caller must not read them afterwards.
  struct Prepared {
    v1::Dataset config;  // the dataset's settings as Prepare saw them (they never change)
    struct Row {
      int index = 0;  // in the batch
      std::string id;
      std::string hash;
      std::vector<float> embedding;
      // Filled by Commit: the embedding (projected, if so) in the dataset's encoding
      // (index/codec.h), and for a projected dataset that keeps them the client's vectors.
      std::string vectors;
      std::string original_vectors;
    };
    std::vector<Row> rows;                // the valid records, in batch order
    std::vector<v1::RecordError> errors;  // the invalid ones, indexes offset by first_index
  };
  Prepared Prepare(DatasetState& dataset,
                   const google::protobuf::RepeatedPtrField<v1::Example>& examples,
                   int64_t first_index) const;
  absl::StatusOr<int64_t> Commit(DatasetState& dataset,
                                 google::protobuf::RepeatedPtrField<v1::Example>* examples,
                                 int64_t first_index, Prepared prepared, bool report_ids,
                                 v1::IngestExamplesResponse* summary, bool defer_sync) const;

  // The id the server gives an example sent without one: "h" + 32 hex digits of the
  // SHA-256 of its content (everything but id, metadata and vectors).
  static std::string ContentHash(const v1::Example& example);
  static std::string HashId(const std::string& content_hash);

 private:
  // Projects (fitting the dataset's projection on the first batch, see EmbeddingConfig) and
  // encodes every pending record's vectors. INVALID_ARGUMENT if a first batch is too small
  // to fit the projection on.
  absl::Status EncodeVectors(DatasetState& dataset, const v1::Dataset& config,
                             std::vector<Prepared::Row>& pending) const;

  store::Store* store_;
  const embedding::Embedder* embedder_;
  Limits limits_;
};

}  // namespace curation::server
