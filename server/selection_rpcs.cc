// Selection RPCs: Select runs a method of the selection library on the dataset's index and
// stores the result; Get/List/Export read stored selections back.
#include <google/protobuf/util/time_util.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <map>
#include <optional>
#include <span>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "selection/constraints.h"
#include "selection/dedup.h"
#include "selection/diversity.h"
#include "selection/isa.h"
#include "server/curation_service.h"
#include "server/message_budget.h"
#include "server/selection_ids.h"
#include "server/selection_plan.h"
#include "server/validation.h"

namespace curation::server {
namespace {

// Tagged, unguessable ids (selection_ids.h); RunSelect names its selections through this.
std::string SelectionId(uint64_t dataset_id, int64_t seq) {
  return MakeSelectionId(dataset_id, seq);
}

const char* UnitNoun(bool pair_units) { return pair_units ? "pairs" : "examples"; }

// Unicode code points of UTF-8 text (bytes that do not continue a sequence).
int64_t CodePoints(const std::string& text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

// The length ExampleFilter's bounds apply to: prompt plus completion, or prompt plus the
// longer completion of a pair.
int64_t TextChars(const v1::Example& ex) {
  if (ex.has_pair()) {
    return CodePoints(ex.pair().prompt()) +
           std::max(CodePoints(ex.pair().chosen()), CodePoints(ex.pair().rejected()));
  }
  return CodePoints(ex.unpaired().prompt()) + CodePoints(ex.unpaired().completion());
}

// What the filter and the stratification know about each example of a unit matrix, by its
// position in the index (UnitMatrix::example).
struct ExampleFacts {
  std::vector<uint8_t> keep;     // passes the metadata and length filters
  std::vector<int32_t> stratum;  // stratify_by value's id, by first appearance in the pool
  int32_t strata = 0;
};

// One sequential pass over the dataset's example rows, for the examples in `units` only.
absl::StatusOr<ExampleFacts> ReadExampleFacts(const store::Store& store, uint64_t dataset_id,
                                              const index::UnitMatrix& units,
                                              const v1::ExampleFilter& filter,
                                              const std::string& stratify_by) {
  const int64_t examples = units.example.back() + 1;
  std::vector<int64_t> seq_of(examples);
  for (int64_t r = 0; r < units.rows; ++r) seq_of[units.example[r]] = units.seq[r];
  ExampleFacts facts;
  facts.keep.assign(examples, 1);
  facts.stratum.assign(examples, 0);
  std::map<std::string, int32_t> strata;
  int32_t missing = -1;  // examples without the key: one stratum of their own
  int64_t next = 0;
  bool gap = false;
  absl::Status s =
      store.ForEachExample(dataset_id, [&](int64_t seq, const storage::ExampleRecord& record) {
        // Rows ingested after the snapshot of the index have larger seqs and end the scan.
        if (next >= examples) return false;
        if (seq < seq_of[next]) return true;
        if (seq > seq_of[next]) {
          gap = true;
          return false;
        }
        const v1::Example& ex = record.example();
        bool keep = true;
        for (const auto& [key, value] : filter.metadata_equals()) {
          auto it = ex.metadata().find(key);
          if (it == ex.metadata().end() || it->second != value) {
            keep = false;
            break;
          }
        }
        if (keep && (filter.min_chars() > 0 || filter.max_chars() > 0)) {
          const int64_t chars = TextChars(ex);
          if (filter.min_chars() > 0 && chars < filter.min_chars()) keep = false;
          if (filter.max_chars() > 0 && chars > filter.max_chars()) keep = false;
        }
        facts.keep[next] = keep;
        if (!stratify_by.empty()) {
          auto it = ex.metadata().find(stratify_by);
          if (it == ex.metadata().end()) {
            if (missing < 0) missing = facts.strata++;
            facts.stratum[next] = missing;
          } else {
            auto [entry, inserted] = strata.emplace(it->second, facts.strata);
            if (inserted) ++facts.strata;
            facts.stratum[next] = entry->second;
          }
        }
        ++next;
        return true;
      });
  if (!s.ok()) return s;
  if (gap || next != examples) {
    return absl::DataLossError("the dataset's index and stored examples disagree");
  }
  return facts;
}

// The groups of Constraints over the pool's rows: label (0 desirable, 1 undesirable) and/or
// stratum, as label * strata + stratum.
selection::GroupConstraint MakeGroups(const v1::Constraints& c, const index::UnitMatrix& units,
                                      std::span<const int64_t> pool_rows,
                                      const ExampleFacts* facts) {
  const bool labels = c.balance_labels();
  const int32_t strata = c.stratify_by().empty() ? 1 : facts->strata;
  selection::GroupConstraint constraint;
  constraint.group.reserve(pool_rows.size());
  std::vector<int64_t> sizes(2 * strata, 0);
  for (int64_t row : pool_rows) {
    const int32_t label = labels ? (units.label[row] == index::kDesirable ? 0 : 1) : 0;
    const int32_t stratum = c.stratify_by().empty() ? 0 : facts->stratum[units.example[row]];
    constraint.group.push_back(label * strata + stratum);
    ++sizes[label * strata + stratum];
  }
  if (labels && c.desirable_share() > 0) {
    // The requested label split, and within each label the pool's split between strata.
    const double share[2] = {c.desirable_share(), 1 - c.desirable_share()};
    constraint.shares.assign(2 * strata, 0);
    for (int l = 0; l < 2; ++l) {
      int64_t label_size = 0;
      for (int32_t s = 0; s < strata; ++s) label_size += sizes[l * strata + s];
      for (int32_t s = 0; s < strata; ++s) {
        constraint.shares[l * strata + s] =
            label_size == 0 ? 0
                            : share[l] * static_cast<double>(sizes[l * strata + s]) /
                                  static_cast<double>(label_size);
      }
      // A label with no rows keeps its share, so that quotas fail on its capacity rather than
      // silently giving its rows to the other label.
      if (label_size == 0) constraint.shares[l * strata] = share[l];
    }
  }
  return constraint;
}

// Everything ScoreIsa reports beyond SelectionResult.
struct IsaExtras {
  int init_iterations = 0;
  double retained_variance = 1;
  double fit_seconds = 0;
};

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

  if (request->display_name().size() > 128) {
    return InvalidField("display_name", "at most 128 characters");
  }
  auto plan = PlanSelection(*request, record.dataset().kind(), record.dataset().embedding().dim());
  if (!plan.ok()) return plan.status();
  const v1::SelectRequest& resolved = plan->resolved;
  const bool pair_units = plan->pair_units;

  v1::Selection selection;
  selection.set_dataset(request->dataset());
  selection.set_display_name(request->display_name());
  selection.set_seed(request->seed());
  selection.set_method(resolved.method());
  selection.set_unit(resolved.unit());
  if (resolved.has_isa()) *selection.mutable_isa() = resolved.isa();
  if (resolved.has_facility_location()) {
    *selection.mutable_facility_location() = resolved.facility_location();
  }
  if (resolved.has_filter()) *selection.mutable_filter() = resolved.filter();
  if (resolved.has_constraints()) *selection.mutable_constraints() = resolved.constraints();

  auto slot = tenants_->AdmitSelection(scope->tenant);
  if (!slot.ok()) return slot.status();
  // The pool is the index as it is now; examples ingested from here on are not in it.
  const index::UnitLayout layout =
      !pair_units ? index::UnitLayout::kVectors
                  : (plan->pair_rows == PairRows::kConcat ? index::UnitLayout::kPairConcat
                                                          : index::UnitLayout::kPairMean);
  index::UnitMatrix units = state.index->BuildUnits(layout);
  if (units.rows == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", request->dataset(), "' has no examples yet"));
  }

  // Metadata and length filters and strata need the example rows: one scan, only if asked.
  const v1::ExampleFilter& filter = resolved.filter();
  const v1::Constraints& constraints = resolved.constraints();
  const bool row_filter =
      !filter.metadata_equals().empty() || filter.min_chars() > 0 || filter.max_chars() > 0;
  std::optional<ExampleFacts> facts;
  if (row_filter || !constraints.stratify_by().empty()) {
    auto read =
        ReadExampleFacts(*store_, record.internal_id(), units, filter, constraints.stratify_by());
    if (!read.ok()) return read.status();
    facts = *std::move(read);
  }
  // pool_rows[i] is the unit row of pool row i; the method sees a gathered copy when the
  // filter removed any.
  std::vector<int64_t> pool_rows;
  pool_rows.reserve(units.rows);
  for (int64_t r = 0; r < units.rows; ++r) {
    if (!row_filter || facts->keep[units.example[r]]) pool_rows.push_back(r);
  }
  const int64_t pool = static_cast<int64_t>(pool_rows.size());
  if (pool == 0) {
    return absl::FailedPreconditionError(absl::StrCat("filter: none of the ", units.rows, " ",
                                                      UnitNoun(pair_units), " passes the filter"));
  }
  std::vector<float> gathered;
  selection::MatrixView view{units.data.data(), units.rows, units.dim};
  if (pool < units.rows) {
    gathered.resize(static_cast<size_t>(pool) * units.dim);
    for (int64_t i = 0; i < pool; ++i) {
      std::copy_n(units.data.data() + pool_rows[i] * units.dim, units.dim,
                  gathered.data() + i * units.dim);
    }
    view = {gathered.data(), pool, units.dim};
  }

  const v1::Budget& budget = request->budget();
  auto resolved_k = ResolveBudget(budget, pool, UnitNoun(pair_units));
  if (!resolved_k.ok()) return resolved_k.status();
  const int64_t k = *resolved_k;
  *selection.mutable_requested_budget() = budget;

  std::shared_ptr<const selection::Selector> selector = plan->selector;
  const bool constrained = constraints.balance_labels() || !constraints.stratify_by().empty();
  if (constrained) {
    selector = selection::MakeConstrainedSelector(
        selector, MakeGroups(constraints, units, pool_rows, facts ? &*facts : nullptr));
  }
  const bool dedup = filter.dedup_threshold() > 0;
  // Plain ISA runs ScoreIsa itself, which reports the fit in full (SelectionResult does not).
  const bool direct_isa = resolved.method() == v1::SELECTION_METHOD_ISA && !dedup && !constrained;
  const bool ranking = resolved.ranking();

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
  IsaExtras isa_extras;
  auto run = [&]() -> absl::StatusOr<selection::SelectionResult> {
    if (stop.load()) return absl::CancelledError("cancelled before it started");
    if (direct_isa) {
      auto scored = selection::ScoreIsa(view, IsaLibraryOptions(resolved.isa()), options.seed,
                                        options.progress);
      if (!scored.ok()) return scored.status();
      selection::SelectionResult result;
      result.rows = selection::TopK(scored->deltas, ranking ? view.rows : k);
      result.scores.reserve(result.rows.size());
      for (int64_t row : result.rows) result.scores.push_back(scored->deltas[row]);
      result.fit = std::move(scored->fit);
      isa_extras = {scored->init_iterations, scored->retained_variance, scored->fit_seconds};
      return result;
    }
    if (!ranking) return selector->Select(view, k, options);
    if (dedup) {
      // Rows dedup drops cannot be ranked; the ranking is the order of the rows it keeps.
      selection::DedupOptions dedup_options;
      dedup_options.threshold = filter.dedup_threshold();
      auto groups = selection::Deduplicate(view, dedup_options, options.progress);
      if (!groups.ok()) return groups.status();
      const int64_t kept = static_cast<int64_t>(groups->kept.size());
      if (kept < k) {
        return absl::FailedPreconditionError(absl::StrCat(
            "budget: only ", kept, " ", UnitNoun(pair_units), " are left after dedup"));
      }
      return selector->Select(view, kept, options);
    }
    return selection::RankAll(*selector, view, options);
  };
  absl::StatusOr<selection::SelectionResult> result = absl::UnknownError("not run");
  std::future<void> job = workers_->Submit([&] { result = run(); });
  const std::string stage =
      absl::StrCat(plan->method_name, " on ", pool, " ", UnitNoun(pair_units));
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
        plan->method_name,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  v1::SelectionSummary* summary = selection.mutable_summary();
  summary->set_pool_size(pool);
  summary->set_filtered_out(units.rows - pool);
  summary->set_selected_count(k);
  summary->set_ranked(ranking);
  const int64_t items = static_cast<int64_t>(result->rows.size());
  std::vector<int64_t> positions(items);
  for (int64_t i = 0; i < items; ++i) {
    positions[i] = units.example[pool_rows[result->rows[i]]];
  }
  const std::vector<std::string> ids = state.index->ExampleIds(positions);
  // Statistics of the selection (the first k items); kcenter's first score is +infinity,
  // which is kept on the item but left out of the summary so that it stays finite.
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  int64_t finite = 0;
  for (int64_t i = 0; i < items; ++i) {
    const int64_t row = pool_rows[result->rows[i]];
    const double score = result->scores[i] + 0.0;  // no "-0" for ISA's Delta at l' = 0
    v1::SelectedItem* item = selection.add_items();
    item->set_example_id(ids[i]);
    item->set_score(score);
    const int8_t side = units.side[row];
    item->set_side(side < 0 ? v1::SIDE_UNSPECIFIED
                            : (side == 0 ? v1::SIDE_CHOSEN : v1::SIDE_REJECTED));
    if (i >= k) continue;
    if (std::isfinite(score)) {
      sum += score;
      lo = std::min(lo, score);
      hi = std::max(hi, score);
      ++finite;
    }
    if (!pair_units) {
      if (units.label[row] == index::kDesirable) {
        summary->set_desirable_count(summary->desirable_count() + 1);
      } else {
        summary->set_undesirable_count(summary->undesirable_count() + 1);
      }
    }
  }
  if (finite > 0) {
    summary->set_min_score(lo);
    summary->set_max_score(hi);
    summary->set_mean_score(sum / static_cast<double>(finite));
  }
  if (result->fit) {
    v1::MixtureFit* fit = summary->mutable_fit();
    fit->set_iterations(result->fit->iterations);
    fit->set_converged(result->fit->converged);
    fit->set_mean_log_likelihood(result->fit->mean_log_likelihood);
    for (double w : result->fit->weights) fit->add_weights(w);
    if (direct_isa) {
      fit->set_init_iterations(isa_extras.init_iterations);
      fit->set_retained_variance(isa_extras.retained_variance);
      fit->set_fit_seconds(isa_extras.fit_seconds);
    }
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
    state.Publish(std::move(updated));
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
                                                             const std::string& id,
                                                             absl::string_view field) const {
  if (auto e = CheckRequestId(field, id, limits_.max_id_bytes)) {
    return InvalidField(e->field, e->reason);
  }
  const auto not_found = [&] {
    return absl::NotFoundError(absl::StrCat("selection '", id, "' not found"));
  };
  // Ownership from the id alone, before anything is read: another tenant's id (or a forged
  // one) answers exactly like a missing one, after the same in-memory work.
  const std::optional<SelectionIdParts> parts = ParseSelectionId(id);
  if (!parts) return not_found();
  if (catalog_.load()->FindByInternalId(scope.caller.tenant, parts->dataset_id) == nullptr) {
    return not_found();
  }
  auto selection = store_->GetSelection(parts->dataset_id, parts->seq);
  if (absl::IsNotFound(selection.status())) return not_found();
  if (!selection.ok()) return selection.status();
  // An untagged id names only a selection stored under exactly that id (made before tags);
  // the untagged form of a newer selection's id is not an alias of it.
  if (selection->id() != id) return not_found();
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
    // Tokens are the sequence number of a page's last selection: 0..INT64_MAX. Anything else
    // (INT64_MIN would overflow the store's `before - 1`) was not issued here.
    if (!absl::WebSafeBase64Unescape(request->page_token(), &raw) ||
        !absl::SimpleAtoi(raw, &before) || before < 0) {
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
  auto selection = LoadSelection(*scope, request->selection_id(), "selection_id");
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

  // A ranked selection holds its whole pool's order; the selection is its first
  // selected_count items, and `count` reaches further along the ranking.
  const int64_t held = selection->items_size();
  int64_t count = std::min<int64_t>(selection->summary().selected_count(), held);
  if (count == 0) count = held;  // selections stored before selected_count meant all items
  if (request->count() < 0 || request->count() > held) {
    return ToGrpc(InvalidField(
        "count", absl::StrCat("must be between 0 and the ", held, " items the selection holds")));
  }
  if (request->count() > 0) count = request->count();
  const int64_t per_item = (format == v1::EXPORT_FORMAT_KTO && pair_units) ? 2 : 1;
  const int64_t total = count * per_item;
  // Messages are cut by bytes, not records: a few records of megabyte texts would otherwise
  // make one message over --max-message-bytes, which the transport refuses.
  const int64_t budget = ReplyBudgetBytes(limits_);
  v1::ExportSelectionResponse message;
  int64_t message_bytes = 0;
  int64_t sent = 0;
  // Every write's result counts, the last one's too: a stream that broke is not an export
  // that succeeded, for the client, the log or the metrics.
  auto flush = [&]() -> grpc::Status {
    const int64_t delivered = sent;
    sent += message.records_size();
    message.set_sent(sent);
    message.set_total(total);
    const bool ok = writer->Write(message);
    message.Clear();
    message_bytes = 0;
    if (ok) return grpc::Status::OK;
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("the export stream broke after ", delivered, " of ", total, " records"));
  };
  auto push = [&](v1::ExportedRecord r) -> grpc::Status {
    const int64_t size = EmbeddedBytes(static_cast<int64_t>(r.ByteSizeLong()));
    if (size > budget) {
      return grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("record '", r.id().substr(0, 64), "' is ", size, " bytes, over the ", budget,
                       " bytes one message may carry (--max-message-bytes)"));
    }
    if (message.records_size() > 0 && message_bytes + size > budget) {
      if (grpc::Status s = flush(); !s.ok()) return s;
    }
    *message.add_records() = std::move(r);
    message_bytes += size;
    return grpc::Status::OK;
  };
  for (int64_t i = 0; i < count; ++i) {
    const v1::SelectedItem& item = selection->items(static_cast<int>(i));
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    auto example = LoadExample(record.internal_id(), item.example_id());
    if (!example.ok()) return ToGrpc(example.status());
    const v1::Example& ex = example->example();
    auto add = [&](std::string completion_or_empty, bool label) {
      v1::ExportedRecord r;
      r.set_id(ex.id());
      r.mutable_metadata()->insert(ex.metadata().begin(), ex.metadata().end());
      if (format == v1::EXPORT_FORMAT_TRL) {
        r.set_prompt(ex.pair().prompt());
        r.set_chosen(ex.pair().chosen());
        r.set_rejected(ex.pair().rejected());
      } else {
        r.set_prompt(ex.has_pair() ? ex.pair().prompt() : ex.unpaired().prompt());
        r.set_completion(std::move(completion_or_empty));
        r.set_label(label);
      }
      return push(std::move(r));
    };
    grpc::Status added;
    if (format == v1::EXPORT_FORMAT_TRL) {
      added = add("", false);
    } else if (ex.has_unpaired()) {
      added = add(ex.unpaired().completion(), ex.unpaired().label() == v1::LABEL_DESIRABLE);
    } else if (pair_units) {
      added = add(ex.pair().chosen(), true);
      if (added.ok()) added = add(ex.pair().rejected(), false);
    } else if (item.side() == v1::SIDE_REJECTED) {
      added = add(ex.pair().rejected(), false);
    } else {
      added = add(ex.pair().chosen(), true);
    }
    if (!added.ok()) return added;
  }
  if (message.records_size() > 0 || sent == 0) {
    if (grpc::Status s = flush(); !s.ok()) return s;
  }
  return grpc::Status::OK;
}

}  // namespace curation::server
