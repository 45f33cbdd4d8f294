#include "index/vector_index.h"

#include <faiss/IndexFlat.h>

#include <mutex>

namespace curation::index {

VectorIndex::VectorIndex(int dim, bool pairs)
    : dim_(dim), pairs_(pairs), flat_(std::make_unique<faiss::IndexFlatIP>(dim)) {}

VectorIndex::~VectorIndex() = default;

void VectorIndex::Add(std::span<const int64_t> seqs, const float* values,
                      std::span<const std::string> ids, std::span<const int8_t> labels) {
  if (seqs.empty()) return;
  const int per_example = pairs_ ? 2 : 1;
  std::unique_lock lock(mu_);
  // Rows of one example are contiguous in `values` (chosen then rejected), which is already
  // the index's row order, so one add() takes the whole batch.
  flat_->add(static_cast<faiss::Index::idx_t>(seqs.size() * per_example), values);
  for (int64_t seq : seqs) {
    for (int s = 0; s < per_example; ++s) ids_.push_back(pairs_ ? 2 * seq + s : seq);
  }
  example_ids_.insert(example_ids_.end(), ids.begin(), ids.end());
  if (!pairs_) labels_.insert(labels_.end(), labels.begin(), labels.end());
}

int64_t VectorIndex::vectors() const {
  std::shared_lock lock(mu_);
  return flat_->ntotal;
}

int64_t VectorIndex::examples() const {
  std::shared_lock lock(mu_);
  return pairs_ ? flat_->ntotal / 2 : flat_->ntotal;
}

UnitMatrix VectorIndex::BuildUnits(UnitLayout layout) const {
  std::shared_lock lock(mu_);
  const float* xb = flat_->get_xb();
  const int64_t n = flat_->ntotal;
  UnitMatrix units;
  if (pairs_ && layout != UnitLayout::kVectors) {
    const bool concat = layout == UnitLayout::kPairConcat;
    units.dim = concat ? 2 * dim_ : dim_;
    units.rows = n / 2;
    if (concat) {
      // The index already stores a pair's sides next to each other.
      units.data.assign(xb, xb + n * dim_);
    } else {
      units.data.resize(static_cast<size_t>(units.rows) * dim_);
    }
    units.seq.resize(units.rows);
    units.example.resize(units.rows);
    units.side.assign(units.rows, -1);
    units.label.assign(units.rows, kNoLabel);
    for (int64_t r = 0; r < units.rows; ++r) {
      if (!concat) {
        const float* chosen = xb + (2 * r) * dim_;
        const float* rejected = chosen + dim_;
        float* out = units.data.data() + r * dim_;
        for (int j = 0; j < dim_; ++j) out[j] = 0.5f * (chosen[j] + rejected[j]);
      }
      units.seq[r] = ids_[2 * r] / 2;
      units.example[r] = r;
    }
    return units;
  }
  units.dim = dim_;
  units.rows = n;
  units.data.assign(xb, xb + n * dim_);
  units.seq.resize(n);
  units.example.resize(n);
  units.side.resize(n);
  units.label.resize(n);
  for (int64_t r = 0; r < n; ++r) {
    units.seq[r] = pairs_ ? ids_[r] / 2 : ids_[r];
    units.example[r] = pairs_ ? r / 2 : r;
    units.side[r] = pairs_ ? static_cast<int8_t>(ids_[r] % 2) : -1;
    units.label[r] = pairs_ ? (units.side[r] == 0 ? kDesirable : kUndesirable) : labels_[r];
  }
  return units;
}

std::vector<std::string> VectorIndex::ExampleIds(std::span<const int64_t> positions) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  out.reserve(positions.size());
  for (int64_t p : positions) out.push_back(example_ids_[p]);
  return out;
}

}  // namespace curation::index
