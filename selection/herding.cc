#include "selection/herding.h"

#include <omp.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status.h"
#include "selection/cancel.h"
#include "selection/kernels.h"

namespace curation::selection {
namespace {

// Herding steps between progress calls.
constexpr int64_t kProgressEvery = 64;
// Bucketing: k-means on 16 strided rows per bucket, 5 rounds. The buckets only steer the scan
// (the codes and exact distances pick the row), and better-trained centroids measured no
// better subsets, at several times the cost.
constexpr int64_t kIvfTrainPerList = 16;
constexpr int kIvfIterations = 5;

// The remaining row nearest the target so far; (distance, row) is a total order, so partial
// results merge the same in any order.
struct Nearest {
  float sq = std::numeric_limits<float>::infinity();
  int64_t row = -1;

  void Offer(float candidate_sq, int64_t candidate_row) {
    if (candidate_row < 0) return;
    if (row < 0 || candidate_sq < sq || (candidate_sq == sq && candidate_row < row)) {
      sq = candidate_sq;
      row = candidate_row;
    }
  }
};

// Below this many multiply-adds a k-means pass runs on one thread: starting a team and its
// barrier cost more, badly so on a loaded machine.
constexpr int64_t kParallelWork = int64_t{1} << 24;

// The nearest remaining row to q among rows begin .. end, four rows at a time (the same
// distances as one at a time, faster).
CURATION_KERNEL_CLONES Nearest Scan(const MatrixView& x, int64_t begin, int64_t end, const float* q,
                                    const uint8_t* taken) {
  Nearest best;
  const float* rows[4];
  int64_t which[4];
  int m = 0;
  for (int64_t i = begin; i < end; ++i) {
    if (taken[i]) continue;
    rows[m] = x.row(i);
    which[m] = i;
    if (++m == 4) {
      float sq[4];
      kernels::SquaredDistance4F32(rows, q, x.dim, sq);
      for (int r = 0; r < 4; ++r) best.Offer(sq[r], which[r]);
      m = 0;
    }
  }
  for (int r = 0; r < m; ++r) best.Offer(kernels::SquaredDistanceF32(rows[r], q, x.dim), which[r]);
  return best;
}

// out[b] = |x - c_b|^2 for the centroids c[0 .. lists).
CURATION_KERNEL_CLONES void CentroidDistances(const float* x, const float* c, int64_t lists,
                                              int64_t d, float* out) {
  int64_t b = 0;
  for (; b + 4 <= lists; b += 4) {
    const float* four[4] = {c + b * d, c + (b + 1) * d, c + (b + 2) * d, c + (b + 3) * d};
    kernels::SquaredDistance4F32(four, x, d, out + b);
  }
  for (; b < lists; ++b) out[b] = kernels::SquaredDistanceF32(c + b * d, x, d);
}

// The nearest of centroids c[0 .. lists) to row x (ties to the lower centroid), and its
// squared distance.
std::pair<int32_t, float> NearestCentroid(const float* x, const float* c, int64_t lists, int64_t d,
                                          std::vector<float>& scratch) {
  scratch.resize(lists);
  CentroidDistances(x, c, lists, d, scratch.data());
  const int64_t best = std::min_element(scratch.begin(), scratch.end()) - scratch.begin();
  return {static_cast<int32_t>(best), scratch[best]};
}

// out[t] = the nearest of `lists` centroids to row ids[t] for t < n, in parallel over rows
// (each row's answer is the same on any number of threads). False once cancelled.
bool Assign(const MatrixView& x, const int64_t* ids, int64_t n, const float* c, int64_t lists,
            int32_t* out, internal::Cancel& cancel) {
  constexpr int64_t kChunk = 256;
#pragma omp parallel for schedule(dynamic, 1) if (n * lists * x.dim >= kParallelWork)
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    if (cancel.Stop()) continue;
    const int64_t end = std::min(n, begin + kChunk);
    std::vector<float> scratch;
    for (int64_t t = begin; t < end; ++t) {
      out[t] = NearestCentroid(x.row(ids[t]), c, lists, x.dim, scratch).first;
    }
  }
  return !cancel.stopped();
}

// Lloyd's k-means of rows ids[0 .. n) into `lists` centroids (lists <= n), from strided rows,
// kIvfIterations rounds; sums in double in row order, so the result does not depend on the
// thread count (nor does anything else here). An empty centroid keeps its place. Empty once
// cancelled.
std::vector<float> KMeans(const MatrixView& x, const int64_t* ids, int64_t n, int64_t lists,
                          internal::Cancel& cancel) {
  const int64_t d = x.dim;
  std::vector<float> c(lists * d);
  for (int64_t b = 0; b < lists; ++b) std::copy_n(x.row(ids[b * n / lists]), d, c.data() + b * d);
  std::vector<int32_t> label(n);
  std::vector<double> sum(lists * d);
  std::vector<int64_t> count(lists);
  for (int iteration = 0; iteration < kIvfIterations; ++iteration) {
    if (!Assign(x, ids, n, c.data(), lists, label.data(), cancel)) return {};
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(count.begin(), count.end(), 0);
    for (int64_t t = 0; t < n; ++t) {
      const float* row = x.row(ids[t]);
      double* s = sum.data() + label[t] * d;
      for (int64_t j = 0; j < d; ++j) s[j] += row[j];
      ++count[label[t]];
    }
    for (int64_t b = 0; b < lists; ++b) {
      if (count[b] == 0) continue;
      for (int64_t j = 0; j < d; ++j) {
        c[b * d + j] = static_cast<float>(sum[b * d + j] / static_cast<double>(count[b]));
      }
    }
  }
  return c;
}

// code[j / 8] bit j % 8 = x_j > mu_j.
CURATION_KERNEL_CLONES void SignCode(const float* x, const float* mu, int64_t d, uint8_t* code) {
  int64_t j = 0;
  for (; j + 8 <= d; j += 8) {
    unsigned v = 0;
    for (int bit = 0; bit < 8; ++bit) v |= static_cast<unsigned>(x[j + bit] > mu[j + bit]) << bit;
    code[j / 8] = static_cast<uint8_t>(v);
  }
  if (j < d) {
    unsigned v = 0;
    for (int bit = 0; j + bit < d; ++bit)
      v |= static_cast<unsigned>(x[j + bit] > mu[j + bit]) << bit;
    code[j / 8] = static_cast<uint8_t>(v);
  }
}

// Counting sort of 0 .. key.size() by key (keys < groups): offsets (groups + 1) and order.
void GroupBy(const std::vector<int32_t>& key, int64_t groups, std::vector<int64_t>& offsets,
             std::vector<int64_t>& order) {
  offsets.assign(groups + 1, 0);
  for (int32_t b : key) ++offsets[b + 1];
  for (int64_t b = 0; b < groups; ++b) offsets[b + 1] += offsets[b];
  order.resize(key.size());
  std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
  for (int64_t i = 0; i < static_cast<int64_t>(key.size()); ++i) order[next[key[i]]++] = i;
}

// Positions per block of transposed codes.
constexpr int64_t kBlockRows = 32;

// Where byte k of the code of position p is.
inline int64_t CodeByte(int64_t p, int64_t k, int64_t code_bytes) {
  return (p / kBlockRows) * kBlockRows * code_bytes + k * kBlockRows + p % kBlockRows;
}

// Rows grouped into buckets by two-level k-means, to scan only the buckets near each step's
// target. One level of L lists costs rows * L * dim to assign every row (most of the time at a
// million rows); two levels of about sqrt(L) each cost rows * 2 sqrt(L) * dim for buckets
// nearly as good. Both levels are trained on kIvfTrainPerList strided rows per bucket, then
// one pass in row order (the matrix streams from memory) assigns every row.
struct Buckets {
  int64_t lists = 0;
  std::vector<float> centroids;  // lists x dim
  std::vector<int64_t> offsets;  // bucket b holds order[offsets[b] .. offsets[b + 1])
  std::vector<int64_t> order;
  std::vector<int64_t> remaining;  // rows of each bucket not selected yet
  std::vector<int32_t> bucket_of;  // per row
  // Per position p of order: the signs of order[p] - mu packed 8 to a byte (code_bytes
  // bytes), and |order[p] - mu|^2 (infinity once selected). The codes are stored transposed
  // in blocks of kBlockRows positions, byte k of the block's rows together (CodeByte), so that
  // one shuffle looks up a table for kBlockRows rows at once.
  int64_t code_bytes = 0;
  std::vector<uint8_t> codes;
  std::vector<float> norms;
  std::vector<int64_t> position;  // per row: its position in order
  // Per dimension j: the mean of x_j - mu_j over the rows where it is > 0 (above) or not.
  std::vector<float> above, below;
};

// Calls fn(begin, end, block) on every OpenMP thread for the consecutive chunks [begin, end)
// of kChunk rows of x, with block their float32 values: a pointer into the matrix when dense,
// else the chunk read into that thread's buffer (kChunk rows), so no copy of the whole matrix
// is ever made. False once cancelled.
template <typename Fn>
bool ForEachChunk(const Rows& x, internal::Cancel& cancel, const Fn& fn) {
  constexpr int64_t kChunk = 256;
  const int64_t n = x.rows();
  const MatrixView* dense = x.dense();
#pragma omp parallel
  {
    std::vector<float> buffer(dense ? 0 : kChunk * x.dim());
#pragma omp for schedule(dynamic, 1)
    for (int64_t begin = 0; begin < n; begin += kChunk) {
      if (cancel.Stop()) continue;
      const int64_t end = std::min(n, begin + kChunk);
      const float* block = buffer.data();
      if (dense) {
        block = dense->row(begin);
      } else {
        x.Read(begin, end, buffer.data());
      }
      fn(begin, end, block);
    }
  }
  return !cancel.stopped();
}

// Buckets over x, trained on `sample` (rows n_train strided rows of x, train[t] = t * n /
// n_train, gathered by the caller). x is read in chunks, never copied whole. Null once
// cancelled.
std::unique_ptr<Buckets> MakeBuckets(const Rows& x, const MatrixView& sample,
                                     const std::vector<float>& mu, int64_t lists,
                                     internal::Cancel& cancel) {
  const int64_t n = x.rows();
  const int64_t d = x.dim();
  const int64_t n_train = sample.rows;
  std::vector<int64_t> train(n_train);
  for (int64_t t = 0; t < n_train; ++t) train[t] = t;
  // Coarse level: about sqrt(lists) clusters.
  const int64_t coarse = std::clamp<int64_t>(std::llround(std::sqrt(double(lists))), 1, lists);
  const std::vector<float> coarse_c = KMeans(sample, train.data(), n_train, coarse, cancel);
  if (coarse_c.empty()) return nullptr;
  std::vector<int32_t> group(n_train);
  if (!Assign(sample, train.data(), n_train, coarse_c.data(), coarse, group.data(), cancel)) {
    return nullptr;
  }
  std::vector<int64_t> group_offsets, group_order;
  GroupBy(group, coarse, group_offsets, group_order);
  // Fine level: each coarse cluster split into lists in proportion to its training rows; a
  // cluster without any keeps its coarse centroid as its one list.
  auto b = std::make_unique<Buckets>();
  std::vector<int32_t> first(coarse + 1, 0);
  for (int64_t g = 0; g < coarse; ++g) {
    const int64_t m = group_offsets[g + 1] - group_offsets[g];
    const int64_t sub =
        std::clamp<int64_t>(std::llround(double(lists) * m / n_train), 1, std::max<int64_t>(m, 1));
    if (m == 0) {
      b->centroids.insert(b->centroids.end(), coarse_c.begin() + g * d,
                          coarse_c.begin() + (g + 1) * d);
    } else {
      const std::vector<float> c =
          KMeans(sample, group_order.data() + group_offsets[g], m, sub, cancel);
      if (c.empty()) return nullptr;
      b->centroids.insert(b->centroids.end(), c.begin(), c.end());
    }
    first[g + 1] = first[g] + static_cast<int32_t>(sub);
  }
  b->lists = first[coarse];
  // Every row: its coarse cluster, then its list there.
  b->bucket_of.resize(n);
  const bool assigned =
      ForEachChunk(x, cancel, [&](int64_t begin, int64_t end, const float* block) {
        std::vector<float> scratch;
        for (int64_t i = begin; i < end; ++i) {
          const float* row = block + (i - begin) * d;
          const int32_t g = NearestCentroid(row, coarse_c.data(), coarse, d, scratch).first;
          b->bucket_of[i] = first[g] + NearestCentroid(row, b->centroids.data() + first[g] * d,
                                                       first[g + 1] - first[g], d, scratch)
                                           .first;
        }
      });
  if (!assigned) return nullptr;
  GroupBy(b->bucket_of, b->lists, b->offsets, b->order);
  b->remaining.resize(b->lists);
  for (int64_t l = 0; l < b->lists; ++l) b->remaining[l] = b->offsets[l + 1] - b->offsets[l];
  // Sign codes, in bucket order so that a bucket's codes are contiguous.
  b->position.resize(n);
  for (int64_t p = 0; p < n; ++p) b->position[b->order[p]] = p;
  const int64_t cb = (d + 7) / 8;
  b->code_bytes = cb;
  b->codes.resize((n + kBlockRows - 1) / kBlockRows * kBlockRows * cb);
  b->norms.resize(n);
  const bool coded = ForEachChunk(x, cancel, [&](int64_t begin, int64_t end, const float* block) {
    std::vector<uint8_t> code(cb);
    for (int64_t i = begin; i < end; ++i) {
      const float* row = block + (i - begin) * d;
      const int64_t p = b->position[i];
      SignCode(row, mu.data(), d, code.data());
      for (int64_t k = 0; k < cb; ++k) b->codes[CodeByte(p, k, cb)] = code[k];
      b->norms[p] = kernels::SquaredDistanceF32(row, mu.data(), d);
    }
  });
  if (!coded) return nullptr;
  // Conditional means per sign, from the training rows.
  std::vector<double> sum_above(d, 0.0), sum_below(d, 0.0);
  std::vector<int64_t> count_above(d, 0);
  for (int64_t t = 0; t < n_train; ++t) {
    const float* row = sample.row(t);
    for (int64_t j = 0; j < d; ++j) {
      const float y = row[j] - mu[j];
      if (y > 0) {
        sum_above[j] += y;
        ++count_above[j];
      } else {
        sum_below[j] += y;
      }
    }
  }
  b->above.resize(d);
  b->below.resize(d);
  for (int64_t j = 0; j < d; ++j) {
    const int64_t count_below = n_train - count_above[j];
    b->above[j] = count_above[j] ? static_cast<float>(sum_above[j] / count_above[j]) : 0.0f;
    b->below[j] = count_below ? static_cast<float>(sum_below[j] / count_below) : 0.0f;
  }
  return b;
}

// The estimate of |x - mu|^2 + 2 (x - mu) . r from a row's sign code is |x - mu|^2 plus a
// constant plus sum over dimensions j whose bit is set of w_j = 2 r_j (above_j - below_j).
// Those sums are looked up four bits at a time in 16-entry tables quantised to integers
// (FAISS's "fast scan"): one byte shuffle then looks up 32 rows, where float tables of 256
// entries cost a load per byte per row. Integer sums are exact, so every instruction set
// gives the same estimates; the quantisation error, under 0.5% of a table's range per nibble,
// is far below the sign codes' own and only orders the shortlist, which is re-ranked exactly.
struct Tables {
  std::vector<uint8_t> nibbles;  // 2 * code_bytes tables of 16 entries
  float step = 1;                // estimate = |x - mu|^2 + step * (sum of looked-up entries)
};

void BuildTables(const Buckets& b, const std::vector<double>& r, Tables& t) {
  const int64_t d = static_cast<int64_t>(r.size());
  const int64_t nibbles = 2 * b.code_bytes;
  // The largest entry keeps every row's sum of nibbles entries within 16 bits.
  const int64_t top = std::clamp<int64_t>(65535 / nibbles, 1, 255);
  std::vector<float> values(nibbles * 16);
  std::vector<float> low(nibbles);
  float range = 0;
  for (int64_t q = 0; q < nibbles; ++q) {
    float w[4] = {};
    for (int bit = 0; bit < 4 && 4 * q + bit < d; ++bit) {
      const int64_t j = 4 * q + bit;
      w[bit] = static_cast<float>(2 * r[j]) * (b.above[j] - b.below[j]);
    }
    float* v = &values[q * 16];
    v[0] = 0;
    for (int e = 1; e < 16; ++e) v[e] = v[e & (e - 1)] + w[__builtin_ctz(static_cast<unsigned>(e))];
    low[q] = *std::min_element(v, v + 16);
    range = std::max(range, *std::max_element(v, v + 16) - low[q]);
  }
  t.step = range > 0 ? range / static_cast<float>(top) : 1.0f;
  t.nibbles.resize(nibbles * 16);
  for (int64_t q = 0; q < nibbles; ++q) {
    for (int e = 0; e < 16; ++e) {
      const float level = std::nearbyint((values[q * 16 + e] - low[q]) / t.step);
      t.nibbles[q * 16 + e] = static_cast<uint8_t>(std::clamp<float>(level, 0, float(top)));
    }
  }
}

// sums[r] = the sum over the code's nibbles q of tables[q * 16 + nibble q] for the kBlockRows
// rows of the transposed code block `block` (code_bytes * kBlockRows bytes).
void BlockSumsScalar(const uint8_t* block, const uint8_t* tables, int64_t code_bytes,
                     uint16_t* sums) {
  for (int64_t r = 0; r < kBlockRows; ++r) {
    unsigned sum = 0;
    for (int64_t k = 0; k < code_bytes; ++k) {
      const unsigned c = block[k * kBlockRows + r];
      sum += tables[2 * k * 16 + (c & 15)] + tables[(2 * k + 1) * 16 + (c >> 4)];
    }
    sums[r] = static_cast<uint16_t>(sum);
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) void BlockSumsAvx2(const uint8_t* block, const uint8_t* tables,
                                                   int64_t code_bytes, uint16_t* sums) {
  static_assert(kBlockRows == 32);
  const __m256i four_bits = _mm256_set1_epi8(0x0F);
  const __m256i low_byte = _mm256_set1_epi16(0x00FF);
  // 16-bit lanes: even holds rows 0, 2, .., 14 and 16, 18, .., 30; odd the rows after them.
  __m256i even = _mm256_setzero_si256(), odd = _mm256_setzero_si256();
  for (int64_t k = 0; k < code_bytes; ++k) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + k * kBlockRows));
    const __m256i lo = _mm256_and_si256(c, four_bits);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), four_bits);
    const __m256i t_lo = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(tables + 2 * k * 16)));
    const __m256i t_hi = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(tables + (2 * k + 1) * 16)));
    const __m256i a = _mm256_shuffle_epi8(t_lo, lo);
    const __m256i b = _mm256_shuffle_epi8(t_hi, hi);
    even = _mm256_add_epi16(
        even, _mm256_add_epi16(_mm256_and_si256(a, low_byte), _mm256_and_si256(b, low_byte)));
    odd = _mm256_add_epi16(odd, _mm256_add_epi16(_mm256_srli_epi16(a, 8), _mm256_srli_epi16(b, 8)));
  }
  alignas(32) uint16_t e[16], o[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(e), even);
  _mm256_store_si256(reinterpret_cast<__m256i*>(o), odd);
  for (int i = 0; i < 8; ++i) {
    sums[2 * i] = e[i];
    sums[2 * i + 1] = o[i];
    sums[16 + 2 * i] = e[8 + i];
    sums[16 + 2 * i + 1] = o[8 + i];
  }
}
#endif

void BlockSums(const uint8_t* block, const uint8_t* tables, int64_t code_bytes, uint16_t* sums) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return BlockSumsAvx2(block, tables, code_bytes, sums);
#endif
  BlockSumsScalar(block, tables, code_bytes, sums);
}

// The `keep` smallest of the (estimate, position) pairs offered: a buffer of up to 2 keep,
// cut back to the keep smallest when full, so most offers are one comparison with the bound.
// The pairs are distinct and totally ordered, so the result is the same set as any exact
// top-keep's.
class Shortlist {
 public:
  void Reset(int64_t keep) {
    keep_ = keep;
    entries_.clear();
    bound_ = {std::numeric_limits<float>::infinity(), std::numeric_limits<int64_t>::max()};
  }
  // Whether (estimate, position) might be among the keep smallest so far.
  bool Admits(float estimate, int64_t position) const {
    return std::pair(estimate, position) < bound_;
  }
  void Add(float estimate, int64_t position) {
    entries_.emplace_back(estimate, position);
    if (static_cast<int64_t>(entries_.size()) >= 2 * keep_) Cut();
  }
  // The keep smallest, in no particular order.
  const std::vector<std::pair<float, int64_t>>& Finish() {
    if (static_cast<int64_t>(entries_.size()) > keep_) Cut();
    return entries_;
  }

 private:
  void Cut() {
    std::nth_element(entries_.begin(), entries_.begin() + (keep_ - 1), entries_.end());
    entries_.resize(keep_);
    bound_ = entries_[keep_ - 1];
  }

  int64_t keep_ = 1;
  std::vector<std::pair<float, int64_t>> entries_;
  std::pair<float, int64_t> bound_;
};

// Offers positions begin .. end of b.order to the shortlist with their estimated |x - mu|^2 +
// 2 (x - mu) . r. Selected rows estimate to infinity and never enter.
void EstimateScan(const Buckets& b, const Tables& t, int64_t begin, int64_t end,
                  Shortlist& shortlist) {
  const int64_t cb = b.code_bytes;
  uint16_t sums[kBlockRows];
  float estimates[kBlockRows];
  for (int64_t first = begin / kBlockRows * kBlockRows; first < end; first += kBlockRows) {
    BlockSums(&b.codes[CodeByte(first, 0, cb)], t.nibbles.data(), cb, sums);
    const float* norms = &b.norms[first];
    const int64_t stop = std::min<int64_t>(kBlockRows, std::ssize(b.norms) - first);
    for (int64_t r = 0; r < stop; ++r) estimates[r] = norms[r] + t.step * float(sums[r]);
    for (int64_t p = std::max(first, begin); p < std::min(end, first + kBlockRows); ++p) {
      const float estimate = estimates[p - first];
      if (estimate < std::numeric_limits<float>::infinity() && shortlist.Admits(estimate, p)) {
        shortlist.Add(estimate, p);
      }
    }
  }
}

// out[r] = |rows[r] - q|^2 for r < m, four rows at a time (bit-identical to one at a time).
CURATION_KERNEL_CLONES void Distances(const float* const* rows, int64_t m, const float* q,
                                      int64_t d, float* out) {
  int64_t r = 0;
  for (; r + 4 <= m; r += 4) kernels::SquaredDistance4F32(rows + r, q, d, out + r);
  for (; r < m; ++r) out[r] = kernels::SquaredDistanceF32(rows[r], q, d);
}

// The mean of the rows in double, summed in row order (so on any thread count), read a block
// at a time. INVALID_ARGUMENT for non-finite input, CANCELLED through `cancel`.
absl::Status Mean(const Rows& x, internal::Cancel& cancel, std::vector<double>& mu) {
  const int64_t d = x.dim();
  mu.assign(d, 0.0);
  const int64_t block_rows = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, d));
  const bool done = x.Scan(block_rows, [&](int64_t begin, int64_t end, const float* block) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = block + (i - begin) * d;
      for (int64_t j = 0; j < d; ++j) mu[j] += row[j];
    }
    return !cancel.Stop();
  });
  if (!done) return absl::CancelledError("herding cancelled");
  for (int64_t j = 0; j < d; ++j) {
    if (!std::isfinite(mu[j])) {
      return absl::InvalidArgumentError("herding input has non-finite entries");
    }
    mu[j] /= static_cast<double>(x.rows());
  }
  return absl::OkStatus();
}

class HerdingSelector final : public Selector {
 public:
  explicit HerdingSelector(HerdingOptions options) : options_(options) {}

  std::string_view name() const override { return "herding"; }

  absl::StatusOr<SelectionResult> Select(const Rows& rows, int64_t k,
                                         const SelectOptions& options) const override {
    if (k <= 0 || k > rows.rows()) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    if (options_.ivf_probe < 1 || options_.ivf_lists < 0 || options_.ivf_rerank < 1) {
      return absl::InvalidArgumentError(
          "herding needs ivf_probe >= 1, ivf_rerank >= 1 and ivf_lists >= 0");
    }
    const int64_t n = rows.rows();
    const int64_t d = rows.dim();
    if (!options_.target.empty()) {
      if (static_cast<int64_t>(options_.target.size()) != d) {
        return absl::InvalidArgumentError("herding.target must hold one value per dimension");
      }
      for (double v : options_.target) {
        if (!std::isfinite(v)) return absl::InvalidArgumentError("herding.target must be finite");
      }
    }
    const kernels::SerialOpenMpScope serial(n * d < kernels::kSerialBelowFloats);
    internal::Cancel cancel(options.progress);
    std::vector<double> mu;
    if (n > options_.exact_max_rows) {
      RETURN_IF_ERROR(Mean(rows, cancel, mu));
      if (!options_.target.empty()) mu = options_.target;
      return SelectBucketed(rows, k, mu, cancel);
    }
    // Every step scans every row: at most exact_max_rows of them, so a float32 copy is small,
    // and the mean is taken from it rather than decoding the rows a second time.
    std::vector<float> storage;
    ASSIGN_OR_RETURN(const MatrixView units, rows.Decode(&storage, options.progress));
    RETURN_IF_ERROR(Mean(units, cancel, mu));
    if (!options_.target.empty()) mu = options_.target;
    return SelectExact(units, k, mu, cancel);
  }

 private:
  static absl::Status Cancelled() { return absl::CancelledError("herding cancelled"); }

  // Progress every kProgressEvery steps, else a cheap check: false once cancelled.
  static bool Continue(int64_t t, int64_t k, internal::Cancel& cancel) {
    return t % kProgressEvery == 0 && t > 0
               ? cancel.Report(static_cast<double>(t) / static_cast<double>(k))
               : !cancel.Stop();
  }

  // Adds row x (d floats) to the selection: residual += x - mu; returns the new score.
  static double Take(const float* x, const std::vector<double>& mu, int64_t t,
                     std::vector<double>& residual) {
    double norm = 0;
    for (size_t j = 0; j < residual.size(); ++j) {
      residual[j] += x[j] - mu[j];
      norm += residual[j] * residual[j];
    }
    return std::sqrt(norm) / static_cast<double>(t + 1);
  }

  // Every step scans every remaining row.
  absl::StatusOr<SelectionResult> SelectExact(const MatrixView& units, int64_t k,
                                              const std::vector<double>& mu,
                                              internal::Cancel& cancel) const {
    const int64_t n = units.rows;
    const int64_t d = units.dim;
    SelectionResult result;
    result.rows.reserve(k);
    result.scores.reserve(k);
    std::vector<uint8_t> taken(n, 0);
    // residual = sum over the selection of (x - mu); the target is mu - residual.
    std::vector<double> residual(d, 0.0);
    std::vector<float> target(d);
    for (int64_t t = 0; t < k; ++t) {
      if (!Continue(t, k, cancel)) return Cancelled();
      for (int64_t j = 0; j < d; ++j) target[j] = static_cast<float>(mu[j] - residual[j]);
      Nearest best;
#pragma omp parallel
      {
        const int64_t threads = omp_get_num_threads();
        const int64_t thread = omp_get_thread_num();
        const Nearest local = Scan(units, n * thread / threads, n * (thread + 1) / threads,
                                   target.data(), taken.data());
#pragma omp critical
        best.Offer(local.sq, local.row);
      }
      taken[best.row] = 1;
      result.rows.push_back(best.row);
      result.scores.push_back(Take(units.row(best.row), mu, t, residual));
    }
    return result;
  }

  // Rows bucketed, each step re-ranking a shortlist of estimates. The rows are only ever read
  // in chunks, a training sample and the shortlists: memory beyond the input's is the buckets'
  // (about rows * (dim / 8 + 25) bytes) and the sample's.
  absl::StatusOr<SelectionResult> SelectBucketed(const Rows& rows, int64_t k,
                                                 const std::vector<double>& mu,
                                                 internal::Cancel& cancel) const {
    const int64_t n = rows.rows();
    const int64_t d = rows.dim();
    const int64_t lists = std::clamp<int64_t>(
        options_.ivf_lists > 0 ? options_.ivf_lists : std::llround(2 * std::sqrt(double(n))), 1,
        std::max<int64_t>(1, n / 40));
    std::unique_ptr<Buckets> buckets;
    {
      // k-means trains on kIvfTrainPerList strided rows per list: about sqrt(rows) of them.
      const int64_t n_train = std::min(n, lists * kIvfTrainPerList);
      std::vector<int64_t> train(n_train);
      for (int64_t t = 0; t < n_train; ++t) train[t] = t * n / n_train;
      std::vector<float> sample(n_train * d);
      rows.Gather(train, sample.data());
      if (cancel.Stop()) return Cancelled();
      const std::vector<float> mu_f(mu.begin(), mu.end());
      buckets = MakeBuckets(rows, MatrixView{sample.data(), n_train, d}, mu_f, lists, cancel);
      if (!buckets) return Cancelled();
    }

    SelectionResult result;
    result.rows.reserve(k);
    result.scores.reserve(k);
    std::vector<uint8_t> taken(n, 0);
    std::vector<double> residual(d, 0.0);
    std::vector<float> target(d);
    std::vector<std::pair<float, int64_t>> by_distance;
    std::vector<float> to_centroid;
    Tables tables;
    Shortlist shortlist;
    std::vector<int64_t> candidates;
    std::vector<float> candidate_rows;
    std::vector<const float*> candidate_ptrs;
    std::vector<float> candidate_sq;
    for (int64_t t = 0; t < k; ++t) {
      if (!Continue(t, k, cancel)) return Cancelled();
      for (int64_t j = 0; j < d; ++j) target[j] = static_cast<float>(mu[j] - residual[j]);
      // Buckets by centroid distance to the target; in the nearest ivf_probe that still have
      // rows (there is always one, since t < k <= rows), |x - target|^2 - |residual|^2 =
      // |x - mu|^2 + 2 (x - mu) . residual estimated from the sign codes, then exact
      // distances for the ivf_rerank best estimates.
      const int64_t lists = buckets->lists;
      to_centroid.resize(lists);
      CentroidDistances(target.data(), buckets->centroids.data(), lists, d, to_centroid.data());
      by_distance.clear();
      for (int64_t b = 0; b < lists; ++b) {
        if (buckets->remaining[b] > 0) by_distance.emplace_back(to_centroid[b], b);
      }
      const int64_t probes = std::min<int64_t>(options_.ivf_probe, by_distance.size());
      std::partial_sort(by_distance.begin(), by_distance.begin() + probes, by_distance.end());
      BuildTables(*buckets, residual, tables);
      shortlist.Reset(options_.ivf_rerank);
      for (int64_t p = 0; p < probes; ++p) {
        const int64_t b = by_distance[p].second;
        EstimateScan(*buckets, tables, buckets->offsets[b], buckets->offsets[b + 1], shortlist);
      }
      // In row order, so that a reader decoding blocks of rows meets them in order.
      candidates.clear();
      for (const auto& [estimate, pos] : shortlist.Finish()) {
        candidates.push_back(buckets->order[pos]);
      }
      std::sort(candidates.begin(), candidates.end());
      const int64_t m = static_cast<int64_t>(candidates.size());
      candidate_ptrs.resize(m);
      candidate_sq.resize(m);
      if (const MatrixView* dense = rows.dense()) {
        for (int64_t c = 0; c < m; ++c) candidate_ptrs[c] = dense->row(candidates[c]);
      } else {
        candidate_rows.resize(m * d);
        rows.Gather(candidates, candidate_rows.data());
        for (int64_t c = 0; c < m; ++c) candidate_ptrs[c] = candidate_rows.data() + c * d;
      }
      Distances(candidate_ptrs.data(), m, target.data(), d, candidate_sq.data());
      Nearest best;
      int64_t best_at = -1;
      for (int64_t c = 0; c < m; ++c) {
        best.Offer(candidate_sq[c], candidates[c]);
        if (best.row == candidates[c]) best_at = c;
      }
      if (best.row < 0) {
        // Only when every estimate overflowed float: squared distances beyond 3e38.
        return absl::InvalidArgumentError("herding input too large: squared distances overflow");
      }
      const int64_t row = best.row;
      taken[row] = 1;
      --buckets->remaining[buckets->bucket_of[row]];
      buckets->norms[buckets->position[row]] = std::numeric_limits<float>::infinity();
      result.rows.push_back(row);
      result.scores.push_back(Take(candidate_ptrs[best_at], mu, t, residual));
    }
    return result;
  }

  HerdingOptions options_;
};

}  // namespace

std::unique_ptr<Selector> MakeHerdingSelector(HerdingOptions options) {
  return std::make_unique<HerdingSelector>(options);
}

}  // namespace curation::selection
