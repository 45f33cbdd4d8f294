// Job RPCs: the Start* calls that return an operation at once, the operation calls (Get, List,
// Cancel, Wait), and RunJob, through which the synchronous Select, EvaluateSelection and
// RecommendBudget submit their job and wait for it. The work itself is in job_runner.cc.
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/curation_service.h"
#include "server/validation.h"

namespace curation::server {
namespace {

constexpr size_t kMaxRequestIdBytes = 128;
constexpr double kDefaultWaitSeconds = 60;
constexpr double kMaxWaitSeconds = 600;

absl::Status CheckRequestId(const std::string& id) {
  if (id.size() > kMaxRequestIdBytes) {
    return InvalidField("request_id", absl::StrCat("at most ", kMaxRequestIdBytes, " bytes"));
  }
  for (unsigned char c : id) {
    if (c < 0x21 || c > 0x7e) return InvalidField("request_id", "printable ASCII without spaces");
  }
  return absl::OkStatus();
}

absl::Status CheckName(const std::string& name) {
  if (name.empty()) return InvalidField("name", "required");
  if (name.size() > 256) return InvalidField("name", "at most 256 bytes");
  return absl::OkStatus();
}

}  // namespace

absl::Status OperationError(const v1::Operation& op) {
  if (!op.has_error()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(op.error().code()), op.error().message());
}

absl::StatusOr<jobs::Operations::Started> CurationService::StartJob(const Scope& scope,
                                                                    v1::OperationKind kind,
                                                                    const std::string& request_id,
                                                                    storage::OperationRecord record,
                                                                    bool durable) {
  if (absl::Status s = CheckRequestId(request_id); !s.ok()) return s;
  record.set_tenant(scope.caller.tenant);
  v1::OperationMetadata* meta = record.mutable_operation()->mutable_metadata();
  meta->set_kind(kind);
  meta->set_request_id(request_id);
  return operations_->Start(std::move(record), durable);
}

absl::StatusOr<v1::Operation> CurationService::RunJob(grpc::ServerContext* context,
                                                      const Scope& scope, v1::OperationKind kind,
                                                      const std::string& request_id,
                                                      storage::OperationRecord record,
                                                      const ProgressReport& report) {
  // A caller without a request_id cannot come back for the operation after a crash (its call
  // fails and a retry is new work), so its submission need not wait for an fsync; the result
  // is synced when it is committed.
  auto started = StartJob(scope, kind, request_id, std::move(record),
                          /*durable=*/!request_id.empty());
  if (!started.ok()) return started.status();
  const std::string name = started->operation.name();
  std::shared_ptr<jobs::Job> job = started->job;
  // A caller without a request_id cannot come back for the result, so its leaving ends the
  // job; with one, the job goes on and a retry finds it.
  bool gave_up = false;
  // The first report says at once that the request was accepted, even while it queues.
  if (report && job != nullptr && !report(started->operation.metadata().progress())) {
    gave_up = true;
  }
  while (!gave_up && job != nullptr && !job->Wait(std::chrono::milliseconds(200))) {
    if (context->IsCancelled()) {
      gave_up = true;
      if (request_id.empty()) {
        const bool past = context->deadline() < std::chrono::system_clock::now();
        scheduler_->Cancel(job, past ? absl::DeadlineExceededError("the call's deadline passed")
                                     : absl::CancelledError("the client cancelled the call"));
      }
      break;
    }
    if (report) {
      auto op = operations_->Get(scope.caller.tenant, name);
      if (op.ok() && !op->done() && !report(op->metadata().progress())) gave_up = true;
    }
  }
  if (gave_up) {
    if (request_id.empty() && job != nullptr) {
      scheduler_->Cancel(job, absl::CancelledError("the client went away"));
    }
    return context->deadline() < std::chrono::system_clock::now()
               ? absl::DeadlineExceededError("the call's deadline passed")
               : absl::CancelledError("the client went away");
  }
  auto op = operations_->Get(scope.caller.tenant, name);
  if (!op.ok()) return op.status();
  if (absl::Status s = OperationError(*op); !s.ok()) return s;
  return op;
}

grpc::Status CurationService::StartSelect(grpc::ServerContext* context,
                                          const v1::SelectRequest* request,
                                          v1::Operation* response) {
  auto scope = Enter(*context, v1::ROLE_WRITER);
  if (!scope.ok()) return ToGrpc(scope.status());
  storage::OperationRecord record;
  *record.mutable_select() = *request;
  auto started = StartJob(*scope, v1::OPERATION_KIND_SELECT, request->request_id(), record);
  if (!started.ok()) return ToGrpc(started.status());
  *response = std::move(started->operation);
  return grpc::Status::OK;
}

grpc::Status CurationService::StartEvaluation(grpc::ServerContext* context,
                                              const v1::EvaluateSelectionRequest* request,
                                              v1::Operation* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  storage::OperationRecord record;
  *record.mutable_evaluate() = *request;
  auto started = StartJob(*scope, v1::OPERATION_KIND_EVALUATE, request->request_id(), record);
  if (!started.ok()) return ToGrpc(started.status());
  *response = std::move(started->operation);
  return grpc::Status::OK;
}

grpc::Status CurationService::StartRecommendBudget(grpc::ServerContext* context,
                                                   const v1::RecommendBudgetRequest* request,
                                                   v1::Operation* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  storage::OperationRecord record;
  *record.mutable_recommend() = *request;
  auto started =
      StartJob(*scope, v1::OPERATION_KIND_RECOMMEND_BUDGET, request->request_id(), record);
  if (!started.ok()) return ToGrpc(started.status());
  *response = std::move(started->operation);
  return grpc::Status::OK;
}

grpc::Status CurationService::GetOperation(grpc::ServerContext* context,
                                           const v1::GetOperationRequest* request,
                                           v1::Operation* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  if (absl::Status s = CheckName(request->name()); !s.ok()) return ToGrpc(s);
  auto op = operations_->Get(scope->caller.tenant, request->name());
  if (!op.ok()) return ToGrpc(op.status());
  *response = *std::move(op);
  return grpc::Status::OK;
}

grpc::Status CurationService::ListOperations(grpc::ServerContext* context,
                                             const v1::ListOperationsRequest* request,
                                             v1::ListOperationsResponse* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto page_size_or = PageSize(request->page_size(), limits_.max_page_size);
  if (!page_size_or.ok()) return ToGrpc(page_size_or.status());
  const int page_size = *page_size_or;
  std::string after;
  if (!request->page_token().empty() &&
      (request->page_token().size() > 256 ||
       !absl::WebSafeBase64Unescape(request->page_token(), &after))) {
    return ToGrpc(InvalidField("page_token", "not a token this server issued"));
  }
  if (!request->dataset().empty()) {
    if (auto e = CheckDatasetName("dataset", request->dataset())) {
      return ToGrpc(InvalidField(e->field, e->reason));
    }
  }
  auto page = operations_->List(scope->caller.tenant, request->dataset(), after, page_size + 1);
  if (!page.ok()) return ToGrpc(page.status());
  for (int i = 0; i < static_cast<int>(page->size()) && i < page_size; ++i) {
    *response->add_operations() = std::move((*page)[i]);
  }
  if (static_cast<int>(page->size()) > page_size) {
    response->set_next_page_token(
        absl::WebSafeBase64Escape(response->operations(page_size - 1).name()));
  }
  return grpc::Status::OK;
}

grpc::Status CurationService::CancelOperation(grpc::ServerContext* context,
                                              const v1::CancelOperationRequest* request,
                                              v1::Operation* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  if (absl::Status s = CheckName(request->name()); !s.ok()) return ToGrpc(s);
  auto current = operations_->Get(scope->caller.tenant, request->name());
  if (!current.ok()) return ToGrpc(current.status());
  // Stopping a selection takes what starting one takes.
  if (current->metadata().kind() == v1::OPERATION_KIND_SELECT) {
    if (auto writer = Enter(*context, v1::ROLE_WRITER); !writer.ok()) {
      return ToGrpc(writer.status());
    }
  }
  auto op =
      operations_->Cancel(scope->caller.tenant, request->name(), "cancelled by CancelOperation");
  if (!op.ok()) return ToGrpc(op.status());
  *response = *std::move(op);
  return grpc::Status::OK;
}

grpc::Status CurationService::WaitOperation(grpc::ServerContext* context,
                                            const v1::WaitOperationRequest* request,
                                            v1::Operation* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  if (absl::Status s = CheckName(request->name()); !s.ok()) return ToGrpc(s);
  const double timeout =
      request->timeout_seconds() == 0 ? kDefaultWaitSeconds : request->timeout_seconds();
  if (!(timeout > 0 && timeout <= kMaxWaitSeconds)) {
    return ToGrpc(InvalidField(
        "timeout_seconds",
        absl::StrCat("must be in (0, ", kMaxWaitSeconds, "] (0 means ", kDefaultWaitSeconds, ")")));
  }
  auto op = operations_->Wait(scope->caller.tenant, request->name(),
                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                  std::chrono::duration<double>(timeout)),
                              [context] { return context->IsCancelled(); });
  if (!op.ok()) return ToGrpc(op.status());
  *response = *std::move(op);
  return grpc::Status::OK;
}

}  // namespace curation::server
