// Calls from one member to another: a channel per member address, and the client context
// that carries a forwarded call's identity and deadline. The only part of cluster/ that knows
// gRPC, since forwarding is a transport matter.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace curation::cluster {

// Metadata key a member sets on every call it forwards, naming itself. A call that carries it
// is answered by the member it reached, never forwarded again: a directory entry that changed
// under a call (a move) makes it UNAVAILABLE, and the client's retry finds the new owner.
inline constexpr char kForwardedByHeader[] = "x-curation-forwarded-by";
// Carries the cluster's member key on calls a member makes for no caller
// (MemberService.PartitionStep from a job).
inline constexpr char kMemberKeyHeader[] = "x-curation-member-key";

// True if the call came from another member.
bool IsForwarded(const grpc::ServerContext& context);

class Channels {
 public:
  explicit Channels(std::string self_member, int max_message_bytes)
      : self_(std::move(self_member)), max_message_bytes_(max_message_bytes) {}

  // One channel per address, kept for the process's life (gRPC reconnects by itself).
  std::shared_ptr<grpc::Channel> Get(const std::string& address);

  // A context for forwarding `incoming`: the caller's "authorization" (the owner checks the
  // same token: tokens are the cluster's), the caller's remaining deadline and cancellation,
  // and kForwardedByHeader. Calls without a deadline get none.
  std::unique_ptr<grpc::ClientContext> ForwardContext(const grpc::ServerContext& incoming) const;
  // A context for a member's own call to another (lists and lookups fanned out), carrying the
  // caller's authorization and a deadline of at most `timeout`.
  std::unique_ptr<grpc::ClientContext> FanOutContext(const grpc::ServerContext& incoming,
                                                     std::chrono::milliseconds timeout) const;

  const std::string& self() const { return self_; }

 private:
  const std::string self_;
  const int max_message_bytes_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

// Trailing metadata a member adds to every forwarded call it answered itself, so the
// forwarding member can tell the owner's own UNAVAILABLE from an unreachable owner.
inline constexpr char kAnsweredByTrailer[] = "x-curation-answered-by";

// What a forward's status tells its caller: if the owner did not answer (down or unreachable),
// UNAVAILABLE saying that `what` (e.g. "dataset d1") is held by `member`, which is
// unavailable; else the owner's answer, unchanged.
grpc::Status ForwardFailure(const grpc::Status& status, const grpc::ClientContext& context,
                            const std::string& what, const std::string& member,
                            const std::string& address);

}  // namespace curation::cluster
