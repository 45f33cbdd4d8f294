#include "index/vector_index.h"

#include <algorithm>
#include <mutex>

namespace curation::index {
namespace {

// Bytes per block of codes: large enough that a block's slack is small next to a big dataset,
// small enough that a tiny dataset's one block stays small (blocks grow up to this).
constexpr size_t kBlockBytes = size_t{4} << 20;
// Bytes per block of example id characters.
constexpr size_t kIdBlockBytes = size_t{1} << 20;

}  // namespace

VectorIndex::VectorIndex(int dim, bool pairs, Encoding encoding)
    : dim_(dim),
      pairs_(pairs),
      encoding_(encoding),
      code_bytes_(CodeBytes(encoding, dim)),
      block_rows_(std::max<int64_t>(
          2, static_cast<int64_t>(kBlockBytes / std::max<size_t>(1, code_bytes_)) & ~1)) {}

VectorIndex::~VectorIndex() = default;

void VectorIndex::AppendCodes(const uint8_t* codes, int64_t count) {
  while (count > 0) {
    if (blocks_.empty() || static_cast<int64_t>(blocks_.back().size()) ==
                               block_rows_ * static_cast<int64_t>(code_bytes_)) {
      blocks_.emplace_back();
    }
    std::vector<uint8_t>& block = blocks_.back();
    const int64_t room = block_rows_ - static_cast<int64_t>(block.size() / code_bytes_);
    const int64_t take = std::min(room, count);
    block.insert(block.end(), codes, codes + take * code_bytes_);
    codes += take * code_bytes_;
    count -= take;
    rows_ += take;
  }
}

void VectorIndex::Add(std::span<const int64_t> seqs, const float* values,
                      std::span<const std::string> ids, std::span<const int8_t> labels) {
  const int64_t count = static_cast<int64_t>(seqs.size()) * (pairs_ ? 2 : 1);
  std::vector<uint8_t> codes(count * code_bytes_);
  for (int64_t r = 0; r < count; ++r) {
    Encode(encoding_, values + r * dim_, dim_, codes.data() + r * code_bytes_);
  }
  AddEncoded(seqs, codes.data(), ids, labels);
}

void VectorIndex::AddEncoded(std::span<const int64_t> seqs, const uint8_t* codes,
                             std::span<const std::string> ids, std::span<const int8_t> labels) {
  if (seqs.empty()) return;
  const int per_example = pairs_ ? 2 : 1;
  std::unique_lock lock(mu_);
  AppendCodes(codes, static_cast<int64_t>(seqs.size()) * per_example);
  seqs_.insert(seqs_.end(), seqs.begin(), seqs.end());
  for (const std::string& id : ids) {
    if (id_blocks_.empty() ||
        id_blocks_.back().size() + id.size() > std::max(kIdBlockBytes, id.size())) {
      id_blocks_.emplace_back();
      id_blocks_.back().reserve(std::max(kIdBlockBytes, id.size()));
    }
    std::vector<char>& block = id_blocks_.back();
    id_refs_.push_back({static_cast<uint32_t>(id_blocks_.size() - 1),
                        static_cast<uint32_t>(block.size()), static_cast<uint32_t>(id.size())});
    block.insert(block.end(), id.begin(), id.end());
  }
  if (!pairs_) labels_.insert(labels_.end(), labels.begin(), labels.end());
}

int64_t VectorIndex::vectors() const {
  std::shared_lock lock(mu_);
  return rows_;
}

int64_t VectorIndex::examples() const {
  std::shared_lock lock(mu_);
  return pairs_ ? rows_ / 2 : rows_;
}

int64_t VectorIndex::vector_memory_bytes() const {
  std::shared_lock lock(mu_);
  int64_t bytes = 0;
  for (const auto& block : blocks_) bytes += static_cast<int64_t>(block.capacity());
  return bytes;
}

UnitMatrix VectorIndex::BuildUnits(UnitLayout layout) const {
  std::shared_lock lock(mu_);
  const int64_t n = rows_;
  UnitMatrix units;
  if (pairs_ && layout != UnitLayout::kVectors) {
    const bool concat = layout == UnitLayout::kPairConcat;
    units.dim = concat ? 2 * dim_ : dim_;
    units.rows = n / 2;
    units.data.resize(static_cast<size_t>(units.rows) * units.dim);
    units.seq.resize(units.rows);
    units.example.resize(units.rows);
    units.side.assign(units.rows, -1);
    units.label.assign(units.rows, kNoLabel);
    // block_rows_ is even, so a pair's two codes share a block.
#pragma omp parallel for schedule(static) if (units.rows > 4096)
    for (int64_t r = 0; r < units.rows; ++r) {
      float* out = units.data.data() + r * units.dim;
      if (concat) {
        Decode(encoding_, Code(2 * r), dim_, out);
        Decode(encoding_, Code(2 * r + 1), dim_, out + dim_);
      } else {
        DecodeMean(encoding_, Code(2 * r), Code(2 * r + 1), dim_, out);
      }
      units.seq[r] = seqs_[r];
      units.example[r] = r;
    }
    return units;
  }
  units.dim = dim_;
  units.rows = n;
  units.data.resize(static_cast<size_t>(n) * dim_);
  units.seq.resize(n);
  units.example.resize(n);
  units.side.resize(n);
  units.label.resize(n);
#pragma omp parallel for schedule(static) if (n > 4096)
  for (int64_t r = 0; r < n; ++r) {
    Decode(encoding_, Code(r), dim_, units.data.data() + r * dim_);
    units.example[r] = pairs_ ? r / 2 : r;
    units.seq[r] = seqs_[units.example[r]];
    units.side[r] = pairs_ ? static_cast<int8_t>(r % 2) : -1;
    units.label[r] = pairs_ ? (units.side[r] == 0 ? kDesirable : kUndesirable) : labels_[r];
  }
  return units;
}

std::vector<std::string> VectorIndex::ExampleIds(std::span<const int64_t> positions) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  out.reserve(positions.size());
  for (int64_t p : positions) {
    const IdRef& ref = id_refs_[p];
    out.emplace_back(id_blocks_[ref.block].data() + ref.offset, ref.size);
  }
  return out;
}

}  // namespace curation::index
