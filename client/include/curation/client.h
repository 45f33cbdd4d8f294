// The C++ client library of the curation service: one object per server, every call with a
// deadline, retried with backoff while the server is UNAVAILABLE (restarting, draining,
// still loading its datasets).
//
// Retrying is safe for reads, ingests and creates: an ingest resent after a lost reply comes
// back as duplicates (records are keyed by id or content hash), reads have no effect, and a
// Create that did happen answers ALREADY_EXISTS. The operation calls GetOperation,
// ListOperations, WaitOperation and CancelOperation are retried too (cancelling twice is
// cancelling once; a done operation comes back unchanged).
//
// Select and the Start* calls are retried only when their request carries a request_id
// (AIP-155): the server then maps the retry onto the job the lost attempt started, and the
// same result comes back. Without one, a Select or Start* whose reply was lost may have
// queued a job, and a retry would queue a second one (a second selection stored with the
// same ids, twice the compute), so the UNAVAILABLE is returned to the caller instead.
//
//   curation::client::Options options{.server = "curation:50051", .token = token};
//   auto client = curation::client::Client::Connect(options);
//   curation::v1::Dataset dataset;
//   grpc::Status s = (*client)->GetDataset(request, &dataset);
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "curation/v1/admin.grpc.pb.h"
#include "curation/v1/curation.grpc.pb.h"

namespace curation::client {

struct Options {
  // HOST:PORT.
  std::string server = "127.0.0.1:50051";
  // Sent as "authorization: Bearer <token>" on every call; empty for none.
  std::string token;
  // PEM contents (not paths). With tls_root_certs or a client certificate the channel uses
  // TLS; tls_cert_chain and tls_private_key together make it mutual TLS.
  std::string tls_root_certs;
  std::string tls_cert_chain;
  std::string tls_private_key;
  // Deadline of one attempt of a unary call.
  std::chrono::milliseconds timeout{60'000};
  // Attempts of a call that keeps failing with UNAVAILABLE, the first included.
  int max_attempts = 5;
  // Wait before the second attempt; doubles for each further one.
  std::chrono::milliseconds initial_backoff{200};
  // Largest reply accepted (selections of big datasets are large).
  int max_receive_message_bytes = 256 << 20;
};

class Client {
 public:
  // Creates the channel; does not wait for the server. INVALID_ARGUMENT for inconsistent
  // TLS options.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const Options& options);

  const Options& options() const { return options_; }

  // A context carrying the token, with a deadline `timeout` from now (the options' default
  // when zero). For streaming calls, which are not retried.
  std::unique_ptr<grpc::ClientContext> NewContext(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) const;

  // The raw stubs, for streaming calls (use NewContext for their contexts).
  v1::CurationService::Stub& curation() { return *curation_; }
  v1::AdminService::Stub& admin() { return *admin_; }

  // The server's grpc.health.v1 status for the whole server: true iff SERVING.
  absl::StatusOr<bool> Serving();

  // Unary calls of CurationService, with deadline and retries.
  grpc::Status CreateDataset(const v1::CreateDatasetRequest& r, v1::Dataset* out) {
    return Unary(*curation_, &v1::CurationService::Stub::CreateDataset, r, out);
  }
  grpc::Status GetDataset(const v1::GetDatasetRequest& r, v1::Dataset* out) {
    return Unary(*curation_, &v1::CurationService::Stub::GetDataset, r, out);
  }
  grpc::Status ListDatasets(const v1::ListDatasetsRequest& r, v1::ListDatasetsResponse* out) {
    return Unary(*curation_, &v1::CurationService::Stub::ListDatasets, r, out);
  }
  grpc::Status DeleteDataset(const v1::DeleteDatasetRequest& r, v1::DeleteDatasetResponse* out) {
    return Unary(*curation_, &v1::CurationService::Stub::DeleteDataset, r, out);
  }
  grpc::Status IngestExamples(const v1::IngestExamplesRequest& r, v1::IngestExamplesResponse* out) {
    return Unary(*curation_, &v1::CurationService::Stub::IngestExamples, r, out);
  }
  grpc::Status GetExamples(const v1::GetExamplesRequest& r, v1::GetExamplesResponse* out) {
    return Unary(*curation_, &v1::CurationService::Stub::GetExamples, r, out);
  }
  // Selections can take minutes on large datasets: pass a longer timeout. Retried only with
  // a request_id (see the top of this file).
  grpc::Status Select(const v1::SelectRequest& r, v1::Selection* out,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    return Unary(*curation_, &v1::CurationService::Stub::Select, r, out, timeout,
                 !r.request_id().empty());
  }
  grpc::Status GetSelection(const v1::GetSelectionRequest& r, v1::Selection* out) {
    return Unary(*curation_, &v1::CurationService::Stub::GetSelection, r, out);
  }
  grpc::Status ListSelections(const v1::ListSelectionsRequest& r, v1::ListSelectionsResponse* out) {
    return Unary(*curation_, &v1::CurationService::Stub::ListSelections, r, out);
  }

  // The evaluation RPCs, streamed: `progress` (may be empty) gets every Progress message,
  // about five a second, and the result is the last message. Each attempt has a deadline
  // `timeout` from its start (default 6 hours: the proxy on a large dataset takes minutes).
  // Nothing is stored, so an attempt that fails with UNAVAILABLE before any message arrived is
  // retried like a unary call; one that fails later is not (its work would start over).
  using ProgressCallback = std::function<void(const v1::Progress&)>;
  absl::StatusOr<v1::Evaluation> Evaluate(
      const v1::EvaluateSelectionRequest& r, const ProgressCallback& progress = {},
      std::chrono::milliseconds timeout = std::chrono::hours(6));
  absl::StatusOr<v1::BudgetRecommendation> RecommendBudget(
      const v1::RecommendBudgetRequest& r, const ProgressCallback& progress = {},
      std::chrono::milliseconds timeout = std::chrono::hours(6));

  // Long-running operations (AIP-151). The Start* calls return the queued operation at once
  // and are retried only with a request_id; the others are always retried.
  grpc::Status StartSelect(const v1::SelectRequest& r, v1::Operation* out) {
    return Unary(*curation_, &v1::CurationService::Stub::StartSelect, r, out,
                 std::chrono::milliseconds(0), !r.request_id().empty());
  }
  grpc::Status StartEvaluation(const v1::EvaluateSelectionRequest& r, v1::Operation* out) {
    return Unary(*curation_, &v1::CurationService::Stub::StartEvaluation, r, out,
                 std::chrono::milliseconds(0), !r.request_id().empty());
  }
  grpc::Status StartRecommendBudget(const v1::RecommendBudgetRequest& r, v1::Operation* out) {
    return Unary(*curation_, &v1::CurationService::Stub::StartRecommendBudget, r, out,
                 std::chrono::milliseconds(0), !r.request_id().empty());
  }
  grpc::Status GetOperation(const v1::GetOperationRequest& r, v1::Operation* out) {
    return Unary(*curation_, &v1::CurationService::Stub::GetOperation, r, out);
  }
  grpc::Status ListOperations(const v1::ListOperationsRequest& r, v1::ListOperationsResponse* out) {
    return Unary(*curation_, &v1::CurationService::Stub::ListOperations, r, out);
  }
  grpc::Status CancelOperation(const v1::CancelOperationRequest& r, v1::Operation* out) {
    return Unary(*curation_, &v1::CurationService::Stub::CancelOperation, r, out);
  }
  // The server holds the call for up to r.timeout_seconds (0 = 60), so each attempt's deadline
  // is that wait plus the options' timeout: the options' timeout alone would end every wait
  // longer than it as DEADLINE_EXCEEDED instead of returning the operation.
  grpc::Status WaitOperation(const v1::WaitOperationRequest& r, v1::Operation* out);

  // Waits for operation `name` to be done: WaitOperation with a wait of `poll` again and
  // again (a short poll gives `update` fresh progress to show), until the operation is done or
  // `timeout` has passed (zero: no limit). `update` (may be empty) gets every reply, done or
  // not. Returns the operation as it is then, done or not; an error only if a call failed.
  // The operation's own failure is in the operation: see OperationStatus.
  using OperationCallback = std::function<void(const v1::Operation&)>;
  absl::StatusOr<v1::Operation> AwaitOperation(
      const std::string& name, std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
      std::chrono::milliseconds poll = std::chrono::seconds(1),
      const OperationCallback& update = {});

  // Unary calls of AdminService (need an admin token).
  grpc::Status CreateTenant(const v1::CreateTenantRequest& r, v1::Tenant* out) {
    return Unary(*admin_, &v1::AdminService::Stub::CreateTenant, r, out);
  }
  grpc::Status GetTenant(const v1::GetTenantRequest& r, v1::Tenant* out) {
    return Unary(*admin_, &v1::AdminService::Stub::GetTenant, r, out);
  }
  grpc::Status ListTenants(const v1::ListTenantsRequest& r, v1::ListTenantsResponse* out) {
    return Unary(*admin_, &v1::AdminService::Stub::ListTenants, r, out);
  }
  grpc::Status UpdateTenantQuotas(const v1::UpdateTenantQuotasRequest& r, v1::Tenant* out) {
    return Unary(*admin_, &v1::AdminService::Stub::UpdateTenantQuotas, r, out);
  }
  grpc::Status CreateToken(const v1::CreateTokenRequest& r, v1::CreateTokenResponse* out) {
    return Unary(*admin_, &v1::AdminService::Stub::CreateToken, r, out);
  }
  grpc::Status ListTokens(const v1::ListTokensRequest& r, v1::ListTokensResponse* out) {
    return Unary(*admin_, &v1::AdminService::Stub::ListTokens, r, out);
  }
  grpc::Status RevokeToken(const v1::RevokeTokenRequest& r, v1::Token* out) {
    return Unary(*admin_, &v1::AdminService::Stub::RevokeToken, r, out);
  }
  grpc::Status CreateBackup(const v1::CreateBackupRequest& r, v1::Backup* out,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    return Unary(*admin_, &v1::AdminService::Stub::CreateBackup, r, out, timeout);
  }
  grpc::Status ListMembers(const v1::ListMembersRequest& r, v1::ListMembersResponse* out) {
    return Unary(*admin_, &v1::AdminService::Stub::ListMembers, r, out);
  }
  // Not retried on UNAVAILABLE: a move cut short is retried by its caller, who sees why.
  grpc::Status MoveDataset(const v1::MoveDatasetRequest& r, v1::MoveDatasetResponse* out,
                           std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    return Unary(*admin_, &v1::AdminService::Stub::MoveDataset, r, out, timeout, /*retry=*/false);
  }

 private:
  explicit Client(Options options) : options_(std::move(options)) {}

  // `retry`: whether an UNAVAILABLE attempt may be sent again (see the top of this file).
  template <typename Stub, typename Request, typename Response>
  grpc::Status Unary(Stub& stub,
                     grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                     const Request& request, Response* response,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                     bool retry = true) {
    std::chrono::milliseconds backoff = options_.initial_backoff;
    for (int attempt = 1;; ++attempt) {
      auto context = NewContext(timeout);
      grpc::Status status = (stub.*method)(context.get(), request, response);
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE || !retry ||
          attempt >= options_.max_attempts) {
        return status;
      }
      std::this_thread::sleep_for(backoff);
      backoff *= 2;
    }
  }

  // Reads a server stream of messages whose oneof holds progress or the result, retrying as
  // Evaluate describes. `result` extracts the final message's result, or nullptr.
  template <typename Request, typename Message, typename Result>
  absl::StatusOr<Result> ProgressStream(
      std::unique_ptr<grpc::ClientReader<Message>> (v1::CurationService::Stub::*method)(
          grpc::ClientContext*, const Request&),
      const Request& request, const ProgressCallback& progress, std::chrono::milliseconds timeout,
      const Result* (*result)(const Message&));

  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CurationService::Stub> curation_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

// OK for an operation that is not done or succeeded; otherwise its error as a status
// (CANCELLED for a cancelled one), so that callers handle a failed job like a failed call.
grpc::Status OperationStatus(const v1::Operation& op);

// "SUCCEEDED", "RUNNING", ...: the state's name without the enum's prefix.
std::string StateName(v1::OperationState state);

}  // namespace curation::client
