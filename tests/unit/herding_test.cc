// Herding over compact rows read in place: a RowReader decoding float16 codes gives the rows and
// scores of the dense float32 matrix of the same (float16-rounded) values, on the exact and the
// bucketed path, without ever asking for the whole matrix.
#include "selection/herding.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <numbers>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "index/codec.h"
#include "selection/kernels.h"
#include "selection/rows.h"
#include "selection/selector.h"

namespace curation::selection {
namespace {

// Rows held as float16 codes, decoded on every read. Counts the largest single read, to show
// that no caller decodes the whole matrix.
class HalfReader final : public RowReader {
 public:
  HalfReader(const std::vector<float>& values, int64_t rows, int64_t dim)
      : rows_(rows), dim_(dim), code_bytes_(index::CodeBytes(index::Encoding::kFloat16, dim)) {
    codes_.resize(rows * code_bytes_);
    for (int64_t i = 0; i < rows; ++i) {
      index::Encode(index::Encoding::kFloat16, &values[i * dim], static_cast<int>(dim),
                    &codes_[i * code_bytes_]);
    }
  }

  int64_t rows() const override { return rows_; }
  int64_t dim() const override { return dim_; }
  void Read(int64_t begin, int64_t end, float* out) const override {
    Note(end - begin);
    for (int64_t i = begin; i < end; ++i) DecodeRow(i, out + (i - begin) * dim_);
  }
  void Gather(std::span<const int64_t> rows, float* out) const override {
    Note(static_cast<int64_t>(rows.size()));
    for (size_t r = 0; r < rows.size(); ++r) DecodeRow(rows[r], out + r * dim_);
  }

  // The float32 values the codes decode to, row-major.
  std::vector<float> Decoded() const {
    std::vector<float> out(rows_ * dim_);
    for (int64_t i = 0; i < rows_; ++i) DecodeRow(i, &out[i * dim_]);
    return out;
  }
  int64_t largest_read() const { return largest_.load(); }

 private:
  void DecodeRow(int64_t i, float* out) const {
    index::Decode(index::Encoding::kFloat16, &codes_[i * code_bytes_], static_cast<int>(dim_), out);
  }
  void Note(int64_t rows) const {
    int64_t seen = largest_.load();
    while (rows > seen && !largest_.compare_exchange_weak(seen, rows)) {
    }
  }

  int64_t rows_, dim_;
  size_t code_bytes_;
  std::vector<uint8_t> codes_;
  mutable std::atomic<int64_t> largest_{0};
};

// Rows around `centers` random directions, sd `spread` around each.
std::vector<float> Clustered(int64_t rows, int64_t dim, int centers, double spread, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> c(centers * dim);
  for (double& v : c) v = normal(rng);
  std::vector<float> x(rows * dim);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t from = static_cast<int64_t>(rng() % centers);
    for (int64_t j = 0; j < dim; ++j) {
      x[i * dim + j] = static_cast<float>(c[from * dim + j] + spread * normal(rng));
    }
  }
  return x;
}

struct Case {
  std::shared_ptr<HalfReader> reader;
  std::vector<float> rounded;  // the values the reader decodes to, as one float32 matrix
  int64_t rows, dim;

  Case(int64_t r, int64_t d, uint64_t seed) : rows(r), dim(d) {
    reader = std::make_shared<HalfReader>(Clustered(r, d, 40, 1.0, seed), r, d);
    rounded = reader->Decoded();
  }
  MatrixView dense() const { return MatrixView{rounded.data(), rows, dim}; }
  Rows compact() const { return Rows(std::shared_ptr<const RowReader>(reader)); }
};

void ExpectSame(const absl::StatusOr<SelectionResult>& a,
                const absl::StatusOr<SelectionResult>& b) {
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->rows, b->rows);
  EXPECT_EQ(a->scores, b->scores);
}

TEST(HerdingRowsTest, BucketedReadsFloat16InPlaceWithTheDenseResult) {
  const Case c(8000, 40, 1);
  HerdingOptions bucketed;
  bucketed.exact_max_rows = 1000;
  const auto herding = MakeHerdingSelector(bucketed);
  const absl::StatusOr<SelectionResult> dense = herding->Select(c.dense(), 400, {});
  const absl::StatusOr<SelectionResult> compact = herding->Select(c.compact(), 400, {});
  ExpectSame(dense, compact);
  // Never the whole matrix at once: reads of a chunk, the k-means sample or a shortlist.
  EXPECT_LT(c.reader->largest_read(), c.rows / 2);
  // Select(k) is a prefix of Select(k').
  const absl::StatusOr<SelectionResult> prefix = herding->Select(c.compact(), 150, {});
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(prefix->rows, std::vector<int64_t>(compact->rows.begin(), compact->rows.begin() + 150));
}

TEST(HerdingRowsTest, ExactPathReadsFloat16WithTheDenseResult) {
  const Case c(900, 24, 2);
  const auto herding = MakeHerdingSelector();
  ExpectSame(herding->Select(c.dense(), 200, {}), herding->Select(c.compact(), 200, {}));
}

// Large enough (over kSerialBelowFloats) that the bucketing runs on every thread: through the
// reader, the same rows and scores as the dense matrix on one thread.
TEST(HerdingRowsTest, BucketedReaderIsTheSameOnOneThread) {
  const Case c(66000, 64, 3);
  ASSERT_GE(c.rows * c.dim, kernels::kSerialBelowFloats);
  const auto herding = MakeHerdingSelector();
  const absl::StatusOr<SelectionResult> parallel = herding->Select(c.compact(), 300, {});
  absl::StatusOr<SelectionResult> serial;
  {
    const kernels::SerialOpenMpScope one_thread(true);
    serial = herding->Select(c.dense(), 300, {});
  }
  ExpectSame(parallel, serial);
  EXPECT_LT(c.reader->largest_read(), c.rows / 8);
}

// A liveness bound (5 s, the suite runs under sanitizers), not a speed test: stopped during
// the bucketing and during the steps, herding over a reader returns CANCELLED.
TEST(HerdingRowsTest, CancelsThroughAReader) {
  const Case c(150000, 96, 4);
  for (const auto stop_after : {std::chrono::milliseconds(20), std::chrono::milliseconds(600)}) {
    const auto start = std::chrono::steady_clock::now();
    SelectOptions options;
    options.progress = [&](double) {
      return std::chrono::steady_clock::now() - start < stop_after;
    };
    const absl::Status status =
        MakeHerdingSelector()->Select(c.compact(), 100000, options).status();
    const double latency =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start - stop_after)
            .count();
    std::cout << "[ latency  ] stop after " << stop_after.count() << " ms: " << latency * 1000
              << " ms" << std::endl;
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
    EXPECT_LT(latency, 5.0);
  }
}

}  // namespace
}  // namespace curation::selection
