#include "server/job_runner.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/stable_hash.h"
#include "common/status.h"
#include "evaluation/proxy.h"
#include "jobs/cost.h"
#include "jobs/distributed_pipeline.h"
#include "jobs/pipeline.h"
#include "jobs/selection_plan.h"
#include "server/stored_selections.h"
#include "server/validation.h"

namespace curation::server {
namespace {

namespace eval = curation::evaluation;
using jobs::JobControl;
using jobs::JobCost;
using jobs::SelectionPlan;

constexpr int64_t kDefaultTestPairs = 5000;
constexpr int kDefaultRandomSeeds = 5;
constexpr int kMaxRandomSeeds = 50;
constexpr double kDefaultTargetShare = 0.95;
constexpr double kDefaultBudgets[] = {0.5, 1, 2, 5, 10, 25, 50, 100};
// A learning curve is a handful of points; more only multiplies the work.
constexpr int kMaxBudgets = 50;

// The proxy's options from the request's, defaults filled in.
absl::StatusOr<eval::ProxyOptions> ResolveProxy(const v1::ProxyOptions& proxy) {
  eval::ProxyOptions options;
  options.split_seed = proxy.has_split_seed() ? proxy.split_seed() : 1;
  if (proxy.test_pairs() < 0) return InvalidField("proxy.test_pairs", "must not be negative");
  if (proxy.train_pairs() < 0) return InvalidField("proxy.train_pairs", "must not be negative");
  if (proxy.random_seeds() < 0 || proxy.random_seeds() > kMaxRandomSeeds) {
    return InvalidField("proxy.random_seeds",
                        absl::StrCat("must be between 1 and ", kMaxRandomSeeds, " (0 means ",
                                     kDefaultRandomSeeds, ")"));
  }
  options.test_pairs = proxy.test_pairs() == 0 ? kDefaultTestPairs : proxy.test_pairs();
  options.train_pairs = proxy.train_pairs();
  options.random_seeds = proxy.random_seeds() == 0 ? kDefaultRandomSeeds : proxy.random_seeds();
  return options;
}

// A pairs dataset's vectors as the proxy reads them. `floats` holds what `pairs` points into,
// so the struct must not be copied once `pairs` is set.
struct PairData {
  index::UnitMatrix units;
  std::vector<float> floats;
  eval::PairEmbeddings pairs;
  // The example sequence number of pair number i.
  std::vector<int64_t> seqs;
  // Gathered from partitions (GatherPairs): pair i's id, and the pair of each id.
  std::vector<std::string> ids;
  absl::flat_hash_map<std::string, int64_t> pair_of;

  PairData() = default;
  PairData(const PairData&) = delete;
  PairData& operator=(const PairData&) = delete;
};

absl::Status CheckPaired(const storage::DatasetRecord& record) {
  if (record.dataset().kind() == v1::DATASET_KIND_PAIRS) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("dataset '", record.dataset().name(),
                   "' is unpaired: the proxy trains on chosen/rejected pairs and scores "
                   "held-out pairs, which only a pairs dataset has"));
}

// The index up to pool_seq (examples ingested after the job's submission are not evaluated).
// Without pair units the index gives one row per vector in sequence order, chosen before
// rejected, so pair i is rows 2i and 2i+1: the proxy's interleaved layout, read in place.
absl::Status LoadPairs(const DatasetState& state, int64_t pool_seq, PairData* out) {
  out->units = state.index->Units(index::UnitLayout::kVectors, pool_seq);
  index::UnitMatrix& u = out->units;
  if (u.rows % 2 != 0) return absl::InternalError("a pairs index holds an odd number of vectors");
  const int64_t pairs = u.rows / 2;
  out->seqs.resize(pairs);
  for (int64_t i = 0; i < pairs; ++i) {
    if (u.seq[2 * i] != u.seq[2 * i + 1] || u.side[2 * i] != 0 || u.side[2 * i + 1] != 1) {
      return absl::InternalError("the pairs index is not in (chosen, rejected) order");
    }
    out->seqs[i] = u.seq[2 * i];
  }
  // The proxy's logistic regression reads every pair many times: decode them once.
  ASSIGN_OR_RETURN(const selection::MatrixView decoded, u.values.Decode(&out->floats));
  out->pairs.chosen = decoded.data;
  out->pairs.rejected = decoded.data + u.dim;
  out->pairs.pairs = pairs;
  out->pairs.dim = u.dim;
  out->pairs.stride = 2 * static_cast<int64_t>(u.dim);
  return absl::OkStatus();
}

// A partitioned dataset's pairs, gathered from its partitions. There is no ingest order
// across partitions, so pairs are put in id order: the proxy's split then equals one node's
// for a dataset whose ids sort in the order it was ingested.
absl::Status GatherPairs(std::span<jobs::PoolPartition* const> parts, PairData* out) {
  std::vector<std::string> ids;
  std::vector<float> values;
  int dim = 0;
  for (jobs::PoolPartition* part : parts) RETURN_IF_ERROR(part->GatherPairs(&ids, &values, &dim));
  const int64_t pairs = static_cast<int64_t>(ids.size());
  if (dim <= 0 || static_cast<int64_t>(values.size()) != pairs * 2 * dim) {
    return absl::InternalError("the partitions' pairs and vectors disagree");
  }
  std::vector<int64_t> order(pairs);
  for (int64_t i = 0; i < pairs; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  out->floats.resize(values.size());
  out->ids.resize(pairs);
  out->pair_of.reserve(pairs);
  const size_t row = 2 * static_cast<size_t>(dim);
  for (int64_t i = 0; i < pairs; ++i) {
    std::memcpy(out->floats.data() + i * row, values.data() + order[i] * row, row * sizeof(float));
    out->ids[i] = std::move(ids[order[i]]);
    out->pair_of.emplace(out->ids[i], i);
  }
  out->pairs.chosen = out->floats.data();
  out->pairs.rejected = out->floats.data() + dim;
  out->pairs.pairs = pairs;
  out->pairs.dim = dim;
  out->pairs.stride = static_cast<int64_t>(row);
  return absl::OkStatus();
}

// SelectionIds for gathered pairs: by the items' ids.
absl::StatusOr<std::vector<int64_t>> SelectionIdsById(const v1::Selection& selection, int64_t count,
                                                      const PairData& data) {
  const bool pair_units = selection.unit() == v1::SELECTION_UNIT_PAIR;
  std::vector<int64_t> ids;
  ids.reserve(count);
  for (int64_t i = 0; i < count; ++i) {
    const v1::SelectedItem& item = selection.items(static_cast<int>(i));
    auto it = data.pair_of.find(item.example_id());
    if (it == data.pair_of.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "selection item ", i, " ('", item.example_id(), "') is in none of the partitions"));
    }
    if (pair_units) {
      ids.push_back(it->second);
    } else if (item.side() == v1::SIDE_CHOSEN || item.side() == v1::SIDE_REJECTED) {
      ids.push_back(2 * it->second + (item.side() == v1::SIDE_REJECTED ? 1 : 0));
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat("selection item ", i, " of an EXAMPLE-unit selection has no side"));
    }
  }
  return ids;
}

absl::StatusOr<eval::ProxyEvaluator> MakeEvaluator(const PairData& data,
                                                   const eval::ProxyOptions& options,
                                                   const std::string& dataset) {
  if (data.pairs.pairs < 10) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", dataset, "' has ", data.pairs.pairs,
                     " pairs; the proxy needs at least 10 to hold some out"));
  }
  auto evaluator = eval::ProxyEvaluator::Create(data.pairs, options);
  if (absl::IsInvalidArgument(evaluator.status())) {
    return absl::FailedPreconditionError(evaluator.status().message());
  }
  return evaluator;
}

// Pair numbers (PAIR units) or example ids 2 * pair + side (EXAMPLE units) of the first
// `count` items of a selection.
absl::StatusOr<std::vector<int64_t>> SelectionIds(const store::Store& store, uint64_t dataset_id,
                                                  const v1::Selection& selection, int64_t count,
                                                  const PairData& data) {
  const bool pair_units = selection.unit() == v1::SELECTION_UNIT_PAIR;
  std::vector<int64_t> ids;
  ids.reserve(count);
  for (int64_t i = 0; i < count; ++i) {
    const v1::SelectedItem& item = selection.items(static_cast<int>(i));
    auto entry = store.FindId(dataset_id, item.example_id());
    if (!entry.ok()) return entry.status();
    const auto it = entry->has_value()
                        ? std::lower_bound(data.seqs.begin(), data.seqs.end(), (*entry)->seq)
                        : data.seqs.end();
    if (it == data.seqs.end() || *it != (*entry)->seq) {
      return absl::FailedPreconditionError(absl::StrCat(
          "selection item ", i, " ('", item.example_id(), "') is not in the dataset's index"));
    }
    const int64_t pair = it - data.seqs.begin();
    if (pair_units) {
      ids.push_back(pair);
    } else if (item.side() == v1::SIDE_CHOSEN || item.side() == v1::SIDE_REJECTED) {
      ids.push_back(2 * pair + (item.side() == v1::SIDE_REJECTED ? 1 : 0));
    } else {
      return absl::FailedPreconditionError(
          absl::StrCat("selection item ", i, " of an EXAMPLE-unit selection has no side"));
    }
  }
  return ids;
}

// A select inside another request: its field paths get the `select.` prefix.
absl::StatusOr<SelectionPlan> PlanNested(const v1::SelectRequest& select, v1::DatasetKind kind,
                                         int dim) {
  if (!select.request_id().empty()) {
    return InvalidField("select.request_id", "set request_id on the outer request");
  }
  auto plan = jobs::PlanSelection(select, kind, dim);
  if (absl::IsInvalidArgument(plan.status())) {
    return absl::InvalidArgumentError(absl::StrCat("select.", plan.status().message()));
  }
  return plan;
}

eval::Unit ToUnit(v1::SelectionUnit unit) {
  return unit == v1::SELECTION_UNIT_PAIR ? eval::Unit::kPair : eval::Unit::kExample;
}

eval::PairRows ToPairRows(jobs::PairRows rows) {
  return rows == jobs::PairRows::kConcat ? eval::PairRows::kConcat : eval::PairRows::kMean;
}

void ToProto(const eval::Accuracy& a, v1::Accuracy* out) {
  out->set_accuracy(a.accuracy);
  out->set_low(a.interval.low);
  out->set_high(a.interval.high);
  out->set_correct(a.correct);
  out->set_pairs(a.pairs);
  out->set_single_label(a.single_label);
}

void ToProto(const eval::RandomBaseline& b, v1::RandomBaseline* out) {
  out->set_examples(b.examples);
  out->set_mean(b.mean);
  out->set_sd(b.sd);
  for (double a : b.accuracies) out->add_accuracies(a);
}

// The pool a plan will see on a dataset (for estimates; filters are not applied).
jobs::PoolShape ShapeOf(const SelectionPlan& plan, const DatasetState& state) {
  const int64_t dim = state.index->dim();
  jobs::PoolShape shape;
  shape.rows = plan.pair_units ? state.index->examples() : state.index->vectors();
  shape.dim = plan.pair_units && plan.pair_rows == jobs::PairRows::kConcat ? 2 * dim : dim;
  return shape;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// The examples the proxy holds in memory: a partitioned dataset's pairs are all gathered on
// its home, and the partitions are about equal (placement by hash), so this partition's count
// times their number; admission then refuses what the home could not hold.
int64_t PoolExamples(const storage::DatasetRecord& dataset, const DatasetState& state) {
  return state.index->examples() * std::max(1, dataset.partitions());
}

// The recommendation's budgets: the request's, or the defaults.
absl::StatusOr<std::vector<double>> Budgets(const v1::RecommendBudgetRequest& request) {
  const bool defaults = request.budgets_percent().empty();
  std::vector<double> budgets =
      defaults
          ? std::vector<double>(std::begin(kDefaultBudgets), std::end(kDefaultBudgets))
          : std::vector<double>(request.budgets_percent().begin(), request.budgets_percent().end());
  if (static_cast<int>(budgets.size()) > kMaxBudgets) {
    return InvalidField("budgets_percent", absl::StrCat("at most ", kMaxBudgets, " budgets (",
                                                        budgets.size(), " given)"));
  }
  for (size_t i = 0; i < budgets.size(); ++i) {
    const double b = budgets[i];
    if (!(b > 0 && b <= 100)) {
      return InvalidField(absl::StrCat("budgets_percent[", i, "]"),
                          absl::StrCat(b, " is outside (0, 100]"));
    }
  }
  if (std::set<double>(budgets.begin(), budgets.end()).size() < 3) {
    return InvalidField("budgets_percent",
                        "at least 3 distinct budgets are needed to fit the scaling law");
  }
  return budgets;
}

}  // namespace

absl::StatusOr<std::shared_ptr<DatasetState>> ServiceJobRunner::Dataset(
    const storage::OperationRecord& record, absl::string_view field,
    const std::string& name) const {
  Catalog* catalog = catalog_.load();
  if (catalog == nullptr) {
    return absl::UnavailableError("the server is loading its datasets; retry shortly");
  }
  if (auto e = CheckDatasetName(field, name)) return InvalidField(e->field, e->reason);
  std::shared_ptr<DatasetState> state = catalog->Find(record.tenant(), name);
  if (state == nullptr || (record.dataset_internal_id() != 0 &&
                           state->Snapshot().internal_id() != record.dataset_internal_id())) {
    return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  }
  // Jobs neither start on nor run through a move (Catalog::BeginMove counts the ones before).
  RETURN_IF_ERROR(CheckNotMoving(*state, name));
  return state;
}

absl::StatusOr<JobCost> ServiceJobRunner::Prepare(storage::OperationRecord* record) {
  switch (record->request_case()) {
    case storage::OperationRecord::kSelect:
      return PrepareSelect(record);
    case storage::OperationRecord::kEvaluate:
      return PrepareEvaluate(record);
    case storage::OperationRecord::kRecommend:
      return PrepareRecommend(record);
    default:
      return absl::InternalError("an operation without a request");
  }
}

absl::StatusOr<bool> ServiceJobRunner::Run(
    storage::OperationRecord* record, JobControl& control,
    const std::function<void(storage::OperationRecord*)>& succeed) {
  switch (record->request_case()) {
    case storage::OperationRecord::kSelect:
      return RunSelect(record, control, succeed);
    case storage::OperationRecord::kEvaluate:
      RETURN_IF_ERROR(RunEvaluate(record, control));
      break;
    case storage::OperationRecord::kRecommend:
      RETURN_IF_ERROR(RunRecommend(record, control));
      break;
    default:
      return absl::InternalError("an operation without a request");
  }
  succeed(record);
  return false;
}

absl::Status ServiceJobRunner::Expand(const storage::OperationRecord& record, v1::Operation* op) {
  if (!op->has_selection() || record.selection_seq() < 0 || !op->selection().items().empty()) {
    return absl::OkStatus();
  }
  auto stored = store_->GetSelection(record.dataset_internal_id(), record.selection_seq());
  // A selection deleted with its dataset: the operation still tells what it made.
  if (absl::IsNotFound(stored.status())) return absl::OkStatus();
  RETURN_IF_ERROR(stored.status());
  *op->mutable_selection() = *std::move(stored);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Select

absl::StatusOr<JobCost> ServiceJobRunner::PrepareSelect(storage::OperationRecord* record) {
  const v1::SelectRequest& request = record->select();
  ASSIGN_OR_RETURN(std::shared_ptr<DatasetState> state,
                   Dataset(*record, "dataset", request.dataset()));
  if (request.display_name().size() > 128) {
    return InvalidField("display_name", "at most 128 characters");
  }
  const storage::DatasetRecord dataset = state->Snapshot();
  ASSIGN_OR_RETURN(SelectionPlan plan,
                   jobs::PlanSelection(request, dataset.dataset().kind(), state->index->dim()));
  if (request.budget().amount_case() == v1::Budget::AMOUNT_NOT_SET) {
    return InvalidField("budget", "required: a count or a fraction");
  }
  if (record->dataset_internal_id() == 0) {
    record->set_dataset_internal_id(dataset.internal_id());
    record->set_pool_seq(dataset.next_seq());
  }
  const jobs::PoolShape shape = ShapeOf(plan, *state);
  record->mutable_operation()->mutable_metadata()->set_dataset(request.dataset());
  if (dataset.partitions() > 1) {
    // This member holds one partition: the pool, the budget and the options the distributed
    // forms lack are checked when the job runs over all of them. The estimate is this
    // member's share of the work.
    return jobs::EstimateSelection(plan, shape, std::max<int64_t>(1, shape.rows / 100));
  }
  if (shape.rows == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", request.dataset(), "' has no examples yet"));
  }
  // The budget against the pool now, unless a filter will shrink the pool first.
  const auto& filter = plan.resolved.filter();
  int64_t k = shape.rows;
  if (filter.metadata_equals().empty() && filter.min_chars() == 0 && filter.max_chars() == 0 &&
      filter.dedup_threshold() == 0) {
    ASSIGN_OR_RETURN(k, jobs::ResolveBudget(request.budget(), shape.rows,
                                            plan.pair_units ? "pairs" : "examples"));
  }
  RETURN_IF_ERROR(jobs::CheckDegenerate(plan, shape));
  record->mutable_operation()->mutable_metadata()->set_dataset(request.dataset());
  return jobs::EstimateSelection(plan, shape, k);
}

absl::StatusOr<ServiceJobRunner::OpenedPartitions> ServiceJobRunner::OpenPartitions(
    const storage::OperationRecord& record, const std::string& dataset,
    const v1::SelectRequest& resolved) const {
  if (!open_partitions_) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", dataset,
                     "' is partitioned, and this server is no cluster "
                     "member"));
  }
  OpenedPartitions opened;
  ASSIGN_OR_RETURN(opened.owned, open_partitions_(record.tenant(), dataset, resolved));
  for (auto& p : opened.owned) opened.parts.push_back(p.get());
  return opened;
}

absl::StatusOr<v1::Selection> ServiceJobRunner::SelectOverPartitions(
    const storage::OperationRecord& record, const SelectionPlan& plan,
    const v1::SelectRequest& request, JobControl& control, absl::string_view budget_field,
    double progress_share) {
  ASSIGN_OR_RETURN(OpenedPartitions opened,
                   OpenPartitions(record, request.dataset(), plan.resolved));
  return jobs::BuildDistributedSelection(plan, request, opened.parts, control, budget_field,
                                         progress_share);
}

absl::StatusOr<bool> ServiceJobRunner::RunSelect(
    storage::OperationRecord* record, JobControl& control,
    const std::function<void(storage::OperationRecord*)>& succeed) {
  const v1::SelectRequest& request = record->select();
  ASSIGN_OR_RETURN(std::shared_ptr<DatasetState> state,
                   Dataset(*record, "dataset", request.dataset()));
  DatasetState& dataset = *state;
  ASSIGN_OR_RETURN(
      SelectionPlan plan,
      jobs::PlanSelection(request, dataset.Snapshot().dataset().kind(), dataset.index->dim()));
  v1::Selection selection;
  if (dataset.Snapshot().partitions() > 1) {
    ASSIGN_OR_RETURN(selection, SelectOverPartitions(*record, plan, request, control));
  } else {
    jobs::PoolSource source{dataset.index.get(), store_, record->dataset_internal_id(),
                            record->pool_seq()};
    ASSIGN_OR_RETURN(selection, jobs::BuildSelection(plan, request, source, control));
  }
  if (metrics_ != nullptr) {
    metrics_->RecordSelection(plan.method_name, selection.summary().duration_seconds());
  }

  if (control.stopped()) return control.stop_reason();
  RETURN_IF_ERROR(
      CommitSelection(dataset, std::move(selection), *store_, *tenants_, record, succeed));
  return true;
}

// ---------------------------------------------------------------------------------------
// EvaluateSelection

absl::StatusOr<JobCost> ServiceJobRunner::PrepareEvaluate(storage::OperationRecord* record) {
  const v1::EvaluateSelectionRequest& request = record->evaluate();
  ASSIGN_OR_RETURN(eval::ProxyOptions proxy, ResolveProxy(request.proxy()));
  if (request.count() < 0) return InvalidField("count", "must not be negative");
  std::shared_ptr<DatasetState> state;
  JobCost selection_cost;
  switch (request.subset_case()) {
    case v1::EvaluateSelectionRequest::kSelectionId: {
      Catalog* catalog = catalog_.load();
      if (catalog == nullptr) return absl::UnavailableError("the server is loading its datasets");
      ASSIGN_OR_RETURN(v1::Selection selection,
                       LoadSelection(*store_, *catalog, record->tenant(), request.selection_id(),
                                     "selection_id"));
      ASSIGN_OR_RETURN(state, Dataset(*record, "dataset", selection.dataset()));
      const int64_t items = selection.items_size();
      const int64_t count = request.count() == 0
                                ? std::min(selection.summary().selected_count(), items)
                                : request.count();
      if (count > items) {
        return InvalidField("count",
                            absl::StrCat(count, " exceeds the selection's ", items, " items"));
      }
      if (count == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("selection '", selection.id(), "' has no items to evaluate"));
      }
      break;
    }
    case v1::EvaluateSelectionRequest::kSelect: {
      const v1::SelectRequest& select = request.select();
      if (request.count() != 0) {
        return InvalidField("count", "only for a stored selection (selection_id)");
      }
      ASSIGN_OR_RETURN(state, Dataset(*record, "select.dataset", select.dataset()));
      ASSIGN_OR_RETURN(SelectionPlan plan,
                       PlanNested(select, state->Snapshot().dataset().kind(), state->index->dim()));
      if (select.budget().amount_case() == v1::Budget::AMOUNT_NOT_SET) {
        return InvalidField("select.budget", "required: a count or a fraction");
      }
      if (plan.resolved.ranking()) return InvalidField("select.ranking", "nothing is stored here");
      const jobs::PoolShape shape = ShapeOf(plan, *state);
      RETURN_IF_ERROR(jobs::CheckDegenerate(plan, shape, "select."));
      selection_cost = jobs::EstimateSelection(plan, shape, shape.rows);
      break;
    }
    default:
      return InvalidField("selection_id", "required: a selection_id or a select");
  }
  const storage::DatasetRecord dataset = state->Snapshot();
  RETURN_IF_ERROR(CheckPaired(dataset));
  if (record->dataset_internal_id() == 0) {
    record->set_dataset_internal_id(dataset.internal_id());
    record->set_pool_seq(dataset.next_seq());
  }
  record->mutable_operation()->mutable_metadata()->set_dataset(dataset.dataset().name());
  return jobs::EstimateEvaluation(PoolExamples(dataset, *state), state->index->dim(),
                                  2 * proxy.random_seeds + 2, selection_cost);
}

absl::Status ServiceJobRunner::RunEvaluate(storage::OperationRecord* record, JobControl& control) {
  const auto started = std::chrono::steady_clock::now();
  const v1::EvaluateSelectionRequest& request = record->evaluate();
  ASSIGN_OR_RETURN(eval::ProxyOptions proxy, ResolveProxy(request.proxy()));
  const bool stored = request.subset_case() == v1::EvaluateSelectionRequest::kSelectionId;
  v1::Selection selection;
  std::shared_ptr<DatasetState> state;
  if (stored) {
    Catalog* catalog = catalog_.load();
    ASSIGN_OR_RETURN(selection, LoadSelection(*store_, *catalog, record->tenant(),
                                              request.selection_id(), "selection_id"));
    ASSIGN_OR_RETURN(state, Dataset(*record, "dataset", selection.dataset()));
  } else {
    ASSIGN_OR_RETURN(state, Dataset(*record, "select.dataset", request.select().dataset()));
  }
  const storage::DatasetRecord dataset = state->Snapshot();
  v1::Evaluation evaluation;
  evaluation.set_dataset(dataset.dataset().name());

  // A partitioned dataset's pairs come from its partitions (the selection too, when one is
  // made now), all through one set of partitions so that both see the same pools.
  const bool partitioned = dataset.partitions() > 1;
  std::optional<SelectionPlan> plan;
  if (!stored) {
    ASSIGN_OR_RETURN(plan,
                     PlanNested(request.select(), dataset.dataset().kind(), state->index->dim()));
  }
  OpenedPartitions opened;
  PairData data;
  if (partitioned) {
    ASSIGN_OR_RETURN(opened,
                     OpenPartitions(*record,
                                    request.select().dataset().empty() ? dataset.dataset().name()
                                                                       : request.select().dataset(),
                                    plan ? plan->resolved : v1::SelectRequest()));
    control.SetStage(
        absl::StrCat("evaluate: gathering the pairs of ", opened.parts.size(), " partitions"));
    RETURN_IF_ERROR(GatherPairs(opened.parts, &data));
  } else {
    RETURN_IF_ERROR(LoadPairs(*state, record->pool_seq(), &data));
  }
  ASSIGN_OR_RETURN(eval::ProxyEvaluator evaluator,
                   MakeEvaluator(data, proxy, dataset.dataset().name()));
  double from = 0;
  int64_t count = 0;
  if (stored) {
    evaluation.set_selection_id(selection.id());
    const int64_t items = selection.items_size();
    count = request.count() == 0 ? std::min(selection.summary().selected_count(), items)
                                 : request.count();
  } else {
    // Exactly the selection Select makes for this request; it costs about as much as the
    // 2 * seeds + 2 fits, so it gets half the bar.
    from = 0.5;
    if (partitioned) {
      ASSIGN_OR_RETURN(
          selection, jobs::BuildDistributedSelection(*plan, request.select(), opened.parts, control,
                                                     "select.budget", from));
    } else {
      jobs::PoolSource source{state->index.get(), store_, record->dataset_internal_id(),
                              record->pool_seq()};
      ASSIGN_OR_RETURN(selection, jobs::BuildSelection(*plan, request.select(), source, control,
                                                       "select.budget", from));
    }
    count = selection.summary().selected_count();
  }
  evaluation.set_method(selection.method());
  evaluation.set_unit(selection.unit());
  std::vector<int64_t> ids;
  if (partitioned) {
    ASSIGN_OR_RETURN(ids, SelectionIdsById(selection, count, data));
  } else {
    ASSIGN_OR_RETURN(ids, SelectionIds(*store_, dataset.internal_id(), selection, count, data));
  }
  const eval::Unit unit = ToUnit(selection.unit());
  control.SetStage(absl::StrCat("evaluate: subset, ", proxy.random_seeds,
                                " random baselines of each kind, full pool (",
                                evaluator.pool_pairs().size(), " pairs)"));
  auto report = evaluator.Evaluate(unit, ids, control.Range(from, 1));
  if (!report.ok()) return control.Outcome(report.status());

  evaluation.set_split_seed(proxy.split_seed);
  evaluation.set_test_pairs(static_cast<int64_t>(evaluator.test_pairs().size()));
  evaluation.set_pool_pairs(static_cast<int64_t>(evaluator.pool_pairs().size()));
  ToProto(report->subset.accuracy, evaluation.mutable_subset());
  evaluation.set_subset_examples(report->subset.examples);
  evaluation.set_dropped_held_out(report->subset.dropped_held_out);
  ToProto(report->random_pairs, evaluation.mutable_random_pairs());
  ToProto(report->random_examples, evaluation.mutable_random_examples());
  ToProto(report->full, evaluation.mutable_full());
  evaluation.set_duration_seconds(Seconds(started));
  if (metrics_ != nullptr) metrics_->RecordSelection("evaluate", evaluation.duration_seconds());
  *record->mutable_operation()->mutable_evaluation() = std::move(evaluation);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// RecommendBudget

absl::StatusOr<JobCost> ServiceJobRunner::PrepareRecommend(storage::OperationRecord* record) {
  const v1::RecommendBudgetRequest& request = record->recommend();
  ASSIGN_OR_RETURN(std::shared_ptr<DatasetState> state,
                   Dataset(*record, "dataset", request.dataset()));
  const storage::DatasetRecord dataset = state->Snapshot();
  RETURN_IF_ERROR(CheckPaired(dataset));
  const v1::SelectRequest& select = request.select();
  if (!select.dataset().empty() && select.dataset() != request.dataset()) {
    return InvalidField("select.dataset", "must be empty or equal to dataset");
  }
  if (select.has_budget()) {
    return InvalidField("select.budget", "must be unset: the budgets are budgets_percent");
  }
  const v1::ExampleFilter& f = select.filter();
  if (f.metadata_equals_size() > 0 || f.min_chars() != 0 || f.max_chars() != 0) {
    return InvalidField("select.filter",
                        "metadata and length filters are not supported here (only "
                        "dedup_threshold); select and evaluate the stored selection instead");
  }
  if (!select.constraints().stratify_by().empty()) {
    return InvalidField("select.constraints.stratify_by",
                        "not supported here; select and evaluate the stored selection instead");
  }
  if (select.ranking()) return InvalidField("select.ranking", "nothing is stored here");
  ASSIGN_OR_RETURN(eval::ProxyOptions proxy, ResolveProxy(request.proxy()));
  ASSIGN_OR_RETURN(std::vector<double> budgets, Budgets(request));
  if (request.target_share() != 0 && !(request.target_share() > 0 && request.target_share() < 1)) {
    return InvalidField("target_share", "must be in (0, 1) (0 means 0.95)");
  }
  ASSIGN_OR_RETURN(SelectionPlan plan,
                   PlanNested(select, dataset.dataset().kind(), state->index->dim()));
  const jobs::PoolShape shape = ShapeOf(plan, *state);
  RETURN_IF_ERROR(jobs::CheckDegenerate(plan, shape, "select."));
  if (record->dataset_internal_id() == 0) {
    record->set_dataset_internal_id(dataset.internal_id());
    record->set_pool_seq(dataset.next_seq());
  }
  record->mutable_operation()->mutable_metadata()->set_dataset(request.dataset());
  const int64_t points =
      static_cast<int64_t>(std::set<double>(budgets.begin(), budgets.end()).size());
  const int64_t fits = points * (1 + (request.with_random() ? proxy.random_seeds : 0));
  return jobs::EstimateEvaluation(PoolExamples(dataset, *state), state->index->dim(), fits,
                                  jobs::EstimateSelection(plan, shape, shape.rows));
}

absl::Status ServiceJobRunner::RunRecommend(storage::OperationRecord* record, JobControl& control) {
  const auto started = std::chrono::steady_clock::now();
  const v1::RecommendBudgetRequest& request = record->recommend();
  ASSIGN_OR_RETURN(std::shared_ptr<DatasetState> state,
                   Dataset(*record, "dataset", request.dataset()));
  const storage::DatasetRecord dataset = state->Snapshot();
  ASSIGN_OR_RETURN(eval::ProxyOptions proxy, ResolveProxy(request.proxy()));
  eval::RecommendOptions options;
  ASSIGN_OR_RETURN(options.budgets_percent, Budgets(request));
  options.share = request.target_share() == 0 ? kDefaultTargetShare : request.target_share();
  ASSIGN_OR_RETURN(SelectionPlan plan,
                   PlanNested(request.select(), dataset.dataset().kind(), state->index->dim()));
  options.seed = plan.resolved.seed();
  options.pair_rows = ToPairRows(plan.pair_rows);
  const eval::Unit unit = ToUnit(plan.resolved.unit());

  const bool partitioned = dataset.partitions() > 1;
  PairData data;
  if (partitioned) {
    ASSIGN_OR_RETURN(OpenedPartitions opened,
                     OpenPartitions(*record, dataset.dataset().name(), plan.resolved));
    control.SetStage(
        absl::StrCat("recommend: gathering the pairs of ", opened.parts.size(), " partitions"));
    RETURN_IF_ERROR(GatherPairs(opened.parts, &data));
  } else {
    RETURN_IF_ERROR(LoadPairs(*state, record->pool_seq(), &data));
  }
  ASSIGN_OR_RETURN(eval::ProxyEvaluator evaluator,
                   MakeEvaluator(data, proxy, dataset.dataset().name()));
  // The same composition as Select's: method, dedup and, for single completions, the label
  // balance, over the proxy's pool rows (kExample: every pool pair's chosen row, then its
  // rejected row).
  selection::SelectorSpec spec = plan.spec;
  if (plan.resolved.constraints().balance_labels()) {
    const int64_t pairs = static_cast<int64_t>(evaluator.pool_pairs().size());
    std::vector<int8_t> labels(2 * pairs, index::kUndesirable);
    std::fill(labels.begin(), labels.begin() + pairs, index::kDesirable);
    spec.constraint = jobs::MakeGroups(plan.resolved.constraints(), labels, {}, 1);
  }
  std::unique_ptr<selection::Selector> selector;
  if (partitioned) {
    // The learning curve's pool is the proxy's, not the dataset's: each budget's subset is
    // what the distributed form selects from partitions holding the pool's rows, run here on
    // the pairs the proxy gathered anyway.
    const std::span<const int64_t> pool = evaluator.pool_pairs();
    const int64_t n = static_cast<int64_t>(pool.size());
    const int64_t rows = unit == eval::Unit::kPair ? n : 2 * n;
    std::vector<int> partition_of_row(rows);
    std::vector<uint64_t> keys(rows);
    for (int64_t r = 0; r < rows; ++r) {
      const std::string& id = data.ids[pool[r % n]];
      partition_of_row[r] = PartitionOf(id, dataset.partitions());
      keys[r] = unit == eval::Unit::kPair ? UnitKey(id) : UnitKey(id, r < n ? 0 : 1);
    }
    selector = jobs::MakeInProcessDistributedSelector(spec, std::move(partition_of_row),
                                                      std::move(keys), dataset.partitions());
  } else {
    ASSIGN_OR_RETURN(selector, selection::MakeSelector(spec));
  }

  const std::set<double> distinct(options.budgets_percent.begin(), options.budgets_percent.end());
  const double points = static_cast<double>(distinct.size());
  const double random_fits = request.with_random() ? points * proxy.random_seeds : 0;
  const double curve_share = 2 * points / (2 * points + random_fits);
  control.SetStage(absl::StrCat("recommend: ", plan.method_name, " on ",
                                evaluator.pool_pairs().size(), " pool pairs, ", distinct.size(),
                                " budgets"));
  auto rec = evaluator.RecommendBudget(*selector, unit, options, control.Range(0, curve_share));
  if (!rec.ok()) return control.Outcome(rec.status());
  std::vector<std::optional<eval::RandomBaseline>> random(rec->curve.size());
  if (request.with_random()) {
    control.SetStage(absl::StrCat("recommend: ", proxy.random_seeds,
                                  " random baselines at each of ", rec->curve.size(), " budgets"));
    for (size_t i = 0; i < rec->curve.size(); ++i) {
      if (control.stopped()) return control.stop_reason();
      // Whole pairs need 2 rows at least; a smaller point has no pair baseline.
      if (rec->curve[i].examples >= 2) {
        auto baseline = evaluator.EvaluateRandom(eval::Unit::kPair, rec->curve[i].examples);
        RETURN_IF_ERROR(baseline.status());
        random[i] = *std::move(baseline);
      }
      control.Range(curve_share, 1)(static_cast<double>(i + 1) / rec->curve.size());
    }
  }

  v1::BudgetRecommendation* out = record->mutable_operation()->mutable_recommendation();
  out->set_dataset(dataset.dataset().name());
  out->set_method(plan.resolved.method());
  out->set_unit(plan.resolved.unit());
  out->set_split_seed(proxy.split_seed);
  out->set_test_pairs(static_cast<int64_t>(evaluator.test_pairs().size()));
  out->set_pool_pairs(static_cast<int64_t>(evaluator.pool_pairs().size()));
  for (size_t i = 0; i < rec->curve.size(); ++i) {
    v1::CurvePoint* point = out->add_curve();
    point->set_percent(rec->curve[i].percent);
    point->set_examples(rec->curve[i].examples);
    ToProto(rec->curve[i].accuracy, point->mutable_accuracy());
    if (random[i]) ToProto(*random[i], point->mutable_random_pairs());
  }
  v1::ScalingLaw* fit = out->mutable_fit();
  fit->set_r(rec->fit.r);
  fit->set_a(rec->fit.a);
  fit->set_b(rec->fit.b);
  fit->set_r_squared(rec->fit.r_squared);
  fit->set_rmse(rec->fit.rmse);
  fit->set_converged(rec->fit.converged);
  out->set_target_share(rec->share);
  out->set_reached(rec->percent.has_value());
  if (rec->percent) {
    out->set_percent(*rec->percent);
    out->set_examples(rec->examples);
    out->set_extrapolated(rec->extrapolated);
  }
  out->set_duration_seconds(Seconds(started));
  if (metrics_ != nullptr) metrics_->RecordSelection("recommend", out->duration_seconds());
  return absl::OkStatus();
}

}  // namespace curation::server
