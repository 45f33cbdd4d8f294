// This server as a member of a cluster (--cluster-etcd): its etcd client, membership, the
// directory of datasets, the channels to the other members, and the work that keeps them in
// step with the local store (claiming the datasets it holds, sweeping its placements that a
// crash left half-made, moving datasets away). main.cc builds one when --cluster-etcd is set;
// RoutingService and the admin RPCs use it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/directory.h"
#include "cluster/etcd_client.h"
#include "cluster/forwarding.h"
#include "cluster/membership.h"
#include "curation/v1/admin.pb.h"
#include "jobs/operations.h"
#include "server/curation_service.h"
#include "store/store.h"

namespace curation::server {

class Catalog;
class TenantRegistry;

// The longest member name (--member, and where a request names a member).
inline constexpr size_t kMaxMemberName = 128;

class ClusterNode {
 public:
  struct Options {
    std::vector<std::string> etcd_endpoints;
    std::string member;     // --member
    std::string advertise;  // --advertise
    int64_t lease_seconds = 10;
    int max_message_bytes = 64 << 20;
  };

  // Connects to etcd, adopts the cluster's selection-id key (the first member's), opens the
  // directory and registers this member. UNAVAILABLE if etcd does not answer; ALREADY_EXISTS
  // if a live process holds the member name. `store` must outlive the node.
  static absl::StatusOr<std::unique_ptr<ClusterNode>> Join(const Options& options,
                                                           store::Store* store);
  // Leaves the cluster (revokes the lease) and stops the sweeper.
  ~ClusterNode();

  // After the catalog has loaded: records every local dataset in the directory (a single node
  // turned member keeps its datasets and their internal ids), then starts the sweeper.
  // `operations` tells a move whether the dataset has jobs in flight; `tenants`' local usage
  // is the load the member publishes (nothing is published as load before this).
  absl::Status Adopt(Catalog* catalog, jobs::Operations* operations, TenantRegistry* tenants);

  // CurationService::SetClusterPlacement's hook: the entry being created (CREATING) must name
  // this member, as the holder of the dataset or of one of its partitions.
  absl::StatusOr<CurationService::Reserved> ReservedInternalId(const std::string& tenant,
                                                               const std::string& name);

  // AdminService.ListMembers: registered members, plus members that hold datasets but are not
  // registered (down), each with a health check from here.
  std::vector<v1::Member> ListMembers();

  const std::string& name() const { return options_.member; }
  cluster::EtcdClient* etcd() { return etcd_.get(); }
  cluster::Membership* membership() { return membership_.get(); }
  cluster::Directory* directory() { return directory_.get(); }
  cluster::Channels* channels() { return channels_.get(); }
  store::Store* store() { return store_; }
  Catalog* catalog() { return catalog_.load(); }
  jobs::Operations* operations() { return operations_; }

 private:
  ClusterNode(const Options& options, store::Store* store) : options_(options), store_(store) {}
  // The tenants' usage on this member, summed: kept current by every write, so publishing it
  // every few seconds reads nothing from the store.
  cluster::MemberLoad Load() const;
  // Settles this member's placements that a crash left CREATING or DELETING, and deletes the
  // local partitions that no directory entry lists (their dataset was deleted, or its create
  // undone, while this member could not be reached).
  void Sweep();
  // Deletes a local dataset (or partition) and gives its usage back to its tenant.
  absl::Status DeleteLocal(const std::string& tenant, const std::string& name);

  const Options options_;
  store::Store* store_;
  std::atomic<Catalog*> catalog_{nullptr};
  jobs::Operations* operations_ = nullptr;
  std::atomic<TenantRegistry*> tenants_{nullptr};
  std::unique_ptr<cluster::EtcdClient> etcd_;
  std::unique_ptr<cluster::Directory> directory_;
  std::unique_ptr<cluster::Membership> membership_;
  std::unique_ptr<cluster::Channels> channels_;

  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread sweeper_;
};

}  // namespace curation::server
