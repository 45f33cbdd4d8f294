#include "server/routing_service.h"

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/cluster_node.h"
#include "server/limits.h"
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
                                                const std::string& member,
                                                const std::string& what) const {
  Target t;
  if (member == membership_->name()) return t;
  t.local = false;
  t.member = member;
  t.what = what;
  if (cluster::IsForwarded(context)) {
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
  for (const cluster::Placement& p : directory_->List(tenant)) members.insert(p.record.member());
  return {members.begin(), members.end()};
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

grpc::Status RoutingService::GetDataset(grpc::ServerContext* context,
                                        const v1::GetDatasetRequest* request,
                                        v1::Dataset* response) {
  const Target t = ByDataset(context, request->name());
  if (!t.error.ok()) return t.error;
  grpc::Status s = t.local ? local_->GetDataset(context, request, response)
                           : Forward(t, context, &Stub::GetDataset, *request, response);
  if (s.ok()) response->set_member(t.local ? membership_->name() : t.member);
  return s;
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
  } else {
    std::map<std::string, int64_t> placed;
    for (const cluster::Placement& p : directory_->All()) ++placed[p.record.member()];
    std::tuple<int64_t, int64_t, std::string> best{INT64_MAX, INT64_MAX, ""};
    for (const auto& [m, record] : members) {
      best = std::min(best, std::make_tuple(record.stored_bytes(), placed[m], m));
    }
    member = std::get<2>(best);
    if (member.empty()) member = membership_->name();
  }
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

grpc::Status RoutingService::DeleteDataset(grpc::ServerContext* context,
                                           const v1::DeleteDatasetRequest* request,
                                           v1::DeleteDatasetResponse* response) {
  const Target t = ByDataset(context, request->name());
  if (!t.error.ok()) return t.error;
  if (!t.local) return Forward(t, context, &Stub::DeleteDataset, *request, response);
  if (grpc::Status w = Writable(); !w.ok()) return w;
  // Only a writer's delete marks the entry (the local handler refuses the others).
  auto writer = auth_->Authorize(*context, v1::ROLE_WRITER);
  std::optional<cluster::Placement> deleting;
  if (writer.ok() && !writer->tenant.empty()) {
    if (auto p = directory_->Find(writer->tenant, request->name())) {
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
  std::erase_if(merged, [&](const v1::Dataset& d) {
    auto p = directory_->Find(tenant, d.name());
    return p && p->record.member() != d.member();
  });
  std::sort(merged.begin(), merged.end(),
            [](const v1::Dataset& a, const v1::Dataset& b) { return a.name() < b.name(); });
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

grpc::Status RoutingService::GetExamples(grpc::ServerContext* context,
                                         const v1::GetExamplesRequest* request,
                                         v1::GetExamplesResponse* response) {
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
