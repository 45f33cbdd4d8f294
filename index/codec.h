// How a dataset's vectors are held in memory and on disk: one small interface over float32,
// float16 and 8-bit scalar quantisation (the EmbeddingConfig.Encoding values).
//
// A vector's code is self-contained (SQ8 keeps each vector's own range in its code), so
// vectors are encoded one at a time as they arrive, with nothing to train, and a code written
// by one release decodes the same in the next. Codes are little-endian, as on every machine
// the server runs on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace curation::index {

enum class Encoding : uint8_t {
  kFloat32,  // the floats as they are: exact
  kFloat16,  // IEEE binary16, rounded to nearest even; finite floats beyond 65504 saturate
  kSq8,      // float lo, float step, then one byte c per value: value = lo + c * step
};

// "float32", "float16", "sq8" (flags and logs); nullopt for anything else.
std::optional<Encoding> ParseEncoding(std::string_view name);
std::string_view EncodingName(Encoding encoding);

// Bytes of one encoded vector of `dim` values.
size_t CodeBytes(Encoding encoding, int dim);

// Encodes dim finite floats into CodeBytes(encoding, dim) bytes at `code`.
void Encode(Encoding encoding, const float* values, int dim, uint8_t* code);

// Decodes one vector into dim floats.
void Decode(Encoding encoding, const uint8_t* code, int dim, float* values);

// out[j] = 0.5 * (decode(a)[j] + decode(b)[j]): a pair's mean row without a temporary.
void DecodeMean(Encoding encoding, const uint8_t* a, const uint8_t* b, int dim, float* out);

}  // namespace curation::index
