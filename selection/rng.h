// Random draws that give the same numbers on every machine and standard library.
//
// std::uniform_int_distribution and std::uniform_real_distribution are implementation-defined
// in how they consume the engine, so a seed would select different rows under libstdc++ and
// libc++. std::mt19937_64's output sequence is fully specified, so everything is built on it.
#pragma once

#include <cstdint>
#include <random>

namespace curation::selection {

// A uniform integer in [0, n), without modulo bias (rejects the top partial block of 2^64).
// Requires n > 0.
inline uint64_t BoundedDraw(std::mt19937_64& rng, uint64_t n) {
  // 2^64 mod n, computed in unsigned arithmetic; draws below it would favour small results.
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % n;
  }
}

// A uniform double in [0, 1) with 53 random bits.
inline double UniformDraw(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace curation::selection
