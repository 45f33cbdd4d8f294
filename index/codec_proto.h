// The encodings of index/codec.h as the public API names them (EmbeddingConfig.Encoding).
#pragma once

#include "curation/v1/curation.pb.h"
#include "index/codec.h"

namespace curation::index {

// The encoding a stored dataset uses (UNSPECIFIED: FLOAT32, what datasets made before
// encodings existed hold).
inline Encoding FromProto(v1::EmbeddingConfig::Encoding encoding) {
  switch (encoding) {
    case v1::EmbeddingConfig::ENCODING_FLOAT16:
      return Encoding::kFloat16;
    case v1::EmbeddingConfig::ENCODING_SQ8:
      return Encoding::kSq8;
    default:
      return Encoding::kFloat32;
  }
}

inline v1::EmbeddingConfig::Encoding ToProto(Encoding encoding) {
  switch (encoding) {
    case Encoding::kFloat16:
      return v1::EmbeddingConfig::ENCODING_FLOAT16;
    case Encoding::kSq8:
      return v1::EmbeddingConfig::ENCODING_SQ8;
    case Encoding::kFloat32:
      break;
  }
  return v1::EmbeddingConfig::ENCODING_FLOAT32;
}

}  // namespace curation::index
