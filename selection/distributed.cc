#include "selection/distributed.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <future>
#include <limits>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/stable_hash.h"
#include "common/status.h"
#include "selection/constraints.h"
#include "selection/dedup.h"

namespace curation::selection {

uint64_t KeyedHash(uint64_t seed, uint64_t key) {
  // The constant keeps seed 0 from mixing to 0 and separates this order from UnitKey's mixes.
  return Mix64(key ^ Mix64(seed + 0x6b65796564686173ULL));
}

namespace {

constexpr double kDefaultDedupThreshold = 0.95;

// A row ordered by its keyed hash, ties to the lower row.
struct HashedRow {
  uint64_t hash;
  int64_t row;
  bool operator<(const HashedRow& o) const {
    return hash < o.hash || (hash == o.hash && row < o.row);
  }
};

// The min(k, rows.size()) entries of `rows` (row numbers of the partition, with keys[row] their
// keys) of smallest keyed hash, smallest first.
std::vector<HashedRow> SmallestOf(std::span<const int64_t> rows, std::span<const uint64_t> keys,
                                  uint64_t seed, int64_t k) {
  std::vector<HashedRow> hashed(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    hashed[i] = {KeyedHash(seed, keys[rows[i]]), rows[i]};
  }
  k = std::min<int64_t>(k, static_cast<int64_t>(hashed.size()));
  std::partial_sort(hashed.begin(), hashed.begin() + k, hashed.end());
  hashed.resize(k);
  return hashed;
}

// True when the partition's method is a duplicate-free draw in keyed-hash order (the "dedup"
// method, or "random" behind the dedup pre-filter, which selects the same rows).
bool KeyedDedup(const SelectorSpec& spec) {
  return spec.method == "dedup" || (spec.method == "random" && spec.dedup_threshold > 0);
}

double DedupThreshold(const SelectorSpec& spec) {
  return spec.dedup_threshold > 0 ? spec.dedup_threshold : kDefaultDedupThreshold;
}

class LocalPartition final : public Partition {
 public:
  LocalPartition(Rows units, std::vector<uint64_t> keys, SelectorSpec spec)
      : units_(std::move(units)), keys_(std::move(keys)), spec_(std::move(spec)) {
    spec_.ranking = false;
  }

  absl::StatusOr<PartitionSummary> Summarize() override {
    RETURN_IF_ERROR(Check());
    PartitionSummary summary;
    summary.rows = units_.rows();
    summary.dim = units_.dim();
    summary.sum.assign(units_.dim(), 0.0);
    // In row order, as herding's own mean, so that one partition's target is its mean exactly.
    const auto add = [&summary](const float* row) {
      for (size_t d = 0; d < summary.sum.size(); ++d) summary.sum[d] += row[d];
    };
    if (Filtered()) {
      ASSIGN_OR_RETURN(const MatrixView x, Kept());
      for (int64_t i = 0; i < x.rows; ++i) add(x.row(i));
      summary.kept = x.rows;
      return summary;
    }
    // Without a filter the rows are read in place (a RowReader's are not decoded whole).
    const int64_t dim = units_.dim();
    units_.Scan(1024, [&](int64_t begin, int64_t end, const float* block) {
      for (int64_t i = 0; i < end - begin; ++i) add(block + i * dim);
      return true;
    });
    summary.kept = units_.rows();
    return summary;
  }

  absl::StatusOr<PartitionRows> SmallestHashes(uint64_t seed, int64_t k,
                                               bool with_values) override {
    RETURN_IF_ERROR(Check());
    if (k < 0) return absl::InvalidArgumentError("k must be >= 0");
    if (!Filtered()) {
      std::vector<int64_t> all(units_.rows());
      std::iota(all.begin(), all.end(), 0);
      return Offer(SmallestOf(all, keys_, seed, k), with_values);
    }
    RETURN_IF_ERROR(Kept().status());
    return Offer(SmallestOf(kept_, keys_, seed, k), with_values);
  }

  absl::StatusOr<PartitionRows> SelectLocal(const LocalSelectRequest& request) override {
    RETURN_IF_ERROR(Check());
    if (request.k < 0) return absl::InvalidArgumentError("k must be >= 0");
    if (spec_.constraint.has_value()) {
      return absl::InvalidArgumentError("constraint: group quotas are not distributed");
    }
    // The method on the kept rows (as the factory's dedup wrapper runs it), for min(k, kept)
    // rows rather than failing when fewer are kept: other partitions may make up for them.
    ASSIGN_OR_RETURN(const MatrixView x, Kept());
    const int64_t k = std::min(request.k, x.rows);
    if (k == 0) return PartitionRows{};
    if (KeyedDedup(spec_)) {
      return Offer(SmallestOf(kept_, keys_, request.seed, k), request.with_values);
    }
    SelectorSpec method = spec_;
    method.dedup_threshold = 0;
    if (method.method == "herding") method.herding.target = request.herding_target;
    ASSIGN_OR_RETURN(std::unique_ptr<Selector> selector, MakeSelector(method));
    std::vector<uint64_t> kept_keys(kept_.size());
    for (size_t i = 0; i < kept_.size(); ++i) kept_keys[i] = keys_[kept_[i]];
    SelectOptions options;
    options.seed = request.seed;
    options.row_keys = kept_keys;
    ASSIGN_OR_RETURN(SelectionResult selected,
                     selector->Select(Filtered() ? Rows(x) : units_, k, options));
    PartitionRows out;
    out.rows.reserve(k);
    for (int64_t row : selected.rows) out.rows.push_back(kept_[row]);
    out.scores = std::move(selected.scores);
    for (int64_t row : out.rows) out.keys.push_back(keys_[row]);
    if (request.with_values) Gather(out);
    return out;
  }

  absl::StatusOr<MixtureStatistics> MixtureStep(const MixtureParameters& params) override {
    RETURN_IF_ERROR(Check());
    ASSIGN_OR_RETURN(const MatrixView x, Kept());
    return MixtureEStep(x, params);
  }

  absl::StatusOr<LikelihoodTail> LowestLikelihoods(const MixtureParameters& params,
                                                   int64_t k) override {
    RETURN_IF_ERROR(Check());
    if (k < 0) return absl::InvalidArgumentError("k must be >= 0");
    ASSIGN_OR_RETURN(const MatrixView x, Kept());
    LikelihoodTail tail;
    if (x.rows == 0) return tail;
    ASSIGN_OR_RETURN(GaussianMixture g,
                     GaussianMixture::FromParameters(params.weights, params.means,
                                                     params.covariances, params.covariance));
    if (g.dim() != x.dim) {
      return absl::InvalidArgumentError("mixture parameters do not match the rows' dimension");
    }
    std::vector<double> l(x.rows);
    g.ScoreSamples(x, l.data());
    const auto [lo, hi] = std::minmax_element(l.begin(), l.end());
    tail.min_log_likelihood = *lo;
    tail.max_log_likelihood = *hi;
    for (double v : l) tail.sum_log_likelihood += v;
    std::vector<int64_t> order(x.rows);
    std::iota(order.begin(), order.end(), 0);
    k = std::min<int64_t>(k, x.rows);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return l[a] < l[b] || (l[a] == l[b] && a < b); });
    order.resize(k);
    for (int64_t i : order) {
      tail.rows.push_back(kept_[i]);
      tail.log_likelihoods.push_back(l[i]);
      tail.keys.push_back(keys_[kept_[i]]);
      if (Filtered()) tail.values.insert(tail.values.end(), x.row(i), x.row(i) + x.dim);
    }
    return tail;
  }

 private:
  absl::Status Check() const {
    if (static_cast<int64_t>(keys_.size()) != units_.rows()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a partition of ", units_.rows(), " rows needs as many keys, not ", keys_.size()));
    }
    return absl::OkStatus();
  }

  // Whether the partition's method runs behind its own dedup filter.
  bool Filtered() const { return spec_.method == "dedup" || spec_.dedup_threshold > 0; }

  // The rows the method works on (kept_, by partition row number) as one float32 matrix,
  // computed once: every row, or those the dedup filter keeps.
  absl::StatusOr<MatrixView> Kept() {
    if (ready_) return kept_view_;
    if (Filtered() && units_.rows() > 0) {
      DedupOptions options;
      options.threshold = DedupThreshold(spec_);
      ASSIGN_OR_RETURN(DedupResult groups, Deduplicate(units_, options));
      kept_ = std::move(groups.kept);
      storage_.resize(kept_.size() * units_.dim());
      units_.Gather(kept_, storage_.data());
      kept_view_ = MatrixView{storage_.data(), static_cast<int64_t>(kept_.size()), units_.dim()};
    } else if (units_.rows() > 0) {
      kept_.resize(units_.rows());
      std::iota(kept_.begin(), kept_.end(), 0);
      ASSIGN_OR_RETURN(kept_view_, units_.Decode(&storage_));
    } else {
      kept_view_ = MatrixView{storage_.data(), 0, units_.dim()};
    }
    ready_ = true;
    return kept_view_;
  }

  PartitionRows Offer(const std::vector<HashedRow>& hashed, bool with_values) {
    PartitionRows out;
    for (const HashedRow& h : hashed) {
      out.rows.push_back(h.row);
      out.scores.push_back(static_cast<double>(h.hash));
      out.keys.push_back(keys_[h.row]);
    }
    if (with_values) Gather(out);
    return out;
  }

  void Gather(PartitionRows& out) const {
    out.values.resize(out.rows.size() * units_.dim());
    units_.Gather(out.rows, out.values.data());
  }

  const Rows units_;
  const std::vector<uint64_t> keys_;
  SelectorSpec spec_;
  bool ready_ = false;
  std::vector<int64_t> kept_;
  std::vector<float> storage_;
  MatrixView kept_view_;
};

// ---------------------------------------------------------------------------------------------
// The coordinator.

// A partition's answer with one key (and, when asked, dim values) per row; a remote partition
// that sends less is reported rather than read past.
absl::Status CheckRows(const PartitionRows& r, int64_t dim, bool with_values) {
  if (r.keys.size() != r.rows.size() ||
      (with_values && r.values.size() != r.rows.size() * static_cast<size_t>(dim))) {
    return absl::InternalError(absl::StrCat("a partition sent ", r.rows.size(), " rows with ",
                                            r.keys.size(), " keys and ", r.values.size(),
                                            " values (dimension ", dim, ")"));
  }
  return absl::OkStatus();
}

int64_t RowsBytes(const PartitionRows& r) {
  return static_cast<int64_t>(8 * (r.rows.size() + r.scores.size() + r.keys.size()) +
                              4 * r.values.size());
}

int64_t StatisticsBytes(const MixtureStatistics& s) {
  return static_cast<int64_t>(16 + 8 * (s.resp.size() + s.resp_x.size() + s.resp_x2.size()));
}

int64_t ParametersBytes(const MixtureParameters& p) {
  return static_cast<int64_t>(
      8 * (1 + p.weights.size() + p.means.size() + p.covariances.size() + p.center.size()));
}

// One coordinator run: the partitions, the cost counters, cancellation between rounds.
class Driver {
 public:
  Driver(std::span<Partition* const> partitions, const SelectOptions& options)
      : partitions_(partitions), options_(options) {}

  int size() const { return static_cast<int>(partitions_.size()); }
  DistributedResult& result() { return result_; }

  // Calls fn(p, partition) for every p with want(p), in parallel (one thread per partition,
  // since a remote partition is a network round trip), as one round. Returns the first
  // failure in partition order, as it is.
  template <typename T, typename Fn>
  absl::StatusOr<std::vector<T>> Round(const std::vector<bool>& want, Fn fn) {
    ++result_.rounds;
    std::vector<absl::StatusOr<T>> answers(partitions_.size(), absl::StatusOr<T>(T{}));
    std::vector<std::future<void>> calls;
    int active = 0;
    for (size_t p = 0; p < partitions_.size(); ++p) active += want[p] ? 1 : 0;
    for (size_t p = 0; p < partitions_.size(); ++p) {
      if (!want[p]) continue;
      auto call = [&, p] { answers[p] = fn(static_cast<int>(p), *partitions_[p]); };
      if (active == 1) {
        call();
      } else {
        calls.push_back(std::async(std::launch::async, call));
      }
    }
    for (std::future<void>& c : calls) c.get();
    std::vector<T> out;
    out.reserve(answers.size());
    for (absl::StatusOr<T>& a : answers) {
      if (!a.ok()) return a.status();
      out.push_back(*std::move(a));
    }
    return out;
  }

  std::vector<bool> All() const { return std::vector<bool>(partitions_.size(), true); }

  // The caller's progress callback, between rounds: CANCELLED once it says stop.
  absl::Status Progress(double done) {
    if (options_.progress && !options_.progress(done)) {
      return absl::CancelledError("distributed selection cancelled");
    }
    return absl::OkStatus();
  }

  void From(int64_t bytes) { result_.bytes_from_partitions += bytes; }
  void To(int64_t bytes) { result_.bytes_to_partitions += bytes; }

 private:
  std::span<Partition* const> partitions_;
  const SelectOptions& options_;
  DistributedResult result_;
};

// A candidate row offered by a partition, with its values when they were sent.
struct Candidate {
  int partition;
  int64_t row;
  uint64_t key;
  double score;
  const float* values;  // dim floats, or nullptr
};

// Cosine similarity of two rows; 0 when either is all zeros (no direction, never a duplicate).
double Cosine(const float* a, const float* b, int64_t dim) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t d = 0; d < dim; ++d) {
    ab += static_cast<double>(a[d]) * b[d];
    aa += static_cast<double>(a[d]) * a[d];
    bb += static_cast<double>(b[d]) * b[d];
  }
  if (aa == 0 || bb == 0) return 0;
  return ab / std::sqrt(aa * bb);
}

// The merged-candidate half of the dedup pre-filter: walks `candidates` in order and keeps
// one unless it is a near-duplicate of a kept one from another partition (each partition has
// already removed its own), up to k. Within a partition the local filter decided.
std::vector<size_t> FilterDuplicates(const std::vector<Candidate>& candidates, int64_t dim,
                                     double threshold, int64_t k) {
  std::vector<size_t> kept;
  for (size_t i = 0; i < candidates.size() && static_cast<int64_t>(kept.size()) < k; ++i) {
    const Candidate& c = candidates[i];
    bool duplicate = false;
    for (size_t j : kept) {
      const Candidate& o = candidates[j];
      if (o.partition != c.partition && Cosine(c.values, o.values, dim) >= threshold) {
        duplicate = true;
        break;
      }
    }
    if (!duplicate) kept.push_back(i);
  }
  return kept;
}

absl::Status TooFewAfterDedup(int64_t kept, int64_t total, double threshold, int64_t k) {
  return absl::FailedPreconditionError(absl::StrCat("only ", kept, " of ", total,
                                                    " rows remain after dedup at cosine threshold ",
                                                    threshold, "; cannot select ", k));
}

struct Pool {
  std::vector<PartitionSummary> summaries;
  int64_t rows = 0;
  int64_t kept = 0;  // rows left after the partitions' own dedup filters
  int64_t dim = 0;
  int64_t Kept(int p) const { return summaries[p].kept; }
};

absl::Status CheckSpec(const SelectorSpec& spec) {
  if (spec.constraint.has_value()) {
    return absl::InvalidArgumentError("constraint: group quotas are not distributed");
  }
  if (spec.ranking) {
    return absl::InvalidArgumentError("ranking: rankings are not distributed");
  }
  if (!(spec.dedup_threshold >= 0 && spec.dedup_threshold <= 1)) {
    return absl::InvalidArgumentError("dedup_threshold must be in [0, 1] (0 = no dedup)");
  }
  const std::string& m = spec.method;
  if (m != "isa" && m != "random" && m != "herding" && m != "facility_location" && m != "kcenter" &&
      m != "dedup") {
    // The factory names the known methods.
    return MakeSelector(spec).status();
  }
  if (m == "isa") {
    if (spec.isa.mixture.covariance == Covariance::kFull) {
      return absl::InvalidArgumentError(
          "isa.covariance: full covariances are not distributed (use diag or spherical)");
    }
    if (spec.isa.pca_dim != 0) {
      return absl::InvalidArgumentError("isa.pca_dim: a PCA before the fit is not distributed");
    }
  }
  return absl::OkStatus();
}

// ---- random and dedup: rows in keyed-hash order.

absl::StatusOr<DistributedResult> SelectRandom(Driver& driver, const Pool& pool, int64_t k,
                                               uint64_t seed) {
  std::vector<bool> want(driver.size());
  for (int p = 0; p < driver.size(); ++p) want[p] = pool.summaries[p].rows > 0;
  ASSIGN_OR_RETURN(std::vector<PartitionRows> offered,
                   driver.template Round<PartitionRows>(
                       want, [&](int, Partition& part) -> absl::StatusOr<PartitionRows> {
                         return part.SmallestHashes(seed, k, /*with_values=*/false);
                       }));
  std::vector<std::pair<HashedRow, int>> merged;
  for (int p = 0; p < driver.size(); ++p) {
    if (!want[p]) continue;
    driver.To(17);
    driver.From(RowsBytes(offered[p]));
    RETURN_IF_ERROR(CheckRows(offered[p], pool.dim, false));
    const PartitionRows& r = offered[p];
    for (size_t i = 0; i < r.rows.size(); ++i) {
      merged.push_back({{KeyedHash(seed, r.keys[i]), r.rows[i]}, p});
    }
  }
  // Rows of the pool in (hash, partition, row) order.
  std::sort(merged.begin(), merged.end(), [](const auto& a, const auto& b) {
    if (a.first.hash != b.first.hash) return a.first.hash < b.first.hash;
    return a.second < b.second || (a.second == b.second && a.first.row < b.first.row);
  });
  if (static_cast<int64_t>(merged.size()) < k) {
    return absl::InternalError("partitions offered fewer rows than they hold");
  }
  DistributedResult& result = driver.result();
  for (int64_t i = 0; i < k; ++i) result.rows.push_back({merged[i].second, merged[i].first.row});
  result.scores.assign(k, 0.0);
  return std::move(result);
}

// Each partition's duplicate-free rows in hash order, merged in that order. A partition that
// sent all it was asked for may hold more rows below the last hash it sent; the merge is only
// exact up to the smallest such last hash, so when the picks run short before it, those
// partitions are asked again for twice as many.
absl::StatusOr<DistributedResult> SelectDedup(Driver& driver, const Pool& pool,
                                              const SelectorSpec& spec, int64_t k, uint64_t seed) {
  const int n = driver.size();
  const double threshold = DedupThreshold(spec);
  std::vector<int64_t> asked(n, 0);
  std::vector<PartitionRows> offered(n);
  std::vector<bool> exhausted(n, false);
  for (int p = 0; p < n; ++p) {
    // Oversampled a quarter beyond the partition's share, for what the merge drops.
    const int64_t share = pool.kept > 0 ? (k * pool.Kept(p) + pool.kept - 1) / pool.kept : 0;
    asked[p] = std::min(pool.Kept(p), share + share / 4 + 8);
    exhausted[p] = pool.Kept(p) == 0;
  }
  std::vector<bool> want(n);
  for (int p = 0; p < n; ++p) want[p] = !exhausted[p];
  for (int attempt = 0;; ++attempt) {
    RETURN_IF_ERROR(driver.Progress(0.1 + 0.8 * attempt / (attempt + 2.0)));
    ASSIGN_OR_RETURN(std::vector<PartitionRows> answers,
                     driver.template Round<PartitionRows>(
                         want, [&](int p, Partition& part) -> absl::StatusOr<PartitionRows> {
                           LocalSelectRequest request;
                           request.k = asked[p];
                           request.seed = seed;
                           return part.SelectLocal(request);
                         }));
    for (int p = 0; p < n; ++p) {
      if (!want[p]) continue;
      driver.To(25);
      driver.From(RowsBytes(answers[p]));
      RETURN_IF_ERROR(CheckRows(answers[p], pool.dim, true));
      offered[p] = std::move(answers[p]);
      // Fewer than asked: the partition has no more duplicate-free rows.
      exhausted[p] =
          static_cast<int64_t>(offered[p].rows.size()) < asked[p] || asked[p] >= pool.Kept(p);
    }
    std::vector<Candidate> candidates;
    std::vector<uint64_t> hashes;
    for (int p = 0; p < n; ++p) {
      const PartitionRows& r = offered[p];
      for (size_t i = 0; i < r.rows.size(); ++i) {
        candidates.push_back({p, r.rows[i], r.keys[i], 0.0, &r.values[i * pool.dim]});
      }
    }
    std::vector<size_t> order(candidates.size());
    for (const Candidate& c : candidates) hashes.push_back(KeyedHash(seed, c.key));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (hashes[a] != hashes[b]) return hashes[a] < hashes[b];
      return candidates[a].partition < candidates[b].partition ||
             (candidates[a].partition == candidates[b].partition &&
              candidates[a].row < candidates[b].row);
    });
    // The merge is exact below the frontier: the smallest last hash of a partition that may
    // hold more.
    uint64_t frontier = std::numeric_limits<uint64_t>::max();
    bool open = false;
    for (int p = 0; p < n; ++p) {
      if (exhausted[p] || offered[p].keys.empty()) continue;
      open = true;
      frontier = std::min(frontier, KeyedHash(seed, offered[p].keys.back()));
    }
    std::vector<Candidate> sorted;
    for (size_t i : order) {
      if (open && hashes[i] > frontier) break;
      sorted.push_back(candidates[i]);
    }
    const std::vector<size_t> picks = FilterDuplicates(sorted, pool.dim, threshold, k);
    if (static_cast<int64_t>(picks.size()) == k) {
      DistributedResult& result = driver.result();
      for (size_t i : picks) result.rows.push_back({sorted[i].partition, sorted[i].row});
      result.scores.assign(k, 0.0);
      return std::move(result);
    }
    if (!open) return TooFewAfterDedup(static_cast<int64_t>(picks.size()), pool.rows, threshold, k);
    for (int p = 0; p < n; ++p) {
      want[p] = !exhausted[p];
      if (want[p]) asked[p] = std::min(pool.Kept(p), 2 * asked[p]);
    }
  }
}

// ---- herding: each partition toward the global mean, picks interleaved.

absl::StatusOr<DistributedResult> SelectHerding(Driver& driver, const Pool& pool,
                                                const SelectorSpec& spec, int64_t k,
                                                uint64_t seed) {
  const int n = driver.size();
  std::vector<double> mu(pool.dim, 0.0);
  for (const PartitionSummary& s : pool.summaries) {
    for (int64_t d = 0; d < pool.dim && d < static_cast<int64_t>(s.sum.size()); ++d) {
      mu[d] += s.sum[d];
    }
  }
  for (double& v : mu) v /= static_cast<double>(pool.kept);
  std::vector<double> weights(n);
  std::vector<int64_t> capacity(n);
  for (int p = 0; p < n; ++p) {
    weights[p] = static_cast<double>(pool.Kept(p));
    capacity[p] = pool.Kept(p);
  }
  ASSIGN_OR_RETURN(const std::vector<int64_t> quota, LargestRemainderQuotas(weights, capacity, k));
  const bool dedup = spec.dedup_threshold > 0;
  std::vector<bool> want(n);
  std::vector<int64_t> asked(n);
  for (int p = 0; p < n; ++p) {
    want[p] = quota[p] > 0;
    // Behind the dedup pre-filter, extra picks (herding's are prefixes of longer runs) stand
    // by for the ones the merge drops.
    asked[p] = dedup ? std::min(capacity[p], 2 * quota[p] + 4) : quota[p];
  }
  // Behind the pre-filter, when the merge runs short, the partitions that may have more
  // picks are asked again for twice as many (herding's picks for k are a prefix of those
  // for more).
  std::vector<PartitionRows> picks(n);
  std::vector<Candidate> candidates;
  std::vector<size_t> chosen;
  for (int attempt = 0;; ++attempt) {
    RETURN_IF_ERROR(driver.Progress(0.1 + 0.8 * attempt / (attempt + 2.0)));
    ASSIGN_OR_RETURN(std::vector<PartitionRows> answers,
                     driver.template Round<PartitionRows>(
                         want, [&](int p, Partition& part) -> absl::StatusOr<PartitionRows> {
                           LocalSelectRequest request;
                           request.k = asked[p];
                           request.seed = seed;
                           request.herding_target = mu;
                           return part.SelectLocal(request);
                         }));
    struct Pick {
      int partition;
      int64_t m;
    };
    std::vector<Pick> order;
    for (int p = 0; p < n; ++p) {
      if (want[p]) {
        driver.To(25 + 8 * pool.dim);
        driver.From(RowsBytes(answers[p]));
        RETURN_IF_ERROR(CheckRows(answers[p], pool.dim, true));
        picks[p] = std::move(answers[p]);
      }
      if (quota[p] == 0) continue;
      for (size_t m = 0; m < picks[p].rows.size(); ++m) {
        order.push_back({p, static_cast<int64_t>(m)});
      }
    }
    // The m-th pick of partition p sits at (m + 1/2) / quota[p] (as SelectWithQuotas
    // interleaves groups), compared exactly; ties to the lower partition.
    std::sort(order.begin(), order.end(), [&](const Pick& a, const Pick& b) {
      const __int128 l = static_cast<__int128>(2 * a.m + 1) * quota[b.partition];
      const __int128 r = static_cast<__int128>(2 * b.m + 1) * quota[a.partition];
      return l < r || (l == r && a.partition < b.partition);
    });
    candidates.clear();
    for (const Pick& pk : order) {
      const PartitionRows& r = picks[pk.partition];
      candidates.push_back(
          {pk.partition, r.rows[pk.m], r.keys[pk.m], 0.0, &r.values[pk.m * pool.dim]});
    }
    chosen.resize(candidates.size());
    std::iota(chosen.begin(), chosen.end(), 0);
    if (dedup) chosen = FilterDuplicates(candidates, pool.dim, spec.dedup_threshold, k);
    if (static_cast<int64_t>(chosen.size()) >= k) break;
    bool more = false;
    for (int p = 0; p < n; ++p) {
      want[p] = quota[p] > 0 && static_cast<int64_t>(picks[p].rows.size()) == asked[p] &&
                asked[p] < capacity[p];
      if (want[p]) asked[p] = std::min(capacity[p], 2 * asked[p]);
      more = more || want[p];
    }
    if (!more) {
      return TooFewAfterDedup(static_cast<int64_t>(chosen.size()), pool.rows, spec.dedup_threshold,
                              k);
    }
  }
  chosen.resize(k);
  // Scores as one node defines them, |mean(prefix) - mu|, from the values sent.
  DistributedResult& result = driver.result();
  std::vector<double> residual(pool.dim, 0.0);
  for (int64_t t = 0; t < k; ++t) {
    const Candidate& c = candidates[chosen[t]];
    result.rows.push_back({c.partition, c.row});
    double norm = 0;
    for (int64_t d = 0; d < pool.dim; ++d) {
      residual[d] += c.values[d] - mu[d];
      norm += residual[d] * residual[d];
    }
    result.scores.push_back(std::sqrt(norm) / static_cast<double>(t + 1));
  }
  return std::move(result);
}

// ---- facility location and kcenter: two rounds, the method again on the union.

absl::StatusOr<DistributedResult> SelectTwoRound(Driver& driver, const Pool& pool,
                                                 const SelectorSpec& spec, int64_t k,
                                                 const SelectOptions& options) {
  const int n = driver.size();
  std::vector<bool> want(n);
  for (int p = 0; p < n; ++p) want[p] = pool.Kept(p) > 0;
  RETURN_IF_ERROR(driver.Progress(0.1));
  ASSIGN_OR_RETURN(std::vector<PartitionRows> picks,
                   driver.template Round<PartitionRows>(
                       want, [&](int, Partition& part) -> absl::StatusOr<PartitionRows> {
                         LocalSelectRequest request;
                         request.k = k;
                         request.seed = options.seed;
                         return part.SelectLocal(request);
                       }));
  RETURN_IF_ERROR(driver.Progress(0.5));
  std::vector<float> values;
  std::vector<uint64_t> keys;
  std::vector<PartitionRow> origin;
  for (int p = 0; p < n; ++p) {
    if (!want[p]) continue;
    driver.To(25);
    driver.From(RowsBytes(picks[p]));
    RETURN_IF_ERROR(CheckRows(picks[p], pool.dim, true));
    const PartitionRows& r = picks[p];
    values.insert(values.end(), r.values.begin(), r.values.end());
    keys.insert(keys.end(), r.keys.begin(), r.keys.end());
    for (int64_t row : r.rows) origin.push_back({p, row});
  }
  const MatrixView un{values.data(), static_cast<int64_t>(origin.size()), pool.dim};
  // The same method on the union of the candidates, the dedup pre-filter included (the
  // partitions' filters cannot see each other's rows).
  SelectorSpec second = spec;
  ASSIGN_OR_RETURN(std::unique_ptr<Selector> selector, MakeSelector(second));
  SelectOptions union_options;
  union_options.seed = options.seed;
  union_options.row_keys = keys;
  if (options.progress) {
    union_options.progress = [&options](double done) { return options.progress(0.5 + 0.5 * done); };
  }
  ASSIGN_OR_RETURN(SelectionResult selected, selector->Select(un, k, union_options));
  DistributedResult& result = driver.result();
  for (int64_t row : selected.rows) result.rows.push_back(origin[row]);
  result.scores = std::move(selected.scores);
  return std::move(result);
}

// ---- isa: the warm-start sample gathered, EM over summed statistics, a top-k merge.

absl::StatusOr<DistributedResult> SelectIsa(Driver& driver, const Pool& pool,
                                            const SelectorSpec& spec, int64_t k,
                                            const SelectOptions& options) {
  using Clock = std::chrono::steady_clock;
  const int n = driver.size();
  std::vector<bool> want(n);
  for (int p = 0; p < n; ++p) want[p] = pool.Kept(p) > 0;
  const MixtureOptions& mo = spec.isa.mixture;
  const int64_t m = mo.init_sample_rows > 0 ? std::min(pool.kept, mo.init_sample_rows) : pool.kept;
  RETURN_IF_ERROR(driver.Progress(0));
  ASSIGN_OR_RETURN(std::vector<PartitionRows> offered,
                   driver.template Round<PartitionRows>(
                       want, [&](int, Partition& part) -> absl::StatusOr<PartitionRows> {
                         return part.SmallestHashes(options.seed, m, /*with_values=*/true);
                       }));
  struct Sampled {
    uint64_t hash;
    int partition;
    size_t index;
  };
  std::vector<Sampled> merged;
  for (int p = 0; p < n; ++p) {
    if (!want[p]) continue;
    driver.To(17);
    driver.From(RowsBytes(offered[p]));
    RETURN_IF_ERROR(CheckRows(offered[p], pool.dim, true));
    for (size_t i = 0; i < offered[p].rows.size(); ++i) {
      merged.push_back({KeyedHash(options.seed, offered[p].keys[i]), p, i});
    }
  }
  std::sort(merged.begin(), merged.end(), [&](const Sampled& a, const Sampled& b) {
    if (a.hash != b.hash) return a.hash < b.hash;
    if (a.partition != b.partition) return a.partition < b.partition;
    return offered[a.partition].rows[a.index] < offered[b.partition].rows[b.index];
  });
  if (static_cast<int64_t>(merged.size()) < m) {
    return absl::InternalError("partitions offered fewer rows than they hold");
  }
  merged.resize(m);
  std::vector<float> sample(m * pool.dim);
  for (int64_t i = 0; i < m; ++i) {
    const float* v = &offered[merged[i].partition].values[merged[i].index * pool.dim];
    std::copy(v, v + pool.dim, sample.begin() + i * pool.dim);
  }
  offered.clear();

  // EM on all rows: each iteration one round of E steps, their statistics summed in
  // partition order.
  MixtureOptions fit_options = mo;
  fit_options.seed = options.seed;
  const GaussianMixture::StatisticsFn all_rows =
      [&](const MixtureParameters& params) -> absl::StatusOr<MixtureStatistics> {
    ASSIGN_OR_RETURN(std::vector<MixtureStatistics> parts,
                     driver.template Round<MixtureStatistics>(
                         want, [&](int, Partition& part) -> absl::StatusOr<MixtureStatistics> {
                           return part.MixtureStep(params);
                         }));
    MixtureStatistics total;
    for (int p = 0; p < n; ++p) {
      if (!want[p]) continue;
      driver.To(ParametersBytes(params));
      driver.From(StatisticsBytes(parts[p]));
      RETURN_IF_ERROR(AddMixtureStatistics(parts[p], &total));
    }
    return total;
  };
  const Clock::time_point start = Clock::now();
  ASSIGN_OR_RETURN(GaussianMixture g,
                   GaussianMixture::FitFromSample(MatrixView{sample.data(), m, pool.dim}, pool.kept,
                                                  all_rows, fit_options, options.progress));
  const double fit_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  RETURN_IF_ERROR(driver.Progress(1));

  const MixtureParameters params = g.parameters();
  // The k rows of largest Delta are the k of lowest l(x) (Delta falls with l), so k from each
  // partition hold them. Behind the dedup pre-filter the merge drops near-duplicates across
  // partitions; a partition that sent all it was asked for may hold rows below its last
  // Delta, so the merge is exact only above the largest such Delta, and those partitions are
  // asked again for twice as many when the picks run short before it.
  const bool dedup = spec.dedup_threshold > 0;
  std::vector<int64_t> asked(n, k);
  std::vector<LikelihoodTail> tails(n);
  DistributedResult& result = driver.result();
  double sum = 0;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) RETURN_IF_ERROR(driver.Progress(1));
    ASSIGN_OR_RETURN(std::vector<LikelihoodTail> answers,
                     driver.template Round<LikelihoodTail>(
                         want, [&](int p, Partition& part) -> absl::StatusOr<LikelihoodTail> {
                           return part.LowestLikelihoods(params, asked[p]);
                         }));
    for (int p = 0; p < n; ++p) {
      if (!want[p]) continue;
      driver.To(ParametersBytes(params) + 8);
      driver.From(
          static_cast<int64_t>(24 + 24 * answers[p].rows.size() + 4 * answers[p].values.size()));
      tails[p] = std::move(answers[p]);
    }
    double lo = std::numeric_limits<double>::infinity();
    double hi = -std::numeric_limits<double>::infinity();
    sum = 0;
    struct Scored {
      int partition;
      int64_t row;
      double l;
      const float* values;
    };
    std::vector<Scored> candidates;
    for (int p = 0; p < n; ++p) {
      if (pool.Kept(p) == 0) continue;
      const LikelihoodTail& t = tails[p];
      lo = std::min(lo, t.min_log_likelihood);
      hi = std::max(hi, t.max_log_likelihood);
      sum += t.sum_log_likelihood;
      if (t.log_likelihoods.size() != t.rows.size() ||
          (dedup && t.values.size() != t.rows.size() * pool.dim)) {
        return absl::InternalError(
            "a partition's likelihood tail lacks log-likelihoods or (behind the dedup "
            "pre-filter) values");
      }
      for (size_t i = 0; i < t.rows.size(); ++i) {
        candidates.push_back(
            {p, t.rows[i], t.log_likelihoods[i], dedup ? &t.values[i * pool.dim] : nullptr});
      }
    }
    // Delta as IsaDeltas computes it, with the pool's extremes.
    const double range = hi - lo;
    const bool spread = range > 0 && std::isfinite(range);
    const auto delta_of = [&](double l) {
      if (!spread) return 0.0;
      const double scaled = (l - lo) / range;
      return -std::exp(scaled) * scaled;
    };
    std::vector<double> delta(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i) delta[i] = delta_of(candidates[i].l);
    std::vector<size_t> order(candidates.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (delta[a] != delta[b]) return delta[a] > delta[b];
      if (candidates[a].partition != candidates[b].partition) {
        return candidates[a].partition < candidates[b].partition;
      }
      return candidates[a].row < candidates[b].row;
    });
    if (!dedup) {
      if (static_cast<int64_t>(order.size()) < k) {
        return absl::InternalError("partitions offered fewer rows than they hold");
      }
      for (int64_t i = 0; i < k; ++i) {
        result.rows.push_back({candidates[order[i]].partition, candidates[order[i]].row});
        result.scores.push_back(delta[order[i]]);
      }
      break;
    }
    bool open = false;
    double frontier = -std::numeric_limits<double>::infinity();
    for (int p = 0; p < n; ++p) {
      const LikelihoodTail& t = tails[p];
      if (pool.Kept(p) == 0 || asked[p] >= pool.Kept(p) || t.rows.empty()) continue;
      open = true;
      frontier = std::max(frontier, delta_of(t.log_likelihoods.back()));
    }
    std::vector<Candidate> merged;
    std::vector<double> merged_delta;
    for (size_t i : order) {
      if (open && delta[i] < frontier) break;
      merged.push_back({candidates[i].partition, candidates[i].row, 0, 0, candidates[i].values});
      merged_delta.push_back(delta[i]);
    }
    const std::vector<size_t> picks = FilterDuplicates(merged, pool.dim, spec.dedup_threshold, k);
    if (static_cast<int64_t>(picks.size()) == k) {
      for (size_t i : picks) {
        result.rows.push_back({merged[i].partition, merged[i].row});
        result.scores.push_back(merged_delta[i]);
      }
      break;
    }
    if (!open) {
      return TooFewAfterDedup(static_cast<int64_t>(picks.size()), pool.rows, spec.dedup_threshold,
                              k);
    }
    for (int p = 0; p < n; ++p) {
      want[p] = pool.Kept(p) > 0 && asked[p] < pool.Kept(p);
      if (want[p]) asked[p] = std::min(pool.Kept(p), 2 * asked[p]);
    }
  }
  MixtureFitSummary fit;
  fit.iterations = g.iterations();
  fit.converged = g.converged();
  fit.mean_log_likelihood = sum / static_cast<double>(pool.kept);
  fit.weights = g.weights();
  fit.init_iterations = g.init_iterations();
  fit.fit_seconds = fit_seconds;
  result.fit = std::move(fit);
  return std::move(result);
}

}  // namespace

std::unique_ptr<Partition> MakeLocalPartition(Rows units, std::vector<uint64_t> keys,
                                              SelectorSpec spec) {
  return std::make_unique<LocalPartition>(std::move(units), std::move(keys), std::move(spec));
}

absl::StatusOr<DistributedResult> SelectDistributed(const SelectorSpec& spec,
                                                    std::span<Partition* const> partitions,
                                                    int64_t k, const SelectOptions& options) {
  RETURN_IF_ERROR(CheckSpec(spec));
  if (partitions.empty()) return absl::InvalidArgumentError("no partitions");
  Driver driver(partitions, options);
  RETURN_IF_ERROR(driver.Progress(0));
  Pool pool;
  ASSIGN_OR_RETURN(pool.summaries,
                   driver.template Round<PartitionSummary>(
                       driver.All(), [](int, Partition& part) { return part.Summarize(); }));
  for (PartitionSummary& s : pool.summaries) {
    driver.From(static_cast<int64_t>(24 + 8 * s.sum.size()));
    if (s.rows < 0 || s.kept > s.rows) {
      return absl::InvalidArgumentError("a partition reports an impossible row count");
    }
    if (s.kept < 0) s.kept = s.rows;
    pool.rows += s.rows;
    pool.kept += s.kept;
    if (s.rows == 0) continue;
    if (pool.dim == 0) pool.dim = s.dim;
    if (s.dim != pool.dim) {
      return absl::InvalidArgumentError(
          absl::StrCat("partitions disagree on the dimension (", pool.dim, " and ", s.dim, ")"));
    }
  }
  if (k <= 0 || k > pool.rows) {
    return absl::InvalidArgumentError(absl::StrCat("k must satisfy 0 < k <= number of rows (",
                                                   pool.rows, " over ", partitions.size(),
                                                   " partitions), not ", k));
  }
  // Behind the pre-filter the method needs k kept rows (the merge can only drop more); "dedup"
  // itself finds out as it merges.
  if (!KeyedDedup(spec) && spec.dedup_threshold > 0 && pool.kept < k) {
    return TooFewAfterDedup(pool.kept, pool.rows, spec.dedup_threshold, k);
  }
  absl::StatusOr<DistributedResult> result;
  if (KeyedDedup(spec)) {
    result = SelectDedup(driver, pool, spec, k, options.seed);
  } else if (spec.method == "random") {
    result = SelectRandom(driver, pool, k, options.seed);
  } else if (spec.method == "herding") {
    result = SelectHerding(driver, pool, spec, k, options.seed);
  } else if (spec.method == "isa") {
    result = SelectIsa(driver, pool, spec, k, options);
  } else {
    result = SelectTwoRound(driver, pool, spec, k, options);
  }
  if (!result.ok()) return result.status();
  RETURN_IF_ERROR(driver.Progress(1));
  return result;
}

}  // namespace curation::selection
