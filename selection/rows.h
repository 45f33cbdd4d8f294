// The input of every selector: a read-only matrix of float rows, held either as one float32
// array (MatrixView) or behind a RowReader that decodes rows on demand.
//
// The service keeps its vectors compact (float16 or SQ8 codes in blocks, index/codec.h). A
// method that only scans the rows, or reads a few of them at a time, reads those codes in place
// through a RowReader, so a selection over ten million pairs needs no float32 copy of them
// (20 GB at 512 floats a row). A method that needs the whole float32 matrix asks for it with
// Rows::Decode, which costs nothing when the rows already are one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace curation::selection {

// A read-only, row-major float32 matrix owned by the caller. It must outlive the call it is
// passed to.
struct MatrixView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t dim = 0;

  const float* row(int64_t i) const { return data + i * dim; }
};

// Rows decoded on demand. Implementations are immutable after construction and safe to read
// from several threads at once.
class RowReader {
 public:
  virtual ~RowReader() = default;

  virtual int64_t rows() const = 0;
  virtual int64_t dim() const = 0;
  // Writes rows [begin, end) as float32, row-major: (end - begin) * dim() floats at `out`.
  // Requires 0 <= begin <= end <= rows().
  virtual void Read(int64_t begin, int64_t end, float* out) const = 0;
  // Writes the rows listed in `rows`, in that order. Requires every entry in [0, rows()).
  // The default reads them one at a time.
  virtual void Gather(std::span<const int64_t> rows, float* out) const;
};

class Rows {
 public:
  Rows() = default;
  // The float32 matrix itself, not a copy: `view`'s data must outlive every use. Implicit, so
  // that a caller holding a MatrixView passes it wherever Rows are wanted.
  Rows(const MatrixView& view);  // NOLINT(google-explicit-constructor)
  explicit Rows(std::shared_ptr<const RowReader> reader);

  int64_t rows() const { return rows_; }
  int64_t dim() const { return dim_; }

  // The float32 matrix when the rows are held as one, else nullptr (then Read or Decode them).
  const MatrixView* dense() const { return reader_ ? nullptr : &view_; }

  // Writes rows [begin, end) as float32 at `out`. Requires 0 <= begin <= end <= rows().
  void Read(int64_t begin, int64_t end, float* out) const;
  // Writes the listed rows, in that order.
  void Gather(std::span<const int64_t> rows, float* out) const;
  // Row i: a pointer into the matrix when dense, else row i decoded into `scratch` (dim()
  // floats), which is returned.
  const float* Row(int64_t i, float* scratch) const {
    if (!reader_) return view_.row(i);
    reader_->Read(i, i + 1, scratch);
    return scratch;
  }

  // The rows rows[0], rows[1], ... of this matrix, in that order, without copying them.
  // `rows` must outlive the result and every entry be in [0, rows()).
  Rows Subset(std::span<const int64_t> rows) const;

  // Calls fn(begin, end, block) for consecutive runs [begin, end) of at most `block_rows` rows,
  // with `block` their float32 values, row-major: a pointer into the matrix when dense, else a
  // buffer decoded for the call. In row order, on the calling thread. Stops early and returns
  // false when fn returns false.
  bool Scan(int64_t block_rows,
            const std::function<bool(int64_t begin, int64_t end, const float* block)>& fn) const;

  // The whole matrix as float32: the view itself when dense, else decoded (on every OpenMP
  // thread) into *storage, which the returned view points into. CANCELLED when `progress`
  // (may be empty; called with 0 between chunks, on this thread) returns false.
  absl::StatusOr<MatrixView> Decode(std::vector<float>* storage,
                                    const std::function<bool(double)>& progress = {}) const;

 private:
  MatrixView view_;
  std::shared_ptr<const RowReader> reader_;
  int64_t rows_ = 0;
  int64_t dim_ = 0;
};

}  // namespace curation::selection
