// Evaluation RPCs: the proxy reward model of evaluation/proxy.h on a dataset's in-memory
// index. EvaluateSelection scores one subset against random ones and the whole pool;
// RecommendBudget measures a method's learning curve and fits the scaling law to it. Nothing
// is stored; both run on the selection workers under the tenant's selection quota.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <mutex>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "evaluation/proxy.h"
#include "server/curation_service.h"
#include "server/selection_plan.h"
#include "server/validation.h"

namespace curation::server {
namespace {

namespace eval = curation::evaluation;

constexpr int64_t kDefaultTestPairs = 5000;
constexpr int kDefaultRandomSeeds = 5;
constexpr int kMaxRandomSeeds = 50;
constexpr double kDefaultTargetShare = 0.95;
constexpr double kDefaultBudgets[] = {0.5, 1, 2, 5, 10, 25, 50, 100};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

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

// A pairs dataset's vectors as the proxy reads them. `units` owns the floats that `pairs`
// points into, so the struct must not be copied once `pairs` is set.
struct PairData {
  index::UnitMatrix units;
  eval::PairEmbeddings pairs;
  // The example sequence number of pair number i.
  std::vector<int64_t> seqs;

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

// Reads the index as it is now (examples ingested later are not evaluated). BuildUnits without
// pair units gives one row per vector in sequence order, chosen before rejected, so pair i is
// rows 2i and 2i+1: the proxy's interleaved layout, read in place.
absl::Status LoadPairs(const DatasetState& state, PairData* out) {
  out->units = state.index->BuildUnits(false);
  const index::UnitMatrix& u = out->units;
  if (u.rows % 2 != 0) return absl::InternalError("a pairs index holds an odd number of vectors");
  const int64_t pairs = u.rows / 2;
  out->seqs.resize(pairs);
  for (int64_t i = 0; i < pairs; ++i) {
    if (u.seq[2 * i] != u.seq[2 * i + 1] || u.side[2 * i] != 0 || u.side[2 * i + 1] != 1) {
      return absl::InternalError("the pairs index is not in (chosen, rejected) order");
    }
    out->seqs[i] = u.seq[2 * i];
  }
  out->pairs.chosen = u.data.data();
  out->pairs.rejected = u.data.data() + u.dim;
  out->pairs.pairs = pairs;
  out->pairs.dim = u.dim;
  out->pairs.stride = 2 * static_cast<int64_t>(u.dim);
  return absl::OkStatus();
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
// `count` items of a stored selection.
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

// Filters and constraints need per-example metadata and texts, which the proxy's pool rows do
// not carry; the dedup filter lives in the selector itself and is fine.
absl::Status CheckPlainSelect(const v1::SelectRequest& select) {
  const v1::ExampleFilter& f = select.filter();
  if (f.metadata_equals_size() > 0 || f.min_chars() != 0 || f.max_chars() != 0) {
    return InvalidField("select.filter",
                        "metadata and length filters are not supported here (only "
                        "dedup_threshold); select and evaluate the stored selection instead");
  }
  if (select.has_constraints()) {
    return InvalidField("select.constraints",
                        "not supported here; select and evaluate the "
                        "stored selection instead");
  }
  if (select.ranking()) return InvalidField("select.ranking", "nothing is stored here");
  return absl::OkStatus();
}

absl::StatusOr<SelectionPlan> Plan(const v1::SelectRequest& select, v1::DatasetKind kind, int dim) {
  auto plan = PlanSelection(select, kind, dim);
  if (absl::IsInvalidArgument(plan.status())) {
    return absl::InvalidArgumentError(absl::StrCat("select.", plan.status().message()));
  }
  return plan;
}

eval::Unit ToUnit(v1::SelectionUnit unit) {
  return unit == v1::SELECTION_UNIT_PAIR ? eval::Unit::kPair : eval::Unit::kExample;
}

eval::PairRows ToPairRows(PairRows rows) {
  return rows == PairRows::kConcat ? eval::PairRows::kConcat : eval::PairRows::kMean;
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

// What the job on the worker reports to the gRPC thread that relays it.
class JobProgress {
 public:
  void SetStage(std::string stage) {
    std::lock_guard<std::mutex> lock(mu_);
    stage_ = std::move(stage);
  }
  std::string stage() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stage_;
  }
  double done() const { return done_.load(); }
  bool stopped() const { return stop_.load(); }
  void Stop() { stop_.store(true); }
  // A library progress callback whose [0, 1] fills [from, to] of the job; false = stop.
  std::function<bool(double)> Range(double from, double to) {
    return [this, from, to](double d) {
      done_.store(from + (to - from) * std::clamp(d, 0.0, 1.0));
      return !stop_.load();
    };
  }

 private:
  mutable std::mutex mu_;
  std::string stage_;
  std::atomic<double> done_{0};
  std::atomic<bool> stop_{false};
};

// Runs `work` on the selection workers while this (gRPC) thread writes a progress message
// about five times a second and turns the client's cancellation or deadline into a stop.
template <typename Message>
absl::Status RunWithProgress(WorkerPool* workers, grpc::ServerContext* context,
                             grpc::ServerWriter<Message>* writer, JobProgress& job,
                             std::chrono::steady_clock::time_point started,
                             const std::function<absl::Status()>& work) {
  auto report = [&] {
    Message message;
    v1::Progress* progress = message.mutable_progress();
    progress->set_stage(job.stage());
    progress->set_fraction(job.done());
    progress->set_elapsed_seconds(Seconds(started));
    writer->Write(message);
  };
  // The first message says at once that the request was accepted, even while it queues for a
  // worker.
  report();
  absl::Status status = absl::UnknownError("not run");
  std::future<void> done = workers->Submit([&] {
    status = job.stopped() ? absl::CancelledError("cancelled before it started") : work();
  });
  while (done.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready) {
    if (context->IsCancelled()) job.Stop();
    report();
  }
  const bool past_deadline = context->deadline() < std::chrono::system_clock::now();
  if ((status.ok() || absl::IsCancelled(status)) && context->IsCancelled()) {
    return past_deadline ? absl::DeadlineExceededError("evaluation ran past the deadline")
                         : absl::CancelledError("the client cancelled the evaluation");
  }
  return status;
}

}  // namespace

grpc::Status CurationService::EvaluateSelection(
    grpc::ServerContext* context, const v1::EvaluateSelectionRequest* request,
    grpc::ServerWriter<v1::EvaluateSelectionProgress>* writer) {
  const auto started = std::chrono::steady_clock::now();
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto proxy = ResolveProxy(request->proxy());
  if (!proxy.ok()) return ToGrpc(proxy.status());
  if (request->count() < 0) return ToGrpc(InvalidField("count", "must not be negative"));

  v1::Evaluation evaluation;
  std::optional<v1::Selection> stored;
  std::optional<SelectionPlan> plan;
  std::shared_ptr<DatasetState> state;
  switch (request->subset_case()) {
    case v1::EvaluateSelectionRequest::kSelectionId: {
      auto selection = LoadSelection(*scope, request->selection_id());
      if (absl::IsInvalidArgument(selection.status())) {
        return ToGrpc(InvalidField("selection_id", "required"));
      }
      if (!selection.ok()) return ToGrpc(selection.status());
      auto found = FindDataset(*scope, "dataset", selection->dataset());
      if (!found.ok()) return ToGrpc(found.status());
      state = *std::move(found);
      stored = *std::move(selection);
      evaluation.set_selection_id(stored->id());
      evaluation.set_method(stored->method());
      evaluation.set_unit(stored->unit());
      break;
    }
    case v1::EvaluateSelectionRequest::kSelect: {
      if (request->count() != 0) {
        return ToGrpc(InvalidField("count", "only for a stored selection (selection_id)"));
      }
      auto found = FindDataset(*scope, "select.dataset", request->select().dataset());
      if (!found.ok()) return ToGrpc(found.status());
      state = *std::move(found);
      break;
    }
    default:
      return ToGrpc(InvalidField("selection_id", "required: a selection_id or a select"));
  }
  const storage::DatasetRecord record = state->Snapshot();
  evaluation.set_dataset(record.dataset().name());
  if (absl::Status s = CheckPaired(record); !s.ok()) return ToGrpc(s);

  int64_t count = 0;
  if (stored) {
    const int64_t items = stored->items_size();
    count = request->count() == 0 ? std::min(stored->summary().selected_count(), items)
                                  : request->count();
    if (count > items) {
      return ToGrpc(
          InvalidField("count", absl::StrCat(count, " exceeds the selection's ", items, " items")));
    }
    if (count == 0) {
      return ToGrpc(absl::FailedPreconditionError(
          absl::StrCat("selection '", stored->id(), "' has no items to evaluate")));
    }
  } else {
    if (absl::Status s = CheckPlainSelect(request->select()); !s.ok()) return ToGrpc(s);
    auto planned = Plan(request->select(), record.dataset().kind(), state->index->dim());
    if (!planned.ok()) return ToGrpc(planned.status());
    plan = *std::move(planned);
    // Resolved against the pool below, once the pool's size is known; reject the obvious now.
    if (request->select().budget().amount_case() == v1::Budget::AMOUNT_NOT_SET) {
      return ToGrpc(InvalidField("select.budget", "required: a count or a fraction"));
    }
    evaluation.set_method(plan->resolved.method());
    evaluation.set_unit(plan->resolved.unit());
  }

  auto slot = tenants_->AdmitSelection(scope->tenant);
  if (!slot.ok()) return ToGrpc(slot.status());
  PairData data;
  if (absl::Status s = LoadPairs(*state, &data); !s.ok()) return ToGrpc(s);
  auto evaluator = MakeEvaluator(data, *proxy, record.dataset().name());
  if (!evaluator.ok()) return ToGrpc(evaluator.status());
  const eval::Unit unit = ToUnit(evaluation.unit());

  std::vector<int64_t> ids;
  int64_t k = 0;
  if (stored) {
    auto mapped = SelectionIds(*store_, record.internal_id(), *stored, count, data);
    if (!mapped.ok()) return ToGrpc(mapped.status());
    ids = *std::move(mapped);
  } else {
    const int64_t pool = unit == eval::Unit::kPair
                             ? static_cast<int64_t>(evaluator->pool_pairs().size())
                             : evaluator->pool_examples();
    auto budget =
        ResolveBudget(request->select().budget(), pool,
                      plan->pair_units ? "training pairs" : "training examples", "select.budget");
    if (!budget.ok()) return ToGrpc(budget.status());
    k = *budget;
  }

  const int seeds = proxy->random_seeds;
  JobProgress job;
  job.SetStage("evaluate: waiting for a worker");
  eval::EvaluationReport report;
  absl::Status status =
      RunWithProgress(workers_, context, writer, job, started, [&]() -> absl::Status {
        double from = 0;
        if (plan) {
          // The selection is about as costly as the 2 * seeds + 2 fits; give it half the bar.
          from = 0.5;
          const eval::PoolMatrix units = evaluator->PoolUnits(unit, ToPairRows(plan->pair_rows));
          job.SetStage(absl::StrCat("evaluate: ", plan->method_name, " on ", units.rows,
                                    unit == eval::Unit::kPair ? " pool pairs" : " pool examples"));
          selection::SelectOptions options;
          options.seed = plan->resolved.seed();
          options.progress = job.Range(0, from);
          auto selected = plan->selector->Select(units.view(), k, options);
          if (!selected.ok()) return selected.status();
          ids = evaluator->PoolRowsToIds(unit, selected->rows);
        }
        job.SetStage(absl::StrCat("evaluate: subset, ", seeds, " random baselines of each kind, ",
                                  "full pool (", evaluator->pool_pairs().size(), " pairs)"));
        auto result = evaluator->Evaluate(unit, ids, job.Range(from, 1));
        if (!result.ok()) return result.status();
        report = *std::move(result);
        return absl::OkStatus();
      });
  if (!status.ok()) return ToGrpc(status);

  evaluation.set_split_seed(proxy->split_seed);
  evaluation.set_test_pairs(static_cast<int64_t>(evaluator->test_pairs().size()));
  evaluation.set_pool_pairs(static_cast<int64_t>(evaluator->pool_pairs().size()));
  ToProto(report.subset.accuracy, evaluation.mutable_subset());
  evaluation.set_subset_examples(report.subset.examples);
  evaluation.set_dropped_held_out(report.subset.dropped_held_out);
  ToProto(report.random_pairs, evaluation.mutable_random_pairs());
  ToProto(report.random_examples, evaluation.mutable_random_examples());
  ToProto(report.full, evaluation.mutable_full());
  evaluation.set_duration_seconds(Seconds(started));
  if (metrics_ != nullptr) metrics_->RecordSelection("evaluate", evaluation.duration_seconds());
  v1::EvaluateSelectionProgress last;
  *last.mutable_evaluation() = std::move(evaluation);
  writer->Write(last);
  return grpc::Status::OK;
}

grpc::Status CurationService::RecommendBudget(
    grpc::ServerContext* context, const v1::RecommendBudgetRequest* request,
    grpc::ServerWriter<v1::RecommendBudgetProgress>* writer) {
  const auto started = std::chrono::steady_clock::now();
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto found = FindDataset(*scope, "dataset", request->dataset());
  if (!found.ok()) return ToGrpc(found.status());
  std::shared_ptr<DatasetState> state = *std::move(found);
  const storage::DatasetRecord record = state->Snapshot();
  if (absl::Status s = CheckPaired(record); !s.ok()) return ToGrpc(s);

  const v1::SelectRequest& select = request->select();
  if (!select.dataset().empty() && select.dataset() != request->dataset()) {
    return ToGrpc(InvalidField("select.dataset", "must be empty or equal to dataset"));
  }
  if (select.has_budget()) {
    return ToGrpc(InvalidField("select.budget", "must be unset: the budgets are budgets_percent"));
  }
  if (absl::Status s = CheckPlainSelect(select); !s.ok()) return ToGrpc(s);
  auto proxy = ResolveProxy(request->proxy());
  if (!proxy.ok()) return ToGrpc(proxy.status());

  eval::RecommendOptions options;
  if (request->budgets_percent_size() > 0) {
    options.budgets_percent.assign(request->budgets_percent().begin(),
                                   request->budgets_percent().end());
  } else {
    options.budgets_percent.assign(std::begin(kDefaultBudgets), std::end(kDefaultBudgets));
  }
  for (size_t i = 0; i < options.budgets_percent.size(); ++i) {
    const double b = options.budgets_percent[i];
    if (!(b > 0 && b <= 100)) {
      return ToGrpc(InvalidField(absl::StrCat("budgets_percent[", i, "]"),
                                 absl::StrCat(b, " is outside (0, 100]")));
    }
  }
  const std::set<double> distinct(options.budgets_percent.begin(), options.budgets_percent.end());
  if (distinct.size() < 3) {
    return ToGrpc(InvalidField("budgets_percent",
                               "at least 3 distinct budgets are needed to fit the scaling law"));
  }
  options.share = request->target_share() == 0 ? kDefaultTargetShare : request->target_share();
  if (!(options.share > 0 && options.share < 1)) {
    return ToGrpc(InvalidField("target_share", "must be in (0, 1) (0 means 0.95)"));
  }

  auto planned = Plan(select, record.dataset().kind(), state->index->dim());
  if (!planned.ok()) return ToGrpc(planned.status());
  const SelectionPlan plan = *std::move(planned);
  options.seed = plan.resolved.seed();
  options.pair_rows = ToPairRows(plan.pair_rows);
  const eval::Unit unit = ToUnit(plan.resolved.unit());

  auto slot = tenants_->AdmitSelection(scope->tenant);
  if (!slot.ok()) return ToGrpc(slot.status());
  PairData data;
  if (absl::Status s = LoadPairs(*state, &data); !s.ok()) return ToGrpc(s);
  auto evaluator = MakeEvaluator(data, *proxy, record.dataset().name());
  if (!evaluator.ok()) return ToGrpc(evaluator.status());

  // Progress: the curve (one selection, one fit per budget) against the random draws (seeds
  // fits per budget), weighted by fits.
  const double points = static_cast<double>(distinct.size());
  const double random_fits = request->with_random() ? points * proxy->random_seeds : 0;
  const double curve_share = 2 * points / (2 * points + random_fits);
  JobProgress job;
  job.SetStage("recommend: waiting for a worker");
  eval::BudgetRecommendation rec;
  std::vector<std::optional<eval::RandomBaseline>> random(distinct.size());
  absl::Status status =
      RunWithProgress(workers_, context, writer, job, started, [&]() -> absl::Status {
        job.SetStage(absl::StrCat("recommend: ", plan.method_name, " on ",
                                  evaluator->pool_pairs().size(), " pool pairs, ", distinct.size(),
                                  " budgets"));
        auto result =
            evaluator->RecommendBudget(*plan.selector, unit, options, job.Range(0, curve_share));
        if (!result.ok()) return result.status();
        rec = *std::move(result);
        if (!request->with_random()) return absl::OkStatus();
        job.SetStage(absl::StrCat("recommend: ", proxy->random_seeds,
                                  " random baselines at each of ", rec.curve.size(), " budgets"));
        for (size_t i = 0; i < rec.curve.size(); ++i) {
          if (job.stopped()) return absl::CancelledError("cancelled");
          // Whole pairs need 2 rows at least; a smaller point has no pair baseline.
          if (rec.curve[i].examples >= 2) {
            auto baseline = evaluator->EvaluateRandom(eval::Unit::kPair, rec.curve[i].examples);
            if (!baseline.ok()) return baseline.status();
            random[i] = *std::move(baseline);
          }
          job.Range(curve_share, 1)(static_cast<double>(i + 1) / rec.curve.size());
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return ToGrpc(status);

  v1::BudgetRecommendation out;
  out.set_dataset(record.dataset().name());
  out.set_method(plan.resolved.method());
  out.set_unit(plan.resolved.unit());
  out.set_split_seed(proxy->split_seed);
  out.set_test_pairs(static_cast<int64_t>(evaluator->test_pairs().size()));
  out.set_pool_pairs(static_cast<int64_t>(evaluator->pool_pairs().size()));
  for (size_t i = 0; i < rec.curve.size(); ++i) {
    v1::CurvePoint* point = out.add_curve();
    point->set_percent(rec.curve[i].percent);
    point->set_examples(rec.curve[i].examples);
    ToProto(rec.curve[i].accuracy, point->mutable_accuracy());
    if (random[i]) ToProto(*random[i], point->mutable_random_pairs());
  }
  v1::ScalingLaw* fit = out.mutable_fit();
  fit->set_r(rec.fit.r);
  fit->set_a(rec.fit.a);
  fit->set_b(rec.fit.b);
  fit->set_r_squared(rec.fit.r_squared);
  fit->set_rmse(rec.fit.rmse);
  fit->set_converged(rec.fit.converged);
  out.set_target_share(rec.share);
  out.set_reached(rec.percent.has_value());
  if (rec.percent) {
    out.set_percent(*rec.percent);
    out.set_examples(rec.examples);
    out.set_extrapolated(rec.extrapolated);
  }
  out.set_duration_seconds(Seconds(started));
  if (metrics_ != nullptr) metrics_->RecordSelection("recommend", out.duration_seconds());
  v1::RecommendBudgetProgress last;
  *last.mutable_recommendation() = std::move(out);
  writer->Write(last);
  return grpc::Status::OK;
}

}  // namespace curation::server
