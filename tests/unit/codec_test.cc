// The vector encodings (index/codec.h) and the index that holds them: every encoding
// round-trips within its documented error, and the unit matrix decodes what was added.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "index/codec_proto.h"
#include "index/vector_index.h"

namespace curation::index {
namespace {

std::vector<float> RoundTrip(Encoding encoding, const std::vector<float>& x) {
  std::vector<uint8_t> code(CodeBytes(encoding, static_cast<int>(x.size())));
  Encode(encoding, x.data(), static_cast<int>(x.size()), code.data());
  std::vector<float> y(x.size());
  Decode(encoding, code.data(), static_cast<int>(x.size()), y.data());
  return y;
}

std::vector<float> Gaussian(int n, uint64_t seed, float scale = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0, scale);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

TEST(CodecTest, SizesAreWhatTheProtoPromises) {
  EXPECT_EQ(CodeBytes(Encoding::kFloat32, 256), 1024u);
  EXPECT_EQ(CodeBytes(Encoding::kFloat16, 256), 512u);
  EXPECT_EQ(CodeBytes(Encoding::kSq8, 256), 264u);
}

TEST(CodecTest, Float32IsExact) {
  const std::vector<float> x = Gaussian(300, 1);
  EXPECT_EQ(RoundTrip(Encoding::kFloat32, x), x);
}

TEST(CodecTest, Float16IsWithinHalfAnUlpAndSaturates) {
  // Odd length: the SIMD path and its scalar tail both run.
  std::vector<float> x = Gaussian(1001, 2, 100);
  x.push_back(0.0f);
  x.push_back(-0.0f);
  x.push_back(1e-6f);  // subnormal in binary16
  x.push_back(3e-8f);  // rounds to the smallest subnormal, 2^-24
  x.push_back(1e-9f);  // rounds to zero
  x.push_back(65504.0f);
  x.push_back(1e6f);  // beyond binary16's range: saturates
  x.push_back(-1e6f);
  const std::vector<float> y = RoundTrip(Encoding::kFloat16, x);
  for (size_t i = 0; i + 8 < x.size(); ++i) {
    // Normal range: relative error at most 2^-11; subnormals: absolute 2^-25.
    const float bound = std::max(std::fabs(x[i]) * 0x1p-11f, 0x1p-25f);
    EXPECT_LE(std::fabs(y[i] - x[i]), bound) << i << ": " << x[i] << " -> " << y[i];
  }
  const size_t n = x.size();
  EXPECT_EQ(y[n - 8], 0.0f);
  EXPECT_TRUE(std::signbit(y[n - 7]));
  EXPECT_NEAR(y[n - 6], 1e-6f, 0x1p-25f);
  EXPECT_EQ(y[n - 5], 0x1p-24f);
  EXPECT_EQ(y[n - 4], 0.0f);
  EXPECT_EQ(y[n - 3], 65504.0f);
  EXPECT_EQ(y[n - 2], 65504.0f);
  EXPECT_EQ(y[n - 1], -65504.0f);
  // Values a half holds exactly come back exactly.
  const std::vector<float> exact = {1.0f, -2.5f, 0.125f, 1024.0f, 0x1p-14f, 0x1p-20f};
  EXPECT_EQ(RoundTrip(Encoding::kFloat16, exact), exact);
}

TEST(CodecTest, Sq8ErrorIsAtMostHalfAStepOfTheVectorsRange) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<float> x = Gaussian(256, seed, seed + 0.5f);
    const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
    const double range = static_cast<double>(*hi) - *lo;
    const std::vector<float> y = RoundTrip(Encoding::kSq8, x);
    for (size_t i = 0; i < x.size(); ++i) {
      // range / 510 plus float rounding of lo + c * step.
      EXPECT_LE(std::fabs(y[i] - x[i]), range / 510 * 1.0001 + 1e-6 * range) << seed << " " << i;
    }
  }
  // A constant vector (no range) and the extremes of the magnitude bound.
  EXPECT_EQ(RoundTrip(Encoding::kSq8, std::vector<float>(10, 3.5f)), std::vector<float>(10, 3.5f));
  const std::vector<float> wide = {-1e6f, 1e6f, 0.0f};
  const std::vector<float> y = RoundTrip(Encoding::kSq8, wide);
  EXPECT_EQ(y[0], -1e6f);
  EXPECT_NEAR(y[1], 1e6f, 2e6 / 510 * 1.001);
  EXPECT_NEAR(y[2], 0.0f, 2e6 / 510 * 1.001);
}

TEST(CodecTest, DecodeMeanIsTheMeanOfTheDecodedVectors) {
  for (Encoding e : {Encoding::kFloat32, Encoding::kFloat16, Encoding::kSq8}) {
    const std::vector<float> a = Gaussian(700, 7), b = Gaussian(700, 8);
    std::vector<uint8_t> ca(CodeBytes(e, 700)), cb(CodeBytes(e, 700));
    Encode(e, a.data(), 700, ca.data());
    Encode(e, b.data(), 700, cb.data());
    std::vector<float> da(700), db(700), mean(700);
    Decode(e, ca.data(), 700, da.data());
    Decode(e, cb.data(), 700, db.data());
    DecodeMean(e, ca.data(), cb.data(), 700, mean.data());
    for (int j = 0; j < 700; ++j) EXPECT_EQ(mean[j], 0.5f * (da[j] + db[j])) << j;
  }
}

TEST(CodecTest, NamesAndProtoValuesRoundTrip) {
  for (Encoding e : {Encoding::kFloat32, Encoding::kFloat16, Encoding::kSq8}) {
    EXPECT_EQ(ParseEncoding(EncodingName(e)), e);
    EXPECT_EQ(FromProto(ToProto(e)), e);
  }
  EXPECT_FALSE(ParseEncoding("int4").has_value());
  // Datasets stored before encodings existed hold float32.
  EXPECT_EQ(FromProto(v1::EmbeddingConfig::ENCODING_UNSPECIFIED), Encoding::kFloat32);
}

// Many examples with long ids, over several blocks of codes and of id characters.
TEST(VectorIndexTest, UnitsDecodeWhatWasAddedAcrossBlocks) {
  for (Encoding e : {Encoding::kFloat32, Encoding::kFloat16, Encoding::kSq8}) {
    const int dim = 3;
    VectorIndex index(dim, /*pairs=*/true, e);
    const int64_t pairs = 700'000;  // 1.4M vectors: several 4 MB blocks in every encoding
    std::vector<float> values = Gaussian(static_cast<int>(pairs * 2 * dim), 9);
    std::vector<int64_t> seqs(pairs);
    std::vector<std::string> ids(pairs);
    for (int64_t i = 0; i < pairs; ++i) {
      seqs[i] = i;
      ids[i] = "example-" + std::to_string(i) + std::string(20, 'x');
    }
    // Two Adds, so the second starts inside a partly filled block.
    const int64_t half = pairs / 3;
    index.Add(std::span(seqs).first(half), values.data(), std::span(ids).first(half), {});
    index.Add(std::span(seqs).subspan(half), values.data() + half * 2 * dim,
              std::span(ids).subspan(half), {});
    ASSERT_EQ(index.examples(), pairs);
    ASSERT_EQ(index.vectors(), 2 * pairs);
    EXPECT_GE(index.vector_memory_bytes(), static_cast<int64_t>(2 * pairs * CodeBytes(e, dim)));

    const UnitMatrix concat = index.Units(UnitLayout::kPairConcat);
    const UnitMatrix mean = index.Units(UnitLayout::kPairMean);
    const UnitMatrix vectors = index.Units(UnitLayout::kVectors);
    ASSERT_EQ(concat.rows, pairs);
    ASSERT_EQ(vectors.rows, 2 * pairs);
    ASSERT_EQ(concat.values.rows(), pairs);
    ASSERT_EQ(concat.values.dim(), 2 * dim);
    ASSERT_EQ(mean.values.dim(), dim);
    ASSERT_EQ(vectors.values.rows(), 2 * pairs);
    std::vector<float> concat_data, mean_data, vectors_data;
    ASSERT_TRUE(concat.values.Decode(&concat_data).ok());
    ASSERT_TRUE(mean.values.Decode(&mean_data).ok());
    ASSERT_TRUE(vectors.values.Decode(&vectors_data).ok());
    for (int64_t r : {int64_t{0}, half - 1, half, pairs / 2, pairs - 1}) {
      std::vector<float> expected(2 * dim);
      for (int side = 0; side < 2; ++side) {
        std::vector<float> x(values.begin() + (2 * r + side) * dim,
                             values.begin() + (2 * r + side + 1) * dim);
        const std::vector<float> y = RoundTrip(e, x);
        std::copy(y.begin(), y.end(), expected.begin() + side * dim);
      }
      for (int j = 0; j < 2 * dim; ++j) {
        EXPECT_EQ(concat_data[r * 2 * dim + j], expected[j]);
        EXPECT_EQ(vectors_data[r * 2 * dim + j], expected[j]);
      }
      for (int j = 0; j < dim; ++j) {
        EXPECT_EQ(mean_data[r * dim + j], 0.5f * (expected[j] + expected[dim + j]));
      }
      EXPECT_EQ(concat.seq[r], r);
      EXPECT_EQ(vectors.seq[2 * r + 1], r);
      EXPECT_EQ(vectors.side[2 * r + 1], 1);
      EXPECT_EQ(vectors.label[2 * r], kDesirable);
      EXPECT_EQ(index.ExampleIds(std::vector<int64_t>{r})[0], ids[r]);
    }
  }
}

}  // namespace
}  // namespace curation::index
