// The selection library: matrices in, row numbers and scores out.
//
// Nothing here knows about gRPC, RocksDB or example ids. A caller lays out one row per
// selection unit (a pair's mean embedding, or a single completion's embedding), as a float32
// matrix or as compact rows decoded on demand (rows.h), asks a Selector for k rows, and maps
// the returned row numbers back to its own ids.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/rows.h"

namespace curation::selection {

// What a Gaussian-mixture fit ended with, reported to users so they can judge the fit.
struct MixtureFitSummary {
  int iterations = 0;
  bool converged = false;
  double mean_log_likelihood = 0;  // mean over rows of log p(x), in nats
  std::vector<double> weights;     // component weights, summing to 1
  // Lloyd rounds and EM iterations on the warm-start sample, summed over the initialisations
  // (GaussianMixture::init_iterations()): with `iterations`, what the fit cost.
  int init_iterations = 0;
  // The share of the rows' variance a PCA before the fit kept (1 without one), so users can
  // tell how much of the data the density describes.
  double retained_variance = 1;
  // Wall time of the mixture fit alone (not the PCA, not the scoring), in seconds.
  double fit_seconds = 0;
};

struct SelectionResult {
  // Selected row numbers in selection order (best first), no repeats: exactly k of them,
  // except from a ranking selector (SelectorSpec::ranking in factory.h), which returns every
  // row it can rank (at least k; the first k are the selection) so that one stored ranking
  // serves any budget.
  std::vector<int64_t> rows;
  // scores[i] belongs to rows[i]; its meaning is the method's (documented per method).
  std::vector<double> scores;
  // Set by methods that fit a mixture (ISA).
  std::optional<MixtureFitSummary> fit;
};

struct SelectOptions {
  uint64_t seed = 0;
  // Optional: one stable key per row (the caller's hash of the row's id). Given, random
  // selection and ISA's warm-start sample order rows by KeyedHash(seed, key) (distributed.h)
  // instead of drawing row numbers, so that a pool split into partitions selects the same
  // rows as the whole pool. Empty: row numbers are drawn as before. Must outlive the call.
  std::span<const uint64_t> row_keys = {};
  // Called now and then with the share of the work done, in [0, 1]. Returning false cancels
  // the selection, which then returns a CANCELLED status. May be empty.
  std::function<bool(double done)> progress;
};

// One selection method. Implementations are stateless apart from their options and are safe
// to call from several threads at once.
class Selector {
 public:
  virtual ~Selector() = default;

  // The method's stable name as users spell it ("isa", "random").
  virtual std::string_view name() const = 0;

  // Chooses k distinct rows of `units`. Requires 0 < k <= units.rows() (INVALID_ARGUMENT
  // otherwise). The same units, k and seed give the same result on every machine, whether the
  // rows come as one float32 matrix or through a RowReader that decodes them.
  virtual absl::StatusOr<SelectionResult> Select(const Rows& units, int64_t k,
                                                 const SelectOptions& options) const = 0;
};

// A selector that wants every row as one float32 matrix at once. Select checks k, decodes rows
// that are not already one matrix (once, on every OpenMP thread; a dense input is used as it
// is) and calls SelectDense.
class DenseSelector : public Selector {
 public:
  absl::StatusOr<SelectionResult> Select(const Rows& units, int64_t k,
                                         const SelectOptions& options) const final;

 protected:
  // Select's contract, on a float32 matrix.
  virtual absl::StatusOr<SelectionResult> SelectDense(const MatrixView& units, int64_t k,
                                                      const SelectOptions& options) const = 0;
};

}  // namespace curation::selection
