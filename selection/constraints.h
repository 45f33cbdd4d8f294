// Per-group quotas around any selector: label balance and stratification.
//
// Every row belongs to one group (a label such as desirable/undesirable, a metadata stratum
// such as `source`, or label x stratum: group = label * strata + stratum). A quota says how
// many rows each group contributes; the inner selector runs on each group's rows separately,
// so the quotas hold exactly and the method's notion of "informative" applies within a group.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "selection/selector.h"

namespace curation::selection {

// Largest-remainder (Hamilton) apportionment of k among groups in proportion to `weights`:
// group g first gets floor(k * w_g / W) with W = sum w; the k - sum floor(...) rows left go,
// one each, to the groups with the largest remainders k * w_g / W - floor(k * w_g / W), equal
// remainders to the lower group. The quotas sum to k and each is within 1 of its exact share.
// With integral weights (e.g. group sizes) the arithmetic is exact; otherwise long double.
// Weights proportional to the group sizes keep the dataset's ratio and never exceed a
// capacity; other weights (a requested ratio) can, which returns FAILED_PRECONDITION naming
// the group. INVALID_ARGUMENT for negative or non-finite weights, a zero sum, sizes that
// differ, or k < 0.
absl::StatusOr<std::vector<int64_t>> LargestRemainderQuotas(std::span<const double> weights,
                                                            std::span<const int64_t> capacity,
                                                            int64_t k);

// Runs `inner` on the rows of each group g with quota[g] > 0 (a Subset of `units`, not a copy;
// an inner method that wants float32 decodes one group at a time) for quota[g] rows,
// with the seed mixed with g so groups draw independently. The per-group selections are then
// interleaved: the m-th pick of group g gets the key (m + 1/2) / quota[g], and rows come back in
// increasing key order, equal keys by lower group. So every prefix of the result, not only
// the whole, is split between groups nearly in proportion to the quotas, and the order within
// a group is the inner method's. Scores are the inner selector's per group; `fit` is not set.
// Requires group.size() == units.rows(), every group id in [0, quota.size()), and
// 0 <= quota[g] <= rows of group g with a positive total (INVALID_ARGUMENT otherwise). The
// inner selector's errors pass through. Progress is reported per group, weighted by rows.
absl::StatusOr<SelectionResult> SelectWithQuotas(const Selector& inner, const Rows& units,
                                                 std::span<const int32_t> group,
                                                 std::span<const int64_t> quota,
                                                 const SelectOptions& options);

struct GroupConstraint {
  // group[i] for every row i of the units later passed to Select; ids in [0, groups), where
  // groups = shares.size() if shares are given, else 1 + the largest id.
  std::vector<int32_t> group;
  // The share of k each group should get (weights, need not sum to 1). Empty: proportional
  // to group sizes, i.e. keep the dataset's ratio.
  std::vector<double> shares;
};

// A selector applying `constraint` at every Select: quotas from LargestRemainderQuotas(shares
// or group sizes, group sizes, k), then SelectWithQuotas. Named "<inner name>" (the
// constraint is a property of the request, not a method). Select requires units.rows() ==
// constraint.group.size() (INVALID_ARGUMENT otherwise).
std::unique_ptr<Selector> MakeConstrainedSelector(std::shared_ptr<const Selector> inner,
                                                  GroupConstraint constraint);

}  // namespace curation::selection
