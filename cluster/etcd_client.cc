#include "cluster/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"

namespace curation::cluster {
namespace {

using Clock = std::chrono::steady_clock;

// etcd's own bound on a lease's TTL (lease.MaxLeaseTTL).
constexpr int64_t kMaxLeaseTtlSeconds = 9'000'000'000;
constexpr std::chrono::milliseconds kMaxCallTimeout{10 * 60 * 1000};
// Between rounds over every endpoint within one call: long enough not to spin, short against
// call_timeout so a restarting etcd is picked up within the call.
constexpr std::chrono::milliseconds kRetryPause{50};
constexpr std::chrono::milliseconds kWatchMinBackoff{100};
constexpr std::chrono::milliseconds kWatchMaxBackoff{2000};

struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

// "host:port", an "http://" prefix dropped; the host may be a bracketed IPv6 address.
absl::StatusOr<std::string> ParseEndpoint(size_t index, std::string endpoint) {
  const std::string field = absl::StrCat("endpoints[", index, "]");
  if (absl::StartsWith(endpoint, "http://")) endpoint.erase(0, 7);
  if (endpoint.find("://") != std::string::npos) {
    return InvalidField(field, absl::StrCat("\"", endpoint, "\": only http:// is supported"));
  }
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidField(field, absl::StrCat("\"", endpoint, "\" is not host:port"));
  }
  const std::string host = endpoint.substr(0, colon);
  const bool bracketed = host.front() == '[' && host.back() == ']';
  if (!bracketed && host.find_first_of(":[]/ ") != std::string::npos) {
    return InvalidField(field, absl::StrCat("\"", endpoint, "\" has a malformed host"));
  }
  int port = 0;
  if (!absl::SimpleAtoi(endpoint.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return InvalidField(field, absl::StrCat("\"", endpoint, "\" has no port in 1..65535"));
  }
  return endpoint;
}

// The smallest key greater than every key with `prefix`: etcd's range_end for a prefix.
std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  // Every key: etcd reads range_end "\0" as "to the end of the keyspace".
  return std::string(1, '\0');
}

// The first key of a prefix's range: etcd refuses an empty key, and reads key "\0" with
// range_end "\0" as the whole keyspace.
std::string PrefixStart(const std::string& prefix) {
  return prefix.empty() ? std::string(1, '\0') : prefix;
}

KeyValue FromProto(const mvccpb::KeyValue& kv) {
  KeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

// Failures of the way to etcd, worth another endpoint or another try; everything else is
// etcd's answer to the request itself.
bool IsTransportFailure(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd: ", status.error_message()));
}

// What the client and its watches share, so a watch may outlive the client.
struct Shared {
  std::vector<Endpoint> endpoints;
  std::string names;  // "a:1,b:2", for messages
  std::chrono::milliseconds call_timeout;
  // The endpoint that answered last; every call starts there.
  std::atomic<size_t> preferred{0};

  absl::Status Unreachable(absl::string_view what, const grpc::Status& last) const {
    return absl::UnavailableError(
        absl::StrCat("etcd unreachable (", names, "): ", what, ": ", last.error_message()));
  }

  // Runs `attempt(endpoint, context)` on the preferred endpoint, then on the others, then
  // again after a pause, until one answers or call_timeout has passed.
  template <typename Attempt>
  absl::Status Call(absl::string_view what, Attempt attempt) {
    const auto deadline = Clock::now() + call_timeout;
    const size_t n = endpoints.size();
    grpc::Status last(grpc::StatusCode::DEADLINE_EXCEEDED, "no attempt made");
    while (true) {
      const size_t start = preferred.load(std::memory_order_relaxed);
      for (size_t i = 0; i < n; ++i) {
        const size_t index = (start + i) % n;
        grpc::ClientContext context;
        // gRPC takes system_clock deadlines only.
        context.set_deadline(std::chrono::system_clock::now() + (deadline - Clock::now()));
        grpc::Status status = attempt(endpoints[index], &context);
        if (status.ok() || !IsTransportFailure(status.error_code())) {
          preferred.store(index, std::memory_order_relaxed);
          return status.ok() ? absl::OkStatus() : FromGrpc(status);
        }
        last = std::move(status);
        if (Clock::now() >= deadline) return Unreachable(what, last);
      }
      const auto now = Clock::now();
      if (now >= deadline) return Unreachable(what, last);
      std::this_thread::sleep_for(std::min<Clock::duration>(kRetryPause, deadline - now));
    }
  }
};

class WatchImpl : public Watch {
 public:
  WatchImpl(std::shared_ptr<Shared> shared, std::string prefix, int64_t start_revision,
            EtcdClient::EventsFn on_events, EtcdClient::ErrorFn on_error)
      : shared_(std::move(shared)),
        prefix_(std::move(prefix)),
        next_revision_(start_revision),
        on_events_(std::move(on_events)),
        on_error_(std::move(on_error)) {
    thread_ = std::thread([this] { Run(); });
  }

  ~WatchImpl() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    wake_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    auto backoff = kWatchMinBackoff;
    bool reported = false;  // on_error already called for the current break
    size_t index = shared_->preferred.load(std::memory_order_relaxed);
    while (true) {
      grpc::ClientContext context;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
        context_ = &context;
      }
      const Endpoint& endpoint = shared_->endpoints[index % shared_->endpoints.size()];
      StreamOutcome outcome = RunStream(endpoint, &context, &backoff, &reported);
      {
        std::lock_guard<std::mutex> lock(mu_);
        context_ = nullptr;
        if (stopping_) return;
      }
      if (outcome.compacted) continue;  // resume from now at once
      if (!reported && on_error_) {
        on_error_(absl::UnavailableError(absl::StrCat("etcd watch on \"", prefix_, "\" broke (",
                                                      endpoint.address,
                                                      "): ", outcome.status.error_message())));
      }
      reported = true;
      ++index;
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, backoff, [this] { return stopping_; });
      if (stopping_) return;
      backoff = std::min(backoff * 2, kWatchMaxBackoff);
    }
  }

  struct StreamOutcome {
    grpc::Status status;
    bool compacted = false;
  };

  StreamOutcome RunStream(const Endpoint& endpoint, grpc::ClientContext* context,
                          std::chrono::milliseconds* backoff, bool* reported) {
    auto stream = endpoint.watch->Watch(context);
    etcdserverpb::WatchRequest request;
    auto* create = request.mutable_create_request();
    create->set_key(PrefixStart(prefix_));
    create->set_range_end(PrefixEnd(prefix_));
    create->set_start_revision(next_revision_);
    StreamOutcome outcome;
    if (stream->Write(request)) {
      etcdserverpb::WatchResponse response;
      std::vector<WatchEvent> events;
      while (stream->Read(&response)) {
        if (response.created()) {
          // From now: the stream's revision is where a reconnect must resume.
          if (next_revision_ == 0) next_revision_ = response.header().revision() + 1;
          *backoff = kWatchMinBackoff;
          *reported = false;
        }
        if (response.compact_revision() != 0) {
          if (on_error_) {
            on_error_(absl::OutOfRangeError(absl::StrCat(
                "etcd watch on \"", prefix_, "\": revision ", next_revision_,
                " was compacted (etcd keeps revisions from ", response.compact_revision(),
                "); resuming from now: re-read the prefix")));
          }
          next_revision_ = 0;
          outcome.compacted = true;
          context->TryCancel();
          break;
        }
        if (response.canceled()) break;
        events.clear();
        for (const auto& event : response.events()) {
          // A reconnect can replay what was delivered before the break.
          if (event.kv().mod_revision() < next_revision_) continue;
          WatchEvent out;
          out.type = event.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete
                                                           : WatchEvent::Type::kPut;
          out.kv = FromProto(event.kv());
          events.push_back(std::move(out));
        }
        if (!events.empty()) {
          next_revision_ = events.back().kv.mod_revision + 1;
          on_events_(events);
        }
      }
    }
    // Finish only after the server has ended the stream; cancel so it does.
    context->TryCancel();
    outcome.status = stream->Finish();
    if (outcome.status.ok()) {
      outcome.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the watch was cancelled");
    }
    return outcome;
  }

  const std::shared_ptr<Shared> shared_;
  const std::string prefix_;
  int64_t next_revision_;  // 0: from now; only the watch thread touches it
  const EtcdClient::EventsFn on_events_;
  const EtcdClient::ErrorFn on_error_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;                   // guarded by mu_
  grpc::ClientContext* context_ = nullptr;  // guarded by mu_: the stream to cancel
  std::thread thread_;
};

// A watch that never started (bad arguments): nothing to stop.
class NoWatch : public Watch {};

class EtcdClientImpl : public EtcdClient {
 public:
  explicit EtcdClientImpl(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  absl::StatusOr<std::optional<KeyValue>> Get(const std::string& key) override {
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    etcdserverpb::RangeResponse response;
    RETURN_IF_ERROR(shared_->Call("Range", [&](const Endpoint& e, grpc::ClientContext* c) {
      return e.kv->Range(c, request, &response);
    }));
    if (response.kvs_size() == 0) return std::nullopt;
    return FromProto(response.kvs(0));
  }

  absl::StatusOr<std::vector<KeyValue>> GetPrefix(const std::string& prefix,
                                                  int64_t* revision) override {
    etcdserverpb::RangeRequest request;
    request.set_key(PrefixStart(prefix));
    request.set_range_end(PrefixEnd(prefix));
    etcdserverpb::RangeResponse response;
    RETURN_IF_ERROR(shared_->Call("Range", [&](const Endpoint& e, grpc::ClientContext* c) {
      return e.kv->Range(c, request, &response);
    }));
    std::vector<KeyValue> out;
    out.reserve(response.kvs_size());
    for (const auto& kv : response.kvs()) out.push_back(FromProto(kv));
    if (revision != nullptr) *revision = response.header().revision();
    return out;
  }

  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease) override {
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    request.set_lease(lease);
    etcdserverpb::PutResponse response;
    RETURN_IF_ERROR(shared_->Call("Put", [&](const Endpoint& e, grpc::ClientContext* c) {
      return e.kv->Put(c, request, &response);
    }));
    return response.header().revision();
  }

  absl::StatusOr<bool> PutIf(const std::string& key, const std::string& value,
                             int64_t expected_mod_revision, int64_t lease,
                             std::optional<KeyValue>* current) override {
    if (expected_mod_revision < 0) {
      return InvalidField("expected_mod_revision", "must be 0 (absent) or a revision");
    }
    etcdserverpb::TxnRequest request;
    AddModCompare(key, expected_mod_revision, &request);
    auto* put = request.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value);
    put->set_lease(lease);
    request.add_failure()->mutable_request_range()->set_key(key);
    etcdserverpb::TxnResponse response;
    RETURN_IF_ERROR(Txn(request, &response));
    if (response.succeeded()) return true;
    if (current != nullptr) {
      current->reset();
      if (response.responses_size() == 1) {
        const auto& range = response.responses(0).response_range();
        if (range.kvs_size() > 0) *current = FromProto(range.kvs(0));
      }
    }
    return false;
  }

  absl::StatusOr<bool> DeleteIf(const std::string& key, int64_t expected_mod_revision) override {
    if (expected_mod_revision <= 0) {
      return InvalidField("expected_mod_revision", "must be a revision (> 0)");
    }
    etcdserverpb::TxnRequest request;
    AddModCompare(key, expected_mod_revision, &request);
    request.add_success()->mutable_request_delete_range()->set_key(key);
    etcdserverpb::TxnResponse response;
    RETURN_IF_ERROR(Txn(request, &response));
    return response.succeeded() && response.responses_size() == 1 &&
           response.responses(0).response_delete_range().deleted() > 0;
  }

  absl::StatusOr<int64_t> Delete(const std::string& key) override {
    etcdserverpb::DeleteRangeRequest request;
    request.set_key(key);
    return DeleteRange(request);
  }

  absl::StatusOr<int64_t> DeletePrefix(const std::string& prefix) override {
    etcdserverpb::DeleteRangeRequest request;
    request.set_key(PrefixStart(prefix));
    request.set_range_end(PrefixEnd(prefix));
    return DeleteRange(request);
  }

  absl::StatusOr<int64_t> GrantLease(int64_t ttl_seconds) override {
    if (ttl_seconds < 1 || ttl_seconds > kMaxLeaseTtlSeconds) {
      return InvalidField("ttl_seconds",
                          absl::StrCat(ttl_seconds, " is outside 1..", kMaxLeaseTtlSeconds));
    }
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(ttl_seconds);
    etcdserverpb::LeaseGrantResponse response;
    RETURN_IF_ERROR(shared_->Call("LeaseGrant", [&](const Endpoint& e, grpc::ClientContext* c) {
      return e.lease->LeaseGrant(c, request, &response);
    }));
    if (!response.error().empty()) {
      return absl::FailedPreconditionError(absl::StrCat("etcd: LeaseGrant: ", response.error()));
    }
    return response.id();
  }

  absl::StatusOr<int64_t> KeepAlive(int64_t lease) override {
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(lease);
    etcdserverpb::LeaseKeepAliveResponse response;
    RETURN_IF_ERROR(shared_->Call("LeaseKeepAlive", [&](const Endpoint& e, grpc::ClientContext* c) {
      auto stream = e.lease->LeaseKeepAlive(c);
      if (!stream->Write(request)) return stream->Finish();
      stream->WritesDone();
      const bool answered = stream->Read(&response);
      grpc::Status status = stream->Finish();
      if (status.ok() && !answered) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream ended early");
      }
      return status;
    }));
    // etcd answers a renewal of an unknown lease with TTL 0 rather than an error.
    if (response.ttl() <= 0) {
      return absl::NotFoundError(absl::StrCat("etcd: lease ", lease, " not found (expired?)"));
    }
    return response.ttl();
  }

  absl::Status RevokeLease(int64_t lease) override {
    etcdserverpb::LeaseRevokeRequest request;
    request.set_id(lease);
    etcdserverpb::LeaseRevokeResponse response;
    return shared_->Call("LeaseRevoke", [&](const Endpoint& e, grpc::ClientContext* c) {
      return e.lease->LeaseRevoke(c, request, &response);
    });
  }

  std::unique_ptr<Watch> WatchPrefix(const std::string& prefix, int64_t start_revision,
                                     EventsFn on_events, ErrorFn on_error) override {
    if (start_revision < 0) {
      if (on_error) on_error(InvalidField("start_revision", "must be >= 0 (0: from now)"));
      return std::make_unique<NoWatch>();
    }
    return std::make_unique<WatchImpl>(shared_, prefix, start_revision, std::move(on_events),
                                       std::move(on_error));
  }

 private:
  static void AddModCompare(const std::string& key, int64_t mod_revision,
                            etcdserverpb::TxnRequest* request) {
    auto* compare = request->add_compare();
    compare->set_key(key);
    compare->set_target(etcdserverpb::Compare::MOD);
    compare->set_result(etcdserverpb::Compare::EQUAL);
    compare->set_mod_revision(mod_revision);
  }

  absl::Status Txn(const etcdserverpb::TxnRequest& request, etcdserverpb::TxnResponse* response) {
    return shared_->Call("Txn", [&](const Endpoint& e, grpc::ClientContext* c) {
      response->Clear();
      return e.kv->Txn(c, request, response);
    });
  }

  absl::StatusOr<int64_t> DeleteRange(const etcdserverpb::DeleteRangeRequest& request) {
    etcdserverpb::DeleteRangeResponse response;
    RETURN_IF_ERROR(shared_->Call("DeleteRange", [&](const Endpoint& e, grpc::ClientContext* c) {
      return e.kv->DeleteRange(c, request, &response);
    }));
    return response.deleted();
  }

  const std::shared_ptr<Shared> shared_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(
    const std::vector<std::string>& endpoints, const Options& options) {
  if (endpoints.empty()) return InvalidField("endpoints", "empty: name at least one etcd");
  if (options.call_timeout.count() < 1 || options.call_timeout > kMaxCallTimeout) {
    return InvalidField(
        "call_timeout",
        absl::StrCat(options.call_timeout.count(), " ms is outside 1..", kMaxCallTimeout.count()));
  }
  auto shared = std::make_shared<Shared>();
  shared->call_timeout = options.call_timeout;
  std::vector<std::string> names;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    ASSIGN_OR_RETURN(std::string address, ParseEndpoint(i, endpoints[i]));
    names.push_back(address);
  }
  shared->names = absl::StrJoin(names, ",");
  for (const std::string& address : names) {
    grpc::ChannelArguments args;
    // gRPC's default reconnect backoff grows to two minutes; etcd restarting must be picked
    // up within a call's timeout.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Pings find a silently dead etcd under a long watch; etcd accepts one every 5 s at most.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
    // A prefix read can be large; etcd itself caps a request at 1.5 MiB, not a reply.
    args.SetMaxReceiveMessageSize(256 << 20);
    Endpoint endpoint;
    endpoint.address = address;
    endpoint.channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    endpoint.kv = etcdserverpb::KV::NewStub(endpoint.channel);
    endpoint.lease = etcdserverpb::Lease::NewStub(endpoint.channel);
    endpoint.watch = etcdserverpb::Watch::NewStub(endpoint.channel);
    shared->endpoints.push_back(std::move(endpoint));
  }
  return std::unique_ptr<EtcdClient>(std::make_unique<EtcdClientImpl>(std::move(shared)));
}

}  // namespace curation::cluster
