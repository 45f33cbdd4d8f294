#include "curation/client.h"

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

}  // namespace curation::client
