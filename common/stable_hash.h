// Hashes of example ids that are part of stored and cross-machine behaviour: which partition
// holds an example, and the key that orders random selection and ISA's warm-start sample.
// They must never change between releases or differ between machines (no std::hash).
#pragma once

#include <cstdint>
#include <string_view>

namespace curation {

// SplitMix64's finaliser: a bijection that spreads every input bit over the whole word.
constexpr uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// FNV-1a-64 of the bytes, finalised by Mix64.
constexpr uint64_t StableHash64(std::string_view bytes) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  return Mix64(h);
}

// The partition, in [0, partitions), that holds the example `id` of a dataset with
// `partitions` > 0 partitions. Salted so that it is independent of UnitKey's order.
inline int PartitionOf(std::string_view id, int partitions) {
  return static_cast<int>(Mix64(StableHash64(id) ^ 0x7061727469746e73ULL) %
                          static_cast<uint64_t>(partitions));
}

// The stable key of a selection unit (SelectOptions::row_keys): a pair or unpaired example by
// its id (side -1), one completion of a pair by its id and side (0 chosen, 1 rejected).
inline uint64_t UnitKey(std::string_view id, int side = -1) {
  const uint64_t h = StableHash64(id);
  return side < 0 ? h : Mix64(h + 1 + static_cast<uint64_t>(side));
}

}  // namespace curation
