// The in-memory vector index of one dataset.
//
// Every stored vector lives in a FAISS flat inner-product index whose ids map back to
// examples: id = 2*seq + side for pairs (side 0 = chosen, 1 = rejected), id = seq for
// unpaired examples. The index is derived state: the server rebuilds it from the store at
// start-up and appends to it after each durable write, so after any crash it agrees with
// what the store acknowledged.
//
// Selection methods read their input matrix from here (BuildUnits) rather than from RocksDB,
// which keeps a selection free of disk reads.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <vector>

namespace faiss {
struct IndexFlat;
}

namespace curation::index {

// A row-major matrix of selection units and, for each row, where it came from.
struct UnitMatrix {
  int64_t rows = 0;
  int dim = 0;
  std::vector<float> data;
  std::vector<int64_t> seq;  // example sequence number of each row
  std::vector<int8_t> side;  // -1 = whole example (pair mean or unpaired), 0 = chosen, 1 = rejected
};

class VectorIndex {
 public:
  // `pairs`: each example contributes two vectors (chosen, rejected) instead of one.
  VectorIndex(int dim, bool pairs);
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  int dim() const { return dim_; }
  bool pairs() const { return pairs_; }

  // Appends the vectors of examples seqs[i], whose floats are values[i*width..] with
  // width = dim (unpaired) or 2*dim (pairs). Seqs must exceed every seq already added.
  void Add(const std::vector<int64_t>& seqs, const float* values);

  // Number of vectors held (2 per pair).
  int64_t vectors() const;
  int64_t examples() const;

  // The selection matrix: with `pair_units` one row per pair holding the mean of its two
  // sides; otherwise one row per vector. Rows are in sequence order (chosen before rejected).
  UnitMatrix BuildUnits(bool pair_units) const;

 private:
  const int dim_;
  const bool pairs_;
  mutable std::shared_mutex mu_;
  std::unique_ptr<faiss::IndexFlat> flat_;  // rows in insertion order
  std::vector<int64_t> ids_;                // FAISS id of every row
};

}  // namespace curation::index
