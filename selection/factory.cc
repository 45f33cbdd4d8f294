#include "selection/factory.h"

#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "selection/dedup.h"
#include "selection/random_selector.h"

namespace curation::selection {
namespace {

constexpr double kDefaultDedupThreshold = 0.95;
constexpr const char* kKnownMethods = "isa, random, herding, facility_location, kcenter, dedup";

// Select(units, k) of a ranking without dedup: every row in the inner selector's order.
class RankingSelector final : public Selector {
 public:
  explicit RankingSelector(std::shared_ptr<const Selector> inner) : inner_(std::move(inner)) {}

  std::string_view name() const override { return inner_->name(); }

  absl::StatusOr<SelectionResult> Select(const Rows& units, int64_t k,
                                         const SelectOptions& options) const override {
    if (k <= 0 || k > units.rows()) {
      return absl::InvalidArgumentError("k must satisfy 0 < k <= number of rows");
    }
    return RankAll(*inner_, units, options);
  }

 private:
  std::shared_ptr<const Selector> inner_;
};

// The method alone, by name.
absl::StatusOr<std::unique_ptr<Selector>> MakeMethod(const SelectorSpec& spec) {
  const std::string& m = spec.method;
  if (m == "isa") return MakeIsaSelector(spec.isa);
  if (m == "random") return MakeRandomSelector();
  if (m == "herding") return MakeHerdingSelector(spec.herding);
  if (m == "facility_location") return MakeFacilityLocationSelector(spec.facility_location);
  if (m == "kcenter") return MakeKCenterSelector(spec.kcenter);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown selection method \"", m, "\" (known: ", kKnownMethods, ")"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Selector>> MakeSelector(const SelectorSpec& spec) {
  if (!(spec.dedup_threshold >= 0 && spec.dedup_threshold <= 1)) {
    return absl::InvalidArgumentError("dedup_threshold must be in [0, 1] (0 = no dedup)");
  }
  const bool dedup_method = spec.method == "dedup";
  if (spec.ranking) {
    if (spec.constraint.has_value()) {
      return absl::InvalidArgumentError(
          "ranking: not with constraints, whose prefixes do not keep the quotas exactly");
    }
    if (spec.method == "facility_location" &&
        spec.facility_location.greedy == GreedyMode::kStochastic) {
      return absl::InvalidArgumentError(
          "ranking: not with stochastic facility location, whose prefixes are not its own "
          "selections");
    }
  }

  // The method, behind the dedup pre-filter if there is one ("dedup" is that filter itself,
  // with a random draw among the kept rows behind it).
  const bool dedup = dedup_method || spec.dedup_threshold > 0;
  std::unique_ptr<Selector> selector;
  if (!dedup_method) {
    absl::StatusOr<std::unique_ptr<Selector>> method = MakeMethod(spec);
    if (!method.ok()) return method.status();
    selector = *std::move(method);
  }
  if (dedup) {
    DedupOptions options;
    options.threshold = spec.dedup_threshold > 0 ? spec.dedup_threshold : kDefaultDedupThreshold;
    selector = MakeDedupSelector(options, std::move(selector), /*rank_kept=*/spec.ranking);
  } else if (spec.ranking) {
    selector = std::make_unique<RankingSelector>(std::move(selector));
  }
  if (spec.constraint.has_value()) {
    selector = MakeConstrainedSelector(std::move(selector), *spec.constraint);
  }
  return selector;
}

absl::StatusOr<std::unique_ptr<Selector>> MakeSelector(std::string_view method) {
  SelectorSpec spec;
  spec.method = std::string(method);
  return MakeSelector(spec);
}

absl::StatusOr<SelectionResult> RankAll(const Selector& selector, const Rows& units,
                                        const SelectOptions& options) {
  return selector.Select(units, units.rows(), options);
}

}  // namespace curation::selection
