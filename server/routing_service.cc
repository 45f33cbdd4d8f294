#include "server/routing_service.h"

#include <algorithm>
#include <future>
#include <map>
#include <optional>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/stable_hash.h"
#include "server/cluster_node.h"
#include "server/ingestor.h"
#include "server/limits.h"
#include "server/message_budget.h"
#include "server/selection_ids.h"
#include "server/validation.h"

namespace curation::server {
namespace {

using Stub = v1::CurationService::Stub;

// The first message of a client stream, read to route it, handed back to the local handler
// ahead of the rest.
class PeekedReader final : public grpc::ServerReaderInterface<v1::IngestExamplesRequest> {
 public:
  PeekedReader(std::optional<v1::IngestExamplesRequest> first,
               grpc::ServerReader<v1::IngestExamplesRequest>* rest)
      : first_(std::move(first)), rest_(rest) {}
  void SendInitialMetadata() override { rest_->SendInitialMetadata(); }
  bool NextMessageSize(uint32_t* size) override {
    if (first_) {
      *size = static_cast<uint32_t>(first_->ByteSizeLong());
      return true;
    }
    return rest_->NextMessageSize(size);
  }
  bool Read(v1::IngestExamplesRequest* message) override {
    if (first_) {
      *message = std::move(*first_);
      first_.reset();
      return true;
    }
    return rest_->Read(message);
  }

 private:
  std::optional<v1::IngestExamplesRequest> first_;
  grpc::ServerReader<v1::IngestExamplesRequest>* rest_;
};

// A list's page size as the local handler, which validated it, reads it.
size_t PageSizeOf(int32_t asked) {
  return asked > 0 ? static_cast<size_t>(std::min<int64_t>(asked, Limits{}.max_page_size)) : 100;
}

// The most partitions a dataset may have (CreateDatasetRequest.partitions).
constexpr int kMaxPartitions = 64;

// `text` with a leading "<name>[j]", which names item j of a partition's sub-request, naming
// the caller's item caller_index[j] instead.
std::string Renumber(const std::string& text, absl::string_view name,
                     const std::vector<int64_t>& caller_index) {
  const std::string open = absl::StrCat(name, "[");
  if (!absl::StartsWith(text, open)) return text;
  const size_t close = text.find(']', open.size());
  int64_t j = -1;
  if (close == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(text).substr(open.size(), close - open.size()), &j) ||
      j < 0 || j >= static_cast<int64_t>(caller_index.size())) {
    return text;
  }
  return absl::StrCat(open, caller_index[j], text.substr(close));
}

// Runs call(i) for each i of `parts` at once (each partition's call waits on its own member)
// and returns their statuses in the order of `parts`.
template <typename Call>
std::vector<grpc::Status> OnEach(const std::vector<int>& parts, Call call) {
  std::vector<std::future<grpc::Status>> running;
  running.reserve(parts.size());
  for (size_t k = 1; k < parts.size(); ++k) {
    running.push_back(std::async(std::launch::async, [&call, i = parts[k]] { return call(i); }));
  }
  std::vector<grpc::Status> out;
  out.reserve(parts.size());
  if (!parts.empty()) out.push_back(call(parts[0]));
  for (auto& f : running) out.push_back(f.get());
  return out;
}

// The first failure of `statuses`, in order; OK if none.
grpc::Status FirstFailure(const std::vector<grpc::Status>& statuses) {
  for (const grpc::Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return grpc::Status::OK;
}

std::vector<int> AllOf(const cluster::Placement& p) {
  std::vector<int> parts(static_cast<size_t>(p.record.partitions_size()));
  for (size_t i = 0; i < parts.size(); ++i) parts[i] = static_cast<int>(i);
  return parts;
}

// A partitioned dataset as one: partition 0's settings and member, the counts summed.
void AddPartition(const v1::Dataset& partition, v1::Dataset* sum) {
  sum->set_example_count(sum->example_count() + partition.example_count());
  sum->set_desirable_count(sum->desirable_count() + partition.desirable_count());
  sum->set_undesirable_count(sum->undesirable_count() + partition.undesirable_count());
  sum->set_indexed_vectors(sum->indexed_vectors() + partition.indexed_vectors());
  sum->set_selection_count(sum->selection_count() + partition.selection_count());
  sum->set_stored_bytes(sum->stored_bytes() + partition.stored_bytes());
}

// A forwarded call is answered here whatever happens: say so, so that the forwarding member
// passes an UNAVAILABLE of ours through instead of blaming an unreachable owner.
void MarkAnswered(grpc::ServerContext* context, const std::string& self) {
  if (cluster::IsForwarded(*context)) {
    context->AddTrailingMetadata(cluster::kAnsweredByTrailer, self);
  }
}

}  // namespace

std::string RoutingService::TenantOf(const grpc::ServerContext& context) const {
  auto caller = auth_->Authenticate(context);
  if (!caller.ok()) return "";
  return caller->tenant;
}

RoutingService::Target RoutingService::ToMember(const grpc::ServerContext& context,
                                                const std::string& member, const std::string& what,
                                                bool partition_hop) const {
  Target t;
  if (member == membership_->name()) return t;
  t.local = false;
  t.member = member;
  t.what = what;
  if (cluster::IsForwarded(context) && !partition_hop) {
    // The forwarding member's directory was behind ours (the dataset has just moved): the
    // client's retry reaches the new owner.
    t.error = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           absl::StrCat(what, " is now held by member ", member, "; retry"));
    return t;
  }
  auto record = membership_->Find(member);
  if (!record) {
    t.error = grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat(what, " is held by member ", member,
                     ", which is down (not registered in the cluster); it serves the dataset "
                     "again once it restarts with its name and data directory"));
    return t;
  }
  t.address = record->address();
  return t;
}

RoutingService::Target RoutingService::ByDataset(grpc::ServerContext* context,
                                                 const std::string& dataset) {
  MarkAnswered(context, membership_->name());
  const std::string tenant = TenantOf(*context);
  // A malformed name is the local handler's to refuse, before etcd is asked about it.
  if (tenant.empty() || CheckDatasetName("dataset", dataset)) return Target{};
  auto placement = directory_->Find(tenant, dataset);
  if (!placement) return Target{};  // the local handler answers NOT_FOUND (or the real error)
  // A member spreading a call over a partitioned dataset's partitions asks each for its own.
  if (placement->record.partitions_size() > 0 && cluster::IsForwarded(*context)) return Target{};
  return ToMember(*context, placement->record.member(), "dataset " + placement->record.name());
}

RoutingService::Target RoutingService::BySelectionId(grpc::ServerContext* context,
                                                     const std::string& id) {
  MarkAnswered(context, membership_->name());
  auto parts = ParseSelectionId(id);
  if (!parts) return Target{};
  auto placement = directory_->FindByInternalId(parts->dataset_id);
  // Another tenant's selection is answered here, NOT_FOUND like a missing one, so that not
  // even its dataset's name or member shows.
  if (!placement || placement->record.tenant() != TenantOf(*context)) return Target{};
  return ToMember(*context, placement->record.member(), "dataset " + placement->record.name());
}

std::vector<std::string> RoutingService::MembersOf(const std::string& tenant) const {
  std::set<std::string> members{membership_->name()};
  for (const cluster::Placement& p : directory_->List(tenant)) {
    members.insert(p.record.member());
    for (const storage::PartitionPlacement& part : p.record.partitions()) {
      members.insert(part.member());
    }
  }
  return {members.begin(), members.end()};
}

std::optional<cluster::Placement> RoutingService::Partitioned(const grpc::ServerContext& context,
                                                              const std::string& dataset) {
  if (cluster::IsForwarded(context)) return std::nullopt;
  const std::string tenant = TenantOf(context);
  if (tenant.empty() || CheckDatasetName("dataset", dataset)) return std::nullopt;
  auto placement = directory_->Find(tenant, dataset);
  if (!placement || placement->record.partitions_size() == 0) return std::nullopt;
  return placement;
}

template <typename Req, typename Resp>
grpc::Status RoutingService::OnPartition(
    grpc::ServerContext* context, const cluster::Placement& p, int i, UnaryMethod<Req, Resp> method,
    grpc::Status (CurationService::*local)(grpc::ServerContext*, const Req*, Resp*), bool write,
    const Req& request, Resp* response) {
  const std::string& member = p.record.partitions(i).member();
  if (member == membership_->name()) {
    if (write) {
      if (grpc::Status w = Writable(); !w.ok()) return w;
    }
    return (local_->*local)(context, &request, response);
  }
  const Target t =
      ToMember(*context, member, absl::StrCat("partition ", i, " of dataset ", p.record.name()),
               /*partition_hop=*/true);
  if (!t.error.ok()) return t.error;
  return Forward(t, context, method, request, response);
}

grpc::Status RoutingService::Writable() const {
  absl::Status s = membership_->CheckWritable();
  return s.ok() ? grpc::Status::OK : ToGrpc(s);
}

template <typename Req, typename Resp>
grpc::Status RoutingService::Forward(const Target& target, grpc::ServerContext* context,
                                     UnaryMethod<Req, Resp> method, const Req& request,
                                     Resp* response) {
  auto stub = v1::CurationService::NewStub(channels_->Get(target.address));
  auto client = channels_->ForwardContext(*context);
  grpc::Status status = ((*stub).*method)(client.get(), request, response);
  return cluster::ForwardFailure(status, *client, target.what, target.member, target.address);
}

template <typename Req, typename Resp>
grpc::Status RoutingService::ForwardStream(const Target& target, grpc::ServerContext* context,
                                           StreamMethod<Req, Resp> method, const Req& request,
                                           grpc::ServerWriter<Resp>* writer) {
  auto stub = v1::CurationService::NewStub(channels_->Get(target.address));
  auto client = channels_->ForwardContext(*context);
  auto reader = ((*stub).*method)(client.get(), request);
  Resp message;
  while (reader->Read(&message)) {
    if (!writer->Write(message)) {
      client->TryCancel();  // our caller left
      break;
    }
  }
  return cluster::ForwardFailure(reader->Finish(), *client, target.what, target.member,
                                 target.address);
}

template <typename Req, typename Resp, typename Take>
grpc::Status RoutingService::ListOthers(grpc::ServerContext* context, const std::string& tenant,
                                        UnaryMethod<Req, Resp> method, const Req& request,
                                        const std::string& what, Take take) {
  for (const std::string& member : MembersOf(tenant)) {
    if (member == membership_->name()) continue;
    const Target t = ToMember(*context, member, what);
    if (!t.error.ok()) return t.error;
    Resp theirs;
    if (grpc::Status s = Forward(t, context, method, request, &theirs); !s.ok()) return s;
    take(member, theirs);
  }
  return grpc::Status::OK;
}

grpc::Status RoutingService::GetPartitioned(grpc::ServerContext* context,
                                            const cluster::Placement& p, v1::Dataset* response) {
  std::vector<v1::Dataset> parts(static_cast<size_t>(p.record.partitions_size()));
  v1::GetDatasetRequest get;
  get.set_name(p.record.name());
  const auto statuses = OnEach(AllOf(p), [&](int i) {
    return OnPartition(context, p, i, &Stub::GetDataset, &CurationService::GetDataset,
                       /*write=*/false, get, &parts[static_cast<size_t>(i)]);
  });
  if (grpc::Status s = FirstFailure(statuses); !s.ok()) return s;
  *response = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) AddPartition(parts[i], response);
  response->set_member(p.record.member());
  for (const storage::PartitionPlacement& part : p.record.partitions()) {
    response->add_partition_members(part.member());
  }
  return grpc::Status::OK;
}

grpc::Status RoutingService::GetDataset(grpc::ServerContext* context,
                                        const v1::GetDatasetRequest* request,
                                        v1::Dataset* response) {
  if (auto p = Partitioned(*context, request->name())) return GetPartitioned(context, *p, response);
  const Target t = ByDataset(context, request->name());
  if (!t.error.ok()) return t.error;
  grpc::Status s = t.local ? local_->GetDataset(context, request, response)
                           : Forward(t, context, &Stub::GetDataset, *request, response);
  if (s.ok()) response->set_member(t.local ? membership_->name() : t.member);
  return s;
}

grpc::Status RoutingService::CreatePartitioned(grpc::ServerContext* context,
                                               const v1::CreateDatasetRequest& request,
                                               const std::string& tenant,
                                               const std::vector<std::string>& members,
                                               v1::Dataset* response) {
  const std::string& name = request.dataset().name();
  std::vector<storage::PartitionPlacement> partitions;
  for (const std::string& member : members) {
    auto id = directory_->AllocateInternalId();
    if (!id.ok()) return ToGrpc(id.status());
    storage::PartitionPlacement& part = partitions.emplace_back();
    part.set_member(member);
    part.set_internal_id(*id);
  }
  // The entry names every partition before any is made: whoever wins it makes them all, and
  // a member's sweep knows a partition no entry lists for an orphan.
  auto placement = directory_->Reserve(tenant, name, partitions[0].member(),
                                       partitions[0].internal_id(), partitions);
  if (!placement.ok()) return ToGrpc(placement.status());
  std::vector<v1::Dataset> made(partitions.size());
  const std::vector<int> all = AllOf(*placement);
  std::vector<grpc::Status> statuses = OnEach(all, [&](int i) {
    return OnPartition(context, *placement, i, &Stub::CreateDataset,
                       &CurationService::CreateDataset, /*write=*/true, request,
                       &made[static_cast<size_t>(i)]);
  });
  grpc::Status s = FirstFailure(statuses);
  if (s.ok()) {
    storage::PlacementRecord ready = placement->record;
    ready.set_state(storage::PlacementRecord::READY);
    // Unlike a dataset held whole, a partitioned one is acknowledged only once READY: the
    // sweep removes a CREATING one, since it cannot tell from one member whether every
    // partition was made.
    auto updated = directory_->Update(*placement, ready);
    if (!updated.ok()) s = ToGrpc(updated.status());
  }
  if (!s.ok()) {
    // Undo what was made (a partition left behind is deleted by its member's sweep once the
    // entry is gone), then free the name.
    v1::DeleteDatasetRequest drop;
    drop.set_name(name);
    std::vector<int> created;
    for (int i : all) {
      if (statuses[static_cast<size_t>(i)].ok()) created.push_back(i);
    }
    (void)OnEach(created, [&](int i) {
      v1::DeleteDatasetResponse ignored;
      return OnPartition(context, *placement, i, &Stub::DeleteDataset,
                         &CurationService::DeleteDataset, /*write=*/true, drop, &ignored);
    });
    if (auto current = directory_->Fetch(tenant, name);
        current.ok() && current->has_value() &&
        (*current)->record.internal_id() == placement->record.internal_id()) {
      (void)directory_->Remove(**current);
    }
    return s;
  }
  *response = made[0];
  for (size_t i = 1; i < made.size(); ++i) AddPartition(made[i], response);
  response->set_member(partitions[0].member());
  for (const storage::PartitionPlacement& part : partitions) {
    response->add_partition_members(part.member());
  }
  membership_->PublishLoad();
  return grpc::Status::OK;
}

grpc::Status RoutingService::CreateDataset(grpc::ServerContext* context,
                                           const v1::CreateDatasetRequest* request,
                                           v1::Dataset* response) {
  MarkAnswered(context, membership_->name());
  // Only a writer with a well-formed name reserves anything in etcd; the local handler gives
  // everyone else their precise error.
  auto writer = auth_->Authorize(*context, v1::ROLE_WRITER);
  const std::string& name = request->dataset().name();
  if (cluster::IsForwarded(*context) || !writer.ok() || writer->tenant.empty() ||
      CheckDatasetName("dataset.name", name)) {
    // The forwarding member reserved the name for us (or the handler refuses the call).
    if (grpc::Status w = Writable(); !w.ok()) return w;
    grpc::Status s = local_->CreateDataset(context, request, response);
    if (s.ok()) {
      response->set_member(membership_->name());
      membership_->PublishLoad();
    }
    return s;
  }
  const int partitions = request->partitions();
  if (partitions < 0 || partitions > kMaxPartitions) {
    return ToGrpc(InvalidField(
        "partitions", absl::StrCat(partitions, "; at least 0 and at most ", kMaxPartitions)));
  }
  // Where it goes: the member asked for, else the one with the fewest stored bytes (then the
  // fewest datasets, which spreads a burst of empty new datasets).
  const auto members = membership_->Members();
  std::string member = request->member();
  if (!member.empty()) {
    if (member.size() > kMaxMemberName) {
      return ToGrpc(InvalidField("member", absl::StrCat("at most ", kMaxMemberName, " bytes")));
    }
    if (!members.count(member)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("member: no registered member is named ", member));
    }
  }
  if (partitions > 1 && partitions > static_cast<int>(members.size())) {
    return grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        absl::StrCat("partitions: ", partitions, " partitions need as many members; ",
                     members.size(), " are registered"));
  }
  std::map<std::string, int64_t> placed;
  for (const cluster::Placement& p : directory_->All()) {
    if (p.record.partitions_size() == 0) ++placed[p.record.member()];
    for (const storage::PartitionPlacement& part : p.record.partitions()) ++placed[part.member()];
  }
  std::vector<std::tuple<int64_t, int64_t, std::string>> by_load;
  for (const auto& [m, record] : members) {
    if (m != member) by_load.emplace_back(record.stored_bytes(), placed[m], m);
  }
  std::sort(by_load.begin(), by_load.end());
  if (partitions > 1) {
    // Each partition would fit its own projection on its own first ingest, and the
    // partitions' vectors would then lie in different spaces.
    if (request->dataset().embedding().projection().dim() != 0) {
      return ToGrpc(InvalidField("dataset.embedding.projection",
                                 "a partitioned dataset cannot be projected"));
    }
    std::vector<std::string> chosen;
    if (!member.empty()) chosen.push_back(member);
    for (const auto& [bytes, datasets, m] : by_load) {
      if (static_cast<int>(chosen.size()) == partitions) break;
      chosen.push_back(m);
    }
    return CreatePartitioned(context, *request, writer->tenant, chosen, response);
  }
  if (member.empty()) member = by_load.empty() ? membership_->name() : std::get<2>(by_load[0]);
  auto id = directory_->AllocateInternalId();
  if (!id.ok()) return ToGrpc(id.status());
  auto placement = directory_->Reserve(writer->tenant, name, member, *id);
  if (!placement.ok()) return ToGrpc(placement.status());
  Target t = ToMember(*context, member, "dataset " + name);
  grpc::Status s;
  if (!t.error.ok()) {
    s = t.error;
  } else if (t.local) {
    s = Writable();
    if (s.ok()) s = local_->CreateDataset(context, request, response);
  } else {
    s = Forward(t, context, &Stub::CreateDataset, *request, response);
  }
  if (!s.ok()) {
    // Nothing was created: free the name (if this fails, the owner's sweep frees it).
    (void)directory_->Remove(*placement);
    return s;
  }
  storage::PlacementRecord ready = placement->record;
  ready.set_state(storage::PlacementRecord::READY);
  // If etcd fails here the entry stays CREATING, which routes like READY; the owner's sweep
  // marks it READY.
  (void)directory_->Update(*placement, ready);
  response->set_member(member);
  membership_->PublishLoad();
  return grpc::Status::OK;
}

grpc::Status RoutingService::DeletePartitioned(grpc::ServerContext* context,
                                               const cluster::Placement& p,
                                               v1::DeleteDatasetResponse* response) {
  // Marked first, as for a dataset held whole; a delete that some partition's member misses
  // leaves the entry DELETING, so that a retry (or the home member's sweep) finishes it.
  storage::PlacementRecord record = p.record;
  record.set_state(storage::PlacementRecord::DELETING);
  auto marked = directory_->Update(p, record);
  if (!marked.ok()) return ToGrpc(marked.status());
  std::vector<v1::DeleteDatasetResponse> deleted(static_cast<size_t>(p.record.partitions_size()));
  v1::DeleteDatasetRequest drop;
  drop.set_name(p.record.name());
  const auto statuses = OnEach(AllOf(*marked), [&](int i) {
    grpc::Status s =
        OnPartition(context, *marked, i, &Stub::DeleteDataset, &CurationService::DeleteDataset,
                    /*write=*/true, drop, &deleted[static_cast<size_t>(i)]);
    // Deleted by an earlier try.
    return s.error_code() == grpc::StatusCode::NOT_FOUND ? grpc::Status::OK : s;
  });
  if (grpc::Status s = FirstFailure(statuses); !s.ok()) return s;
  if (absl::Status removed = directory_->Remove(*marked); !removed.ok()) return ToGrpc(removed);
  for (const v1::DeleteDatasetResponse& d : deleted) {
    response->set_deleted_examples(response->deleted_examples() + d.deleted_examples());
    response->set_deleted_selections(response->deleted_selections() + d.deleted_selections());
  }
  membership_->PublishLoad();
  return grpc::Status::OK;
}

grpc::Status RoutingService::DeleteDataset(grpc::ServerContext* context,
                                           const v1::DeleteDatasetRequest* request,
                                           v1::DeleteDatasetResponse* response) {
  // Only a writer's delete marks the entry (the local handler refuses the others).
  auto writer = auth_->Authorize(*context, v1::ROLE_WRITER);
  if (writer.ok()) {
    if (auto p = Partitioned(*context, request->name())) {
      return DeletePartitioned(context, *p, response);
    }
  }
  const Target t = ByDataset(context, request->name());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::DeleteDataset, *request, response);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  std::optional<cluster::Placement> deleting;
  if (writer.ok() && !writer->tenant.empty()) {
    // A partition (asked for by the member deleting its dataset) has no entry of its own.
    if (auto p = directory_->Find(writer->tenant, request->name());
        p && p->record.partitions_size() == 0) {
      // Marked first, so that a delete needs etcd like every metadata change, and no move or
      // create of the name lands while the rows go.
      storage::PlacementRecord record = p->record;
      record.set_state(storage::PlacementRecord::DELETING);
      auto marked = directory_->Update(*p, record);
      if (!marked.ok()) return ToGrpc(marked.status());
      deleting = *marked;
    }
  }
  grpc::Status s = local_->DeleteDataset(context, request, response);
  if (deleting) {
    if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) {
      (void)directory_->Remove(*deleting);
    } else {
      storage::PlacementRecord record = deleting->record;
      record.set_state(storage::PlacementRecord::READY);
      (void)directory_->Update(*deleting, record);
    }
  }
  if (s.ok()) membership_->PublishLoad();
  return s;
}

grpc::Status RoutingService::ListDatasets(grpc::ServerContext* context,
                                          const v1::ListDatasetsRequest* request,
                                          v1::ListDatasetsResponse* response) {
  MarkAnswered(context, membership_->name());
  const std::string tenant = TenantOf(*context);
  if (cluster::IsForwarded(*context) || tenant.empty()) {
    return local_->ListDatasets(context, request, response);
  }
  // Each member lists its own from the same token; the page is the merge's first page_size.
  // The local call validates page_size and page_token for everyone.
  v1::ListDatasetsResponse mine;
  if (grpc::Status s = local_->ListDatasets(context, request, &mine); !s.ok()) return s;
  std::vector<v1::Dataset> merged;
  bool more = !mine.next_page_token().empty();
  for (v1::Dataset& d : *mine.mutable_datasets()) {
    d.set_member(membership_->name());
    merged.push_back(std::move(d));
  }
  grpc::Status others =
      ListOthers(context, tenant, &Stub::ListDatasets, *request, "a dataset of this list",
                 [&](const std::string& member, v1::ListDatasetsResponse& theirs) {
                   more = more || !theirs.next_page_token().empty();
                   for (v1::Dataset& d : *theirs.mutable_datasets()) {
                     d.set_member(member);
                     merged.push_back(std::move(d));
                   }
                 });
  if (!others.ok()) return others;
  // A copy the directory does not place where it is (the destination's, during a move) is
  // not the dataset.
  std::map<std::string, std::optional<cluster::Placement>> placements;
  auto placement_of = [&](const std::string& name) -> const std::optional<cluster::Placement>& {
    auto it = placements.find(name);
    if (it == placements.end()) it = placements.emplace(name, directory_->Find(tenant, name)).first;
    return it->second;
  };
  std::erase_if(merged, [&](const v1::Dataset& d) {
    const auto& p = placement_of(d.name());
    if (!p) return false;
    if (p->record.partitions_size() == 0) return p->record.member() != d.member();
    return std::none_of(
        p->record.partitions().begin(), p->record.partitions().end(),
        [&](const storage::PartitionPlacement& part) { return part.member() == d.member(); });
  });
  std::sort(merged.begin(), merged.end(),
            [](const v1::Dataset& a, const v1::Dataset& b) { return a.name() < b.name(); });
  // A partitioned dataset's partitions, one a member, are one entry. Every member's page
  // ends at or after the page_size-th distinct name, so each entry of the page has all of its
  // partitions.
  std::vector<v1::Dataset> datasets;
  for (v1::Dataset& d : merged) {
    if (!datasets.empty() && datasets.back().name() == d.name()) {
      AddPartition(d, &datasets.back());
      // Partition 0's settings and member are the dataset's.
      const auto& p = placement_of(d.name());
      if (p && p->record.partitions_size() > 0 && d.member() == p->record.member()) {
        v1::Dataset sum = datasets.back();
        datasets.back() = std::move(d);
        datasets.back().set_example_count(sum.example_count());
        datasets.back().set_desirable_count(sum.desirable_count());
        datasets.back().set_undesirable_count(sum.undesirable_count());
        datasets.back().set_indexed_vectors(sum.indexed_vectors());
        datasets.back().set_selection_count(sum.selection_count());
        datasets.back().set_stored_bytes(sum.stored_bytes());
      }
      continue;
    }
    datasets.push_back(std::move(d));
  }
  for (v1::Dataset& d : datasets) {
    const auto& p = placement_of(d.name());
    if (!p || p->record.partitions_size() == 0) continue;
    d.set_member(p->record.member());
    for (const storage::PartitionPlacement& part : p->record.partitions()) {
      d.add_partition_members(part.member());
    }
  }
  merged = std::move(datasets);
  const size_t take = std::min(merged.size(), PageSizeOf(request->page_size()));
  for (size_t i = 0; i < take; ++i) *response->add_datasets() = std::move(merged[i]);
  if (take > 0 && (more || merged.size() > take)) {
    response->set_next_page_token(
        absl::WebSafeBase64Escape(response->datasets(static_cast<int>(take) - 1).name()));
  }
  return grpc::Status::OK;
}

grpc::Status RoutingService::IngestExamples(grpc::ServerContext* context,
                                            const v1::IngestExamplesRequest* request,
                                            v1::IngestExamplesResponse* response) {
  // A caller who may not write is refused by the home partition's handler, below.
  if (auto p = Partitioned(*context, request->dataset());
      p && auth_->Authorize(*context, v1::ROLE_WRITER).ok()) {
    if (request->examples_size() > limits_.max_records_per_request) {
      return ToGrpc(
          InvalidField("examples", absl::StrCat(request->examples_size(), " records; at most ",
                                                limits_.max_records_per_request, " per request")));
    }
    return IngestPartitioned(context, *p, *request, /*first_index=*/0, /*report_ids=*/true,
                             response);
  }
  const Target t = ByDataset(context, request->dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::IngestExamples, *request, response);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->IngestExamples(context, request, response);
}

grpc::Status RoutingService::IngestStream(grpc::ServerContext* context,
                                          grpc::ServerReader<v1::IngestExamplesRequest>* reader,
                                          v1::IngestExamplesResponse* response) {
  // The first message names the dataset.
  std::optional<v1::IngestExamplesRequest> first(std::in_place);
  if (!reader->Read(&*first)) first.reset();
  if (first) {
    if (auto p = Partitioned(*context, first->dataset());
        p && auth_->Authorize(*context, v1::ROLE_WRITER).ok()) {
      return IngestStreamPartitioned(context, *p, *std::move(first), reader, response);
    }
  }
  const Target t = ByDataset(context, first ? first->dataset() : "");
  if (!t.error.ok()) return t.error;
  if (t.local) {
    if (grpc::Status w = Writable(); !w.ok()) return w;
    PeekedReader peeked(std::move(first), reader);
    return local_->IngestFrom(context, &peeked, response);
  }
  auto stub = v1::CurationService::NewStub(channels_->Get(t.address));
  auto client = channels_->ForwardContext(*context);
  auto writer = stub->IngestStream(client.get(), response);
  bool open = writer->Write(*first);
  v1::IngestExamplesRequest message;
  while (open && reader->Read(&message)) open = writer->Write(message);
  // A write that fails means the owner has ended the stream: Finish says why.
  if (open) writer->WritesDone();
  return cluster::ForwardFailure(writer->Finish(), *client, t.what, t.member, t.address);
}

grpc::Status RoutingService::IngestPartitioned(grpc::ServerContext* context,
                                               const cluster::Placement& p,
                                               const v1::IngestExamplesRequest& request,
                                               int64_t first_index, bool report_ids,
                                               v1::IngestExamplesResponse* response) {
  const int partitions = p.record.partitions_size();
  std::vector<v1::IngestExamplesRequest> sub(static_cast<size_t>(partitions));
  std::vector<std::vector<int64_t>> caller_index(static_cast<size_t>(partitions));
  for (int k = 0; k < request.examples_size(); ++k) {
    const v1::Example& example = request.examples(k);
    // Placed by the id the partition's ingestor gives it, so that a record sent again (with
    // or without its id) meets itself and is recognised as a duplicate.
    const size_t i = static_cast<size_t>(PartitionOf(
        example.id().empty() ? Ingestor::HashId(Ingestor::ContentHash(example)) : example.id(),
        partitions));
    *sub[i].add_examples() = example;
    caller_index[i].push_back(first_index + k);
  }
  std::vector<v1::IngestExamplesResponse> replies(static_cast<size_t>(partitions));
  const auto statuses = OnEach(AllOf(p), [&](int i) {
    const size_t at = static_cast<size_t>(i);
    if (sub[at].examples_size() > 0) {
      sub[at].set_dataset(p.record.name());
      return OnPartition(context, p, i, &Stub::IngestExamples, &CurationService::IngestExamples,
                         /*write=*/true, sub[at], &replies[at]);
    }
    // Asked only for the dataset's count: a partition this call sends nothing to does not
    // fail it, and counts as unchanged if its member cannot answer.
    v1::GetDatasetRequest get;
    get.set_name(p.record.name());
    v1::Dataset view;
    if (OnPartition(context, p, i, &Stub::GetDataset, &CurationService::GetDataset,
                    /*write=*/false, get, &view)
            .ok()) {
      replies[at].set_example_count(view.example_count());
    }
    return grpc::Status::OK;
  });
  if (grpc::Status s = FirstFailure(statuses); !s.ok()) return s;
  if (report_ids) {
    for (int k = 0; k < request.examples_size(); ++k) response->add_ids();
  }
  std::vector<v1::RecordError> errors;
  int64_t example_count = 0;
  for (size_t i = 0; i < replies.size(); ++i) {
    v1::IngestExamplesResponse& r = replies[i];
    const std::vector<int64_t>& index = caller_index[i];
    response->set_accepted(response->accepted() + r.accepted());
    response->set_duplicates(response->duplicates() + r.duplicates());
    response->set_rejected(response->rejected() + r.rejected());
    example_count += r.example_count();
    for (v1::RecordError& e : *r.mutable_errors()) {
      e.set_field(Renumber(e.field(), "examples", index));
      if (e.index() >= 0 && e.index() < static_cast<int64_t>(index.size())) {
        e.set_index(index[static_cast<size_t>(e.index())]);
      }
      errors.push_back(std::move(e));
    }
    if (report_ids) {
      for (int j = 0; j < r.ids_size() && j < static_cast<int>(index.size()); ++j) {
        *response->mutable_ids(static_cast<int>(index[static_cast<size_t>(j)] - first_index)) =
            std::move(*r.mutable_ids(j));
      }
    }
  }
  std::stable_sort(
      errors.begin(), errors.end(),
      [](const v1::RecordError& a, const v1::RecordError& b) { return a.index() < b.index(); });
  for (v1::RecordError& e : errors) *response->add_errors() = std::move(e);
  response->set_example_count(example_count);
  return grpc::Status::OK;
}

grpc::Status RoutingService::IngestStreamPartitioned(
    grpc::ServerContext* context, const cluster::Placement& p, v1::IngestExamplesRequest first,
    grpc::ServerReader<v1::IngestExamplesRequest>* reader, v1::IngestExamplesResponse* response) {
  // Each message is spread as one IngestExamples call: the messages before a failing one
  // stay stored, as on one member, and the error indexes count from the stream's start.
  v1::IngestExamplesRequest request = std::move(first);
  int64_t next_index = 0;
  int64_t message = 0;
  do {
    if (!request.dataset().empty() && request.dataset() != p.record.name()) {
      return ToGrpc(InvalidField(absl::StrCat("messages[", message, "].dataset"),
                                 "one stream ingests into one dataset"));
    }
    const int records = request.examples_size();
    if (records > limits_.max_records_per_request) {
      return ToGrpc(InvalidField(absl::StrCat("messages[", message, "].examples"),
                                 absl::StrCat(records, " records; at most ",
                                              limits_.max_records_per_request, " per message")));
    }
    if (records > 0) {
      grpc::Status s =
          IngestPartitioned(context, p, request, next_index, /*report_ids=*/false, response);
      if (!s.ok()) return s;
    }
    next_index += records;
    ++message;
  } while (reader->Read(&request));
  return grpc::Status::OK;
}

grpc::Status RoutingService::GetExamplesPartitioned(grpc::ServerContext* context,
                                                    const cluster::Placement& p,
                                                    const v1::GetExamplesRequest& request,
                                                    v1::GetExamplesResponse* response) {
  // The local handler's checks, on the whole request, before any partition is asked.
  if (request.ids_size() > limits_.max_ids_per_get) {
    return ToGrpc(InvalidField("ids", absl::StrCat("at most ", limits_.max_ids_per_get)));
  }
  for (int k = 0; k < request.ids_size(); ++k) {
    if (auto e =
            CheckRequestId(absl::StrCat("ids[", k, "]"), request.ids(k), limits_.max_id_bytes)) {
      return ToGrpc(InvalidField(e->field, e->reason));
    }
  }
  const int partitions = p.record.partitions_size();
  std::vector<v1::GetExamplesRequest> sub(static_cast<size_t>(partitions));
  std::vector<std::vector<int64_t>> caller_index(static_cast<size_t>(partitions));
  std::vector<size_t> order;  // the partition of each distinct id, in order of first mention
  absl::flat_hash_map<absl::string_view, bool> seen;
  for (int k = 0; k < request.ids_size(); ++k) {
    const std::string& id = request.ids(k);
    if (!seen.emplace(id, true).second) continue;
    const size_t i = static_cast<size_t>(PartitionOf(id, partitions));
    sub[i].add_ids(id);
    caller_index[i].push_back(k);
    order.push_back(i);
  }
  std::vector<int> touched;
  for (int i = 0; i < partitions; ++i) {
    if (sub[static_cast<size_t>(i)].ids_size() > 0) touched.push_back(i);
  }
  std::vector<v1::GetExamplesResponse> replies(static_cast<size_t>(partitions));
  const auto statuses = OnEach(touched, [&](int i) {
    const size_t at = static_cast<size_t>(i);
    sub[at].set_dataset(p.record.name());
    sub[at].set_include_embeddings(request.include_embeddings());
    grpc::Status s = OnPartition(context, p, i, &Stub::GetExamples, &CurationService::GetExamples,
                                 /*write=*/false, sub[at], &replies[at]);
    if (s.ok()) return s;
    // "ids[j]: ..." of the partition's request names the caller's id.
    return grpc::Status(s.error_code(), Renumber(s.error_message(), "ids", caller_index[at]),
                        s.error_details());
  });
  if (grpc::Status s = FirstFailure(statuses); !s.ok()) return s;
  // Each partition answered a prefix of its ids (its reply stops at one message); the merge
  // is the prefix of the caller's distinct ids that fits one message.
  const int64_t budget = ReplyBudgetBytes(limits_);
  int64_t reply_bytes = 0;
  std::vector<int> next(static_cast<size_t>(partitions), 0);
  for (size_t i : order) {
    v1::GetExamplesResponse& r = replies[i];
    if (next[i] >= r.examples_size()) break;
    v1::Example& example = *r.mutable_examples(next[i]++);
    const int64_t size = EmbeddedBytes(static_cast<int64_t>(example.ByteSizeLong()));
    if (reply_bytes + size > budget && response->examples_size() > 0) break;
    reply_bytes += size;
    *response->add_examples() = std::move(example);
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::vector<v1::Example>> RoutingService::ReadPartitioned(
    grpc::ServerContext* context, const std::string& tenant, const std::string& dataset,
    const std::vector<std::string>& ids) {
  auto p = directory_->Find(tenant, dataset);
  if (!p || p->record.partitions_size() == 0) {
    return absl::NotFoundError(absl::StrCat("dataset '", dataset, "' has no partitions"));
  }
  absl::flat_hash_map<std::string, v1::Example> found;
  // Each reply is a prefix of the ids asked that fits one message (missing ids skipped): ask
  // again from after the last one answered until a reply answers none.
  size_t from = 0;
  while (from < ids.size()) {
    v1::GetExamplesRequest request;
    request.set_dataset(dataset);
    for (size_t i = from; i < ids.size(); ++i) request.add_ids(ids[i]);
    v1::GetExamplesResponse reply;
    grpc::Status s = GetExamplesPartitioned(context, *p, request, &reply);
    if (!s.ok()) return FromGrpc(s);
    if (reply.examples().empty()) break;
    const std::string last = reply.examples(reply.examples_size() - 1).id();
    for (v1::Example& e : *reply.mutable_examples()) {
      std::string id = e.id();
      found.emplace(std::move(id), std::move(e));
    }
    while (from < ids.size() && ids[from] != last) ++from;
    ++from;
  }
  std::vector<v1::Example> out;
  out.reserve(ids.size());
  for (const std::string& id : ids) {
    auto it = found.find(id);
    if (it == found.end()) {
      return absl::NotFoundError(
          absl::StrCat("example '", id, "' of dataset '", dataset, "' is in no partition"));
    }
    out.push_back(it->second);
  }
  return out;
}

grpc::Status RoutingService::GetExamples(grpc::ServerContext* context,
                                         const v1::GetExamplesRequest* request,
                                         v1::GetExamplesResponse* response) {
  if (auto p = Partitioned(*context, request->dataset())) {
    return GetExamplesPartitioned(context, *p, *request, response);
  }
  const Target t = ByDataset(context, request->dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::GetExamples, *request, response);
  return local_->GetExamples(context, request, response);
}

grpc::Status RoutingService::Select(grpc::ServerContext* context, const v1::SelectRequest* request,
                                    v1::Selection* response) {
  const Target t = ByDataset(context, request->dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::Select, *request, response);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->Select(context, request, response);
}

grpc::Status RoutingService::SelectStream(grpc::ServerContext* context,
                                          const v1::SelectRequest* request,
                                          grpc::ServerWriter<v1::SelectProgress>* writer) {
  const Target t = ByDataset(context, request->dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return ForwardStream(t, context, &Stub::SelectStream, *request, writer);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->SelectStream(context, request, writer);
}

grpc::Status RoutingService::StartSelect(grpc::ServerContext* context,
                                         const v1::SelectRequest* request,
                                         v1::Operation* response) {
  const Target t = ByDataset(context, request->dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::StartSelect, *request, response);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->StartSelect(context, request, response);
}

grpc::Status RoutingService::GetSelection(grpc::ServerContext* context,
                                          const v1::GetSelectionRequest* request,
                                          v1::Selection* response) {
  const Target t = BySelectionId(context, request->id());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::GetSelection, *request, response);
  return local_->GetSelection(context, request, response);
}

grpc::Status RoutingService::ListSelections(grpc::ServerContext* context,
                                            const v1::ListSelectionsRequest* request,
                                            v1::ListSelectionsResponse* response) {
  const Target t = ByDataset(context, request->dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::ListSelections, *request, response);
  return local_->ListSelections(context, request, response);
}

grpc::Status RoutingService::ExportSelection(
    grpc::ServerContext* context, const v1::ExportSelectionRequest* request,
    grpc::ServerWriter<v1::ExportSelectionResponse>* writer) {
  const Target t = BySelectionId(context, request->selection_id());
  if (!t.error.ok()) return t.error;
  if (!t.local) return ForwardStream(t, context, &Stub::ExportSelection, *request, writer);
  return local_->ExportSelection(context, request, writer);
}

namespace {

// An evaluation names its subset by a stored selection's id or by a selection to make.
bool BySelection(const v1::EvaluateSelectionRequest& request) {
  return request.subset_case() == v1::EvaluateSelectionRequest::kSelectionId;
}

}  // namespace

grpc::Status RoutingService::EvaluateSelection(
    grpc::ServerContext* context, const v1::EvaluateSelectionRequest* request,
    grpc::ServerWriter<v1::EvaluateSelectionProgress>* writer) {
  const Target t = BySelection(*request) ? BySelectionId(context, request->selection_id())
                                         : ByDataset(context, request->select().dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return ForwardStream(t, context, &Stub::EvaluateSelection, *request, writer);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->EvaluateSelection(context, request, writer);
}

grpc::Status RoutingService::StartEvaluation(grpc::ServerContext* context,
                                             const v1::EvaluateSelectionRequest* request,
                                             v1::Operation* response) {
  const Target t = BySelection(*request) ? BySelectionId(context, request->selection_id())
                                         : ByDataset(context, request->select().dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::StartEvaluation, *request, response);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->StartEvaluation(context, request, response);
}

grpc::Status RoutingService::RecommendBudget(
    grpc::ServerContext* context, const v1::RecommendBudgetRequest* request,
    grpc::ServerWriter<v1::RecommendBudgetProgress>* writer) {
  const Target t = ByDataset(context, request->dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return ForwardStream(t, context, &Stub::RecommendBudget, *request, writer);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->RecommendBudget(context, request, writer);
}

grpc::Status RoutingService::StartRecommendBudget(grpc::ServerContext* context,
                                                  const v1::RecommendBudgetRequest* request,
                                                  v1::Operation* response) {
  const Target t = ByDataset(context, request->dataset());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::StartRecommendBudget, *request, response);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->StartRecommendBudget(context, request, response);
}

grpc::Status RoutingService::LocateOperation(grpc::ServerContext* context, const std::string& name,
                                             Target* target, v1::Operation* found) {
  const std::string tenant = TenantOf(*context);
  v1::GetOperationRequest get;
  get.set_name(name);
  // Here first: the local handler also answers every malformed or unauthorised request.
  grpc::Status mine = local_->GetOperation(context, &get, found);
  if (mine.error_code() != grpc::StatusCode::NOT_FOUND || tenant.empty() ||
      cluster::IsForwarded(*context)) {
    *target = Target{};
    return mine;
  }
  grpc::Status unreachable = grpc::Status::OK;
  for (const std::string& member : MembersOf(tenant)) {
    if (member == membership_->name()) continue;
    Target t = ToMember(*context, member, "possibly operation " + name);
    grpc::Status s = t.error;
    if (s.ok()) s = Forward(t, context, &Stub::GetOperation, get, found);
    if (s.ok()) {
      *target = t;
      return s;
    }
    if (s.error_code() != grpc::StatusCode::NOT_FOUND) unreachable = s;
  }
  // Not found on any member that answered: if one did not, it may hold the operation.
  return unreachable.ok() ? mine : unreachable;
}

grpc::Status RoutingService::GetOperation(grpc::ServerContext* context,
                                          const v1::GetOperationRequest* request,
                                          v1::Operation* response) {
  MarkAnswered(context, membership_->name());
  Target t;
  return LocateOperation(context, request->name(), &t, response);
}

grpc::Status RoutingService::CancelOperation(grpc::ServerContext* context,
                                             const v1::CancelOperationRequest* request,
                                             v1::Operation* response) {
  MarkAnswered(context, membership_->name());
  Target t;
  if (grpc::Status s = LocateOperation(context, request->name(), &t, response); !s.ok()) {
    return s;
  }
  if (!t.local) return Forward(t, context, &Stub::CancelOperation, *request, response);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  return local_->CancelOperation(context, request, response);
}

grpc::Status RoutingService::WaitOperation(grpc::ServerContext* context,
                                           const v1::WaitOperationRequest* request,
                                           v1::Operation* response) {
  MarkAnswered(context, membership_->name());
  Target t;
  if (grpc::Status s = LocateOperation(context, request->name(), &t, response); !s.ok()) {
    return s;
  }
  if (!t.local) return Forward(t, context, &Stub::WaitOperation, *request, response);
  return local_->WaitOperation(context, request, response);
}

grpc::Status RoutingService::ListOperations(grpc::ServerContext* context,
                                            const v1::ListOperationsRequest* request,
                                            v1::ListOperationsResponse* response) {
  if (!request->dataset().empty()) {
    const Target t = ByDataset(context, request->dataset());
    if (!t.error.ok()) return t.error;
    if (!t.local) return Forward(t, context, &Stub::ListOperations, *request, response);
    return local_->ListOperations(context, request, response);
  }
  MarkAnswered(context, membership_->name());
  const std::string tenant = TenantOf(*context);
  if (cluster::IsForwarded(*context) || tenant.empty()) {
    return local_->ListOperations(context, request, response);
  }
  // As ListDatasets: each member's page from the same token, merged newest first (operation
  // names sort by creation time on every member).
  v1::ListOperationsResponse mine;
  if (grpc::Status s = local_->ListOperations(context, request, &mine); !s.ok()) return s;
  std::vector<v1::Operation> merged(mine.operations().begin(), mine.operations().end());
  bool more = !mine.next_page_token().empty();
  grpc::Status others = ListOthers(
      context, tenant, &Stub::ListOperations, *request, "an operation of this list",
      [&](const std::string&, v1::ListOperationsResponse& theirs) {
        more = more || !theirs.next_page_token().empty();
        merged.insert(merged.end(), theirs.operations().begin(), theirs.operations().end());
      });
  if (!others.ok()) return others;
  std::sort(merged.begin(), merged.end(),
            [](const v1::Operation& a, const v1::Operation& b) { return a.name() > b.name(); });
  // During a move, source and destination both hold the dataset's operations.
  merged.erase(std::unique(merged.begin(), merged.end(),
                           [](const v1::Operation& a, const v1::Operation& b) {
                             return a.name() == b.name();
                           }),
               merged.end());
  const size_t take = std::min(merged.size(), PageSizeOf(request->page_size()));
  for (size_t i = 0; i < take; ++i) *response->add_operations() = std::move(merged[i]);
  if (take > 0 && (more || merged.size() > take)) {
    response->set_next_page_token(
        absl::WebSafeBase64Escape(response->operations(static_cast<int>(take) - 1).name()));
  }
  return grpc::Status::OK;
}

}  // namespace curation::server
