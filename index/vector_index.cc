#include "index/vector_index.h"

#include <faiss/IndexFlat.h>

#include <mutex>

namespace curation::index {

VectorIndex::VectorIndex(int dim, bool pairs)
    : dim_(dim), pairs_(pairs), flat_(std::make_unique<faiss::IndexFlatIP>(dim)) {}

VectorIndex::~VectorIndex() = default;

void VectorIndex::Add(const std::vector<int64_t>& seqs, const float* values) {
  if (seqs.empty()) return;
  const int per_example = pairs_ ? 2 : 1;
  std::unique_lock lock(mu_);
  // Rows of one example are contiguous in `values` (chosen then rejected), which is already
  // the index's row order, so one add() takes the whole batch.
  flat_->add(static_cast<faiss::Index::idx_t>(seqs.size() * per_example), values);
  for (int64_t seq : seqs) {
    for (int s = 0; s < per_example; ++s) ids_.push_back(pairs_ ? 2 * seq + s : seq);
  }
}

int64_t VectorIndex::vectors() const {
  std::shared_lock lock(mu_);
  return flat_->ntotal;
}

int64_t VectorIndex::examples() const {
  std::shared_lock lock(mu_);
  return pairs_ ? flat_->ntotal / 2 : flat_->ntotal;
}

UnitMatrix VectorIndex::BuildUnits(bool pair_units) const {
  std::shared_lock lock(mu_);
  const float* xb = flat_->get_xb();
  const int64_t n = flat_->ntotal;
  UnitMatrix units;
  units.dim = dim_;
  if (pairs_ && pair_units) {
    units.rows = n / 2;
    units.data.resize(static_cast<size_t>(units.rows) * dim_);
    units.seq.resize(units.rows);
    units.side.assign(units.rows, -1);
    for (int64_t r = 0; r < units.rows; ++r) {
      const float* chosen = xb + (2 * r) * dim_;
      const float* rejected = chosen + dim_;
      float* out = units.data.data() + r * dim_;
      for (int j = 0; j < dim_; ++j) out[j] = 0.5f * (chosen[j] + rejected[j]);
      units.seq[r] = ids_[2 * r] / 2;
    }
    return units;
  }
  units.rows = n;
  units.data.assign(xb, xb + n * dim_);
  units.seq.resize(n);
  units.side.resize(n);
  for (int64_t r = 0; r < n; ++r) {
    units.seq[r] = pairs_ ? ids_[r] / 2 : ids_[r];
    units.side[r] = pairs_ ? static_cast<int8_t>(ids_[r] % 2) : -1;
  }
  return units;
}

}  // namespace curation::index
