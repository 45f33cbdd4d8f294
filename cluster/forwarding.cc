#include "cluster/forwarding.h"

#include "absl/strings/str_cat.h"

namespace curation::cluster {

bool IsForwarded(const grpc::ServerContext& context) {
  return context.client_metadata().count(kForwardedByHeader) > 0;
}

std::shared_ptr<grpc::Channel> Channels::Get(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = channels_.find(address);
  if (it != channels_.end()) return it->second;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes_);
  args.SetMaxSendMessageSize(max_message_bytes_);
  // A restarted member is tried again within a second, not after gRPC's default backoff of
  // up to two minutes.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  channels_[address] = channel;
  return channel;
}

namespace {

void CopyIdentity(const grpc::ServerContext& incoming, grpc::ClientContext* out,
                  const std::string& self) {
  auto range = incoming.client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) {
    out->AddMetadata("authorization", std::string(it->second.data(), it->second.size()));
  }
  out->AddMetadata(kForwardedByHeader, self);
}

}  // namespace

std::unique_ptr<grpc::ClientContext> Channels::ForwardContext(
    const grpc::ServerContext& incoming) const {
  // A child of the incoming call: its deadline, and its cancellation (a caller who leaves a
  // forwarded Select stops the job on the owner, as it would have here).
  auto out = grpc::ClientContext::FromServerContext(incoming);
  CopyIdentity(incoming, out.get(), self_);
  return out;
}

std::unique_ptr<grpc::ClientContext> Channels::FanOutContext(
    const grpc::ServerContext& incoming, std::chrono::milliseconds timeout) const {
  auto out = std::make_unique<grpc::ClientContext>();
  CopyIdentity(incoming, out.get(), self_);
  out->set_deadline(std::min(incoming.deadline(), std::chrono::system_clock::now() + timeout));
  return out;
}

grpc::Status ForwardFailure(const grpc::Status& status, const grpc::ClientContext& context,
                            const std::string& what, const std::string& member,
                            const std::string& address) {
  if (status.ok()) return status;
  // The owner's own answer (a dataset being moved, a lapsed lease) already says why.
  if (context.GetServerTrailingMetadata().count(kAnsweredByTrailer) > 0) return status;
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return status;
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat(what, " is held by member ", member,
                                   address.empty() ? "" : absl::StrCat(" (", address, ")"),
                                   ", which is unavailable: ", status.error_message()));
}

}  // namespace curation::cluster
