#include "evaluation/numpy_random.h"

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace curation::evaluation {
namespace {

// numpy/random/bit_generator.pyx: SeedSequence constants.
constexpr uint32_t kInitA = 0x43b0d7e5;
constexpr uint32_t kMultA = 0x931e8875;
constexpr uint32_t kInitB = 0x8b51f9dd;
constexpr uint32_t kMultB = 0x58f38ded;
constexpr uint32_t kMixMultL = 0xca01f9dd;
constexpr uint32_t kMixMultR = 0x4973f715;
constexpr int kXShift = 16;
constexpr int kPoolSize = 4;

uint32_t HashMix(uint32_t value, uint32_t& hash_const) {
  value ^= hash_const;
  hash_const *= kMultA;
  value *= hash_const;
  value ^= value >> kXShift;
  return value;
}

uint32_t Mix(uint32_t x, uint32_t y) {
  uint32_t result = kMixMultL * x - kMixMultR * y;
  result ^= result >> kXShift;
  return result;
}

// SeedSequence(seed).generate_state(4, np.uint64), as four 64-bit words.
void SeedState(uint64_t seed, uint64_t out[4]) {
  // The entropy integer as little-endian 32-bit words (at least one).
  std::vector<uint32_t> entropy{static_cast<uint32_t>(seed)};
  if (seed >> 32) entropy.push_back(static_cast<uint32_t>(seed >> 32));
  uint32_t pool[kPoolSize];
  uint32_t hash_const = kInitA;
  for (int i = 0; i < kPoolSize; ++i) {
    pool[i] = HashMix(i < static_cast<int>(entropy.size()) ? entropy[i] : 0, hash_const);
  }
  for (int src = 0; src < kPoolSize; ++src) {
    for (int dst = 0; dst < kPoolSize; ++dst) {
      if (src != dst) pool[dst] = Mix(pool[dst], HashMix(pool[src], hash_const));
    }
  }
  for (std::size_t src = kPoolSize; src < entropy.size(); ++src) {
    for (int dst = 0; dst < kPoolSize; ++dst) {
      pool[dst] = Mix(pool[dst], HashMix(entropy[src], hash_const));
    }
  }
  uint32_t words[8];
  uint32_t hash_b = kInitB;
  for (int i = 0; i < 8; ++i) {
    uint32_t v = pool[i % kPoolSize];
    v ^= hash_b;
    hash_b *= kMultB;
    v *= hash_b;
    v ^= v >> kXShift;
    words[i] = v;
  }
  for (int i = 0; i < 4; ++i) out[i] = words[2 * i] | (uint64_t{words[2 * i + 1]} << 32);
}

// numpy's PCG64: pcg_setseq_128 with the XSL-RR 64-bit output and its 32-bit buffering.
class Pcg64 {
 public:
  explicit Pcg64(uint64_t seed) {
    uint64_t s[4];
    SeedState(seed, s);
    const unsigned __int128 init_state = (static_cast<unsigned __int128>(s[0]) << 64) | s[1];
    const unsigned __int128 init_seq = (static_cast<unsigned __int128>(s[2]) << 64) | s[3];
    state_ = 0;
    inc_ = (init_seq << 1) | 1;
    Step();
    state_ += init_state;
    Step();
  }

  uint64_t Next64() {
    Step();
    const uint64_t hi = static_cast<uint64_t>(state_ >> 64);
    const uint64_t lo = static_cast<uint64_t>(state_);
    const unsigned rot = static_cast<unsigned>(state_ >> 122);
    const uint64_t x = hi ^ lo;
    return (x >> rot) | (x << ((64 - rot) & 63));
  }

  uint32_t Next32() {
    if (has_half_) {
      has_half_ = false;
      return half_;
    }
    const uint64_t next = Next64();
    has_half_ = true;
    half_ = static_cast<uint32_t>(next >> 32);
    return static_cast<uint32_t>(next);
  }

  // distributions.c random_interval: uniform in [0, max] by masked rejection.
  uint64_t Interval(uint64_t max) {
    if (max == 0) return 0;
    uint64_t mask = max;
    for (int s = 1; s < 64; s *= 2) mask |= mask >> s;
    uint64_t value;
    if (max <= 0xffffffffull) {
      while ((value = (Next32() & mask)) > max) {
      }
    } else {
      while ((value = (Next64() & mask)) > max) {
      }
    }
    return value;
  }

 private:
  void Step() {
    static const unsigned __int128 kMultiplier =
        (static_cast<unsigned __int128>(0x2360ED051FC65DA4ull) << 64) | 0x4385DF649FCCF645ull;
    state_ = state_ * kMultiplier + inc_;
  }

  unsigned __int128 state_;
  unsigned __int128 inc_;
  bool has_half_ = false;
  uint32_t half_ = 0;
};

}  // namespace

std::vector<int64_t> NumpyPermutation(uint64_t seed, int64_t n) {
  std::vector<int64_t> perm(n < 0 ? 0 : n);
  std::iota(perm.begin(), perm.end(), 0);
  Pcg64 rng(seed);
  for (int64_t i = n - 1; i >= 1; --i) {
    const int64_t j = static_cast<int64_t>(rng.Interval(static_cast<uint64_t>(i)));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

}  // namespace curation::evaluation
