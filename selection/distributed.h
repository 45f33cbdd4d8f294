// Selection over a pool split into partitions that live on different machines, without
// gathering the pool's rows in one place.
//
// A coordinator holds one Partition per part of the pool and drives the method through a few
// primitive steps, each answered by a partition from its own rows: sums, the rows with the
// smallest keyed hashes, a local run of the method, EM sufficient statistics, the lowest
// likelihoods. What crosses between them is O(k * dim) rows and O(K * dim) statistics, never
// the pool. LocalPartition answers the steps in-process from a Rows; the server answers them
// on the member that holds a partition (server/partition_service) and reaches them through
// gRPC (server/remote_partition), so the same drivers run in tests, benchmarks and the service.
//
// The distributed form of each method, and how it relates to the same method on one node
// (SelectDistributed):
//   random             exact: the k rows with the smallest KeyedHash(seed, key) over all
//                      partitions, the same rows as MakeRandomSelector on the whole pool given
//                      the same row keys (SelectOptions::row_keys).
//   isa                exact to float tolerance: the warm-start sample is the rows with the
//                      smallest keyed hashes (as one node's with row keys), the initial fit runs
//                      on the coordinator, EM on all rows sums the partitions' sufficient
//                      statistics, the rows are scored on the partitions, and the global min and
//                      max log-likelihood and a top-k merge give one node's Deltas and rows.
//                      Diagonal and spherical covariances only, no PCA (INVALID_ARGUMENT naming
//                      isa.covariance or isa.pca_dim). Rounds: 3 + the EM iterations on all
//                      rows (summed over n_init).
//   herding            the global mean from the partitions' sums; each partition herds toward
//                      that global target (HerdingOptions::target) for its share of k (largest
//                      remainder by rows), and the coordinator interleaves the picks, the m-th
//                      of partition p at (m + 1/2) / share_p, ties to the lower partition (one
//                      round). Scores are one node's, |mean(prefix) - mu|, recomputed from the
//                      values sent. Each partition's residual is bounded as one node's is, so
//                      |mean - mu| is within about P times one node's; exact herding would need
//                      k rounds (see DistributedHerdingExactRounds in the cost model).
//   facility_location  two-round GreeDi (Mirzasoleiman et al., NeurIPS 2013): greedy on each
//                      partition for k candidates, greedy again on the union of candidates.
//   kcenter            two-round farthest-first (Malkomes et al., NeurIPS 2015): farthest-first
//                      on each partition, again on the union.
//   dedup              each partition's duplicate-free rows in keyed-hash order, merged in that
//                      order, a candidate dropped when it is a near-duplicate of an earlier pick
//                      from any partition: no two picked rows are near-duplicates, across
//                      partitions as within them.
// The coordinator's own costs: the union of candidates (P * k rows for the two-round methods),
// and for the dedup filter O(k^2 * dim) cosines between candidates of different partitions.
//
// A dedup pre-filter (SelectorSpec::dedup_threshold) runs on each partition (whose steps then
// see only the rows it keeps, as one node runs the method on the kept rows) and again over
// the merged candidates: isa, random and herding drop a candidate that is a near-duplicate
// (cosine >= threshold) of an earlier pick from another partition, asking the partitions for
// more when the merge runs short (FAILED_PRECONDITION, as one node's, when the pool cannot
// give k); facility location and kcenter run the filter again with the method on the union.
// With one partition every method but the two-round ones selects one node's rows. Constraints
// and rankings are not distributed (INVALID_ARGUMENT). Partitions with no rows take no part.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/factory.h"
#include "selection/gaussian_mixture.h"
#include "selection/selector.h"

namespace curation::selection {

// The order random selection and the warm-start samples use: a 64-bit mix of the seed and a
// row's stable key (the caller's hash of the row's id). The same on every machine.
uint64_t KeyedHash(uint64_t seed, uint64_t key);

// Column sums of one partition's rows.
struct PartitionSummary {
  int64_t rows = 0;
  int64_t dim = 0;
  // The rows the partition's method works on: behind a dedup pre-filter (or for "dedup") the
  // rows its own filter keeps, else all of them. -1 (a partition that does not say) is taken
  // as `rows`.
  int64_t kept = -1;
  std::vector<double> sum;  // dim values over the kept rows, in row order, in float64
};

// Rows a partition offers the coordinator. Row numbers are the partition's own.
struct PartitionRows {
  std::vector<int64_t> rows;
  std::vector<double> scores;  // per row: the local method's score, or the keyed hash
  std::vector<uint64_t> keys;  // per row: its key (SelectOptions::row_keys)
  std::vector<float> values;   // rows.size() x dim, row-major; empty when not asked for
};

// A local run of the partition's method (its SelectorSpec, fixed when the partition was made).
struct LocalSelectRequest {
  int64_t k = 0;  // at most the partition's rows
  uint64_t seed = 0;
  // Herding only: the mean the partition's picks should track (the global pool's), dim
  // values; empty tracks the partition's own mean.
  std::vector<double> herding_target;
  bool with_values = true;
};

// MixtureParameters and MixtureStatistics (an E step's sums, about MixtureParameters::center)
// are declared in gaussian_mixture.h, with the E step MixtureEStep that answers
// Partition::MixtureStep.

// The rows of a partition with the lowest log-likelihood, and its extremes.
struct LikelihoodTail {
  double min_log_likelihood = 0;
  double max_log_likelihood = 0;
  double sum_log_likelihood = 0;  // over every row, for the fit's mean log-likelihood
  std::vector<int64_t> rows;      // by increasing log-likelihood, ties to the lower row
  std::vector<double> log_likelihoods;
  std::vector<uint64_t> keys;
  // rows.size() x dim, row-major, when the partition's method has a dedup pre-filter (the
  // coordinator filters the merged rows across partitions); else empty.
  std::vector<float> values;
};

// One part of a distributed pool, as the coordinator sees it. Every call may fail (a remote
// partition answers UNAVAILABLE naming its member); a driver returns the first failure as it
// is, never a partial result. Calls are made from one thread at a time per partition.
class Partition {
 public:
  virtual ~Partition() = default;

  // Row count, dimension and column sums. With a dedup pre-filter in the partition's spec (or
  // for "dedup"), every call below works on the rows the partition's own filter keeps (row
  // numbers stay the partition's): the pool is the union of the partitions' kept rows, and
  // the coordinator removes near-duplicates across partitions.
  virtual absl::StatusOr<PartitionSummary> Summarize() = 0;
  // The min(k, kept) rows with the smallest KeyedHash(seed, key), smallest first (scores hold
  // the hashes as doubles only for display; keys are exact), with values if asked.
  virtual absl::StatusOr<PartitionRows> SmallestHashes(uint64_t seed, int64_t k,
                                                       bool with_values) = 0;
  // The partition's method on its own rows (min(k, kept) of them), in the method's order;
  // "dedup" (and "random" behind the pre-filter, which selects the same rows) in keyed-hash
  // order.
  virtual absl::StatusOr<PartitionRows> SelectLocal(const LocalSelectRequest& request) = 0;
  // The E step's statistics of every row under `params`.
  virtual absl::StatusOr<MixtureStatistics> MixtureStep(const MixtureParameters& params) = 0;
  // The min(k, kept) rows of lowest log p(x) under `params`, and min, max and sum of log p(x).
  virtual absl::StatusOr<LikelihoodTail> LowestLikelihoods(const MixtureParameters& params,
                                                           int64_t k) = 0;
};

// In-process partition over `units` (which must outlive it), with one key per row and the
// method `spec` for SelectLocal. INVALID_ARGUMENT from the calls if keys.size() != rows. The
// dedup filter (if any) runs on the first call that needs it and its kept rows are gathered
// once as float32; without one, the rows are read in place for sums and hashes and decoded
// once for the mixture steps.
std::unique_ptr<Partition> MakeLocalPartition(Rows units, std::vector<uint64_t> keys,
                                              SelectorSpec spec);

// A row of the distributed pool.
struct PartitionRow {
  int partition = 0;
  int64_t row = 0;
  bool operator==(const PartitionRow&) const = default;
};

struct DistributedResult {
  std::vector<PartitionRow> rows;  // k of them, best first, no repeats
  std::vector<double> scores;      // the method's scores, as on one node
  std::optional<MixtureFitSummary> fit;
  // What the run cost, for the cost model: coordinator rounds (a round calls every partition
  // once, in parallel) and the bytes a wire encoding of what crossed would take: 4 per float
  // value, 8 per double, key or row number (values, keys, scores, sums, statistics one way;
  // parameters, targets and requests the other).
  int64_t rounds = 0;
  int64_t bytes_from_partitions = 0;
  int64_t bytes_to_partitions = 0;
};

// Runs `spec`'s method over the union of `partitions` for k rows (0 < k <= total rows), in
// the method's distributed form above. The partitions must have been made with the same spec.
// `options.seed` seeds it; `options.progress` is called on this thread between rounds and EM
// iterations (a round's partition calls run on threads of their own, one per partition).
// Errors: INVALID_ARGUMENT for k out of range, constraints, rankings or an option the
// distributed form lacks (naming it); FAILED_PRECONDITION when fewer than k rows survive the
// dedup filters; CANCELLED; the partitions' failures as they are.
absl::StatusOr<DistributedResult> SelectDistributed(const SelectorSpec& spec,
                                                    std::span<Partition* const> partitions,
                                                    int64_t k, const SelectOptions& options);

}  // namespace curation::selection
