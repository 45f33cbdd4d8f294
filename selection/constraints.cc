#include "selection/constraints.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace curation::selection {

absl::StatusOr<std::vector<int64_t>> LargestRemainderQuotas(std::span<const double> weights,
                                                            std::span<const int64_t> capacity,
                                                            int64_t k) {
  const size_t groups = weights.size();
  if (groups == 0 || capacity.size() != groups || k < 0) {
    return absl::InvalidArgumentError("quotas need one weight and one capacity per group");
  }
  bool integral = true;
  long double total = 0;
  for (double w : weights) {
    if (!(w >= 0) || !std::isfinite(w)) {
      return absl::InvalidArgumentError("quota weights must be finite and non-negative");
    }
    integral = integral && w == std::floor(w) && w < 0x1p53;
    total += w;
  }
  if (!(total > 0)) return absl::InvalidArgumentError("quota weights sum to zero");

  std::vector<int64_t> quota(groups);
  // Remainders compared below; with integral weights they are exact numerators over W.
  std::vector<long double> remainder(groups);
  if (integral) {
    __int128 w_total = 0;
    for (double w : weights) w_total += static_cast<__int128>(w);
    for (size_t g = 0; g < groups; ++g) {
      const __int128 num = static_cast<__int128>(k) * static_cast<__int128>(weights[g]);
      quota[g] = static_cast<int64_t>(num / w_total);
      remainder[g] = static_cast<long double>(num % w_total);
    }
  } else {
    for (size_t g = 0; g < groups; ++g) {
      const long double exact = static_cast<long double>(k) * weights[g] / total;
      quota[g] = static_cast<int64_t>(std::floor(exact));
      remainder[g] = exact - quota[g];
    }
  }
  int64_t left = k - std::accumulate(quota.begin(), quota.end(), int64_t{0});
  std::vector<size_t> order(groups);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return remainder[a] > remainder[b]; });
  for (size_t t = 0; left > 0; t = (t + 1) % groups) {
    // A zero-weight group never receives a leftover row (its remainder is 0 and at most
    // `groups - 1` rows are left, all going to groups with a positive remainder first).
    ++quota[order[t]];
    --left;
  }
  for (size_t g = 0; g < groups; ++g) {
    if (quota[g] > capacity[g]) {
      return absl::FailedPreconditionError(absl::StrCat("group ", g, " needs ", quota[g],
                                                        " rows for the requested shares but has ",
                                                        capacity[g]));
    }
  }
  return quota;
}

absl::StatusOr<SelectionResult> SelectWithQuotas(const Selector& inner, const Rows& units,
                                                 std::span<const int32_t> group,
                                                 std::span<const int64_t> quota,
                                                 const SelectOptions& options) {
  const int64_t groups = static_cast<int64_t>(quota.size());
  if (static_cast<int64_t>(group.size()) != units.rows() || groups == 0) {
    return absl::InvalidArgumentError("quotas need one group id per row and at least one group");
  }
  std::vector<std::vector<int64_t>> members(groups);
  for (int64_t i = 0; i < units.rows(); ++i) {
    if (group[i] < 0 || group[i] >= groups) {
      return absl::InvalidArgumentError(
          absl::StrCat("row ", i, " has group id ", group[i], " outside [0, ", groups, ")"));
    }
    members[group[i]].push_back(i);
  }
  int64_t k = 0;
  int64_t work = 0;
  for (int64_t g = 0; g < groups; ++g) {
    if (quota[g] < 0 || quota[g] > static_cast<int64_t>(members[g].size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("group ", g, " has quota ", quota[g], " but ", members[g].size(), " rows"));
    }
    k += quota[g];
    if (quota[g] > 0) work += static_cast<int64_t>(members[g].size());
  }
  if (k == 0) return absl::InvalidArgumentError("quotas sum to zero");

  struct Pick {
    int64_t row;
    double score;
    int64_t rank;  // m: position within its group's selection
    int64_t group;
  };
  std::vector<Pick> picks;
  picks.reserve(k);
  int64_t done = 0;
  for (int64_t g = 0; g < groups; ++g) {
    if (quota[g] == 0) continue;
    const std::vector<int64_t>& rows = members[g];
    const int64_t size = static_cast<int64_t>(rows.size());
    SelectOptions sub;
    // The group's rows keep their keys, so a keyed order within a group is the pool's.
    std::vector<uint64_t> keys;
    if (!options.row_keys.empty()) {
      if (static_cast<int64_t>(options.row_keys.size()) != units.rows()) {
        return absl::InvalidArgumentError("row_keys must hold one key per row");
      }
      keys.reserve(rows.size());
      for (int64_t row : rows) keys.push_back(options.row_keys[row]);
      sub.row_keys = keys;
    }
    // Golden-ratio increments keep the groups' seeds distinct and far apart.
    sub.seed = options.seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(g + 1));
    if (options.progress) {
      const double start = static_cast<double>(done) / work;
      const double share = static_cast<double>(size) / work;
      sub.progress = [&options, start, share](double d) {
        return options.progress(start + share * d);
      };
    }
    absl::StatusOr<SelectionResult> part = inner.Select(units.Subset(rows), quota[g], sub);
    if (!part.ok()) return part.status();
    for (int64_t m = 0; m < quota[g]; ++m) {
      picks.push_back({rows[part->rows[m]], part->scores[m], m, g});
    }
    done += size;
  }
  // Key (m + 1/2) / quota[g], compared exactly as (2m + 1) * quota[h] < (2m' + 1) * quota[g].
  std::stable_sort(picks.begin(), picks.end(), [&](const Pick& a, const Pick& b) {
    const __int128 lhs = static_cast<__int128>(2 * a.rank + 1) * quota[b.group];
    const __int128 rhs = static_cast<__int128>(2 * b.rank + 1) * quota[a.group];
    return lhs < rhs || (lhs == rhs && a.group < b.group);
  });
  SelectionResult result;
  result.rows.reserve(k);
  result.scores.reserve(k);
  for (const Pick& p : picks) {
    result.rows.push_back(p.row);
    result.scores.push_back(p.score);
  }
  return result;
}

namespace {

class ConstrainedSelector final : public Selector {
 public:
  ConstrainedSelector(std::shared_ptr<const Selector> inner, GroupConstraint constraint)
      : inner_(std::move(inner)), constraint_(std::move(constraint)) {}

  std::string_view name() const override { return inner_->name(); }

  absl::StatusOr<SelectionResult> Select(const Rows& units, int64_t k,
                                         const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows()) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    if (static_cast<int64_t>(constraint_.group.size()) != units.rows()) {
      return absl::InvalidArgumentError(absl::StrCat("the constraint has ",
                                                     constraint_.group.size(), " group ids for ",
                                                     units.rows(), " rows"));
    }
    int64_t groups = static_cast<int64_t>(constraint_.shares.size());
    if (groups == 0) {
      for (int32_t g : constraint_.group) groups = std::max<int64_t>(groups, int64_t{g} + 1);
    }
    std::vector<int64_t> sizes(groups, 0);
    for (int32_t g : constraint_.group) {
      if (g < 0 || g >= groups) {
        return absl::InvalidArgumentError(
            absl::StrCat("group id ", g, " outside [0, ", groups, ") (one share per group)"));
      }
      ++sizes[g];
    }
    std::vector<double> weights(constraint_.shares);
    if (weights.empty()) weights.assign(sizes.begin(), sizes.end());
    absl::StatusOr<std::vector<int64_t>> quota = LargestRemainderQuotas(weights, sizes, k);
    if (!quota.ok()) return quota.status();
    return SelectWithQuotas(*inner_, units, constraint_.group, *quota, options);
  }

 private:
  std::shared_ptr<const Selector> inner_;
  GroupConstraint constraint_;
};

}  // namespace

std::unique_ptr<Selector> MakeConstrainedSelector(std::shared_ptr<const Selector> inner,
                                                  GroupConstraint constraint) {
  return std::make_unique<ConstrainedSelector>(std::move(inner), std::move(constraint));
}

}  // namespace curation::selection
