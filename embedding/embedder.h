// Text embedders: text in, a fixed-length float vector out.
//
// The server embeds every example it ingests with one Embedder and stores the embedder's name
// with the dataset, so vectors made by different embedders are never mixed. Implementations
// must be deterministic (the same text gives bit-identical output on every machine and run)
// and safe to call from several threads at once.
//
// The built-in embedder ("hashed-ngrams-v1", see hashed_ngram_embedder.h for the exact
// computation) needs no model weights: it hashes word unigrams and bigrams into signed buckets.
#pragma once

#include <memory>
#include <string_view>

namespace curation::embedding {

class Embedder {
 public:
  virtual ~Embedder() = default;

  // A stable name that identifies the function computed, dimension included; stored with
  // datasets so a changed embedder is detected rather than silently mixed in.
  virtual std::string_view name() const = 0;

  // The length of every vector Embed writes.
  virtual int dim() const = 0;

  // Writes dim() floats for `text` into out[0, dim()). The vector has unit L2 norm, or is all
  // zeros when the text has no tokens. `text` is bytes, read as UTF-8 but never validated.
  // Thread-safe.
  virtual void Embed(std::string_view text, float* out) const = 0;
};

// The embedder the server uses by default: HashedNgramEmbedder with default options.
std::unique_ptr<Embedder> MakeBuiltinEmbedder();

}  // namespace curation::embedding
