#include "curation/client.h"

#include <algorithm>
#include <optional>
#include <string_view>

#include "grpc/health/v1/health.grpc.pb.h"

namespace curation::client {

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const Options& options) {
  if (options.tls_cert_chain.empty() != options.tls_private_key.empty()) {
    return absl::InvalidArgumentError("a client certificate needs its private key and back");
  }
  auto client = std::unique_ptr<Client>(new Client(options));
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_root_certs.empty() || !options.tls_cert_chain.empty()) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = options.tls_root_certs;
    tls.pem_cert_chain = options.tls_cert_chain;
    tls.pem_private_key = options.tls_private_key;
    credentials = grpc::SslCredentials(tls);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  args.SetMaxSendMessageSize(64 << 20);
  client->channel_ = grpc::CreateCustomChannel(options.server, credentials, args);
  client->curation_ = v1::CurationService::NewStub(client->channel_);
  client->admin_ = v1::AdminService::NewStub(client->channel_);
  return client;
}

std::unique_ptr<grpc::ClientContext> Client::NewContext(std::chrono::milliseconds timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  context->set_deadline(std::chrono::system_clock::now() +
                        (timeout.count() > 0 ? timeout : options_.timeout));
  return context;
}

absl::StatusOr<bool> Client::Serving() {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  auto context = NewContext();
  grpc::Status s = health->Check(context.get(), request, &response);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

template <typename Request, typename Message, typename Result>
absl::StatusOr<Result> Client::ProgressStream(
    std::unique_ptr<grpc::ClientReader<Message>> (v1::CurationService::Stub::*method)(
        grpc::ClientContext*, const Request&),
    const Request& request, const ProgressCallback& progress, std::chrono::milliseconds timeout,
    const Result* (*result)(const Message&)) {
  std::chrono::milliseconds backoff = options_.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    auto context = NewContext(timeout);
    auto stream = ((*curation_).*method)(context.get(), request);
    Message message;
    std::optional<Result> out;
    bool received = false;
    while (stream->Read(&message)) {
      received = true;
      if (const Result* r = result(message); r != nullptr) {
        out = *r;
      } else if (message.has_progress() && progress) {
        progress(message.progress());
      }
    }
    grpc::Status status = stream->Finish();
    if (status.ok()) {
      if (!out) return absl::InternalError("the server's stream ended without a result");
      return *std::move(out);
    }
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || received ||
        attempt >= options_.max_attempts) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    std::this_thread::sleep_for(backoff);
    backoff *= 2;
  }
}

absl::StatusOr<v1::Evaluation> Client::Evaluate(const v1::EvaluateSelectionRequest& r,
                                                const ProgressCallback& progress,
                                                std::chrono::milliseconds timeout) {
  return ProgressStream<v1::EvaluateSelectionRequest, v1::EvaluateSelectionProgress,
                        v1::Evaluation>(&v1::CurationService::Stub::EvaluateSelection, r, progress,
                                        timeout, [](const v1::EvaluateSelectionProgress& m) {
                                          return m.has_evaluation() ? &m.evaluation() : nullptr;
                                        });
}

absl::StatusOr<v1::BudgetRecommendation> Client::RecommendBudget(
    const v1::RecommendBudgetRequest& r, const ProgressCallback& progress,
    std::chrono::milliseconds timeout) {
  return ProgressStream<v1::RecommendBudgetRequest, v1::RecommendBudgetProgress,
                        v1::BudgetRecommendation>(
      &v1::CurationService::Stub::RecommendBudget, r, progress, timeout,
      [](const v1::RecommendBudgetProgress& m) {
        return m.has_recommendation() ? &m.recommendation() : nullptr;
      });
}

grpc::Status Client::WaitOperation(const v1::WaitOperationRequest& r, v1::Operation* out) {
  // The server's own default and cap (0 = 60 s, at most 600 s); a wait outside them is refused
  // by the server, so the extra deadline does not matter for it.
  const double wait_seconds = r.timeout_seconds() > 0 ? std::min(r.timeout_seconds(), 600.0) : 60;
  const auto deadline =
      std::chrono::milliseconds(static_cast<int64_t>(wait_seconds * 1000)) + options_.timeout;
  return Unary(*curation_, &v1::CurationService::Stub::WaitOperation, r, out, deadline);
}

absl::StatusOr<v1::Operation> Client::AwaitOperation(const std::string& name,
                                                     std::chrono::milliseconds timeout,
                                                     std::chrono::milliseconds poll,
                                                     const OperationCallback& update) {
  using Clock = std::chrono::steady_clock;
  const bool bounded = timeout.count() > 0;
  const Clock::time_point end = bounded ? Clock::now() + timeout : Clock::time_point::max();
  // The server refuses waits outside (0, 600] s.
  poll = std::clamp(poll, std::chrono::milliseconds(1), std::chrono::milliseconds(600'000));
  v1::WaitOperationRequest request;
  request.set_name(name);
  for (;;) {
    std::chrono::milliseconds wait = poll;
    if (bounded) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      wait = std::clamp(left, std::chrono::milliseconds(1), poll);
    }
    request.set_timeout_seconds(std::chrono::duration<double>(wait).count());
    v1::Operation op;
    grpc::Status s = WaitOperation(request, &op);
    if (!s.ok())
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    if (update) update(op);
    if (op.done() || (bounded && Clock::now() >= end)) return op;
  }
}

grpc::Status OperationStatus(const v1::Operation& op) {
  if (!op.done() || !op.has_error()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(op.error().code()), op.error().message());
}

std::string StateName(v1::OperationState state) {
  constexpr std::string_view kPrefix = "OPERATION_STATE_";
  std::string name = v1::OperationState_Name(state);
  return name.rfind(kPrefix, 0) == 0 ? name.substr(kPrefix.size()) : name;
}

}  // namespace curation::client
