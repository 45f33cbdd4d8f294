#include "embedding/hashed_ngram_embedder.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace curation::embedding {
namespace {

// Fixed constants, never std::hash: the vectors must match across machines and builds.
constexpr uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;
constexpr uint64_t kWordSeed = 0x9e3779b97f4a7c15ULL;
constexpr uint64_t kBigramSeed = 0xc2b2ae3d27d4eb4fULL;
constexpr uint64_t kCharSeed = 0x165667b19e3779f9ULL;
constexpr uint64_t kPunctSeed = 0x27d4eb2f165667c5ULL;
constexpr size_t kMaxPunctBytes = 4;

uint64_t FnvStep(uint64_t h, unsigned char c) { return (h ^ c) * kFnvPrime; }

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = kFnvOffset;
  for (unsigned char c : s) h = FnvStep(h, c);
  return h;
}

// SplitMix64's finaliser: spreads FNV's weak low bits over the whole word, so the bucket (high
// bits) and the sign (bit 0) are independent.
uint64_t Mix(uint64_t z) {
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ULL;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z;
}

// Bytes of UTF-8 multibyte sequences count as word characters, so non-Latin words survive
// without Unicode tables or a locale.
bool IsWordByte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

bool IsPunctByte(unsigned char c) { return c > ' ' && c < 0x7f && !IsWordByte(c); }

unsigned char Lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

// Calls word(std::string_view) and punct(std::string_view) for each token in order. Views
// point into `lowered`, which is `text` with ASCII lower-cased.
template <typename WordFn, typename PunctFn>
void ForEachToken(std::string_view text, std::string* lowered, WordFn word, PunctFn punct) {
  lowered->resize(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    (*lowered)[i] = static_cast<char>(Lower(static_cast<unsigned char>(text[i])));
  }
  std::string_view s(*lowered);
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t j = i + 1;
    if (IsWordByte(c)) {
      while (j < s.size() && IsWordByte(s[j])) ++j;
      word(s.substr(i, j - i));
    } else if (IsPunctByte(c)) {
      // Long runs ("-----", "=====") say no more than short ones.
      while (j < s.size() && IsPunctByte(s[j])) ++j;
      punct(s.substr(i, std::min(j - i, kMaxPunctBytes)));
    }
    i = j;
  }
}

// 1 + ln(tf) from +, -, *, / only, which IEEE 754 rounds the same everywhere; libm's log may
// differ in the last bit between machines (glibc picks an FMA variant at run time).
double SublinearTf(uint32_t tf) {
  if (tf == 1) return 1.0;
  int e = 0;
  double m = tf;
  while (m >= 2.0) {  // exact: halving an integer-valued double
    m *= 0.5;
    ++e;
  }
  if (m > 1.4142135623730951) {  // keep m in [sqrt(1/2), sqrt(2)) so the series converges fast
    m *= 0.5;
    ++e;
  }
  // ln m = 2 atanh(z), z = (m - 1) / (m + 1), |z| < 0.172; 12 terms reach double precision.
  const double z = (m - 1.0) / (m + 1.0);
  const double z2 = z * z;
  double sum = 0.0;
  for (int k = 23; k >= 1; k -= 2) sum = sum * z2 + 1.0 / k;
  constexpr double kLn2 = 0.6931471805599453;
  return 1.0 + e * kLn2 + 2.0 * z * sum;
}

constexpr uint32_t kTfTableSize = 256;

const double* TfTable() {
  static const auto* table = [] {
    auto* t = new double[kTfTableSize];
    for (uint32_t tf = 0; tf < kTfTableSize; ++tf) t[tf] = tf == 0 ? 0.0 : SublinearTf(tf);
    return t;
  }();
  return table;
}

// Counts equal feature hashes in an open-addressing table. Slots are visited in index order,
// which depends on the sequence of features alone, so the order of the floating-point sums
// (and so every bit of the result) is the same on every machine.
//
// Which slots hold a key is kept in a bitmap beside them: emptying the table clears the bitmap
// (a bit a slot) rather than the slots, and ForEach finds the occupied slots a word of the
// bitmap at a time in index order, without testing (and mispredicting on) every empty one.
class CountTable {
 public:
  struct Slot {
    uint64_t key;
    uint32_t count;
    uint32_t token;  // the index of the key's first token (word table only)
  };

  // Empties the table, sized for up to `n` distinct keys.
  void Reset(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (slots_.size() < cap) slots_.resize(cap);
    used_.assign(cap / 64 + 1, 0);
    mask_ = cap - 1;
  }

  // Adds `count` (> 0) to key's count; returns its slot.
  Slot* Add(uint64_t key, uint32_t count) {
    size_t i = static_cast<size_t>(key) & mask_;  // low bits; buckets use the high ones
    while (true) {
      Slot& slot = slots_[i];
      if (!Used(i)) {
        used_[i >> 6] |= uint64_t{1} << (i & 63);
        slot.key = key;
        slot.count = count;
        return &slot;
      }
      if (slot.key == key) {
        slot.count += count;
        return &slot;
      }
      i = (i + 1) & mask_;
    }
  }

  // Calls fn(const Slot&) for every occupied slot, in index order.
  template <typename Fn>
  void ForEach(Fn fn) const {
    for (size_t w = 0; w < used_.size(); ++w) {
      for (uint64_t bits = used_[w]; bits != 0; bits &= bits - 1) {
        fn(slots_[(w << 6) + static_cast<size_t>(__builtin_ctzll(bits))]);
      }
    }
  }

 private:
  bool Used(size_t i) const { return (used_[i >> 6] >> (i & 63)) & 1; }

  std::vector<Slot> slots_;     // only the slots the bitmap marks hold anything
  std::vector<uint64_t> used_;  // bit i: slot i holds a key
  size_t mask_ = 0;
};

// Adds sign * weight * (1 + ln tf) for each distinct feature of `table`.
void AddCounts(const CountTable& table, double weight, int dim, double* acc) {
  if (weight == 0) return;
  const double* tf_table = TfTable();
  table.ForEach([&](const CountTable::Slot& slot) {
    const uint32_t tf = slot.count;
    const uint64_t f = slot.key;
    const double value = weight * (tf < kTfTableSize ? tf_table[tf] : SublinearTf(tf));
    const size_t bucket = static_cast<size_t>(((f >> 32) * static_cast<uint64_t>(dim)) >> 32);
    acc[bucket] += (f & 1) ? -value : value;
  });
}

void AddFeatures(const std::vector<uint64_t>& features, double weight, int dim, CountTable* table,
                 double* acc) {
  if (weight == 0 || features.empty()) return;
  table->Reset(features.size());
  for (uint64_t f : features) table->Add(f, 1);
  AddCounts(*table, weight, dim, acc);
}

// Per-thread scratch space, so Embed allocates only while a thread's texts keep growing.
struct Scratch {
  std::string lowered;
  std::vector<std::string_view> tokens;  // the words, pointing into `lowered`
  std::vector<uint64_t> bigrams, puncts;
  CountTable words, table;
  std::vector<double> acc;
};

}  // namespace

HashedNgramEmbedder::HashedNgramEmbedder(const HashedNgramOptions& options) : options_(options) {
  options_.dim = std::max(1, options_.dim);
  options_.char_min = std::max(1, options_.char_min);
  options_.char_max = std::max(options_.char_min, options_.char_max);
  const HashedNgramOptions d;
  name_ = "hashed-ngrams-v1";
  if (options_.dim != d.dim) absl::StrAppend(&name_, "-d", options_.dim);
  if (options_.char_weight != d.char_weight || options_.char_min != d.char_min ||
      options_.char_max != d.char_max) {
    absl::StrAppend(&name_, "-c", options_.char_min, "_", options_.char_max, "x",
                    options_.char_weight);
  }
  if (options_.punct_weight != d.punct_weight) absl::StrAppend(&name_, "-p", options_.punct_weight);
  if (options_.bigram_weight != d.bigram_weight) {
    absl::StrAppend(&name_, "-b", options_.bigram_weight);
  }
}

uint64_t HashedNgramEmbedder::WordHash(std::string_view word) {
  return Mix(Fnv1a(word) ^ kWordSeed);
}

std::vector<std::string> HashedNgramEmbedder::Tokenize(std::string_view text) {
  std::vector<std::string> out;
  std::string lowered;
  auto add = [&out](std::string_view t) { out.emplace_back(t); };
  ForEachToken(text, &lowered, add, add);
  return out;
}

void HashedNgramEmbedder::Embed(std::string_view text, float* out) const {
  thread_local Scratch s;
  const int dim = options_.dim;
  s.acc.assign(dim, 0.0);
  s.tokens.clear();
  s.bigrams.clear();
  s.puncts.clear();
  const bool want_puncts = options_.punct_weight != 0;
  ForEachToken(
      text, &s.lowered, [&](std::string_view w) { s.tokens.push_back(w); },
      [&](std::string_view p) {
        if (want_puncts) s.puncts.push_back(Mix(Fnv1a(p) ^ kPunctSeed));
      });

  s.words.Reset(s.tokens.size());
  const bool want_bigrams = options_.bigram_weight != 0;
  uint64_t prev = 0;
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    const std::string_view w = s.tokens[i];
    const uint64_t h = Fnv1a(w);
    CountTable::Slot* slot = s.words.Add(Mix(h ^ kWordSeed), 1);
    if (slot->count == 1) slot->token = static_cast<uint32_t>(i);
    // Punctuation does not break bigrams: "end. The" still pairs "end" with "the".
    if (want_bigrams && i > 0) s.bigrams.push_back(Mix(Mix(prev ^ kBigramSeed) ^ h));
    prev = h;
  }

  AddCounts(s.words, 1.0, dim, s.acc.data());
  AddFeatures(s.bigrams, options_.bigram_weight, dim, &s.table, s.acc.data());
  if (options_.char_weight != 0) {
    // Each distinct word adds its n-grams once, counted as often as the word occurs. N-grams
    // of "<w>": FNV-1a extends byte by byte, so each start position hashes its n-grams of
    // every length in one pass.
    const size_t cmin = options_.char_min, cmax = options_.char_max;
    size_t ngrams = 0;
    s.words.ForEach([&](const CountTable::Slot& slot) {
      ngrams += (s.tokens[slot.token].size() + 2) * (cmax - cmin + 1);
    });
    s.table.Reset(ngrams);
    s.words.ForEach([&](const CountTable::Slot& slot) {
      const std::string_view w = s.tokens[slot.token];
      const size_t padded = w.size() + 2;
      auto byte_at = [&w, padded](size_t k) -> unsigned char {
        return k == 0 ? '<' : k + 1 == padded ? '>' : static_cast<unsigned char>(w[k - 1]);
      };
      for (size_t start = 0; start + cmin <= padded; ++start) {
        uint64_t g = kFnvOffset;
        for (size_t n = 1; n <= cmax && start + n <= padded; ++n) {
          g = FnvStep(g, byte_at(start + n - 1));
          if (n >= cmin) s.table.Add(Mix(g ^ kCharSeed), slot.count);
        }
      }
    });
    AddCounts(s.table, options_.char_weight, dim, s.acc.data());
  }
  AddFeatures(s.puncts, options_.punct_weight, dim, &s.table, s.acc.data());

  double norm2 = 0;
  for (double v : s.acc) norm2 += v * v;
  const double inv = norm2 > 0 ? 1.0 / std::sqrt(norm2) : 0.0;
  for (int i = 0; i < dim; ++i) out[i] = static_cast<float>(s.acc[i] * inv);
}

std::unique_ptr<Embedder> MakeBuiltinEmbedder() { return std::make_unique<HashedNgramEmbedder>(); }

}  // namespace curation::embedding
