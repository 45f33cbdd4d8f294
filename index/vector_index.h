// The in-memory vector index of one dataset.
//
// Every stored vector is held encoded (codec.h: float32, float16 or SQ8, the dataset's
// choice) in insertion order: one row per unpaired example, two per pair (chosen, then
// rejected). Next to the vectors it keeps each example's sequence number, id and label, so
// that a selection maps rows to ids and balances labels without reading the store. The index is
// derived state: the server rebuilds it from the store at start-up and appends to it after
// each durable write, so after any crash it agrees with what the store acknowledged.
//
// Selection methods read their input rows from here (Units) rather than from RocksDB, which
// keeps a selection free of disk reads, and read them in place: the rows are decoded from the
// codes as a method reads them, so a selection needs no float32 copy of the dataset. Thread-safe:
// appends take an exclusive lock, reads a shared one.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "index/codec.h"
#include "selection/rows.h"

namespace curation::index {

// How Units lays out one row.
enum class UnitLayout {
  kPairMean,    // one row per pair: (chosen + rejected) / 2, dim floats
  kPairConcat,  // one row per pair: [chosen, rejected], 2 * dim floats
  kVectors,     // one row per stored vector (a pair's two sides are two rows), dim floats
};

// Labels as the index keeps them, per example (unpaired) or per row (see UnitMatrix::label).
inline constexpr int8_t kUndesirable = 0;
inline constexpr int8_t kDesirable = 1;
inline constexpr int8_t kNoLabel = -1;

// The selection units and, for each row, where it came from.
struct UnitMatrix {
  int64_t rows = 0;
  int dim = 0;  // floats per row
  // The rows, decoded from the index's codes as they are read (no float32 copy; Decode for
  // one). They stay valid and unchanged whatever the index does afterwards: the reader shares
  // the index's full blocks of codes, which never change, and copies the last, growing one.
  selection::Rows values;
  std::vector<int64_t> seq;      // example sequence number of each row
  std::vector<int64_t> example;  // position of the row's example in the index (ingest order)
  std::vector<int8_t> side;  // -1 = whole example (pair mean or unpaired), 0 = chosen, 1 = rejected
  // kDesirable/kUndesirable for an unpaired example's row and for a pair's chosen/rejected
  // row; kNoLabel for a whole pair.
  std::vector<int8_t> label;
};

class VectorIndex {
 public:
  // `pairs`: each example contributes two vectors (chosen, rejected) instead of one.
  VectorIndex(int dim, bool pairs, Encoding encoding = Encoding::kFloat32);
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  int dim() const { return dim_; }
  bool pairs() const { return pairs_; }
  Encoding encoding() const { return encoding_; }
  // Bytes of one encoded vector.
  size_t code_bytes() const { return code_bytes_; }

  // Appends examples seqs[i] with id ids[i] and label labels[i] (kDesirable/kUndesirable for
  // unpaired datasets; ignored, and may be empty, for pairs), whose floats are
  // values[i*width..] with width = dim (unpaired) or 2*dim (pairs). Seqs must exceed every seq
  // already added; ids must have seqs' size.
  void Add(std::span<const int64_t> seqs, const float* values, std::span<const std::string> ids,
           std::span<const int8_t> labels);
  // As Add, with the vectors already encoded: codes[i * width * code_bytes() ..] for example i
  // (width 2 for pairs, chosen first), as the store holds them.
  void AddEncoded(std::span<const int64_t> seqs, const uint8_t* codes,
                  std::span<const std::string> ids, std::span<const int8_t> labels);

  // Number of vectors held (2 per pair).
  int64_t vectors() const;
  int64_t examples() const;
  // Bytes the encoded vectors take in memory (allocated, so with the last block's slack).
  int64_t vector_memory_bytes() const;

  // The selection units of the examples with seq < before_seq, in sequence order (a pair's
  // chosen vector before its rejected one). For an unpaired dataset every layout gives one row
  // per example. Costs the per-row bookkeeping (18 bytes a row) and at most one block of codes
  // (4 MB), not the rows' floats.
  UnitMatrix Units(UnitLayout layout, int64_t before_seq = INT64_MAX) const;

  // The ids of the examples at these positions (UnitMatrix::example), in the same order.
  // Requires 0 <= position < examples().
  std::vector<std::string> ExampleIds(std::span<const int64_t> positions) const;

 private:
  // Appends `count` codes. Requires the exclusive lock.
  void AppendCodes(const uint8_t* codes, int64_t count);

  const int dim_;
  const bool pairs_;
  const Encoding encoding_;
  const size_t code_bytes_;
  // Vectors live in blocks of block_rows_ codes (a few MB), so growing a large dataset never
  // copies or doubles all of it; only the last block grows.
  const int64_t block_rows_;
  mutable std::shared_mutex mu_;
  // Shared with the readers of Units: a full block never changes again, so a reader keeps it
  // alive rather than copying it.
  std::vector<std::shared_ptr<std::vector<uint8_t>>> blocks_;
  int64_t rows_ = 0;
  std::vector<int64_t> seqs_;  // per example, in insertion order
  // Example ids, packed: the chars of every id in blocks, and where each one lies. A
  // std::string per id costs about 80 bytes for a 33-character id; this, 45.
  struct IdRef {
    uint32_t block;
    uint32_t offset;
    uint32_t size;
  };
  std::vector<std::vector<char>> id_blocks_;
  std::vector<IdRef> id_refs_;
  std::vector<int8_t> labels_;  // per example (unpaired datasets only)
};

}  // namespace curation::index
