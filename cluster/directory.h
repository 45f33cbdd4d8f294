// The cluster's directory: which member holds each dataset (/curation/datasets/<tenant>/<name>
// -> storage::PlacementRecord), cached in memory and kept current by a watch, so routing a call
// costs no etcd round trip. Every change is an etcd transaction on the entry's mod_revision,
// so two members racing for one name, or a move racing a delete, cannot both win.
//
// Internal dataset ids come from one counter (/curation/next_dataset_id): unique in the
// cluster, so a dataset keeps its store keys and its selection ids ("sel-<internal id>-...")
// when it moves, and any member can route a selection id by its internal id.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/etcd_client.h"
#include "curation/storage/cluster.pb.h"

namespace curation::cluster {

inline constexpr char kDatasetsPrefix[] = "/curation/datasets/";

struct Placement {
  storage::PlacementRecord record;
  int64_t mod_revision = 0;  // of its etcd key: the version every change compares against
};

class Directory {
 public:
  // Reads the whole directory and starts watching it. UNAVAILABLE if etcd does not answer.
  static absl::StatusOr<std::unique_ptr<Directory>> Open(EtcdClient* etcd);
  ~Directory();

  // The dataset's placement from the cache; on a miss, from etcd itself (a create made through
  // another member a moment ago may not have reached the watch yet). nullopt if there is none
  // or etcd cannot say.
  std::optional<Placement> Find(const std::string& tenant, const std::string& name);
  // The placement as etcd holds it now (no cache): for decisions a stale cache would get
  // wrong. nullopt if there is none; UNAVAILABLE if etcd cannot say.
  absl::StatusOr<std::optional<Placement>> Fetch(const std::string& tenant,
                                                 const std::string& name);
  // By internal id, from the cache.
  std::optional<Placement> FindByInternalId(uint64_t internal_id) const;
  // The tenant's placements in name order (READY ones and those being created or deleted).
  std::vector<Placement> List(const std::string& tenant) const;
  // Every placement, for ListMembers.
  std::vector<Placement> All() const;

  // A fresh cluster-unique internal id.
  absl::StatusOr<uint64_t> AllocateInternalId();
  // Makes sure AllocateInternalId never returns `id` or below (a member that held datasets
  // before it joined keeps their ids).
  absl::Status ReserveInternalIdsThrough(uint64_t id);

  // Reserves tenant/name on `member` (state CREATING) with `internal_id`, and for a
  // partitioned dataset its `partitions` (the first being `member` and `internal_id`).
  // ALREADY_EXISTS if the name has an entry in any state.
  absl::StatusOr<Placement> Reserve(
      const std::string& tenant, const std::string& name, const std::string& member,
      uint64_t internal_id, const std::vector<storage::PartitionPlacement>& partitions = {});
  // Replaces `placement`'s record with `updated` if nobody changed it since it was read.
  // ABORTED if someone did. Returns the new placement.
  absl::StatusOr<Placement> Update(const Placement& placement,
                                   const storage::PlacementRecord& updated);
  // Removes the entry if nobody changed it since it was read (ABORTED otherwise).
  absl::Status Remove(const Placement& placement);
  // Records a dataset this member already holds (start-up), READY. OK if the entry already
  // names this member with this internal id; ALREADY_EXISTS if it names another.
  absl::Status Claim(const storage::PlacementRecord& record);

 private:
  explicit Directory(EtcdClient* etcd) : etcd_(etcd) {}
  void Apply(const std::string& key, const std::optional<Placement>& placement);
  // Replaces the cache with what etcd holds now; returns the revision it was read at.
  absl::StatusOr<int64_t> ReadAll();
  // ReadAll, then a watch from there on.
  absl::Status Load();
  // Drops `key` from the cache unless the cached entry is newer than `mod_revision`.
  void Forget(const std::string& key, int64_t mod_revision);

  EtcdClient* etcd_;
  mutable std::mutex mu_;
  std::map<std::string, Placement> by_key_;  // "<tenant>/<name>"
  std::map<uint64_t, std::string> key_by_id_;
  std::unique_ptr<Watch> watch_;
};

// "<tenant>/<name>": a tenant's and a dataset's names have no '/'.
std::string PlacementKey(const std::string& tenant, const std::string& name);

}  // namespace curation::cluster
