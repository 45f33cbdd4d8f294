#include "index/vector_index.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <utility>

namespace curation::index {
namespace {

// Bytes per block of codes: large enough that a block's slack is small next to a big dataset,
// small enough that a tiny dataset's one block stays small (blocks grow up to this).
constexpr size_t kBlockBytes = size_t{4} << 20;
// Bytes per block of example id characters.
constexpr size_t kIdBlockBytes = size_t{1} << 20;

// Rows decoded from shared blocks of codes as they are read.
class CodeReader final : public selection::RowReader {
 public:
  // `layout` kVectors: row r is code r; kPairConcat: codes 2r and 2r+1 side by side;
  // kPairMean: their mean. `block_codes` codes per block (even, so a pair never straddles two).
  CodeReader(Encoding encoding, int vector_dim, UnitLayout layout, int64_t rows,
             int64_t block_codes, size_t code_bytes,
             std::vector<std::shared_ptr<const std::vector<uint8_t>>> blocks)
      : encoding_(encoding),
        vector_dim_(vector_dim),
        layout_(layout),
        rows_(rows),
        block_codes_(block_codes),
        code_bytes_(code_bytes),
        blocks_(std::move(blocks)) {}

  int64_t rows() const override { return rows_; }
  int64_t dim() const override {
    return layout_ == UnitLayout::kPairConcat ? 2 * vector_dim_ : vector_dim_;
  }
  void Read(int64_t begin, int64_t end, float* out) const override {
    const int64_t d = dim();
    for (int64_t r = begin; r < end; ++r) ReadRow(r, out + (r - begin) * d);
  }
  void Gather(std::span<const int64_t> rows, float* out) const override {
    // Scattered rows (herding's re-rank candidates, a k-NN row's neighbours) are cache misses:
    // ask for all their lines first, so the misses overlap instead of queueing one by one.
    const int codes = layout_ == UnitLayout::kVectors ? 1 : 2;
    for (const int64_t r : rows) {
      const uint8_t* code = Code(layout_ == UnitLayout::kVectors ? r : 2 * r);
      for (size_t at = 0; at < codes * code_bytes_; at += 64) __builtin_prefetch(code + at);
    }
    const int64_t d = dim();
    for (size_t i = 0; i < rows.size(); ++i) ReadRow(rows[i], out + i * d);
  }

 private:
  const uint8_t* Code(int64_t code) const {
    return blocks_[code / block_codes_]->data() + (code % block_codes_) * code_bytes_;
  }
  void ReadRow(int64_t r, float* out) const {
    switch (layout_) {
      case UnitLayout::kVectors:
        Decode(encoding_, Code(r), vector_dim_, out);
        break;
      case UnitLayout::kPairConcat:
        Decode(encoding_, Code(2 * r), vector_dim_, out);
        Decode(encoding_, Code(2 * r + 1), vector_dim_, out + vector_dim_);
        break;
      case UnitLayout::kPairMean:
        DecodeMean(encoding_, Code(2 * r), Code(2 * r + 1), vector_dim_, out);
        break;
    }
  }

  const Encoding encoding_;
  const int vector_dim_;
  const UnitLayout layout_;
  const int64_t rows_;
  const int64_t block_codes_;
  const size_t code_bytes_;
  const std::vector<std::shared_ptr<const std::vector<uint8_t>>> blocks_;
};

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
    if (blocks_.empty() || static_cast<int64_t>(blocks_.back()->size()) ==
                               block_rows_ * static_cast<int64_t>(code_bytes_)) {
      blocks_.push_back(std::make_shared<std::vector<uint8_t>>());
      // Only the first block grows by doubling, so that a small dataset stays small; a later
      // one will fill, and reserving it whole saves copying its bytes ~twice while it grows.
      if (blocks_.size() > 1) {
        blocks_.back()->reserve(block_rows_ * static_cast<int64_t>(code_bytes_));
      }
    }
    std::vector<uint8_t>& block = *blocks_.back();
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
  for (const auto& block : blocks_) bytes += static_cast<int64_t>(block->capacity());
  return bytes;
}

UnitMatrix VectorIndex::Units(UnitLayout layout, int64_t before_seq) const {
  std::shared_lock lock(mu_);
  const int64_t examples = std::lower_bound(seqs_.begin(), seqs_.end(), before_seq) - seqs_.begin();
  const int per_example = pairs_ ? 2 : 1;
  const int64_t codes = examples * per_example;
  const int64_t block_bytes = block_rows_ * static_cast<int64_t>(code_bytes_);
  std::vector<std::shared_ptr<const std::vector<uint8_t>>> blocks;
  for (int64_t b = 0; b * block_rows_ < codes; ++b) {
    if (static_cast<int64_t>(blocks_[b]->size()) == block_bytes) {
      blocks.push_back(blocks_[b]);
    } else {
      // The last block still grows (and may move) under later appends: copy what is needed.
      const int64_t bytes = (codes - b * block_rows_) * static_cast<int64_t>(code_bytes_);
      blocks.push_back(
          std::make_shared<std::vector<uint8_t>>(blocks_[b]->begin(), blocks_[b]->begin() + bytes));
    }
  }

  UnitMatrix units;
  const bool whole_pairs = pairs_ && layout != UnitLayout::kVectors;
  const UnitLayout read_as = pairs_ ? layout : UnitLayout::kVectors;
  units.rows = whole_pairs ? examples : codes;
  units.dim = read_as == UnitLayout::kPairConcat ? 2 * dim_ : dim_;
  units.values = selection::Rows(std::make_shared<CodeReader>(
      encoding_, dim_, read_as, units.rows, block_rows_, code_bytes_, std::move(blocks)));
  units.seq.resize(units.rows);
  units.example.resize(units.rows);
  units.side.resize(units.rows);
  units.label.resize(units.rows);
  for (int64_t r = 0; r < units.rows; ++r) {
    const int64_t example = whole_pairs || !pairs_ ? r : r / 2;
    units.example[r] = example;
    units.seq[r] = seqs_[example];
    if (whole_pairs) {
      units.side[r] = -1;
      units.label[r] = kNoLabel;
    } else if (pairs_) {
      units.side[r] = static_cast<int8_t>(r % 2);
      units.label[r] = r % 2 == 0 ? kDesirable : kUndesirable;
    } else {
      units.side[r] = -1;
      units.label[r] = labels_[r];
    }
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
