// Synthetic preference pairs for the load tool: varied, human-looking text of realistic
// length (a few hundred bytes to a couple of kilobytes per pair), cheap to make, and
// deterministic for a given seed so that a run can be repeated.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "curation/v1/curation.pb.h"

namespace curation::load {

class PairGenerator {
 public:
  explicit PairGenerator(uint64_t seed) : rng_(seed) {}

  // A pair with the given id: a question, a longer helpful answer as chosen and a shorter,
  // vaguer one as rejected. `serial` is woven into the text so that no two pairs share
  // their content even when ids are left out.
  v1::Example Next(const std::string& id, int64_t serial);

 private:
  std::string Words(int min_words, int max_words);
  std::mt19937_64 rng_;
};

}  // namespace curation::load
