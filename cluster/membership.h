// This server's membership of the cluster: its key /curation/members/<name> under an etcd
// lease that it keeps alive, and every member's published record, kept current by a watch.
//
// The lease is what makes a member the owner of its datasets. A member whose lease lapsed (etcd
// unreachable for longer than the lease, or the process stalled) may have been replaced by
// another process of the same name, so it accepts no writes (writable() is false) until it
// has registered again; reads go on from what it holds.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/etcd_client.h"
#include "curation/storage/cluster.pb.h"

namespace curation::cluster {

inline constexpr char kMembersPrefix[] = "/curation/members/";

// Wall-clock milliseconds since the epoch, as records in etcd carry them.
int64_t NowUnixMs();

// What a member publishes about its load.
struct MemberLoad {
  int64_t datasets = 0;
  int64_t stored_bytes = 0;
};

class Membership {
 public:
  struct Options {
    std::string name;     // --member
    std::string address;  // --advertise
    int64_t lease_seconds = 10;
    // Read every few seconds and published when it changed.
    std::function<MemberLoad()> load;
  };

  // Registers `options.name`. A key of that name held under another lease (a predecessor
  // killed without revoking it) is waited out for up to two lease periods, then the join fails
  // ALREADY_EXISTS naming the address that holds it: two live processes never share a name.
  // UNAVAILABLE if etcd does not answer.
  static absl::StatusOr<std::unique_ptr<Membership>> Join(EtcdClient* etcd, Options options);
  // Revokes the lease (the member's key goes at once) and stops the threads.
  ~Membership();

  const std::string& name() const { return options_.name; }
  const std::string& address() const { return options_.address; }

  // True while the lease is known to be alive: renewed less than a lease period ago.
  bool writable() const;
  // OK, or UNAVAILABLE explaining why this member accepts no writes now.
  absl::Status CheckWritable() const;

  // Registered members, by name, as the watch last saw them.
  std::map<std::string, storage::MemberRecord> Members() const;
  std::optional<storage::MemberRecord> Find(const std::string& name) const;

  // Publishes the load now (after a create or delete, so placement sees it at once).
  void PublishLoad();

 private:
  Membership(EtcdClient* etcd, Options options)
      : etcd_(etcd), options_(std::move(options)), start_unix_ms_(NowUnixMs()) {}
  absl::Status Register(std::chrono::steady_clock::time_point give_up);
  void KeepAliveLoop();
  void ApplyEvents(const std::vector<WatchEvent>& events);
  // Replaces members_ with what etcd holds now; returns the revision it was read at.
  absl::StatusOr<int64_t> ReadAll();
  // ReadAll, then a watch from there on.
  absl::Status Resync();
  std::string Record(const MemberLoad& load) const;

  EtcdClient* etcd_;
  const Options options_;
  const int64_t start_unix_ms_;

  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  int64_t lease_ = 0;
  std::chrono::steady_clock::time_point lease_valid_until_{};
  std::string why_not_writable_;
  std::optional<MemberLoad> published_;
  std::map<std::string, storage::MemberRecord> members_;

  std::unique_ptr<Watch> watch_;
  std::thread keepalive_;
};

// JSON for etcd values (readable with etcdctl) and back.
std::string ToJson(const google::protobuf::Message& message);
absl::Status FromJson(const std::string& json, google::protobuf::Message* message);

}  // namespace curation::cluster
