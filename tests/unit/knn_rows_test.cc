// The k-NN graph on rows read in place (issue 12): float16 codes decoded on demand through a
// RowReader give exactly the graph, and so the facility location and dedup results, of the
// float32 matrix holding the same (rounded) values, on every search path.

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "index/codec.h"
#include "selection/dedup.h"
#include "selection/facility_location.h"
#include "selection/knn_graph.h"
#include "selection/rows.h"
#include "selection/selector.h"
#include "tests/unit/float_reader.h"

namespace curation::selection {
namespace {

using index::Encoding;

// Rows held as float16 codes, as the server holds them. Counts the rows it decodes and the
// most it was asked for in one call, to tell a read in place from a full decode.
class HalfReader final : public RowReader {
 public:
  HalfReader(const std::vector<float>& x, int64_t rows, int64_t dim)
      : rows_(rows),
        dim_(dim),
        bytes_(index::CodeBytes(Encoding::kFloat16, static_cast<int>(dim))) {
    codes_.resize(rows * bytes_);
    for (int64_t i = 0; i < rows; ++i) {
      index::Encode(Encoding::kFloat16, x.data() + i * dim, static_cast<int>(dim),
                    codes_.data() + i * bytes_);
    }
  }

  int64_t rows() const override { return rows_; }
  int64_t dim() const override { return dim_; }
  void Read(int64_t begin, int64_t end, float* out) const override {
    Count(end - begin);
    for (int64_t i = begin; i < end; ++i) Decode(i, out + (i - begin) * dim_);
  }
  void Gather(std::span<const int64_t> rows, float* out) const override {
    Count(static_cast<int64_t>(rows.size()));
    gathered_.fetch_add(static_cast<int64_t>(rows.size()), std::memory_order_relaxed);
    gathers_.fetch_add(1, std::memory_order_relaxed);
    for (size_t t = 0; t < rows.size(); ++t) Decode(rows[t], out + t * dim_);
  }

  // The values a reader hands out: the float16 rounding of the input.
  std::vector<float> Decoded() const {
    std::vector<float> x(rows_ * dim_);
    for (int64_t i = 0; i < rows_; ++i) Decode(i, x.data() + i * dim_);
    return x;
  }
  int64_t largest_call() const { return largest_.load(); }
  int64_t gathered() const { return gathered_.load(); }
  int64_t gathers() const { return gathers_.load(); }

 private:
  void Decode(int64_t i, float* out) const {
    index::Decode(Encoding::kFloat16, codes_.data() + i * bytes_, static_cast<int>(dim_), out);
  }
  void Count(int64_t rows) const {
    int64_t seen = largest_.load(std::memory_order_relaxed);
    while (rows > seen && !largest_.compare_exchange_weak(seen, rows)) {
    }
  }

  const int64_t rows_, dim_;
  const size_t bytes_;
  std::vector<uint8_t> codes_;
  mutable std::atomic<int64_t> largest_{0}, gathered_{0}, gathers_{0};
};

// Rows near a few directions with a shared offset (as real embeddings), plus some exact
// duplicates and all-zero rows, the cases the edge lists treat specially.
std::vector<float> Embeddings(int64_t rows, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  const int rank = 8;
  std::vector<double> basis((rank + 1) * dim);
  for (double& v : basis) v = normal(rng);
  std::vector<float> x(rows * dim);
  for (int64_t i = 0; i < rows; ++i) {
    float* row = x.data() + i * dim;
    if (i % 997 == 5) continue;  // all zeros
    if (i % 101 == 7) {          // a copy of an earlier row
      std::copy_n(x.data() + (i / 2) * dim, dim, row);
      continue;
    }
    for (int64_t j = 0; j < dim; ++j) row[j] = static_cast<float>(basis[j]);
    for (int f = 1; f <= rank; ++f) {
      const double z = normal(rng);
      for (int64_t j = 0; j < dim; ++j) row[j] += static_cast<float>(z * basis[f * dim + j]);
    }
    for (int64_t j = 0; j < dim; ++j) row[j] += static_cast<float>(0.3 * normal(rng));
  }
  return x;
}

// The graphs are the same, edge for edge and bit for bit.
void ExpectSameGraph(const KnnGraph& a, const KnnGraph& b) {
  ASSERT_EQ(a.rows(), b.rows());
  ASSERT_EQ(a.edges(), b.edges());
  int64_t differ = 0;
  for (int64_t i = 0; i < a.rows(); ++i) {
    const bool same =
        std::ranges::equal(a.targets(i), b.targets(i)) &&
        std::ranges::equal(a.similarities(i), b.similarities(i), [](float s, float t) {
          return std::bit_cast<uint32_t>(s) == std::bit_cast<uint32_t>(t);
        });
    differ += !same;
    if (!same && differ <= 3) ADD_FAILURE() << "row " << i << "'s edges differ";
  }
  EXPECT_EQ(differ, 0);
}

struct Case {
  std::shared_ptr<HalfReader> reader;
  std::vector<float> rounded;  // the reader's values as one float32 matrix
  MatrixView dense() const { return {rounded.data(), reader->rows(), reader->dim()}; }
};

Case MakeCase(int64_t rows, int64_t dim, uint64_t seed) {
  Case c;
  c.reader = std::make_shared<HalfReader>(Embeddings(rows, dim, seed), rows, dim);
  c.rounded = c.reader->Decoded();
  return c;
}

// The projected IVF on a small input (normally from 200,000 rows).
KnnGraphOptions Projected(int neighbours, int ivf_dim) {
  KnnGraphOptions o;
  o.neighbours = neighbours;
  o.search = KnnSearch::kIvf;
  o.ivf_dim = ivf_dim;
  o.ivf_dim_min_rows = 0;
  return o;
}

TEST(KnnRowsTest, ProjectedIvfInPlaceEqualsTheDenseBuild) {
  const Case c = MakeCase(12000, 96, 1);
  const KnnGraphOptions options = Projected(10, 16);
  absl::StatusOr<KnnGraph> dense = KnnGraph::Build(c.dense(), options);
  absl::StatusOr<KnnGraph> in_place = KnnGraph::Build(Rows(c.reader), options);
  ASSERT_TRUE(dense.ok()) << dense.status();
  ASSERT_TRUE(in_place.ok()) << in_place.status();
  ExpectSameGraph(*dense, *in_place);
  // Read in place (Rows::Decode only ever calls Read), a bounded number of rows at a time:
  // the largest call is the PCA's sample of 4,096 rows.
  EXPECT_GT(c.reader->gathered(), 0);
  EXPECT_LE(c.reader->largest_call(), 4096);
  // Not vacuous: the graph has the self edges and most of the others.
  EXPECT_GT(dense->edges(), 9 * 11000);
}

TEST(KnnRowsTest, ManyCandidatesAreGatheredInSeveralRuns) {
  // 512-d rows and 3 * 40 candidates a row: a block of 256 queries proposes more rows than
  // one gather (8 MB of floats, 4,096 rows) holds, so the rescoring takes several.
  const Case c = MakeCase(8192, 512, 2);
  KnnGraphOptions options = Projected(40, 24);
  options.ivf_lists = 4;  // 2,048 rows a bucket, all 4 probed: 8,192 candidate rows a bucket
  options.ivf_probe = 4;
  absl::StatusOr<KnnGraph> dense = KnnGraph::Build(c.dense(), options);
  absl::StatusOr<KnnGraph> in_place = KnnGraph::Build(Rows(c.reader), options);
  ASSERT_TRUE(dense.ok() && in_place.ok());
  ExpectSameGraph(*dense, *in_place);
  EXPECT_LE(c.reader->largest_call(), 4096);
  // One gather of candidates and one of queries per run, about 40 query blocks, and the
  // PCA's sample: more calls mean runs of fewer queries than a block.
  std::cout << c.reader->gathers() << " gathers of " << c.reader->gathered() << " rows"
            << std::endl;
  EXPECT_GT(c.reader->gathers(), 2 * (8192 / 256 + 4) + 1);
}

TEST(KnnRowsTest, OddDimensionsAndOversampling) {
  const Case c = MakeCase(6000, 37, 3);
  KnnGraphOptions options = Projected(7, 5);
  options.ivf_oversample = 5;
  options.ivf_lists = 20;
  options.ivf_probe = 3;
  absl::StatusOr<KnnGraph> dense = KnnGraph::Build(c.dense(), options);
  absl::StatusOr<KnnGraph> in_place = KnnGraph::Build(Rows(c.reader), options);
  ASSERT_TRUE(dense.ok() && in_place.ok());
  ExpectSameGraph(*dense, *in_place);
}

TEST(KnnRowsTest, OtherSearchesDecodeAndAgree) {
  // Exact search and the unprojected IVF copy the rows anyway, so they decode them first.
  const Case c = MakeCase(5000, 48, 4);
  KnnGraphOptions exact;
  exact.neighbours = 9;
  exact.search = KnnSearch::kExact;
  KnnGraphOptions ivf = exact;
  ivf.search = KnnSearch::kIvf;  // 5,000 rows: below ivf_dim_min_rows, unprojected
  for (const KnnGraphOptions& options : {exact, ivf}) {
    absl::StatusOr<KnnGraph> dense = KnnGraph::Build(c.dense(), options);
    absl::StatusOr<KnnGraph> decoded = KnnGraph::Build(Rows(c.reader), options);
    ASSERT_TRUE(dense.ok() && decoded.ok());
    ExpectSameGraph(*dense, *decoded);
  }
}

TEST(KnnRowsTest, InPlaceGraphDoesNotDependOnTheThreadCount) {
  const Case c = MakeCase(20000, 64, 5);  // rows * dim above kSerialBelowFloats
  const KnnGraphOptions options = Projected(8, 12);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  absl::StatusOr<KnnGraph> one = KnnGraph::Build(Rows(c.reader), options);
  omp_set_num_threads(std::max(2, threads));
  absl::StatusOr<KnnGraph> several = KnnGraph::Build(Rows(c.reader), options);
  omp_set_num_threads(threads);
  ASSERT_TRUE(one.ok() && several.ok());
  ExpectSameGraph(*one, *several);
}

TEST(KnnRowsTest, FacilityLocationAndDedupOnRowsInPlace) {
  const Case c = MakeCase(10000, 64, 6);
  FacilityLocationOptions fl;
  fl.graph = Projected(10, 16);
  SelectOptions select;
  select.seed = 1;
  absl::StatusOr<SelectionResult> a =
      MakeFacilityLocationSelector(fl)->Select(c.dense(), 300, select);
  absl::StatusOr<SelectionResult> b =
      MakeFacilityLocationSelector(fl)->Select(Rows(c.reader), 300, select);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->rows, b->rows);
  EXPECT_EQ(a->scores, b->scores);

  DedupOptions dedup;
  dedup.graph = Projected(10, 16);
  dedup.threshold = 0.999;
  absl::StatusOr<DedupResult> da = Deduplicate(c.dense(), dedup);
  absl::StatusOr<DedupResult> db = Deduplicate(Rows(c.reader), dedup);
  ASSERT_TRUE(da.ok() && db.ok());
  EXPECT_EQ(da->representative, db->representative);
  // The copies Embeddings planted are found.
  EXPECT_LT(da->kept.size(), 10000u - 90);
}

TEST(KnnRowsTest, NonFiniteRowsReadInPlaceAreRejected) {
  std::vector<float> x = Embeddings(5000, 32, 7);
  x[4321 * 32 + 3] = std::numeric_limits<float>::quiet_NaN();
  const auto reader = std::make_shared<FloatReader>(x, 32);
  EXPECT_EQ(KnnGraph::Build(Rows(reader), Projected(5, 8)).status().code(),
            absl::StatusCode::kInvalidArgument);
  x[4321 * 32 + 3] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(
      KnnGraph::Build(Rows(std::make_shared<FloatReader>(x, 32)), Projected(5, 8)).status().code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace curation::selection
