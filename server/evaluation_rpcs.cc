// Evaluation RPCs: EvaluateSelection and RecommendBudget submit their job (job_runner.cc) and
// relay its progress about five times a second, then the result. Nothing is stored but the
// operation.
#include "server/curation_service.h"

namespace curation::server {

grpc::Status CurationService::EvaluateSelection(
    grpc::ServerContext* context, const v1::EvaluateSelectionRequest* request,
    grpc::ServerWriter<v1::EvaluateSelectionProgress>* writer) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  storage::OperationRecord record;
  *record.mutable_evaluate() = *request;
  auto op = RunJob(context, *scope, v1::OPERATION_KIND_EVALUATE, request->request_id(),
                   std::move(record), [writer](const v1::Progress& progress) {
                     v1::EvaluateSelectionProgress message;
                     *message.mutable_progress() = progress;
                     return writer->Write(message);
                   });
  if (!op.ok()) return ToGrpc(op.status());
  v1::EvaluateSelectionProgress last;
  *last.mutable_evaluation() = std::move(*op->mutable_evaluation());
  if (!writer->Write(last))
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  return grpc::Status::OK;
}

grpc::Status CurationService::RecommendBudget(
    grpc::ServerContext* context, const v1::RecommendBudgetRequest* request,
    grpc::ServerWriter<v1::RecommendBudgetProgress>* writer) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  storage::OperationRecord record;
  *record.mutable_recommend() = *request;
  auto op = RunJob(context, *scope, v1::OPERATION_KIND_RECOMMEND_BUDGET, request->request_id(),
                   std::move(record), [writer](const v1::Progress& progress) {
                     v1::RecommendBudgetProgress message;
                     *message.mutable_progress() = progress;
                     return writer->Write(message);
                   });
  if (!op.ok()) return ToGrpc(op.status());
  v1::RecommendBudgetProgress last;
  *last.mutable_recommendation() = std::move(*op->mutable_recommendation());
  if (!writer->Write(last))
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  return grpc::Status::OK;
}

}  // namespace curation::server
