// A small client of etcd's v3 API over gRPC (etcdserverpb.KV, Lease and Watch): what the
// cluster needs and nothing more. Every call goes to the endpoint that answered last, then to
// the others in order, again and again within its call_timeout; a call that reaches none is
// UNAVAILABLE "etcd unreachable (<endpoints>): ...", so callers can tell "etcd is down" from
// their own errors. etcd's own refusals keep etcd's code ("etcd: ..."). Thread-safe.
//
// A write whose reply was lost (UNAVAILABLE after it reached etcd) may have been applied, and
// a retry inside one call can then see its own write: PutIf returns false with `current`
// holding the value it wrote. Callers that care compare `current` with what they wrote.
//
// Why gRPC and not the JSON gateway: gRPC is already how this server talks, watches and lease
// keep-alives are native streams rather than chunked HTTP bodies to parse, and the messages
// are checked by the compiler. The .proto files are a trimmed copy of etcd 3.4's (proto/etcd/).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace curation::cluster {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // 0 only in a watch's delete event
  int64_t lease = 0;
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for a delete: key and mod_revision only
};

// A running watch; destroying it cancels its stream and joins its thread within
// milliseconds. It may outlive the client that started it, but must not be destroyed from
// its own callbacks (the thread would join itself).
class Watch {
 public:
  virtual ~Watch() = default;
};

class EtcdClient {
 public:
  struct Options {
    // Each call's deadline: past it, the call is UNAVAILABLE (etcd unreachable or stalled).
    // 1 ms to 10 minutes.
    std::chrono::milliseconds call_timeout{2000};
  };

  // `endpoints` are "host:port" or "[v6]:port" (an "http://" prefix is accepted and dropped;
  // TLS is not supported). Connects lazily: this succeeds while etcd is down, and the first
  // call then fails UNAVAILABLE. INVALID_ARGUMENT ("endpoints[i]: ...") if the list is empty
  // or an endpoint malformed, or call_timeout out of range.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(
      const std::vector<std::string>& endpoints, const Options& options);
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(
      const std::vector<std::string>& endpoints) {
    return Create(endpoints, Options{});
  }
  virtual ~EtcdClient() = default;

  // The key's value, or nullopt if absent.
  virtual absl::StatusOr<std::optional<KeyValue>> Get(const std::string& key) = 0;
  // Every key with this prefix, in key order, and the store's revision they were read at
  // (a watch started from revision + 1 misses nothing).
  virtual absl::StatusOr<std::vector<KeyValue>> GetPrefix(const std::string& prefix,
                                                          int64_t* revision = nullptr) = 0;
  // Creates or replaces; `lease` 0 for none. Returns the new mod_revision.
  virtual absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                                      int64_t lease = 0) = 0;
  // Writes `value` only if the key's mod_revision is `expected_mod_revision` (0: the key must
  // be absent), in one transaction. Returns whether it wrote; on false, `current` (if given)
  // receives what the key holds now (nullopt if absent). INVALID_ARGUMENT if
  // expected_mod_revision < 0.
  virtual absl::StatusOr<bool> PutIf(const std::string& key, const std::string& value,
                                     int64_t expected_mod_revision, int64_t lease = 0,
                                     std::optional<KeyValue>* current = nullptr) = 0;
  // Deletes the key only if its mod_revision is `expected_mod_revision` (> 0, else
  // INVALID_ARGUMENT). Returns whether it deleted.
  virtual absl::StatusOr<bool> DeleteIf(const std::string& key, int64_t expected_mod_revision) = 0;
  // Deletes the key (absent is fine). Returns how many keys went (0 or 1).
  virtual absl::StatusOr<int64_t> Delete(const std::string& key) = 0;
  // Deletes every key with this prefix ("" is every key). Returns how many went.
  virtual absl::StatusOr<int64_t> DeletePrefix(const std::string& prefix) = 0;

  // A lease of `ttl_seconds` (1 to etcd's maximum, 9e9, else INVALID_ARGUMENT; etcd raises
  // a TTL below its minimum, about 2 s with default timings); returns its id.
  virtual absl::StatusOr<int64_t> GrantLease(int64_t ttl_seconds) = 0;
  // Renews the lease once. Returns the remaining TTL in seconds; NOT_FOUND if the lease has
  // expired or was revoked (its keys are gone).
  virtual absl::StatusOr<int64_t> KeepAlive(int64_t lease) = 0;
  // Revokes the lease, deleting its keys (NOT_FOUND if it is gone already).
  virtual absl::Status RevokeLease(int64_t lease) = 0;

  // Watches every key with `prefix` from `start_revision` (0: from now) on a thread of its
  // own: `on_events` gets each batch of changes in revision order. If the stream breaks (etcd
  // restarted or unreachable) the watch reconnects by itself, resuming after the last revision
  // it delivered, and calls `on_error` (may be empty) once per break. If etcd compacted past
  // that revision, `on_error` gets OUT_OF_RANGE and the watch resumes from now: the caller must
  // then re-read the prefix (GetPrefix) to resynchronise. The callbacks run on the watch's
  // thread, one at a time. A negative start_revision calls `on_error` with INVALID_ARGUMENT
  // at once and returns a watch that does nothing.
  using EventsFn = std::function<void(const std::vector<WatchEvent>& events)>;
  using ErrorFn = std::function<void(const absl::Status& status)>;
  virtual std::unique_ptr<Watch> WatchPrefix(const std::string& prefix, int64_t start_revision,
                                             EventsFn on_events, ErrorFn on_error = nullptr) = 0;
};

}  // namespace curation::cluster
