#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "embedding/embedder.h"
#include "embedding/hashed_ngram_embedder.h"
#include "gtest/gtest.h"

namespace curation::embedding {
namespace {

std::vector<float> EmbedText(const Embedder& e, std::string_view text) {
  std::vector<float> v(e.dim());
  e.Embed(text, v.data());
  return v;
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// FNV-1a over the vector's bytes: any change of any bit shows.
uint64_t Checksum(const std::vector<float>& v) {
  uint64_t h = 14695981039346656037ULL;
  for (float f : v) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof(bits));
    for (int i = 0; i < 4; ++i) {
      h ^= (bits >> (8 * i)) & 0xff;
      h *= 1099511628211ULL;
    }
  }
  return h;
}

// From AlpacaEval-style answers (text written for this test).
constexpr char kMarkdownAnswer[] =
    "The origins of US state names are a fascinating blend of history, geography, Native "
    "American languages, and European influences. Here's a breakdown:\n\n**1. Native American "
    "Roots:**\n\n* **Alabama:** From the Alabama tribe, meaning \"thicket-clearers\".\n* "
    "**Alaska:** Derived from the Aleut word \"alaxsxaq\", meaning \"mainland\".";

TEST(BuiltinEmbedderTest, NameAndDimension) {
  std::unique_ptr<Embedder> e = MakeBuiltinEmbedder();
  EXPECT_EQ(e->name(), "hashed-ngrams-v1");
  EXPECT_EQ(e->dim(), 256);
  HashedNgramOptions o;
  o.dim = 512;
  EXPECT_EQ(HashedNgramEmbedder(o).name(), "hashed-ngrams-v1-d512");
  o.punct_weight = 0;
  EXPECT_EQ(HashedNgramEmbedder(o).name(), "hashed-ngrams-v1-d512-p0");
}

// Pins the algorithm: these constants may only change together with the embedder's name,
// because stored datasets hold vectors made by the old function.
TEST(BuiltinEmbedderTest, PinnedHashesAndVectorsAreTheSameEverywhere) {
  EXPECT_EQ(HashedNgramEmbedder::WordHash("hello"), 0xcef6cf4ee5aad766ULL);
  EXPECT_EQ(HashedNgramEmbedder::WordHash("preference"), 0xe4b1a2bb861a8726ULL);
  std::unique_ptr<Embedder> e = MakeBuiltinEmbedder();
  EXPECT_EQ(Checksum(EmbedText(*e, kMarkdownAnswer)), 0x234074cac95bd2f1ULL);
  EXPECT_EQ(Checksum(EmbedText(*e, "Hello, world!")), 0x0ef3f5947f8734f5ULL);

  // The same vector as computed by an independent Python rendering of the header's
  // description: 20 features of weight 1 (2 words and their 18 char n-grams) and 2 of weight 2
  // (the punctuation "," and "!"), no two sharing a bucket, so the norm is sqrt(20 + 2 * 4).
  std::vector<float> v = EmbedText(*e, "Hello, world!");
  const float w = 0.1889822f;  // 1 / sqrt(28)
  std::map<int, float> want = {
      {1, -w},      {4, -w},      {7, w},    {8, w},   {13, -w}, {14, w},  {31, w},   {35, w},
      {59, w},      {83, -w},     {92, w},   {122, w}, {127, w}, {131, w}, {149, -w}, {181, -w},
      {184, 2 * w}, {193, 2 * w}, {198, -w}, {206, w}, {223, w}, {253, w}};
  for (int i = 0; i < e->dim(); ++i) {
    float expected = want.contains(i) ? want[i] : 0.0f;
    EXPECT_NEAR(v[i], expected, 1e-6) << i;
  }
}

TEST(BuiltinEmbedderTest, SameTextGivesBitIdenticalVectors) {
  std::unique_ptr<Embedder> a = MakeBuiltinEmbedder();
  std::unique_ptr<Embedder> b = MakeBuiltinEmbedder();
  std::vector<float> first = EmbedText(*a, kMarkdownAnswer);
  EmbedText(*a, "something else in between, to dirty any scratch space");
  std::vector<float> again = EmbedText(*a, kMarkdownAnswer);
  std::vector<float> other = EmbedText(*b, kMarkdownAnswer);
  EXPECT_EQ(std::memcmp(first.data(), again.data(), first.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(first.data(), other.data(), first.size() * sizeof(float)), 0);
}

TEST(BuiltinEmbedderTest, VectorsHaveUnitNorm) {
  std::unique_ptr<Embedder> e = MakeBuiltinEmbedder();
  for (std::string_view text : {std::string_view(kMarkdownAnswer), std::string_view("a"),
                                std::string_view("!!"), std::string_view("日本語のテキスト")}) {
    EXPECT_NEAR(Dot(EmbedText(*e, text), EmbedText(*e, text)), 1.0, 1e-5) << text;
  }
}

TEST(BuiltinEmbedderTest, TextWithoutTokensGivesZeros) {
  std::unique_ptr<Embedder> e = MakeBuiltinEmbedder();
  for (std::string_view text : {"", "   ", "\n\t\r\n", "\x01\x02"}) {
    std::vector<float> v(e->dim(), 7.0f);
    e->Embed(text, v.data());
    for (float x : v) ASSERT_EQ(x, 0.0f);
  }
}

TEST(BuiltinEmbedderTest, IgnoresAsciiCaseAndSpacing) {
  std::unique_ptr<Embedder> e = MakeBuiltinEmbedder();
  std::vector<float> a = EmbedText(*e, "Hello World");
  std::vector<float> b = EmbedText(*e, "hello   world\n");
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST(BuiltinEmbedderTest, SimilarTextsAreCloserThanUnrelatedOnes) {
  std::unique_ptr<Embedder> e = MakeBuiltinEmbedder();
  std::vector<float> q =
      EmbedText(*e, "How much alcohol can I drink per day without harming my health?");
  std::vector<float> near =
      EmbedText(*e, "How many alcoholic drinks per day can I have before it harms my health?");
  std::vector<float> far = EmbedText(
      *e, "Rewrite the sentence to be concise: please let me know about the project scope.");
  EXPECT_GT(Dot(q, near), Dot(q, far) + 0.2);

  // Markdown structure is part of what the embedder sees.
  std::vector<float> md = EmbedText(*e, kMarkdownAnswer);
  std::vector<float> md2 =
      EmbedText(*e,
                "Here's a breakdown:\n\n**1. Origins:**\n\n* **Texas:** From the Caddo word "
                "\"taysha\", meaning \"friends\".\n* **Utah:** From the Ute tribe.");
  std::vector<float> plain = EmbedText(
      *e, "Texas takes its name from a Caddo word meaning friends and Utah from the Ute tribe");
  EXPECT_GT(Dot(md, md2), Dot(md, plain));
}

TEST(BuiltinEmbedderTest, TokenizesWordsAndPunctuation) {
  std::vector<std::string> want = {"hello", ",",  "w\xC3\xB6rld", "!",   "**",
                                   "bold",  "**", "x2",           "----"};
  EXPECT_EQ(HashedNgramEmbedder::Tokenize("Hello, W\xC3\xB6rld! **Bold** x2 ---------"), want);
}

TEST(BuiltinEmbedderTest, NonLatinTextIsEmbedded) {
  std::unique_ptr<Embedder> e = MakeBuiltinEmbedder();
  std::vector<float> a = EmbedText(*e, "Привет, как дела?");
  std::vector<float> b = EmbedText(*e, "Привет, как дела сегодня?");
  std::vector<float> c = EmbedText(*e, "今日はいい天気ですね");
  EXPECT_GT(Dot(a, b), Dot(a, c));
}

// Word features carry 1 + ln(tf): with char n-grams and punctuation off and a dimension large
// enough that "a" and "b" do not collide, the ratio of their buckets is exactly that.
TEST(BuiltinEmbedderTest, TermFrequencyIsSublinear) {
  HashedNgramOptions o;
  o.dim = 1 << 16;
  o.char_weight = 0;
  o.punct_weight = 0;
  HashedNgramEmbedder e(o);
  auto bucket = [&](std::string_view w) {
    return static_cast<size_t>(((HashedNgramEmbedder::WordHash(w) >> 32) * o.dim) >> 32);
  };
  auto sign = [](std::string_view w) { return (HashedNgramEmbedder::WordHash(w) & 1) ? -1 : 1; };
  ASSERT_NE(bucket("a"), bucket("b"));
  for (int tf : {1, 2, 3, 10, 255, 256, 1000}) {
    std::string text = "b";
    for (int i = 0; i < tf; ++i) text += " a";
    std::vector<float> v = EmbedText(e, text);
    double ratio = (v[bucket("a")] * sign("a")) / (v[bucket("b")] * sign("b"));
    EXPECT_NEAR(ratio, 1.0 + std::log(tf), 1e-5 * ratio) << tf;
  }
}

TEST(BuiltinEmbedderTest, IsThreadSafe) {
  std::unique_ptr<Embedder> e = MakeBuiltinEmbedder();
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back(std::string(kMarkdownAnswer).substr(0, 20 + i) + " #" + std::to_string(i));
  }
  std::vector<std::vector<float>> serial;
  for (const std::string& t : texts) serial.push_back(EmbedText(*e, t));

  constexpr int kThreads = 4;
  std::vector<std::vector<std::vector<float>>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread walks the texts in its own order so the threads interleave differently.
      for (size_t k = 0; k < texts.size(); ++k) {
        size_t i = (k * (2 * t + 1) + t) % texts.size();
        got[t].push_back(EmbedText(*e, texts[i]));
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    for (size_t k = 0; k < texts.size(); ++k) {
      size_t i = (k * (2 * t + 1) + t) % texts.size();
      ASSERT_EQ(std::memcmp(got[t][k].data(), serial[i].data(), e->dim() * sizeof(float)), 0)
          << "thread " << t << " text " << i;
    }
  }
}

}  // namespace
}  // namespace curation::embedding
