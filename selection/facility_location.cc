#include "selection/facility_location.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "selection/cancel.h"
#include "selection/rng.h"

namespace curation::selection {
namespace {

// Selections between progress calls.
constexpr int64_t kProgressEvery = 1024;

struct HeapEntry {
  double bound;
  int32_t row;
};

// Orders the max-heap so its top is the largest bound, then the lowest row: the same total
// order in which plain greedy breaks ties, which is what makes lazy and plain agree exactly.
struct HeapBelow {
  bool operator()(const HeapEntry& a, const HeapEntry& b) const {
    return a.bound < b.bound || (a.bound == b.bound && a.row > b.row);
  }
};

// Greedy state: how well each row is covered so far, and the selection being built.
class Coverage {
 public:
  Coverage(const KnnGraph& coverage, int64_t k) : graph_(coverage), best_(coverage.rows(), 0.0) {
    result_.rows.reserve(k);
    result_.scores.reserve(k);
  }

  // F(S + j) - F(S). Summed in edge order, so the same j and S always give the same double.
  double Gain(int64_t j) const {
    const std::span<const int32_t> rows = graph_.targets(j);
    const std::span<const float> sims = graph_.similarities(j);
    double gain = 0;
    for (size_t e = 0; e < rows.size(); ++e) {
      const double s = sims[e];
      if (s > best_[rows[e]]) gain += s - best_[rows[e]];
    }
    return gain;
  }

  void Take(int64_t j, double gain) {
    result_.rows.push_back(j);
    result_.scores.push_back(gain);
    const std::span<const int32_t> rows = graph_.targets(j);
    const std::span<const float> sims = graph_.similarities(j);
    for (size_t e = 0; e < rows.size(); ++e) {
      best_[rows[e]] = std::max<double>(best_[rows[e]], sims[e]);
    }
  }

  int64_t taken() const { return static_cast<int64_t>(result_.rows.size()); }
  double Total() const {
    double total = 0;
    for (double b : best_) total += b;
    return total;
  }
  SelectionResult Release() { return std::move(result_); }

 private:
  const KnnGraph& graph_;
  std::vector<double> best_;
  SelectionResult result_;
};

// True if (gain a, row ra) beats (gain b, row rb) in greedy's order.
bool Better(double a, int64_t ra, double b, int64_t rb) { return a > b || (a == b && ra < rb); }

}  // namespace

FacilityLocation::FacilityLocation(const KnnGraph& graph) : coverage_(graph.Transposed()) {}

double FacilityLocation::Objective(std::span<const int64_t> selected) const {
  Coverage state(coverage_, 0);
  for (int64_t j : selected) state.Take(j, 0);
  return state.Total();
}

absl::StatusOr<SelectionResult> FacilityLocation::Greedy(
    int64_t k, GreedyMode mode, uint64_t seed, double stochastic_epsilon,
    const std::function<bool(double)>& progress) const {
  const int64_t n = rows();
  if (k <= 0 || k > n) return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
  if (mode == GreedyMode::kStochastic && !(stochastic_epsilon > 0 && stochastic_epsilon < 1)) {
    return absl::InvalidArgumentError("stochastic_epsilon must be in (0, 1)");
  }
  Coverage state(coverage_, k);
  // Reports every kProgressEvery selections; in between, asks whether to stop (plain and
  // stochastic greedy evaluate many gains per selection), the callback at most every few ms.
  internal::Cancel cancel(progress);
  const auto keep_going = [&] {
    return state.taken() % kProgressEvery != 0
               ? !cancel.Stop()
               : cancel.Report(static_cast<double>(state.taken()) / static_cast<double>(k));
  };
  const auto cancelled = [] { return absl::CancelledError("facility location cancelled"); };

  switch (mode) {
    case GreedyMode::kLazy: {
      std::vector<HeapEntry> heap(n);
      for (int64_t j = 0; j < n; ++j) heap[j] = {state.Gain(j), static_cast<int32_t>(j)};
      std::make_heap(heap.begin(), heap.end(), HeapBelow());
      while (state.taken() < k) {
        std::pop_heap(heap.begin(), heap.end(), HeapBelow());
        const int32_t j = heap.back().row;
        heap.pop_back();
        const double gain = state.Gain(j);
        // Every other row's true gain is at most its bound, so a refreshed gain that still
        // beats the best remaining bound (in greedy's order) is the argmax.
        if (heap.empty() || Better(gain, j, heap.front().bound, heap.front().row)) {
          state.Take(j, gain);
          if (!keep_going()) return cancelled();
        } else {
          heap.push_back({gain, j});
          std::push_heap(heap.begin(), heap.end(), HeapBelow());
        }
      }
      break;
    }
    case GreedyMode::kPlain: {
      std::vector<char> taken(n, 0);
      while (state.taken() < k) {
        int64_t best = -1;
        double best_gain = 0;
        for (int64_t j = 0; j < n; ++j) {
          if (taken[j]) continue;
          const double gain = state.Gain(j);
          if (best < 0 || Better(gain, j, best_gain, best)) {
            best = j;
            best_gain = gain;
          }
        }
        taken[best] = 1;
        state.Take(best, best_gain);
        if (!keep_going()) return cancelled();
      }
      break;
    }
    case GreedyMode::kStochastic: {
      std::mt19937_64 rng(seed);
      // Remaining rows; the first `sample` slots are redrawn every step by a partial
      // Fisher-Yates shuffle, and the chosen row is swapped out to the end.
      std::vector<int32_t> remaining(n);
      for (int64_t j = 0; j < n; ++j) remaining[j] = static_cast<int32_t>(j);
      // Stale gains bound the true ones (submodularity), so most samples need no evaluation.
      std::vector<double> bound(n);
      for (int64_t j = 0; j < n; ++j) bound[j] = state.Gain(j);
      const double draws = std::ceil(static_cast<double>(n) / static_cast<double>(k) *
                                     std::log(1 / stochastic_epsilon));
      const int64_t sample = static_cast<int64_t>(std::min<double>(draws, n));
      for (int64_t m = n; state.taken() < k; --m) {
        const int64_t r = std::min(sample, m);
        for (int64_t t = 0; t < r; ++t) {
          const int64_t u = t + static_cast<int64_t>(BoundedDraw(rng, m - t));
          std::swap(remaining[t], remaining[u]);
        }
        int64_t best_slot = -1;
        int64_t best = -1;
        double best_gain = 0;
        for (int64_t t = 0; t < r; ++t) {
          const int64_t j = remaining[t];
          if (best >= 0 && !Better(bound[j], j, best_gain, best)) continue;
          bound[j] = state.Gain(j);
          if (best < 0 || Better(bound[j], j, best_gain, best)) {
            best_slot = t;
            best = j;
            best_gain = bound[j];
          }
        }
        state.Take(best, best_gain);
        std::swap(remaining[best_slot], remaining[m - 1]);
        if (!keep_going()) return cancelled();
      }
      break;
    }
  }
  return state.Release();
}

namespace {

class FacilityLocationSelector final : public Selector {
 public:
  explicit FacilityLocationSelector(FacilityLocationOptions options)
      : options_(std::move(options)) {}

  std::string_view name() const override { return "facility_location"; }

  absl::StatusOr<SelectionResult> Select(const Rows& units, int64_t k,
                                         const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows()) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    const auto part = [&](double start) -> std::function<bool(double)> {
      if (!options.progress) return {};
      return [&options, start](double done) { return options.progress(start + 0.5 * done); };
    };
    // The similarity graph only lives until its transpose is built, halving peak memory.
    std::optional<FacilityLocation> problem;
    {
      absl::StatusOr<KnnGraph> graph = KnnGraph::Build(units, options_.graph, part(0));
      if (!graph.ok()) return graph.status();
      problem.emplace(*graph);
    }
    return problem->Greedy(k, options_.greedy, options.seed, options_.stochastic_epsilon,
                           part(0.5));
  }

 private:
  FacilityLocationOptions options_;
};

}  // namespace

std::unique_ptr<Selector> MakeFacilityLocationSelector(FacilityLocationOptions options) {
  return std::make_unique<FacilityLocationSelector>(std::move(options));
}

}  // namespace curation::selection
