#include "server/cluster_node.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/catalog.h"
#include "server/selection_ids.h"
#include "server/telemetry.h"
#include "server/tenants.h"

namespace curation::server {
namespace {

constexpr char kSelectionKeyKey[] = "/curation/config/selection_id_key";
// CREATING and DELETING placements younger than this may still be finishing their create or
// delete, and are left to it.
constexpr int64_t kStaleMs = 60'000;

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterNode>> ClusterNode::Join(const Options& options,
                                                               store::Store* store) {
  if (options.member.empty()) return InvalidField("--member", "required with --cluster-etcd");
  if (options.member.size() > kMaxMemberName || options.member.find('/') != std::string::npos) {
    return InvalidField("--member", absl::StrCat("at most ", kMaxMemberName, " bytes, no '/'"));
  }
  if (options.advertise.empty()) {
    return InvalidField("--advertise", "required with --cluster-etcd");
  }
  std::unique_ptr<ClusterNode> node(new ClusterNode(options, store));
  ASSIGN_OR_RETURN(node->etcd_, cluster::EtcdClient::Create(options.etcd_endpoints));

  // Selection ids are checked by whichever member a call reaches, so the key is the cluster's:
  // the first member's own key, published once, adopted by every later one.
  ASSIGN_OR_RETURN(std::string own_key, store->GetOrCreateMeta("selection_id_key", ""));
  if (own_key.empty()) return absl::InternalError("the selection id key was not initialised");
  ASSIGN_OR_RETURN(bool published,
                   node->etcd_->PutIf(kSelectionKeyKey, absl::Base64Escape(own_key), 0));
  if (!published) {
    ASSIGN_OR_RETURN(std::optional<cluster::KeyValue> kv, node->etcd_->Get(kSelectionKeyKey));
    std::string key;
    if (!kv || !absl::Base64Unescape(kv->value, &key) || key.size() < 16) {
      return absl::DataLossError(absl::StrCat(kSelectionKeyKey, " is malformed"));
    }
    if (key != own_key) {
      LogEvent("warn",
               "adopting the cluster's selection id key; ids of selections this member made "
               "before it joined no longer resolve",
               {{"member", options.member}});
    }
    SetSelectionIdKey(key);
  }

  ASSIGN_OR_RETURN(node->directory_, cluster::Directory::Open(node->etcd_.get()));
  node->channels_ = std::make_unique<cluster::Channels>(options.member, options.max_message_bytes);
  cluster::Membership::Options m;
  m.name = options.member;
  m.address = options.advertise;
  m.lease_seconds = options.lease_seconds;
  ClusterNode* raw = node.get();
  m.load = [raw] { return raw->Load(); };
  ASSIGN_OR_RETURN(node->membership_, cluster::Membership::Join(node->etcd_.get(), m));
  return node;
}

ClusterNode::~ClusterNode() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  membership_.reset();
  directory_.reset();
}

cluster::MemberLoad ClusterNode::Load() const {
  cluster::MemberLoad load;
  const TenantRegistry* tenants = tenants_.load();
  if (tenants == nullptr) return load;
  for (const auto& [tenant, usage] : tenants->LocalUsage()) {
    load.datasets += usage.datasets();
    load.stored_bytes += usage.stored_bytes();
  }
  return load;
}

absl::Status ClusterNode::Adopt(Catalog* catalog, jobs::Operations* operations,
                                TenantRegistry* tenants) {
  operations_ = operations;
  tenants_.store(tenants);
  catalog_.store(catalog);
  uint64_t max_id = 0;
  std::vector<storage::DatasetRecord> records;
  RETURN_IF_ERROR(store_->ForEachDataset([&](storage::DatasetRecord record) {
    max_id = std::max<uint64_t>(max_id, record.internal_id());
    records.push_back(std::move(record));
    return absl::OkStatus();
  }));
  if (max_id > 0) RETURN_IF_ERROR(directory_->ReserveInternalIdsThrough(max_id));
  for (const storage::DatasetRecord& r : records) {
    // A partition is placed by its dataset's entry, which the creating member wrote; one that
    // no entry lists any more is the sweep's to delete.
    if (r.partitions() > 1) continue;
    storage::PlacementRecord p;
    p.set_tenant(r.tenant());
    p.set_name(r.dataset().name());
    p.set_member(options_.member);
    p.set_internal_id(r.internal_id());
    absl::Status s = directory_->Claim(p);
    if (absl::IsAlreadyExists(s)) {
      auto held = directory_->Find(r.tenant(), r.dataset().name());
      if (held && held->record.internal_id() == r.internal_id() &&
          held->record.state() == storage::PlacementRecord::READY) {
        // The same dataset (internal ids are never reused), moved to another member by a move
        // that a crash cut between its switch and its delete here: finish the delete.
        auto frozen =
            catalog->BeginMove(r.tenant(), r.dataset().name(), [](uint64_t) { return int64_t{0}; });
        if (frozen.ok()) s = catalog->EndMove(r.tenant(), r.dataset().name(), /*moved=*/true);
        LogEvent("info", "deleted the local copy of a dataset moved to another member",
                 {{"tenant", r.tenant()},
                  {"dataset", r.dataset().name()},
                  {"member", held->record.member()},
                  {"result", s.ToString()}});
        continue;
      }
    }
    if (!s.ok()) {
      // Another dataset of this name is placed elsewhere (a data directory copied or restored
      // under another member's name): the directory's owner serves the name, and this copy is
      // left for an operator to inspect.
      LogEvent("error", "a local dataset is placed on another member; not serving this copy",
               {{"tenant", r.tenant()}, {"dataset", r.dataset().name()}, {"error", s.ToString()}});
    }
  }
  membership_->PublishLoad();
  Sweep();
  sweeper_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return stopping_; })) {
      lock.unlock();
      Sweep();
      lock.lock();
    }
  });
  return absl::OkStatus();
}

absl::Status ClusterNode::DeleteLocal(const std::string& tenant, const std::string& name) {
  Catalog* catalog = catalog_.load();
  TenantRegistry* tenants = tenants_.load();
  if (catalog == nullptr || tenants == nullptr) return absl::UnavailableError("not loaded yet");
  ASSIGN_OR_RETURN(storage::DatasetRecord record, catalog->Delete(tenant, name));
  if (auto t = tenants->Find(tenant); t.ok()) {
    tenants->ReleaseDataset(**t, record.dataset().example_count(), record.dataset().stored_bytes());
  }
  membership_->PublishLoad();
  return absl::OkStatus();
}

void ClusterNode::Sweep() {
  Catalog* catalog = catalog_.load();
  if (catalog == nullptr) return;
  for (const cluster::Placement& p : directory_->All()) {
    const storage::PlacementRecord& r = p.record;
    if (r.member() != options_.member || r.state() == storage::PlacementRecord::READY) continue;
    // Only what is old enough to be no create's or delete's in flight: those settle their
    // entries themselves within milliseconds.
    if (cluster::NowUnixMs() - r.update_unix_ms() < kStaleMs) continue;
    if (r.partitions_size() > 0) {
      // This member holds partition 0. A partitioned create is acknowledged only once its
      // entry is READY, and a delete was asked for: either way the dataset goes. The other
      // members delete their partitions once no entry lists them (below, on their sweep).
      auto home = catalog->Find(r.tenant(), r.name());
      if (home != nullptr && home->Snapshot().internal_id() == r.internal_id() &&
          !DeleteLocal(r.tenant(), r.name()).ok()) {
        continue;
      }
      (void)directory_->Remove(p);
      continue;
    }
    const bool held = catalog->Find(r.tenant(), r.name()) != nullptr;
    if (held) {
      // Created (or not deleted after all) here: its placement only missed the last step.
      storage::PlacementRecord ready = r;
      ready.set_state(storage::PlacementRecord::READY);
      (void)directory_->Update(p, ready);
    } else {
      // A create whose member never made the dataset, or a delete that a crash interrupted
      // after the rows went: the name is free again.
      (void)directory_->Remove(p);
    }
  }
  // Partitions whose entry is gone or lists another: a create undone, or a delete finished,
  // while this member was out of reach. An entry lists its partitions before any is made, so
  // one being created is never taken for an orphan.
  std::vector<storage::DatasetRecord> partitions;
  (void)store_->ForEachDataset([&](storage::DatasetRecord record) {
    if (record.partitions() > 1) partitions.push_back(std::move(record));
    return absl::OkStatus();
  });
  for (const storage::DatasetRecord& r : partitions) {
    auto entry = directory_->Fetch(r.tenant(), r.dataset().name());
    if (!entry.ok()) continue;  // etcd cannot say: next time
    const bool listed = entry->has_value() && r.partition() < (*entry)->record.partitions_size() &&
                        (*entry)->record.partitions(r.partition()).member() == options_.member &&
                        (*entry)->record.partitions(r.partition()).internal_id() == r.internal_id();
    if (listed) continue;
    absl::Status s = DeleteLocal(r.tenant(), r.dataset().name());
    LogEvent("info", "deleted a partition that no directory entry lists",
             {{"tenant", r.tenant()}, {"dataset", r.dataset().name()}, {"result", s.ToString()}});
  }
}

absl::StatusOr<CurationService::Reserved> ClusterNode::ReservedInternalId(const std::string& tenant,
                                                                          const std::string& name) {
  // From etcd itself: this member's cache may still hold an older entry of the name.
  ASSIGN_OR_RETURN(std::optional<cluster::Placement> p, directory_->Fetch(tenant, name));
  if (p && p->record.state() == storage::PlacementRecord::CREATING) {
    const storage::PlacementRecord& r = p->record;
    for (int i = 0; i < r.partitions_size(); ++i) {
      if (r.partitions(i).member() == options_.member) {
        return CurationService::Reserved{r.partitions(i).internal_id(), i, r.partitions_size()};
      }
    }
    if (r.partitions_size() == 0 && r.member() == options_.member) {
      return CurationService::Reserved{r.internal_id(), 0, 0};
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("dataset ", name, " is not being created on member ", options_.member,
                   "; create it through any member"));
}

std::vector<v1::Member> ClusterNode::ListMembers() {
  std::map<std::string, v1::Member> out;
  for (const auto& [name, record] : membership_->Members()) {
    v1::Member& m = out[name];
    m.set_name(name);
    m.set_address(record.address());
    m.set_datasets(record.datasets());
    m.set_stored_bytes(record.stored_bytes());
    *m.mutable_start_time() =
        google::protobuf::util::TimeUtil::MillisecondsToTimestamp(record.start_unix_ms());
    if (name == options_.member) {
      m.set_healthy(membership_->writable());
      if (!m.healthy()) m.set_detail(std::string(membership_->CheckWritable().message()));
      continue;
    }
    auto channel = channels_->Get(record.address());
    const bool up =
        channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(1));
    m.set_healthy(up);
    if (!up) m.set_detail("registered, but not reachable from " + options_.member);
  }
  std::map<std::string, int64_t> unregistered;  // name -> datasets the directory places there
  for (const cluster::Placement& p : directory_->All()) {
    if (p.record.partitions_size() == 0 && !out.count(p.record.member())) {
      ++unregistered[p.record.member()];
    }
    for (const storage::PartitionPlacement& part : p.record.partitions()) {
      if (!out.count(part.member())) ++unregistered[part.member()];
    }
  }
  for (const auto& [name, datasets] : unregistered) {
    v1::Member& m = out[name];
    m.set_name(name);
    m.set_healthy(false);
    m.set_datasets(datasets);  // its stored bytes went with its registration
    m.set_detail("holds datasets but is not registered (down)");
  }
  std::vector<v1::Member> members;
  for (auto& [name, m] : out) members.push_back(std::move(m));
  return members;
}

}  // namespace curation::server
