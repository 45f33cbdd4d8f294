// The built-in embedder: signed feature hashing of word n-grams.
//
// PLACEHOLDER_DOC
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "embedding/embedder.h"

namespace curation::embedding {

struct HashedNgramOptions {
  int dim = 512;
  // Weight of word bigram features relative to unigrams; 0 turns them off.
  float bigram_weight = 1.0f;
  // Character n-grams of each word padded as "<word>", n in [char_min, char_max]; off when
  // char_weight is 0.
  float char_weight = 0.0f;
  int char_min = 3;
  int char_max = 5;
  // Runs of ASCII punctuation (e.g. "**", "#", "-") as tokens of their own; 0 turns them off.
  float punct_weight = 0.0f;
  // A feature for the text's length (log2 of its word count); 0 turns it off.
  float length_weight = 0.0f;
  int hashes = 1;
  int punct_buckets = 0;
};

class HashedNgramEmbedder final : public Embedder {
 public:
  explicit HashedNgramEmbedder(const HashedNgramOptions& options = {});

  std::string_view name() const override { return name_; }
  int dim() const override { return options_.dim; }
  void Embed(std::string_view text, float* out) const override;

  // The 64-bit hash of one word unigram feature (a lower-cased token), as Embed uses it:
  // bucket = (hash >> 32) * dim >> 32, sign = + when bit 0 is 0. Exposed so tests can pin the
  // hash across compilers and machines.
  static uint64_t UnigramHash(std::string_view token);

  // The tokens Embed reads from `text`, in order (punctuation tokens only when enabled).
  std::vector<std::string> Tokenize(std::string_view text) const;

 private:
  HashedNgramOptions options_;
  std::string name_;
};

}  // namespace curation::embedding
