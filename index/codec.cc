#include "index/codec.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace curation::index {
namespace {

constexpr float kHalfMax = 65504.0f;

// IEEE binary16 <-> binary32, round to nearest even, for CPUs without F16C.
uint16_t HalfFromFloat(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(std::clamp(f, -kHalfMax, kHalfMax));
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs < 0x38800000u) {  // below 2^-14: a subnormal half (or zero)
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // rounds to zero
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 113 - static_cast<int>(abs >> 23) + 13;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((abs - 0x38000000u) >> 13);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

float FloatFromHalf(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24.
    const float value = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -value : value;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) void EncodeHalfF16c(const float* values, int dim,
                                                        uint16_t* out) {
  const __m256 lo = _mm256_set1_ps(-kHalfMax);
  const __m256 hi = _mm256_set1_ps(kHalfMax);
  int j = 0;
  for (; j + 8 <= dim; j += 8) {
    const __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(values + j), lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; j < dim; ++j) out[j] = HalfFromFloat(values[j]);
}

__attribute__((target("avx,f16c"))) void DecodeHalfF16c(const uint16_t* in, int dim, float* out) {
  int j = 0;
  for (; j + 8 <= dim; j += 8) {
    _mm256_storeu_ps(out + j,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + j))));
  }
  for (; j < dim; ++j) out[j] = FloatFromHalf(in[j]);
}

bool HasF16c() {
  static const bool has = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  return has;
}
#endif

void EncodeHalf(const float* values, int dim, uint16_t* out) {
#if defined(__x86_64__)
  if (HasF16c()) return EncodeHalfF16c(values, dim, out);
#endif
  for (int j = 0; j < dim; ++j) out[j] = HalfFromFloat(values[j]);
}

void DecodeHalf(const uint16_t* in, int dim, float* out) {
#if defined(__x86_64__)
  if (HasF16c()) return DecodeHalfF16c(in, dim, out);
#endif
  for (int j = 0; j < dim; ++j) out[j] = FloatFromHalf(in[j]);
}

// Codes are byte arrays with no alignment; halves go through aligned scratch in blocks.
constexpr int kBlock = 256;

}  // namespace

std::optional<Encoding> ParseEncoding(std::string_view name) {
  if (name == "float32") return Encoding::kFloat32;
  if (name == "float16") return Encoding::kFloat16;
  if (name == "sq8") return Encoding::kSq8;
  return std::nullopt;
}

std::string_view EncodingName(Encoding encoding) {
  switch (encoding) {
    case Encoding::kFloat16:
      return "float16";
    case Encoding::kSq8:
      return "sq8";
    case Encoding::kFloat32:
      break;
  }
  return "float32";
}

size_t CodeBytes(Encoding encoding, int dim) {
  switch (encoding) {
    case Encoding::kFloat16:
      return 2 * static_cast<size_t>(dim);
    case Encoding::kSq8:
      return 2 * sizeof(float) + static_cast<size_t>(dim);
    case Encoding::kFloat32:
      break;
  }
  return sizeof(float) * static_cast<size_t>(dim);
}

void Encode(Encoding encoding, const float* values, int dim, uint8_t* code) {
  switch (encoding) {
    case Encoding::kFloat32:
      std::memcpy(code, values, sizeof(float) * dim);
      return;
    case Encoding::kFloat16: {
      uint16_t half[kBlock];
      for (int j = 0; j < dim; j += kBlock) {
        const int n = std::min(kBlock, dim - j);
        EncodeHalf(values + j, n, half);
        std::memcpy(code + 2 * j, half, 2 * n);
      }
      return;
    }
    case Encoding::kSq8: {
      float lo = 0, hi = 0;
      if (dim > 0) {
        const auto [mn, mx] = std::minmax_element(values, values + dim);
        lo = *mn;
        hi = *mx;
      }
      // In double: hi - lo of two finite floats can overflow a float.
      const double range = static_cast<double>(hi) - lo;
      const float step = static_cast<float>(range / 255);
      std::memcpy(code, &lo, sizeof lo);
      std::memcpy(code + sizeof lo, &step, sizeof step);
      uint8_t* out = code + 2 * sizeof(float);
      const double inverse = step > 0 ? 1 / static_cast<double>(step) : 0;
      for (int j = 0; j < dim; ++j) {
        const double c = std::nearbyint((static_cast<double>(values[j]) - lo) * inverse);
        out[j] = static_cast<uint8_t>(std::clamp(c, 0.0, 255.0));
      }
      return;
    }
  }
}

void Decode(Encoding encoding, const uint8_t* code, int dim, float* values) {
  switch (encoding) {
    case Encoding::kFloat32:
      std::memcpy(values, code, sizeof(float) * dim);
      return;
    case Encoding::kFloat16: {
      uint16_t half[kBlock];
      for (int j = 0; j < dim; j += kBlock) {
        const int n = std::min(kBlock, dim - j);
        std::memcpy(half, code + 2 * j, 2 * n);
        DecodeHalf(half, n, values + j);
      }
      return;
    }
    case Encoding::kSq8: {
      float lo, step;
      std::memcpy(&lo, code, sizeof lo);
      std::memcpy(&step, code + sizeof lo, sizeof step);
      const uint8_t* in = code + 2 * sizeof(float);
      for (int j = 0; j < dim; ++j) values[j] = lo + static_cast<float>(in[j]) * step;
      return;
    }
  }
}

void DecodeMean(Encoding encoding, const uint8_t* a, const uint8_t* b, int dim, float* out) {
  float other[kBlock];
  for (int j = 0; j < dim; j += kBlock) {
    const int n = std::min(kBlock, dim - j);
    // Decoding a block of a vector is decoding a shorter vector, except for SQ8, whose
    // header belongs to the whole vector.
    if (encoding == Encoding::kSq8) break;
    const size_t width = CodeBytes(encoding, 1);
    Decode(encoding, a + width * j, n, out + j);
    Decode(encoding, b + width * j, n, other);
    for (int i = 0; i < n; ++i) out[j + i] = 0.5f * (out[j + i] + other[i]);
  }
  if (encoding != Encoding::kSq8) return;
  float lo_a, step_a, lo_b, step_b;
  std::memcpy(&lo_a, a, sizeof lo_a);
  std::memcpy(&step_a, a + 4, sizeof step_a);
  std::memcpy(&lo_b, b, sizeof lo_b);
  std::memcpy(&step_b, b + 4, sizeof step_b);
  const uint8_t* ca = a + 8;
  const uint8_t* cb = b + 8;
  for (int j = 0; j < dim; ++j) {
    out[j] = 0.5f * ((lo_a + static_cast<float>(ca[j]) * step_a) +
                     (lo_b + static_cast<float>(cb[j]) * step_b));
  }
}

}  // namespace curation::index
