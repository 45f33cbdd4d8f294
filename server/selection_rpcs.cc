// Selection RPCs: Select runs a method of the selection library on the dataset's index and
// stores the result; Get/List/Export read stored selections back.
#include <google/protobuf/util/time_util.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <future>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "selection/factory.h"
#include "server/curation_service.h"
#include "server/validation.h"

namespace curation::server {
namespace {

std::string SelectionId(uint64_t dataset_id, int64_t seq) {
  return absl::StrCat("sel-", dataset_id, "-", seq);
}

bool ParseSelectionId(const std::string& id, uint64_t* dataset_id, int64_t* seq) {
  std::vector<absl::string_view> parts = absl::StrSplit(id, '-');
  return parts.size() == 3 && parts[0] == "sel" && absl::SimpleAtoi(parts[1], dataset_id) &&
         absl::SimpleAtoi(parts[2], seq) && *seq >= 0;
}

// Fills the server defaults into the ISA options and checks them.
absl::Status ResolveIsa(v1::IsaOptions* isa) {
  if (isa->components() == 0) isa->set_components(2);
  if (isa->covariance() == v1::COVARIANCE_UNSPECIFIED) isa->set_covariance(v1::COVARIANCE_DIAG);
  if (isa->max_iter() == 0) isa->set_max_iter(100);
  if (isa->tol() == 0) isa->set_tol(1e-3);
  if (isa->reg_covar() == 0) isa->set_reg_covar(1e-6);
  if (isa->components() < 1 || isa->components() > 64) {
    return InvalidField("isa.components", "must be between 1 and 64");
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
  if (!v1::Covariance_IsValid(isa->covariance())) {
    return InvalidField("isa.covariance", "unknown covariance type");
  }
  return absl::OkStatus();
}

selection::IsaOptions ToLibrary(const v1::IsaOptions& isa) {
  selection::IsaOptions options;
  options.mixture.components = isa.components();
  options.mixture.max_iter = isa.max_iter();
  options.mixture.tol = isa.tol();
  options.mixture.reg_covar = isa.reg_covar();
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
  return options;
}

const char* UnitNoun(bool pair_units) { return pair_units ? "pairs" : "examples"; }

// The selection library's name for a method.
const char* MethodName(v1::SelectionMethod method) {
  switch (method) {
    case v1::SELECTION_METHOD_RANDOM:
      return "random";
    default:
      return "isa";
  }
}

}  // namespace

absl::StatusOr<v1::Selection> CurationService::RunSelect(grpc::ServerContext* context,
                                                         const v1::SelectRequest* request,
                                                         const ProgressReport& report) {
  const auto started = std::chrono::steady_clock::now();
  auto scope = Enter(*context, v1::ROLE_WRITER);
  if (!scope.ok()) return scope.status();
  auto found = FindDataset(*scope, "dataset", request->dataset());
  if (!found.ok()) return found.status();
  DatasetState& state = **found;
  const storage::DatasetRecord record = state.Snapshot();
  const bool pair_dataset = record.dataset().kind() == v1::DATASET_KIND_PAIRS;

  v1::Selection selection;
  selection.set_dataset(request->dataset());
  if (request->display_name().size() > 128) {
    return InvalidField("display_name", "at most 128 characters");
  }
  selection.set_display_name(request->display_name());
  selection.set_seed(request->seed());

  v1::SelectionMethod method = request->method();
  if (method == v1::SELECTION_METHOD_UNSPECIFIED) method = v1::SELECTION_METHOD_ISA;
  if (method != v1::SELECTION_METHOD_ISA && method != v1::SELECTION_METHOD_RANDOM) {
    return InvalidField("method", "unknown method");
  }
  selection.set_method(method);

  v1::SelectionUnit unit = request->unit();
  if (unit == v1::SELECTION_UNIT_UNSPECIFIED) {
    unit = pair_dataset ? v1::SELECTION_UNIT_PAIR : v1::SELECTION_UNIT_EXAMPLE;
  }
  if (unit != v1::SELECTION_UNIT_PAIR && unit != v1::SELECTION_UNIT_EXAMPLE) {
    return InvalidField("unit", "unknown unit");
  }
  if (unit == v1::SELECTION_UNIT_PAIR && !pair_dataset) {
    return InvalidField("unit", "PAIR needs a pairs dataset; this one is unpaired");
  }
  selection.set_unit(unit);
  const bool pair_units = unit == v1::SELECTION_UNIT_PAIR;

  if (method == v1::SELECTION_METHOD_ISA) {
    v1::IsaOptions isa = request->isa();
    if (absl::Status s = ResolveIsa(&isa); !s.ok()) return s;
    *selection.mutable_isa() = isa;
  } else if (request->has_isa()) {
    return InvalidField("isa", "only for method ISA");
  }

  auto slot = tenants_->AdmitSelection(scope->tenant);
  if (!slot.ok()) return slot.status();
  // The pool is the index as it is now; examples ingested from here on are not in it.
  index::UnitMatrix units = state.index->BuildUnits(pair_units);
  if (units.rows == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", request->dataset(), "' has no examples yet"));
  }
  int64_t k = 0;
  const v1::Budget& budget = request->budget();
  switch (budget.amount_case()) {
    case v1::Budget::kCount:
      k = budget.count();
      if (k < 1 || k > units.rows) {
        return InvalidField("budget.count",
                            absl::StrCat(k, " is outside 1..", units.rows, " (the pool holds ",
                                         units.rows, " ", UnitNoun(pair_units), ")"));
      }
      break;
    case v1::Budget::kFraction:
      if (!(budget.fraction() > 0 && budget.fraction() <= 1)) {
        return InvalidField("budget.fraction", "must be in (0, 1]");
      }
      k = std::max<int64_t>(1, std::llround(budget.fraction() * static_cast<double>(units.rows)));
      break;
    default:
      return InvalidField("budget", "required: a count or a fraction");
  }
  *selection.mutable_requested_budget() = budget;

  auto selector = selection::MakeSelector(MethodName(method), ToLibrary(selection.isa()));
  if (!selector.ok()) return selector.status();
  // The method runs on the selection workers, not on this gRPC thread, which meanwhile
  // relays progress and turns the client's cancellation or deadline into the method's stop.
  std::atomic<double> done{0};
  std::atomic<bool> stop{false};
  selection::SelectOptions options;
  options.seed = request->seed();
  options.progress = [&done, &stop](double d) {
    done.store(d);
    return !stop.load();
  };
  const selection::MatrixView view{units.data.data(), units.rows, units.dim};
  absl::StatusOr<selection::SelectionResult> result = absl::UnknownError("not run");
  std::future<void> job = workers_->Submit([&] {
    result = stop.load() ? absl::CancelledError("cancelled before it started")
                         : (*selector)->Select(view, k, options);
  });
  const std::string stage =
      absl::StrCat(MethodName(method), " on ", units.rows, " ", UnitNoun(pair_units));
  while (job.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready) {
    if (context->IsCancelled()) stop.store(true);
    if (report) report(stage, done.load(), started);
  }
  if (!result.ok()) {
    if (absl::IsCancelled(result.status()) &&
        context->deadline() < std::chrono::system_clock::now()) {
      return absl::DeadlineExceededError("selection ran past the deadline");
    }
    return result.status();
  }

  if (metrics_ != nullptr) {
    metrics_->RecordSelection(
        MethodName(method),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  v1::SelectionSummary* summary = selection.mutable_summary();
  summary->set_pool_size(units.rows);
  summary->set_selected_count(static_cast<int64_t>(result->rows.size()));
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < result->rows.size(); ++i) {
    const int64_t row = result->rows[i];
    const double score = result->scores[i] + 0.0;  // no "-0" for ISA's Delta at l' = 0
    sum += score;
    lo = std::min(lo, score);
    hi = std::max(hi, score);
    auto example = store_->GetExample(record.internal_id(), units.seq[row]);
    if (!example.ok()) return example.status();
    v1::SelectedItem* item = selection.add_items();
    item->set_example_id(example->example().id());
    item->set_score(score);
    const int8_t side = units.side[row];
    item->set_side(side < 0 ? v1::SIDE_UNSPECIFIED
                            : (side == 0 ? v1::SIDE_CHOSEN : v1::SIDE_REJECTED));
    const bool desirable = example->example().has_unpaired()
                               ? example->example().unpaired().label() == v1::LABEL_DESIRABLE
                               : side == 0;
    if (!pair_units) {
      if (desirable)
        summary->set_desirable_count(summary->desirable_count() + 1);
      else
        summary->set_undesirable_count(summary->undesirable_count() + 1);
    }
  }
  summary->set_min_score(lo);
  summary->set_max_score(hi);
  summary->set_mean_score(sum / static_cast<double>(result->rows.size()));
  if (result->fit) {
    v1::MixtureFit* fit = summary->mutable_fit();
    fit->set_iterations(result->fit->iterations);
    fit->set_converged(result->fit->converged);
    fit->set_mean_log_likelihood(result->fit->mean_log_likelihood);
    for (double w : result->fit->weights) fit->add_weights(w);
  }
  *selection.mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();

  // A client that gave up (deadline, cancellation) is not told of a selection, so none is
  // stored for it.
  if (context->IsCancelled()) {
    return context->deadline() < std::chrono::system_clock::now()
               ? absl::DeadlineExceededError("selection ran past the deadline")
               : absl::CancelledError("the client cancelled the selection");
  }
  {
    std::lock_guard<std::mutex> lock(state.write_mu);
    if (state.deleted) {
      return absl::NotFoundError("dataset was deleted during the selection");
    }
    storage::DatasetRecord updated = state.record;
    const int64_t seq = updated.next_selection_seq();
    updated.set_next_selection_seq(seq + 1);
    updated.mutable_dataset()->set_selection_count(updated.dataset().selection_count() + 1);
    selection.set_id(SelectionId(updated.internal_id(), seq));
    summary->set_duration_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (absl::Status s = store_->PutSelection(updated, seq, selection); !s.ok()) return s;
    state.record = std::move(updated);
  }
  return selection;
}

grpc::Status CurationService::Select(grpc::ServerContext* context, const v1::SelectRequest* request,
                                     v1::Selection* response) {
  auto selection = RunSelect(context, request, nullptr);
  if (!selection.ok()) return ToGrpc(selection.status());
  *response = *std::move(selection);
  return grpc::Status::OK;
}

grpc::Status CurationService::SelectStream(grpc::ServerContext* context,
                                           const v1::SelectRequest* request,
                                           grpc::ServerWriter<v1::SelectProgress>* writer) {
  auto selection = RunSelect(
      context, request,
      [writer](const std::string& stage, double done,
               std::chrono::steady_clock::time_point started) {
        v1::SelectProgress message;
        v1::Progress* progress = message.mutable_progress();
        progress->set_stage(stage);
        progress->set_fraction(done);
        progress->set_elapsed_seconds(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        writer->Write(message);
      });
  if (!selection.ok()) return ToGrpc(selection.status());
  v1::SelectProgress last;
  *last.mutable_selection() = *std::move(selection);
  writer->Write(last);
  return grpc::Status::OK;
}

absl::StatusOr<v1::Selection> CurationService::LoadSelection(const Scope& scope,
                                                             const std::string& id) const {
  if (id.empty()) return InvalidField("id", "required");
  uint64_t dataset_id = 0;
  int64_t seq = 0;
  if (!ParseSelectionId(id, &dataset_id, &seq)) {
    return absl::NotFoundError(absl::StrCat("selection '", id, "' not found"));
  }
  auto selection = store_->GetSelection(dataset_id, seq);
  if (absl::IsNotFound(selection.status())) {
    return absl::NotFoundError(absl::StrCat("selection '", id, "' not found"));
  }
  if (!selection.ok()) return selection.status();
  // Another tenant's selection does not exist for this caller.
  auto owner = catalog_.load()->Find(scope.caller.tenant, selection->dataset());
  if (owner == nullptr || owner->Snapshot().internal_id() != dataset_id) {
    return absl::NotFoundError(absl::StrCat("selection '", id, "' not found"));
  }
  return selection;
}

grpc::Status CurationService::GetSelection(grpc::ServerContext* context,
                                           const v1::GetSelectionRequest* request,
                                           v1::Selection* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto selection = LoadSelection(*scope, request->id());
  if (!selection.ok()) return ToGrpc(selection.status());
  *response = *std::move(selection);
  if (request->view() == v1::SELECTION_VIEW_BASIC) response->clear_items();
  return grpc::Status::OK;
}

grpc::Status CurationService::ListSelections(grpc::ServerContext* context,
                                             const v1::ListSelectionsRequest* request,
                                             v1::ListSelectionsResponse* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto state = FindDataset(*scope, "dataset", request->dataset());
  if (!state.ok()) return ToGrpc(state.status());
  if (request->page_size() < 0) return ToGrpc(InvalidField("page_size", "must not be negative"));
  const int page_size =
      request->page_size() == 0
          ? 100
          : static_cast<int>(std::min<int64_t>(request->page_size(), limits_.max_page_size));
  int64_t before = INT64_MAX;
  if (!request->page_token().empty()) {
    std::string raw;
    if (!absl::WebSafeBase64Unescape(request->page_token(), &raw) ||
        !absl::SimpleAtoi(raw, &before)) {
      return ToGrpc(InvalidField("page_token", "not a token this server issued"));
    }
  }
  const uint64_t dataset_id = (*state)->Snapshot().internal_id();
  auto page = store_->ListSelections(dataset_id, before, page_size + 1);
  if (!page.ok()) return ToGrpc(page.status());
  for (int i = 0; i < static_cast<int>(page->size()) && i < page_size; ++i) {
    *response->add_selections() = std::move((*page)[i].second);
  }
  if (static_cast<int>(page->size()) > page_size) {
    response->set_next_page_token(
        absl::WebSafeBase64Escape(absl::StrCat((*page)[page_size - 1].first)));
  }
  return grpc::Status::OK;
}

grpc::Status CurationService::ExportSelection(
    grpc::ServerContext* context, const v1::ExportSelectionRequest* request,
    grpc::ServerWriter<v1::ExportSelectionResponse>* writer) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto selection = LoadSelection(*scope, request->selection_id());
  if (!selection.ok()) return ToGrpc(selection.status());
  auto state = FindDataset(*scope, "dataset", selection->dataset());
  if (!state.ok()) return ToGrpc(state.status());
  const storage::DatasetRecord record = (*state)->Snapshot();
  const bool pair_units = selection->unit() == v1::SELECTION_UNIT_PAIR;

  v1::ExportFormat format = request->format();
  if (format == v1::EXPORT_FORMAT_UNSPECIFIED) {
    format = pair_units ? v1::EXPORT_FORMAT_TRL : v1::EXPORT_FORMAT_KTO;
  }
  if (format != v1::EXPORT_FORMAT_TRL && format != v1::EXPORT_FORMAT_KTO) {
    return ToGrpc(InvalidField("format", "unknown format"));
  }
  if (format == v1::EXPORT_FORMAT_TRL && !pair_units) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "format: TRL needs whole pairs; this selection holds single completions "
                        "(unit EXAMPLE), export it as KTO");
  }

  const int64_t per_item = (format == v1::EXPORT_FORMAT_KTO && pair_units) ? 2 : 1;
  const int64_t total = selection->items_size() * per_item;
  constexpr int kRecordsPerMessage = 256;
  v1::ExportSelectionResponse message;
  int64_t sent = 0;
  auto flush = [&]() {
    sent += message.records_size();
    message.set_sent(sent);
    message.set_total(total);
    const bool ok = writer->Write(message);
    message.Clear();
    return ok;
  };
  for (const v1::SelectedItem& item : selection->items()) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    auto example = LoadExample(record.internal_id(), item.example_id());
    if (!example.ok()) return ToGrpc(example.status());
    const v1::Example& ex = example->example();
    auto add = [&](std::string completion_or_empty, bool label) {
      v1::ExportedRecord* r = message.add_records();
      r->set_id(ex.id());
      r->mutable_metadata()->insert(ex.metadata().begin(), ex.metadata().end());
      if (format == v1::EXPORT_FORMAT_TRL) {
        r->set_prompt(ex.pair().prompt());
        r->set_chosen(ex.pair().chosen());
        r->set_rejected(ex.pair().rejected());
      } else {
        r->set_prompt(ex.has_pair() ? ex.pair().prompt() : ex.unpaired().prompt());
        r->set_completion(std::move(completion_or_empty));
        r->set_label(label);
      }
    };
    if (format == v1::EXPORT_FORMAT_TRL) {
      add("", false);
    } else if (ex.has_unpaired()) {
      add(ex.unpaired().completion(), ex.unpaired().label() == v1::LABEL_DESIRABLE);
    } else if (pair_units) {
      add(ex.pair().chosen(), true);
      add(ex.pair().rejected(), false);
    } else if (item.side() == v1::SIDE_REJECTED) {
      add(ex.pair().rejected(), false);
    } else {
      add(ex.pair().chosen(), true);
    }
    if (message.records_size() >= kRecordsPerMessage && !flush()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
  }
  if (message.records_size() > 0 || sent == 0) flush();
  return grpc::Status::OK;
}

}  // namespace curation::server
