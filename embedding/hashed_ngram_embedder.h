// The built-in embedder, "hashed-ngrams-v1": signed feature hashing, no model weights.
//
// What Embed computes, exactly (with default options):
//   1. Tokens. ASCII letters are lower-cased (no locale). A word is a maximal run of bytes in
//      [0-9a-z] or >= 0x80 (so UTF-8 multibyte characters are word characters). A punctuation
//      token is a maximal run of other printable ASCII bytes ('!'..'~'), cut to its first 4
//      bytes. Whitespace and control bytes separate tokens.
//   2. Features, each a 64-bit hash h = Mix(FNV-1a-64(bytes) ^ seed_of_kind), Mix being
//      SplitMix64's finaliser:
//        - every word (weight 1);
//        - every byte 3- and 4-gram of every word padded as "<word>" (weight char_weight = 1);
//        - every punctuation token (weight punct_weight = 2);
//        - word bigrams, off by default (bigram_weight = 0).
//   3. Each distinct feature adds sign * weight * (1 + ln tf) to bucket (h >> 32) * dim >> 32,
//      where tf is its count in the text and sign is - when bit 0 of h is 1. Sums are in double
//      (ln computed with +-*/ only, not libm), kind by kind (words, bigrams, char n-grams,
//      punctuation), in an order fixed by the text alone.
//   4. The dim-vector (default 256) is L2-normalised and rounded to float; no tokens = zeros.
//
// Why these choices (measured with shared/tools/proxy_table.py's full-data accuracy on the
// AlpacaEval pairs, three hash seeds each): unigrams alone at 256 dims reach 0.79; punctuation
// tokens (markdown structure such as "**", "#", "1.") add 0.02-0.04; char n-grams spread each word
// over several buckets, which makes the result far less sensitive to which features happen to
// collide (0.824-0.829 over seeds, against 0.807-0.828 without them). Word bigrams lowered
// accuracy at every dimension tried: they double the features competing for the same buckets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "embedding/embedder.h"

namespace curation::embedding {

struct HashedNgramOptions {
  int dim = 256;  // must be > 0
  float char_weight = 1.0f;
  int char_min = 3;  // char n-gram lengths, 1 <= char_min <= char_max
  int char_max = 4;
  float punct_weight = 2.0f;
  float bigram_weight = 0.0f;
};

class HashedNgramEmbedder final : public Embedder {
 public:
  // Options out of range are clamped to the nearest valid value.
  explicit HashedNgramEmbedder(const HashedNgramOptions& options = {});

  // "hashed-ngrams-v1" with default options; otherwise the non-default settings are appended
  // (e.g. "hashed-ngrams-v1-d512-p1"), so different functions never share a name.
  std::string_view name() const override { return name_; }
  int dim() const override { return options_.dim; }
  void Embed(std::string_view text, float* out) const override;

  // The 64-bit hash of a word feature (its lower-cased bytes), as step 2 above defines it.
  // Exposed so tests can pin the hash across compilers and machines.
  static uint64_t WordHash(std::string_view word);

  // The word and punctuation tokens of `text` in order (step 1 above).
  static std::vector<std::string> Tokenize(std::string_view text);

 private:
  HashedNgramOptions options_;
  std::string name_;
};

}  // namespace curation::embedding
