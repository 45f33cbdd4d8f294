#include "jobs/selection_plan.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace curation::jobs {
namespace {

// Measured (README, "Choosing a method"): herding beat random at 1-10% budgets on the proxy
// for both kinds, on [chosen, rejected] rows for pairs and with label balance for unpaired data.
constexpr v1::SelectionMethod kDefaultMethod = v1::SELECTION_METHOD_HERDING;
constexpr double kDefaultDedupThreshold = 0.95;
// The KnnGraph needs the row itself and at least one other; beyond 1000 the graph's memory
// (rows * neighbours) stops being small next to the embeddings.
constexpr int kMinNeighbours = 2;
constexpr int kMaxNeighbours = 1000;
// Longer than any key ingest accepts (Limits::max_metadata_key_bytes), so no real key is
// refused, while a request cannot carry arbitrarily large keys.
constexpr size_t kMaxMetadataKey = 256;

const char* LibraryName(v1::SelectionMethod method) {
  switch (method) {
    case v1::SELECTION_METHOD_ISA:
      return "isa";
    case v1::SELECTION_METHOD_RANDOM:
      return "random";
    case v1::SELECTION_METHOD_FACILITY_LOCATION:
      return "facility_location";
    case v1::SELECTION_METHOD_KCENTER:
      return "kcenter";
    case v1::SELECTION_METHOD_HERDING:
      return "herding";
    case v1::SELECTION_METHOD_DEDUP:
      return "dedup";
    default:
      return nullptr;
  }
}

absl::Status ResolveIsa(v1::IsaOptions* isa, int embedding_dim) {
  if (isa->components() == 0) isa->set_components(2);
  if (isa->covariance() == v1::COVARIANCE_UNSPECIFIED) isa->set_covariance(v1::COVARIANCE_DIAG);
  if (isa->max_iter() == 0) isa->set_max_iter(100);
  if (isa->tol() == 0) isa->set_tol(1e-3);
  if (isa->reg_covar() == 0) isa->set_reg_covar(1e-6);
  if (isa->init() == v1::MIXTURE_INIT_UNSPECIFIED) isa->set_init(v1::MIXTURE_INIT_KMEANS);
  if (isa->n_init() == 0) isa->set_n_init(1);
  if (isa->components() < 1 || isa->components() > 64) {
    return InvalidField("isa.components", "must be between 1 and 64");
  }
  if (!v1::Covariance_IsValid(isa->covariance())) {
    return InvalidField("isa.covariance", "unknown covariance type");
  }
  if (isa->max_iter() < 1 || isa->max_iter() > 10'000) {
    return InvalidField("isa.max_iter", "must be between 1 and 10000");
  }
  if (!(isa->tol() > 0) || !std::isfinite(isa->tol())) {
    return InvalidField("isa.tol", "must be positive");
  }
  if (!(isa->reg_covar() > 0) || !std::isfinite(isa->reg_covar())) {
    return InvalidField("isa.reg_covar", "must be positive");
  }
  if (!v1::MixtureInit_IsValid(isa->init())) {
    return InvalidField("isa.init", "unknown initialisation");
  }
  if (isa->n_init() < 1 || isa->n_init() > 20) {
    return InvalidField("isa.n_init", "must be between 1 and 20");
  }
  if (isa->pca_dim() < 0 || isa->pca_dim() > embedding_dim) {
    return InvalidField(
        "isa.pca_dim",
        absl::StrCat("must be between 0 and the embedding's dimension, ", embedding_dim));
  }
  return absl::OkStatus();
}

absl::Status ResolveFacilityLocation(v1::FacilityLocationOptions* fl) {
  if (fl->neighbours() == 0) fl->set_neighbours(20);
  if (fl->epsilon() == 0) fl->set_epsilon(0.01);
  if (fl->neighbours() < kMinNeighbours || fl->neighbours() > kMaxNeighbours) {
    return InvalidField("facility_location.neighbours",
                        absl::StrCat("must be between ", kMinNeighbours, " and ", kMaxNeighbours));
  }
  if (!(fl->epsilon() > 0 && fl->epsilon() < 1)) {
    return InvalidField("facility_location.epsilon", "must be in (0, 1)");
  }
  return absl::OkStatus();
}

absl::Status CheckFilter(const v1::ExampleFilter& filter) {
  if (!(filter.dedup_threshold() >= 0 && filter.dedup_threshold() <= 1)) {
    return InvalidField("filter.dedup_threshold", "must be in [0, 1] (0 = no dedup)");
  }
  if (filter.min_chars() < 0) return InvalidField("filter.min_chars", "must not be negative");
  if (filter.max_chars() < 0) return InvalidField("filter.max_chars", "must not be negative");
  if (filter.min_chars() > 0 && filter.max_chars() > 0 && filter.min_chars() > filter.max_chars()) {
    return InvalidField("filter.min_chars", "must not exceed filter.max_chars");
  }
  if (filter.metadata_equals_size() > 64) {
    return InvalidField("filter.metadata_equals", "at most 64 keys");
  }
  for (const auto& [key, value] : filter.metadata_equals()) {
    if (key.empty() || key.size() > kMaxMetadataKey) {
      return InvalidField("filter.metadata_equals",
                          absl::StrCat("keys must have 1 to ", kMaxMetadataKey, " bytes"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckConstraints(const v1::Constraints& c, bool pair_units) {
  if (!(c.desirable_share() >= 0 && c.desirable_share() < 1)) {
    return InvalidField("constraints.desirable_share", "must be in [0, 1) (0 = the pool's share)");
  }
  if (c.desirable_share() > 0 && !c.balance_labels()) {
    return InvalidField("constraints.desirable_share", "needs constraints.balance_labels");
  }
  if (c.balance_labels() && pair_units) {
    return InvalidField("constraints.balance_labels",
                        "needs EXAMPLE units (a pair always holds one of each label)");
  }
  if (c.stratify_by().size() > kMaxMetadataKey) {
    return InvalidField("constraints.stratify_by",
                        absl::StrCat("at most ", kMaxMetadataKey, " bytes"));
  }
  return absl::OkStatus();
}

selection::FacilityLocationOptions ToLibrary(const v1::FacilityLocationOptions& fl) {
  selection::FacilityLocationOptions options;
  options.graph.neighbours = fl.neighbours();
  options.greedy =
      fl.stochastic() ? selection::GreedyMode::kStochastic : selection::GreedyMode::kLazy;
  options.stochastic_epsilon = fl.epsilon();
  return options;
}

}  // namespace

selection::IsaOptions IsaLibraryOptions(const v1::IsaOptions& isa) {
  selection::IsaOptions options;
  options.mixture.components = isa.components();
  options.mixture.max_iter = isa.max_iter();
  options.mixture.tol = isa.tol();
  options.mixture.reg_covar = isa.reg_covar();
  options.mixture.n_init = isa.n_init();
  options.mixture.init = isa.init() == v1::MIXTURE_INIT_KMEANS_PLUS_PLUS
                             ? selection::MixtureInit::kKMeansPlusPlus
                             : selection::MixtureInit::kKMeans;
  switch (isa.covariance()) {
    case v1::COVARIANCE_SPHERICAL:
      options.mixture.covariance = selection::Covariance::kSpherical;
      break;
    case v1::COVARIANCE_FULL:
      options.mixture.covariance = selection::Covariance::kFull;
      break;
    default:
      options.mixture.covariance = selection::Covariance::kDiag;
  }
  options.pca_dim = isa.pca_dim();
  return options;
}

absl::StatusOr<int64_t> ResolveBudget(const v1::Budget& budget, int64_t pool,
                                      absl::string_view noun, absl::string_view field) {
  switch (budget.amount_case()) {
    case v1::Budget::kCount:
      if (budget.count() < 1 || budget.count() > pool) {
        return InvalidField(absl::StrCat(field, ".count"),
                            absl::StrCat(budget.count(), " is outside 1..", pool,
                                         " (the pool holds ", pool, " ", noun, ")"));
      }
      return budget.count();
    case v1::Budget::kFraction:
      if (!(budget.fraction() > 0 && budget.fraction() <= 1)) {
        return InvalidField(absl::StrCat(field, ".fraction"), "must be in (0, 1]");
      }
      return std::max<int64_t>(1, std::llround(budget.fraction() * static_cast<double>(pool)));
    default:
      return InvalidField(field, "required: a count or a fraction");
  }
}

absl::StatusOr<SelectionPlan> PlanSelection(const v1::SelectRequest& request, v1::DatasetKind kind,
                                            int embedding_dim) {
  SelectionPlan plan;
  v1::SelectRequest& resolved = plan.resolved;
  resolved = request;
  const bool pair_dataset = kind == v1::DATASET_KIND_PAIRS;

  const bool default_method = resolved.method() == v1::SELECTION_METHOD_UNSPECIFIED;
  if (default_method) resolved.set_method(kDefaultMethod);
  const v1::SelectionMethod method = resolved.method();
  const char* name = LibraryName(method);
  if (name == nullptr) return InvalidField("method", "unknown method");
  plan.method_name = name;

  if (resolved.unit() == v1::SELECTION_UNIT_UNSPECIFIED) {
    resolved.set_unit(pair_dataset ? v1::SELECTION_UNIT_PAIR : v1::SELECTION_UNIT_EXAMPLE);
  }
  if (resolved.unit() != v1::SELECTION_UNIT_PAIR && resolved.unit() != v1::SELECTION_UNIT_EXAMPLE) {
    return InvalidField("unit", "unknown unit");
  }
  if (resolved.unit() == v1::SELECTION_UNIT_PAIR && !pair_dataset) {
    return InvalidField("unit", "PAIR needs a pairs dataset; this one is unpaired");
  }
  plan.pair_units = resolved.unit() == v1::SELECTION_UNIT_PAIR;
  // Measured (README, "Choosing a method"): on single completions herding loses to random
  // unless the desirable/undesirable ratio is kept, and wins when it is. So the default keeps
  // it, unless the caller set constraints of its own or asked for a ranking, which constraints
  // cannot give.
  if (default_method && !plan.pair_units && !resolved.ranking() && !request.has_constraints()) {
    resolved.mutable_constraints()->set_balance_labels(true);
  }
  plan.pair_rows = method == v1::SELECTION_METHOD_HERDING && plan.pair_units ? PairRows::kConcat
                                                                             : PairRows::kMean;

  if (method == v1::SELECTION_METHOD_ISA) {
    if (absl::Status s = ResolveIsa(resolved.mutable_isa(), embedding_dim); !s.ok()) return s;
  } else if (request.has_isa()) {
    return InvalidField("isa", "only for method ISA");
  }
  if (method == v1::SELECTION_METHOD_FACILITY_LOCATION) {
    if (absl::Status s = ResolveFacilityLocation(resolved.mutable_facility_location()); !s.ok()) {
      return s;
    }
  } else if (request.has_facility_location()) {
    return InvalidField("facility_location", "only for method FACILITY_LOCATION");
  }

  if (absl::Status s = CheckFilter(resolved.filter()); !s.ok()) return s;
  if (method == v1::SELECTION_METHOD_DEDUP && resolved.filter().dedup_threshold() == 0) {
    resolved.mutable_filter()->set_dedup_threshold(kDefaultDedupThreshold);
  }
  if (absl::Status s = CheckConstraints(resolved.constraints(), plan.pair_units); !s.ok()) {
    return s;
  }
  if (resolved.ranking()) {
    if (resolved.facility_location().stochastic()) {
      return InvalidField("ranking",
                          "not with stochastic facility location, whose prefixes are not its "
                          "own selections");
    }
    if (resolved.constraints().balance_labels() || !resolved.constraints().stratify_by().empty()) {
      return InvalidField("ranking",
                          "not with constraints, whose prefixes do not keep the quotas exactly");
    }
  }

  selection::SelectorSpec& spec = plan.spec;
  spec.method = name;
  if (method == v1::SELECTION_METHOD_ISA) spec.isa = IsaLibraryOptions(resolved.isa());
  spec.facility_location = ToLibrary(resolved.facility_location());
  spec.dedup_threshold = resolved.filter().dedup_threshold();
  spec.ranking = resolved.ranking();
  return plan;
}

}  // namespace curation::jobs
