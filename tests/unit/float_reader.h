// A RowReader over floats it owns: rows that are not a MatrixView, so selectors take the
// path the server's compact vectors take, without any encoding in the way.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "selection/rows.h"

namespace curation::selection {

class FloatReader final : public RowReader {
 public:
  FloatReader(std::vector<float> x, int64_t dim)
      : x_(std::move(x)), rows_(static_cast<int64_t>(x_.size()) / dim), dim_(dim) {}
  int64_t rows() const override { return rows_; }
  int64_t dim() const override { return dim_; }
  void Read(int64_t begin, int64_t end, float* out) const override {
    std::copy(x_.begin() + begin * dim_, x_.begin() + end * dim_, out);
  }

 private:
  const std::vector<float> x_;
  const int64_t rows_, dim_;
};

}  // namespace curation::selection
