// Selection units read in place from the index's codes (VectorIndex::Units): they decode what
// was added, do not change while the index grows or after it is gone, and every method,
// composed as the server composes it, selects the same rows from them as from the float32
// matrix of the same values.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "index/vector_index.h"
#include "selection/factory.h"
#include "selection/rows.h"

namespace curation::index {
namespace {

using selection::MatrixView;
using selection::Rows;

std::vector<float> Gaussian(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

// An index of `pairs` pairs with seqs 10, 20, ... holding clustered vectors (so that dedup and
// facility location have structure to find).
std::unique_ptr<VectorIndex> MakeIndex(int64_t pairs, int dim, Encoding encoding) {
  auto index = std::make_unique<VectorIndex>(dim, /*pairs=*/true, encoding);
  const std::vector<float> centres = Gaussian(8 * dim, 1);
  std::vector<float> values = Gaussian(pairs * 2 * dim, 2);
  for (int64_t v = 0; v < pairs * 2; ++v) {
    for (int j = 0; j < dim; ++j)
      values[v * dim + j] = centres[(v % 8) * dim + j] + 0.3f * values[v * dim + j];
  }
  std::vector<int64_t> seqs(pairs);
  std::vector<std::string> ids(pairs);
  for (int64_t i = 0; i < pairs; ++i) {
    seqs[i] = 10 * (i + 1);
    ids[i] = "p" + std::to_string(i);
  }
  index->Add(seqs, values.data(), ids, {});
  return index;
}

std::vector<float> DecodeAll(const Rows& rows) {
  std::vector<float> out;
  const absl::StatusOr<MatrixView> view = rows.Decode(&out);
  EXPECT_TRUE(view.ok());
  if (view.ok() && view->data != out.data())
    out.assign(view->data, view->data + rows.rows() * rows.dim());
  return out;
}

TEST(UnitRowsTest, ReadGatherSubsetAndScanAgree) {
  const int dim = 5;
  auto index = MakeIndex(1000, dim, Encoding::kFloat16);
  const UnitMatrix units = index->Units(UnitLayout::kPairConcat);
  ASSERT_EQ(units.rows, 1000);
  ASSERT_EQ(units.values.dense(), nullptr);
  const std::vector<float> all = DecodeAll(units.values);
  ASSERT_EQ(all.size(), 1000u * 2 * dim);

  std::vector<float> row(2 * dim);
  std::vector<float> part(3 * 2 * dim);
  units.values.Read(997, 1000, part.data());
  EXPECT_EQ(std::vector<float>(all.end() - 3 * 2 * dim, all.end()), part);
  EXPECT_EQ(std::vector<float>(all.begin() + 2 * dim * 500, all.begin() + 2 * dim * 501),
            std::vector<float>(units.values.Row(500, row.data()),
                               units.values.Row(500, row.data()) + 2 * dim));

  const std::vector<int64_t> picks = {999, 3, 3, 512};
  const Rows subset = units.values.Subset(picks);
  ASSERT_EQ(subset.rows(), 4);
  const std::vector<float> sub = DecodeAll(subset);
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 2 * dim; ++j) EXPECT_EQ(sub[i * 2 * dim + j], all[picks[i] * 2 * dim + j]);
  }
  // A subset of a subset.
  const std::vector<int64_t> inner = {3, 0};
  const std::vector<float> nested = DecodeAll(subset.Subset(inner));
  for (int j = 0; j < 2 * dim; ++j) {
    EXPECT_EQ(nested[j], all[512 * 2 * dim + j]);
    EXPECT_EQ(nested[2 * dim + j], all[999 * 2 * dim + j]);
  }

  std::vector<float> scanned;
  int64_t next = 0;
  EXPECT_TRUE(units.values.Scan(64, [&](int64_t begin, int64_t end, const float* block) {
    EXPECT_EQ(begin, next);
    EXPECT_LE(end - begin, 64);
    next = end;
    scanned.insert(scanned.end(), block, block + (end - begin) * 2 * dim);
    return true;
  }));
  EXPECT_EQ(scanned, all);
  int calls = 0;
  EXPECT_FALSE(units.values.Scan(64, [&](int64_t, int64_t, const float*) { return ++calls < 2; }));
  EXPECT_EQ(calls, 2);

  // Dense rows scan and decode without a copy.
  const Rows dense(MatrixView{all.data(), 1000, 2 * dim});
  ASSERT_NE(dense.dense(), nullptr);
  std::vector<float> unused;
  EXPECT_EQ(dense.Decode(&unused)->data, all.data());
  EXPECT_TRUE(unused.empty());
}

TEST(UnitRowsTest, UnitsAreASnapshotThatOutlivesTheIndex) {
  const int dim = 4;
  // Enough pairs for several 4 MB blocks of float32 codes, and a partly filled last block.
  const int64_t pairs = 300'000;
  auto index = MakeIndex(pairs, dim, Encoding::kFloat32);
  const UnitMatrix before = index->Units(UnitLayout::kPairMean, /*before_seq=*/10 * 250'001 + 1);
  ASSERT_EQ(before.rows, 250'001);
  EXPECT_EQ(before.seq.back(), 10 * 250'001);
  const UnitMatrix whole = index->Units(UnitLayout::kPairMean);
  ASSERT_EQ(whole.rows, pairs);
  const std::vector<float> expected = DecodeAll(whole.values);

  // Grow the index past its last block's capacity, then drop it: the units read as before.
  std::vector<float> more = Gaussian(200'000 * 2 * dim, 3);
  std::vector<int64_t> seqs(200'000);
  std::vector<std::string> ids(200'000, "later");
  for (int64_t i = 0; i < 200'000; ++i) seqs[i] = 10 * (pairs + 1 + i);
  index->Add(seqs, more.data(), ids, {});
  EXPECT_EQ(index->Units(UnitLayout::kPairMean).rows, pairs + 200'000);
  index.reset();

  EXPECT_EQ(DecodeAll(whole.values), expected);
  const std::vector<float> cut = DecodeAll(before.values);
  EXPECT_EQ(std::vector<float>(expected.begin(), expected.begin() + 250'001 * dim), cut);
}

// Appends and in-place reads race in the server (an ingest while a selection runs): a reader
// sees exactly its snapshot, and (under TSan) nothing races.
TEST(UnitRowsTest, ReadersAndAppendsRunConcurrently) {
  const int dim = 8;
  VectorIndex index(dim, /*pairs=*/true, Encoding::kFloat16);
  const std::vector<float> values = Gaussian(2 * dim * 1000, 5);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int64_t batch = 0; batch < 300; ++batch) {
      std::vector<int64_t> seqs(1000);
      std::vector<std::string> ids(1000, "x");
      for (int64_t i = 0; i < 1000; ++i) seqs[i] = batch * 1000 + i;
      index.Add(seqs, values.data(), ids, {});
    }
    done = true;
  });
  int64_t snapshots = 0;
  while (!done || snapshots == 0) {
    const UnitMatrix units = index.Units(UnitLayout::kPairConcat);
    if (units.rows == 0) continue;
    ++snapshots;
    ASSERT_EQ(units.rows % 1000, 0);
    // The last row of every batch is the last pair of `values`, decoded.
    std::vector<float> row(2 * dim);
    units.values.Read(units.rows - 1, units.rows, row.data());
    for (int j = 0; j < 2 * dim; ++j) {
      ASSERT_NEAR(row[j], values[999 * 2 * dim + j],
                  1e-2 * std::abs(values[999 * 2 * dim + j]) + 1e-3);
    }
  }
  writer.join();
  EXPECT_GT(snapshots, 0);
  EXPECT_EQ(index.Units(UnitLayout::kPairMean).rows, 300'000);
}

TEST(UnitRowsTest, UnpairedAndVectorLayoutsKeepLabelsAndSides) {
  VectorIndex index(3, /*pairs=*/false, Encoding::kSq8);
  const std::vector<float> values = Gaussian(4 * 3, 4);
  const std::vector<int64_t> seqs = {1, 2, 5, 9};
  const std::vector<std::string> ids = {"a", "b", "c", "d"};
  const std::vector<int8_t> labels = {kDesirable, kUndesirable, kUndesirable, kDesirable};
  index.Add(seqs, values.data(), ids, labels);
  const UnitMatrix units = index.Units(UnitLayout::kPairConcat, /*before_seq=*/6);
  ASSERT_EQ(units.rows, 3);
  EXPECT_EQ(units.values.dim(), 3);
  EXPECT_EQ(units.label, std::vector<int8_t>({kDesirable, kUndesirable, kUndesirable}));
  EXPECT_EQ(units.side, std::vector<int8_t>(3, -1));
  EXPECT_EQ(index.Units(UnitLayout::kVectors, /*before_seq=*/1).rows, 0);

  auto pairs = MakeIndex(3, 2, Encoding::kFloat16);
  const UnitMatrix vectors = pairs->Units(UnitLayout::kVectors);
  ASSERT_EQ(vectors.rows, 6);
  EXPECT_EQ(vectors.side, std::vector<int8_t>({0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(vectors.example, std::vector<int64_t>({0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(vectors.label[0], kDesirable);
  EXPECT_EQ(vectors.label[1], kUndesirable);
}

// Every method, alone and composed with dedup, quotas and ranking, picks the same rows with the
// same scores from rows read in place as from the float32 matrix of the same values.
TEST(UnitRowsTest, EveryMethodSelectsTheSameFromCodesAsFromFloats) {
  const int dim = 16;
  // Above herding's and the k-NN graph's exact limits (lowered below), so their approximate
  // paths run too.
  auto index = MakeIndex(3000, dim, Encoding::kFloat16);
  for (UnitLayout layout : {UnitLayout::kPairMean, UnitLayout::kPairConcat}) {
    const UnitMatrix units = index->Units(layout);
    const std::vector<float> floats = DecodeAll(units.values);
    const Rows dense(MatrixView{floats.data(), units.rows, units.dim});

    std::vector<selection::SelectorSpec> specs;
    for (const char* method :
         {"isa", "random", "herding", "facility_location", "kcenter", "dedup"}) {
      selection::SelectorSpec spec;
      spec.method = method;
      spec.herding.exact_max_rows = 500;
      spec.facility_location.graph.exact_max_rows = 500;
      spec.facility_location.graph.ivf_dim = 8;
      spec.facility_location.graph.ivf_dim_min_rows = 1000;
      if (spec.method == "dedup") spec.dedup_threshold = 0.99;
      specs.push_back(spec);
      if (spec.method == "herding" || spec.method == "facility_location") {
        selection::SelectorSpec composed = spec;
        composed.dedup_threshold = 0.99;
        specs.push_back(composed);
        composed.dedup_threshold = 0;
        composed.constraint = selection::GroupConstraint{};
        for (int64_t r = 0; r < units.rows; ++r) composed.constraint->group.push_back(r % 3);
        specs.push_back(composed);
        composed.constraint.reset();
        composed.ranking = true;
        specs.push_back(composed);
      }
    }
    for (const selection::SelectorSpec& spec : specs) {
      SCOPED_TRACE(spec.method + (spec.ranking ? " ranking" : "") +
                   (spec.constraint ? " quotas" : "") + (spec.dedup_threshold > 0 ? " dedup" : "") +
                   (layout == UnitLayout::kPairMean ? " mean" : " concat"));
      auto selector = selection::MakeSelector(spec);
      ASSERT_TRUE(selector.ok()) << selector.status();
      selection::SelectOptions options;
      options.seed = 7;
      const auto from_codes = (*selector)->Select(units.values, 60, options);
      const auto from_floats = (*selector)->Select(dense, 60, options);
      ASSERT_TRUE(from_codes.ok()) << from_codes.status();
      ASSERT_TRUE(from_floats.ok()) << from_floats.status();
      EXPECT_EQ(from_codes->rows, from_floats->rows);
      EXPECT_EQ(from_codes->scores, from_floats->scores);
    }
  }
}

}  // namespace
}  // namespace curation::index
