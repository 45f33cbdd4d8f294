#include "server/dataset_move.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "server/catalog.h"
#include "server/curation_service.h"
#include "server/telemetry.h"

namespace curation::server {
namespace {

// Rows per stream message: well under the default 64 MB message limit, big enough that a
// million-pair dataset moves in a few hundred messages.
constexpr int64_t kChunkBytes = 4 << 20;

}  // namespace

absl::StatusOr<v1::MoveDatasetResponse> MoveDataset(ClusterNode& node,
                                                    const grpc::ServerContext& call,
                                                    const std::string& tenant,
                                                    const std::string& dataset,
                                                    const std::string& to) {
  const auto started = std::chrono::steady_clock::now();
  if (to == node.name()) {
    return InvalidField("to_member", absl::StrCat("dataset ", dataset, " is on ", to, " already"));
  }
  auto destination = node.membership()->Find(to);
  if (!destination) {
    return InvalidField("to_member", absl::StrCat("no registered member is named ", to));
  }
  RETURN_IF_ERROR(node.membership()->CheckWritable());
  auto placement = node.directory()->Find(tenant, dataset);
  if (placement && placement->record.partitions_size() > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset ", dataset, " is partitioned; only a dataset held whole moves"));
  }
  if (!placement || placement->record.member() != node.name()) {
    return absl::NotFoundError(absl::StrCat("dataset ", dataset, " of tenant ", tenant,
                                            " is not held by member ", node.name()));
  }
  Catalog* catalog = node.catalog();
  ASSIGN_OR_RETURN(storage::DatasetRecord record,
                   catalog->BeginMove(tenant, dataset, [&node, &tenant](uint64_t id) {
                     return node.operations()->CountLive(tenant, id);
                   }));
  LogEvent("info", "moving a dataset",
           {{"tenant", tenant},
            {"dataset", dataset},
            {"to", to},
            {"examples", std::to_string(record.dataset().example_count())}});
  // Drops the destination's copy of this dataset, if it has one: a copy an earlier move left
  // when it failed and could not drop it (the destination refuses while the directory names it
  // as the holder, so this never drops the dataset itself).
  auto drop_at_destination = [&] {
    auto stub = cluster::v1::MemberService::NewStub(node.channels()->Get(destination->address()));
    auto context = node.channels()->FanOutContext(call, std::chrono::seconds(30));
    cluster::v1::DropDatasetRequest drop;
    drop.set_tenant(tenant);
    drop.set_dataset(dataset);
    drop.set_internal_id(record.internal_id());
    cluster::v1::DropDatasetResponse dropped;
    return stub->DropDataset(context.get(), drop, &dropped);
  };
  // From here on, every failure unfreezes the dataset here.
  auto undo = [&](const absl::Status& why, bool drop) {
    if (drop) (void)drop_at_destination();
    (void)catalog->EndMove(tenant, dataset, /*moved=*/false);
    LogEvent("warn", "a dataset move failed; the dataset stays here",
             {{"tenant", tenant}, {"dataset", dataset}, {"error", why.ToString()}});
    return why;
  };
  if (grpc::Status s = drop_at_destination();
      !s.ok() && s.error_code() != grpc::StatusCode::NOT_FOUND) {
    return undo(FromGrpc(s), /*drop=*/false);
  }

  auto stub = cluster::v1::MemberService::NewStub(node.channels()->Get(destination->address()));
  auto context = node.channels()->ForwardContext(call);
  cluster::v1::ImportDatasetResponse imported;
  auto writer = stub->ImportDataset(context.get(), &imported);
  int64_t bytes = 0;
  absl::Status exported = node.store()->ExportDataset(
      record, kChunkBytes, [&](storage::DatasetRows rows) -> absl::Status {
        cluster::v1::ImportDatasetRequest message;
        *message.mutable_rows() = std::move(rows);
        bytes += static_cast<int64_t>(message.ByteSizeLong());
        if (!writer->Write(message)) {
          return absl::UnavailableError(absl::StrCat("member ", to, " ended the import"));
        }
        return absl::OkStatus();
      });
  if (exported.ok()) writer->WritesDone();
  grpc::Status finished = writer->Finish();
  if (!exported.ok() || !finished.ok()) {
    // The destination's answer says more than our write's failure.
    const absl::Status why = !finished.ok() ? FromGrpc(finished) : exported;
    return undo(why, /*drop=*/true);
  }

  // The switch: one transaction on the entry as we read it.
  storage::PlacementRecord moved = placement->record;
  moved.set_member(to);
  moved.set_state(storage::PlacementRecord::READY);
  if (auto switched = node.directory()->Update(*placement, moved); !switched.ok()) {
    // Did the switch land? A reply lost on the way back may hide one that did. Ask etcd until
    // it answers: undoing a switch that landed would lose every write acknowledged here after
    // it, and dropping the destination's copy would lose the dataset.
    absl::StatusOr<std::optional<cluster::Placement>> now = absl::UnavailableError("not asked");
    for (int attempt = 0; attempt < 30 && !now.ok(); ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::seconds(1));
      now = node.directory()->Fetch(tenant, dataset);
    }
    if (!now.ok()) {
      // Unknown: the dataset stays frozen here (reads go on), and the next start of this
      // member settles it from the directory (ClusterNode::Adopt).
      LogEvent("error", "a dataset move's switch has an unknown outcome; the dataset stays frozen",
               {{"tenant", tenant}, {"dataset", dataset}, {"error", now.status().ToString()}});
      return absl::UnavailableError(
          absl::StrCat("the move of dataset ", dataset, " may or may not have switched to ", to,
                       " (etcd did not answer); it stays frozen on ", node.name(),
                       " until etcd answers and that member restarts"));
    }
    const bool landed = now->has_value() && (*now)->record.member() == to &&
                        (*now)->record.internal_id() == record.internal_id();
    if (!landed) return undo(switched.status(), /*drop=*/true);
  }
  // The destination holds it now; the local copy goes.
  if (absl::Status s = catalog->EndMove(tenant, dataset, /*moved=*/true); !s.ok()) {
    // The directory names the destination: this copy is unreachable, and the next start-up
    // (ClusterNode::Adopt) deletes it.
    LogEvent("error", "a moved dataset's local copy was not deleted",
             {{"tenant", tenant}, {"dataset", dataset}, {"error", s.ToString()}});
  }
  node.membership()->PublishLoad();
  v1::MoveDatasetResponse response;
  response.set_from_member(node.name());
  response.set_to_member(to);
  response.set_examples(record.dataset().example_count());
  response.set_bytes_copied(bytes);
  response.set_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  LogEvent(
      "info", "moved a dataset",
      {{"tenant", tenant}, {"dataset", dataset}, {"to", to}, {"bytes", std::to_string(bytes)}});
  return response;
}

grpc::Status MemberService::ImportDataset(
    grpc::ServerContext* context, grpc::ServerReader<cluster::v1::ImportDatasetRequest>* reader,
    cluster::v1::ImportDatasetResponse* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) {
    return ToGrpc(caller.status());
  }
  if (absl::Status s = node_->membership()->CheckWritable(); !s.ok()) return ToGrpc(s);
  Catalog* catalog = node_->catalog();
  if (catalog == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "still loading");
  int64_t bytes = 0;
  auto imported =
      node_->store()->ImportDataset([&]() -> absl::StatusOr<std::optional<storage::DatasetRows>> {
        cluster::v1::ImportDatasetRequest message;
        if (!reader->Read(&message)) {
          if (context->IsCancelled()) return absl::CancelledError("the source went away");
          return std::nullopt;
        }
        bytes += static_cast<int64_t>(message.ByteSizeLong());
        return std::move(*message.mutable_rows());
      });
  if (!imported.ok()) return ToGrpc(imported.status());
  auto adopted = catalog->Adopt(imported->record, imported->operation_bytes);
  if (!adopted.ok()) return ToGrpc(adopted.status());
  node_->membership()->PublishLoad();
  response->set_rows(imported->rows);
  response->set_bytes(bytes);
  response->set_examples(imported->record.dataset().example_count());
  return grpc::Status::OK;
}

grpc::Status MemberService::DropDataset(grpc::ServerContext* context,
                                        const cluster::v1::DropDatasetRequest* request,
                                        cluster::v1::DropDatasetResponse* response) {
  if (auto caller = auth_->AuthorizeAdmin(*context); !caller.ok()) {
    return ToGrpc(caller.status());
  }
  // From etcd itself, never the cache: a switch to this member that the watch has not
  // delivered yet must not be mistaken for a failed move.
  auto placement = node_->directory()->Fetch(request->tenant(), request->dataset());
  if (!placement.ok()) return ToGrpc(placement.status());
  if (placement->has_value() && (*placement)->record.member() == node_->name()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the directory names this member as the dataset's holder");
  }
  Catalog* catalog = node_->catalog();
  if (catalog == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "still loading");
  auto state = catalog->Find(request->tenant(), request->dataset());
  if (state == nullptr || state->Snapshot().internal_id() != request->internal_id()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such imported dataset here");
  }
  // As a moved-away dataset goes: its usage given back, its imported operations deleted.
  absl::Status s =
      catalog->BeginMove(request->tenant(), request->dataset(), [](uint64_t) { return int64_t{0}; })
          .status();
  if (s.ok()) s = catalog->EndMove(request->tenant(), request->dataset(), /*moved=*/true);
  return ToGrpc(s);
}

}  // namespace curation::server
