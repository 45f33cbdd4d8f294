#include "selection/rows.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "selection/cancel.h"

namespace curation::selection {
namespace {

// A subset of another matrix's rows, in a given order.
class SubsetReader final : public RowReader {
 public:
  SubsetReader(Rows parent, std::span<const int64_t> rows)
      : parent_(std::move(parent)), rows_(rows) {}

  int64_t rows() const override { return static_cast<int64_t>(rows_.size()); }
  int64_t dim() const override { return parent_.dim(); }
  void Read(int64_t begin, int64_t end, float* out) const override {
    parent_.Gather(rows_.subspan(begin, end - begin), out);
  }
  void Gather(std::span<const int64_t> rows, float* out) const override {
    // One Gather of the parent, so that a reader's batched Gather (prefetching) still serves.
    std::vector<int64_t> mapped(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) mapped[i] = rows_[rows[i]];
    parent_.Gather(mapped, out);
  }

 private:
  const Rows parent_;
  const std::span<const int64_t> rows_;
};

}  // namespace

void RowReader::Gather(std::span<const int64_t> rows, float* out) const {
  const int64_t d = dim();
  for (size_t i = 0; i < rows.size(); ++i) Read(rows[i], rows[i] + 1, out + i * d);
}

Rows::Rows(const MatrixView& view) : view_(view), rows_(view.rows), dim_(view.dim) {}

Rows::Rows(std::shared_ptr<const RowReader> reader)
    : reader_(std::move(reader)), rows_(reader_->rows()), dim_(reader_->dim()) {}

void Rows::Read(int64_t begin, int64_t end, float* out) const {
  if (reader_) {
    reader_->Read(begin, end, out);
  } else {
    std::copy(view_.row(begin), view_.row(end), out);
  }
}

void Rows::Gather(std::span<const int64_t> rows, float* out) const {
  if (reader_) {
    reader_->Gather(rows, out);
    return;
  }
  for (size_t i = 0; i < rows.size(); ++i) std::copy_n(view_.row(rows[i]), dim_, out + i * dim_);
}

Rows Rows::Subset(std::span<const int64_t> rows) const {
  return Rows(std::make_shared<SubsetReader>(*this, rows));
}

bool Rows::Scan(int64_t block_rows,
                const std::function<bool(int64_t, int64_t, const float*)>& fn) const {
  block_rows = std::max<int64_t>(1, block_rows);
  std::vector<float> buffer;
  if (reader_) buffer.resize(static_cast<size_t>(std::min(block_rows, rows_)) * dim_);
  for (int64_t begin = 0; begin < rows_; begin += block_rows) {
    const int64_t end = std::min(rows_, begin + block_rows);
    const float* block = view_.data == nullptr ? nullptr : view_.row(begin);
    if (reader_) {
      reader_->Read(begin, end, buffer.data());
      block = buffer.data();
    }
    if (!fn(begin, end, block)) return false;
  }
  return true;
}

absl::StatusOr<MatrixView> Rows::Decode(std::vector<float>* storage,
                                        const std::function<bool(double)>& progress) const {
  if (!reader_) return view_;
  storage->resize(static_cast<size_t>(rows_) * dim_);
  // Chunks of about 1 MB of floats: small enough to poll the callback often, large enough that
  // the reader's per-call cost vanishes.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, dim_));
  const int64_t chunks = (rows_ + chunk - 1) / chunk;
  internal::Cancel cancel(progress);
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t c = 0; c < chunks; ++c) {
    if (cancel.Stop()) continue;
    const int64_t begin = c * chunk;
    reader_->Read(begin, std::min(rows_, begin + chunk), storage->data() + begin * dim_);
  }
  if (cancel.stopped()) return absl::CancelledError("cancelled");
  return MatrixView{storage->data(), rows_, dim_};
}

}  // namespace curation::selection
