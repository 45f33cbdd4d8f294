#include "embedding/hashed_ngram_embedder.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace curation::embedding {
namespace {

// Fixed constants, never std::hash: the vectors must match across machines and builds.
constexpr uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;
constexpr uint64_t kUnigramSeed = 0x9e3779b97f4a7c15ULL;
constexpr uint64_t kBigramSeed = 0xc2b2ae3d27d4eb4fULL;
constexpr uint64_t kCharSeed = 0x165667b19e3779f9ULL;
constexpr uint64_t kPunctSeed = 0x27d4eb2f165667c5ULL;
constexpr uint64_t kLengthSeed = 0x85ebca77c2b2ae63ULL;

uint64_t Fnv1a(std::string_view s, uint64_t h = kFnvOffset) {
  for (unsigned char c : s) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

// SplitMix64's finaliser: spreads FNV's weak low bits over the whole word, so the bucket (high
// bits) and the sign (bit 0) are independent.
uint64_t Mix(uint64_t z) {
  z += 0x1234567ULL * 1;
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ULL;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z;
}

bool IsWordByte(unsigned char c) {
  // Bytes of UTF-8 multibyte sequences count as word characters, so non-Latin words survive
  // without any Unicode tables (and without a locale).
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

bool IsPunctByte(unsigned char c) { return c > ' ' && c < 0x7f && !IsWordByte(c); }

char LowerAscii(unsigned char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

struct Token {
  std::string text;
  bool punct;
};

void Tokens(std::string_view text, bool with_punct, std::vector<Token>* out) {
  size_t i = 0, n = text.size();
  while (i < n) {
    unsigned char c = text[i];
    if (IsWordByte(c)) {
      Token t{{}, false};
      while (i < n && IsWordByte(text[i])) t.text.push_back(LowerAscii(text[i++]));
      out->push_back(std::move(t));
    } else if (with_punct && IsPunctByte(c)) {
      Token t{{}, true};
      // Long runs ("-----", "=====") carry no more than short ones.
      while (i < n && IsPunctByte(text[i])) {
        if (t.text.size() < 4) t.text.push_back(text[i]);
        ++i;
      }
      out->push_back(std::move(t));
    } else {
      ++i;
    }
  }
}

// Adds sign * weight * (1 + ln tf) for each distinct feature. Sorting the hashes makes both
// the counting and the order of the floating-point sums independent of any hash table.
void AddFeatures(std::vector<uint64_t>* features, double weight, int lo, int dim, int hashes,
                 double* acc) {
  if (weight == 0 || features->empty() || dim <= 0) return;
  weight /= std::sqrt(static_cast<double>(hashes));
  std::sort(features->begin(), features->end());
  for (size_t i = 0; i < features->size();) {
    size_t j = i;
    while (j < features->size() && (*features)[j] == (*features)[i]) ++j;
    double tf_weight = weight * (1.0 + std::log(static_cast<double>(j - i)));
    for (int k = 0; k < hashes; ++k) {
      uint64_t f = k == 0 ? (*features)[i] : Mix((*features)[i] + 0x9e3779b97f4a7c15ULL * k);
      size_t bucket = lo + static_cast<size_t>(((f >> 32) * static_cast<uint64_t>(dim)) >> 32);
      acc[bucket] += (f & 1) ? -tf_weight : tf_weight;
    }
    i = j;
  }
}

}  // namespace

HashedNgramEmbedder::HashedNgramEmbedder(const HashedNgramOptions& options) : options_(options) {
  name_ = absl::StrCat("hashed-ngrams-v1-", options_.dim);
  HashedNgramOptions defaults;
  defaults.dim = options_.dim;
  if (options_.bigram_weight != defaults.bigram_weight) {
    absl::StrAppend(&name_, "-bi", options_.bigram_weight);
  }
  if (options_.char_weight != 0) {
    absl::StrAppend(&name_, "-ch", options_.char_min, "_", options_.char_max, "x",
                    options_.char_weight);
  }
  if (options_.punct_weight != 0) absl::StrAppend(&name_, "-pu", options_.punct_weight);
  if (options_.length_weight != 0) absl::StrAppend(&name_, "-len", options_.length_weight);
  if (options_.hashes != 1) absl::StrAppend(&name_, "-h", options_.hashes);
  if (options_.punct_buckets != 0) absl::StrAppend(&name_, "-pb", options_.punct_buckets);
}

uint64_t HashedNgramEmbedder::UnigramHash(std::string_view token) {
  return Mix(Fnv1a(token) ^ kUnigramSeed);
}

std::vector<std::string> HashedNgramEmbedder::Tokenize(std::string_view text) const {
  std::vector<Token> tokens;
  Tokens(text, options_.punct_weight != 0, &tokens);
  std::vector<std::string> out;
  out.reserve(tokens.size());
  for (Token& t : tokens) out.push_back(std::move(t.text));
  return out;
}

void HashedNgramEmbedder::Embed(std::string_view text, float* out) const {
  const int dim = options_.dim;
  std::vector<Token> tokens;
  Tokens(text, options_.punct_weight != 0, &tokens);

  std::vector<uint64_t> words, bigrams, chars, puncts;
  words.reserve(tokens.size());
  uint64_t prev = 0;
  bool has_prev = false;
  int64_t word_count = 0;
  for (const Token& t : tokens) {
    uint64_t h = Fnv1a(t.text);
    if (t.punct) {
      puncts.push_back(Mix(h ^ kPunctSeed));
      // Punctuation does not break word bigrams: "end. The" still pairs "end" with "the".
      continue;
    }
    ++word_count;
    words.push_back(Mix(h ^ kUnigramSeed));
    if (options_.bigram_weight != 0 && has_prev) {
      bigrams.push_back(Mix(Mix(prev ^ kBigramSeed) ^ h));
    }
    prev = h;
    has_prev = true;
    if (options_.char_weight != 0) {
      std::string padded = absl::StrCat("<", t.text, ">");
      for (int n = options_.char_min; n <= options_.char_max; ++n) {
        for (size_t s = 0; s + n <= padded.size(); ++s) {
          chars.push_back(Mix(Fnv1a(std::string_view(padded).substr(s, n)) ^ kCharSeed));
        }
      }
    }
  }

  std::vector<double> acc(dim, 0.0);
  const int h = options_.hashes;
  const int pb = options_.punct_buckets;
  AddFeatures(&words, 1.0, 0, dim - pb, h, acc.data());
  AddFeatures(&bigrams, options_.bigram_weight, 0, dim - pb, h, acc.data());
  AddFeatures(&chars, options_.char_weight, 0, dim - pb, h, acc.data());
  AddFeatures(&puncts, options_.punct_weight, pb > 0 ? dim - pb : 0, pb > 0 ? pb : dim, h,
              acc.data());
  if (options_.length_weight != 0 && word_count > 0) {
    std::vector<uint64_t> len = {
        Mix(static_cast<uint64_t>(std::bit_width(static_cast<uint64_t>(word_count))) ^
            kLengthSeed)};
    AddFeatures(&len, options_.length_weight, 0, dim, 1, acc.data());
  }

  double norm2 = 0;
  for (double v : acc) norm2 += v * v;
  double inv = norm2 > 0 ? 1.0 / std::sqrt(norm2) : 0.0;
  for (int i = 0; i < dim; ++i) out[i] = static_cast<float>(acc[i] * inv);
}

std::unique_ptr<Embedder> MakeBuiltinEmbedder() {
  return std::make_unique<HashedNgramEmbedder>();
}

}  // namespace curation::embedding
