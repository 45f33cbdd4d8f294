// Selection RPCs: Select and SelectStream submit a select job and wait for it (the work is in
// job_runner.cc and jobs/pipeline.cc); Get/List/Export read stored selections back.
#include <google/protobuf/util/time_util.h>

#include <chrono>
#include <cmath>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/curation_service.h"
#include "server/export_stream.h"
#include "server/message_budget.h"
#include "server/stored_selections.h"
#include "server/validation.h"

namespace curation::server {

grpc::Status CurationService::Select(grpc::ServerContext* context, const v1::SelectRequest* request,
                                     v1::Selection* response) {
  auto scope = Enter(*context, v1::ROLE_WRITER);
  if (!scope.ok()) return ToGrpc(scope.status());
  storage::OperationRecord record;
  *record.mutable_select() = *request;
  auto op = RunJob(context, *scope, v1::OPERATION_KIND_SELECT, request->request_id(),
                   std::move(record), nullptr);
  if (!op.ok()) return ToGrpc(op.status());
  *response = std::move(*op->mutable_selection());
  return grpc::Status::OK;
}

grpc::Status CurationService::SelectStream(grpc::ServerContext* context,
                                           const v1::SelectRequest* request,
                                           grpc::ServerWriter<v1::SelectProgress>* writer) {
  auto scope = Enter(*context, v1::ROLE_WRITER);
  if (!scope.ok()) return ToGrpc(scope.status());
  storage::OperationRecord record;
  *record.mutable_select() = *request;
  auto op = RunJob(context, *scope, v1::OPERATION_KIND_SELECT, request->request_id(),
                   std::move(record), [writer](const v1::Progress& progress) {
                     v1::SelectProgress message;
                     *message.mutable_progress() = progress;
                     return writer->Write(message);
                   });
  if (!op.ok()) return ToGrpc(op.status());
  v1::SelectProgress last;
  *last.mutable_selection() = std::move(*op->mutable_selection());
  if (!writer->Write(last))
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  return grpc::Status::OK;
}

absl::StatusOr<v1::Selection> CurationService::LoadSelection(const Scope& scope,
                                                             const std::string& id,
                                                             absl::string_view field) const {
  return server::LoadSelection(*store_, *catalog_.load(), scope.caller.tenant, id, field);
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
  auto page_size_or = PageSize(request->page_size(), limits_.max_page_size);
  if (!page_size_or.ok()) return ToGrpc(page_size_or.status());
  const int page_size = *page_size_or;
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
  ExportBatcher batcher(
      ReplyBudgetBytes(limits_), count * per_item,
      [writer](const v1::ExportSelectionResponse& m) { return writer->Write(m); },
      [context] { return context->IsCancelled(); });
  // A partitioned dataset's items live on every partition: read a batch at a time.
  const bool partitioned = record.partitions() > 1;
  if (partitioned && !read_partitioned_) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "a partitioned dataset's selection is exported by a cluster member");
  }
  constexpr int64_t kBatch = 256;
  std::vector<v1::Example> batch;
  for (int64_t i = 0; i < count; ++i) {
    const v1::SelectedItem& item = selection->items(static_cast<int>(i));
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    v1::Example example;
    if (partitioned) {
      if (i % kBatch == 0) {
        std::vector<std::string> ids;
        for (int64_t j = i; j < std::min(count, i + kBatch); ++j) {
          ids.push_back(selection->items(static_cast<int>(j)).example_id());
        }
        auto read = read_partitioned_(context, scope->caller.tenant, selection->dataset(), ids);
        if (!read.ok()) return ToGrpc(read.status());
        batch = *std::move(read);
      }
      example = std::move(batch[i % kBatch]);
    } else {
      auto stored = LoadExample(record.internal_id(), item.example_id());
      if (!stored.ok()) return ToGrpc(stored.status());
      example = std::move(*stored->mutable_example());
    }
    for (auto& r : ExportRecords(example, item, format, pair_units)) {
      if (absl::Status s = batcher.Add(std::move(r)); !s.ok()) return ToGrpc(s);
    }
  }
  return ToGrpc(batcher.Finish());
}

}  // namespace curation::server
