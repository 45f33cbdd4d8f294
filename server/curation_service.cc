// Dataset, ingest and example RPCs. Selection RPCs are in selection_rpcs.cc.
#include "server/curation_service.h"

#include <google/protobuf/util/time_util.h>

#include <deque>
#include <future>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "index/codec_proto.h"
#include "server/message_budget.h"
#include "server/validation.h"

namespace curation::server {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {

grpc::Status Invalid(const FieldError& e) { return ToGrpc(InvalidField(e.field, e.reason)); }

}  // namespace

CurationService::CurationService(store::Store* store, const Authenticator* auth,
                                 TenantRegistry* tenants, const embedding::Embedder* embedder,
                                 const Limits& limits, Metrics* metrics, jobs::Scheduler* scheduler,
                                 jobs::Operations* operations)
    : store_(store),
      auth_(auth),
      tenants_(tenants),
      embedder_(embedder),
      limits_(limits),
      metrics_(metrics),
      scheduler_(scheduler),
      operations_(operations),
      ingestor_(store, embedder, limits) {}

void CurationService::SetReady(Catalog* catalog) { catalog_.store(catalog); }

absl::StatusOr<CurationService::Scope> CurationService::Enter(const grpc::ServerContext& context,
                                                              v1::Role role) const {
  if (catalog_.load() == nullptr) {
    return absl::UnavailableError("the server is loading its datasets; retry shortly");
  }
  auto caller = auth_->Authorize(context, role);
  if (!caller.ok()) return caller.status();
  auto tenant = tenants_->Find(caller->tenant);
  if (!tenant.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the token's tenant '", caller->tenant, "' no longer exists"));
  }
  return Scope{*std::move(caller), *std::move(tenant)};
}

absl::StatusOr<std::shared_ptr<DatasetState>> CurationService::FindDataset(
    const Scope& scope, absl::string_view field, const std::string& name) const {
  if (auto e = CheckDatasetName(field, name)) return InvalidField(e->field, e->reason);
  std::shared_ptr<DatasetState> state = catalog_.load()->Find(scope.caller.tenant, name);
  if (state == nullptr) return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  return state;
}

v1::Dataset CurationService::View(DatasetState& state) {
  v1::Dataset view = state.Snapshot().dataset();
  view.set_indexed_vectors(state.index->vectors());
  return view;
}

grpc::Status CurationService::CreateDataset(grpc::ServerContext* context,
                                            const v1::CreateDatasetRequest* request,
                                            v1::Dataset* response) {
  auto scope = Enter(*context, v1::ROLE_WRITER);
  if (!scope.ok()) return ToGrpc(scope.status());
  if (auto e = CheckNewDataset(request->dataset(), limits_)) return Invalid(*e);
  storage::DatasetRecord record;
  if (!reserved_id_) {
    if (!request->member().empty()) {
      return ToGrpc(InvalidField("member", "this server is not a cluster member"));
    }
    if (request->partitions() != 0 && request->partitions() != 1) {
      return ToGrpc(InvalidField("partitions", "this server is not a cluster member: 0 or 1"));
    }
  } else {
    auto reserved = reserved_id_(scope->caller.tenant, request->dataset().name());
    if (!reserved.ok()) return ToGrpc(reserved.status());
    record.set_internal_id(reserved->internal_id);
    if (reserved->partitions > 1) {
      record.set_partition(reserved->partition);
      record.set_partitions(reserved->partitions);
    }
  }
  record.set_tenant(scope->caller.tenant);
  v1::Dataset* d = record.mutable_dataset();
  d->set_name(request->dataset().name());
  d->set_description(request->dataset().description());
  d->set_kind(request->dataset().kind() == v1::DATASET_KIND_UNSPECIFIED
                  ? v1::DATASET_KIND_PAIRS
                  : request->dataset().kind());
  v1::EmbeddingConfig* embedding = d->mutable_embedding();
  if (request->dataset().embedding().source() == v1::EmbeddingConfig::SOURCE_CLIENT) {
    embedding->set_source(v1::EmbeddingConfig::SOURCE_CLIENT);
    embedding->set_dim(request->dataset().embedding().dim());
  } else {
    embedding->set_source(v1::EmbeddingConfig::SOURCE_BUILTIN);
    embedding->set_dim(embedder_->dim());
    embedding->set_embedder(std::string(embedder_->name()));
  }
  const v1::EmbeddingConfig& asked = request->dataset().embedding();
  embedding->set_encoding(asked.encoding() == v1::EmbeddingConfig::ENCODING_UNSPECIFIED
                              ? limits_.default_encoding
                              : asked.encoding());
  if (asked.projection().dim() != 0) {
    embedding->mutable_projection()->set_dim(asked.projection().dim());
    embedding->mutable_projection()->set_keep_original(asked.projection().keep_original());
  }
  *d->mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  if (absl::Status s = tenants_->AdmitDataset(*scope->tenant); !s.ok()) return ToGrpc(s);
  auto state = catalog_.load()->Create(std::move(record));
  if (!state.ok()) {
    tenants_->ReleaseDataset(*scope->tenant, 0, 0);
    return ToGrpc(state.status());
  }
  *response = View(**state);
  return grpc::Status::OK;
}

grpc::Status CurationService::GetDataset(grpc::ServerContext* context,
                                         const v1::GetDatasetRequest* request,
                                         v1::Dataset* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto state = FindDataset(*scope, "name", request->name());
  if (!state.ok()) return ToGrpc(state.status());
  *response = View(**state);
  return grpc::Status::OK;
}

grpc::Status CurationService::ListDatasets(grpc::ServerContext* context,
                                           const v1::ListDatasetsRequest* request,
                                           v1::ListDatasetsResponse* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto page_size_or = PageSize(request->page_size(), limits_.max_page_size);
  if (!page_size_or.ok()) return ToGrpc(page_size_or.status());
  const int page_size = *page_size_or;
  std::string after;
  if (!request->page_token().empty() &&
      !absl::WebSafeBase64Unescape(request->page_token(), &after)) {
    return ToGrpc(InvalidField("page_token", "not a token this server issued"));
  }
  // One extra row tells whether another page follows.
  auto records = store_->ListDatasets(scope->caller.tenant, after, page_size + 1);
  if (!records.ok()) return ToGrpc(records.status());
  for (int i = 0; i < static_cast<int>(records->size()) && i < page_size; ++i) {
    const std::string& name = (*records)[i].dataset().name();
    // The store's record is current, but the live view adds the index count.
    if (auto state = catalog_.load()->Find(scope->caller.tenant, name)) {
      *response->add_datasets() = View(*state);
    }
  }
  if (static_cast<int>(records->size()) > page_size) {
    response->set_next_page_token(
        absl::WebSafeBase64Escape((*records)[page_size - 1].dataset().name()));
  }
  return grpc::Status::OK;
}

grpc::Status CurationService::DeleteDataset(grpc::ServerContext* context,
                                            const v1::DeleteDatasetRequest* request,
                                            v1::DeleteDatasetResponse* response) {
  auto scope = Enter(*context, v1::ROLE_WRITER);
  if (!scope.ok()) return ToGrpc(scope.status());
  if (auto e = CheckDatasetName("name", request->name())) return Invalid(*e);
  auto record = catalog_.load()->Delete(scope->caller.tenant, request->name());
  if (!record.ok()) return ToGrpc(record.status());
  tenants_->ReleaseDataset(*scope->tenant, record->dataset().example_count(),
                           record->dataset().stored_bytes());
  response->set_deleted_examples(record->dataset().example_count());
  response->set_deleted_selections(record->dataset().selection_count());
  return grpc::Status::OK;
}

absl::StatusOr<IngestReservation> CurationService::ReserveIngest(const Scope& scope,
                                                                 DatasetState& dataset,
                                                                 int64_t records,
                                                                 int64_t request_bytes) {
  // Vectors are most of a record's stored size and the request's own size bounds its text,
  // so reserve both against the tenant's quotas.
  const v1::EmbeddingConfig embedding = dataset.Snapshot().dataset().embedding();
  const int64_t original_bytes = embedding.projection().keep_original()
                                     ? index::CodeBytes(dataset.index->encoding(), embedding.dim())
                                     : 0;
  const int64_t vector_bytes =
      (static_cast<int64_t>(dataset.index->code_bytes()) + original_bytes) *
      (dataset.index->pairs() ? 2 : 1) * records;
  return tenants_->AdmitIngest(*scope.tenant, records, request_bytes + vector_bytes);
}

absl::Status CurationService::IngestAdmitted(const grpc::ServerContext& context, const Scope& scope,
                                             DatasetState& dataset,
                                             const v1::IngestExamplesRequest& request,
                                             v1::IngestExamplesResponse* summary) {
  if (request.examples_size() == 0) return absl::OkStatus();
  const int64_t request_bytes = static_cast<int64_t>(request.ByteSizeLong());
  auto reservation = ReserveIngest(scope, dataset, request.examples_size(), request_bytes);
  if (!reservation.ok()) return reservation.status();
  const int64_t accepted_before = summary->accepted();
  const int64_t duplicates_before = summary->duplicates();
  const int64_t rejected_before = summary->rejected();
  // Fair sharing of the cores (IngestSharing in tenants.h): a large batch waits for its
  // tenant's turn and runs at low priority on bounded threads.
  absl::StatusOr<int64_t> grown = absl::UnknownError("not run");
  tenants_->RunIngest(scope.caller.tenant, request.examples_size(), request_bytes, [&] {
    if (context.IsCancelled()) {
      grown = absl::CancelledError("the client went away while the batch waited for its turn");
      return;
    }
    grown = ingestor_.IngestBatch(dataset, request.examples(), /*first_index=*/0,
                                  /*report_ids=*/true, summary);
  });
  if (metrics_ != nullptr && grown.ok()) {
    metrics_->RecordIngest(summary->accepted() - accepted_before,
                           summary->duplicates() - duplicates_before,
                           summary->rejected() - rejected_before);
  }
  tenants_->CommitIngest(*scope.tenant, *reservation,
                         grown.ok() ? summary->accepted() - accepted_before : 0,
                         grown.ok() ? *grown : 0);
  return grown.status();
}

grpc::Status CurationService::IngestExamples(grpc::ServerContext* context,
                                             const v1::IngestExamplesRequest* request,
                                             v1::IngestExamplesResponse* response) {
  auto scope = Enter(*context, v1::ROLE_WRITER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto state = FindDataset(*scope, "dataset", request->dataset());
  if (!state.ok()) return ToGrpc(state.status());
  if (request->examples_size() > limits_.max_records_per_request) {
    return ToGrpc(
        InvalidField("examples", absl::StrCat(request->examples_size(), " records; at most ",
                                              limits_.max_records_per_request, " per request")));
  }
  return ToGrpc(IngestAdmitted(*context, *scope, **state, *request, response));
}

grpc::Status CurationService::IngestStream(grpc::ServerContext* context,
                                           grpc::ServerReader<v1::IngestExamplesRequest>* reader,
                                           v1::IngestExamplesResponse* response) {
  return IngestFrom(context, reader, response);
}

grpc::Status CurationService::IngestFrom(
    grpc::ServerContext* context, grpc::ServerReaderInterface<v1::IngestExamplesRequest>* reader,
    v1::IngestExamplesResponse* response) {
  auto scope = Enter(*context, v1::ROLE_WRITER);
  if (!scope.ok()) return ToGrpc(scope.status());
  std::shared_ptr<DatasetState> state;
  int64_t next_index = 0;
  int64_t message = 0;
  bool wrote = false;
  // The messages are written without an fsync each; every reply, an error too, comes after
  // one sync of all of them. A client told "error" may resend the stream, and its records
  // then come back as duplicates: acknowledged, so they must be durable by then.
  auto finish = [&](absl::Status status) {
    if (wrote) {
      absl::Status synced = store_->SyncWal();
      if (status.ok()) status = synced;
    }
    return ToGrpc(status);
  };

  // A bulk load runs at the embedder's speed only if the embedder never waits: messages are
  // embedded (Ingestor::Prepare, on the ingest workers under the same sharing rules as
  // IngestExamples' batches) while this thread writes earlier ones and reads later ones.
  // Up to kStarted messages are started before the oldest is written, so the embedder has
  // the next message queued even when this thread, at full priority but sharing a core with
  // the client, takes as long to write and read one message as the embedder takes to embed
  // one: with a single message ahead, the embedder waited whenever this thread ran late.
  // Writes stay in message order, so ids, duplicates and error indexes come out as if the
  // messages were ingested one after the other. At most kStarted + 1 messages are in memory.
  constexpr size_t kStarted = 2;
  struct Batch {
    std::unique_ptr<v1::IngestExamplesRequest> request;
    int64_t first_index = 0;
    IngestReservation reservation;
    std::future<absl::StatusOr<Ingestor::Prepared>> prepared;
  };
  auto start = [&](std::unique_ptr<v1::IngestExamplesRequest> request, int64_t first_index,
                   IngestReservation reservation) {
    Batch b;
    b.request = std::move(request);
    b.first_index = first_index;
    b.reservation = reservation;
    const v1::IngestExamplesRequest* r = b.request.get();
    DatasetState* dataset = state.get();
    const std::string tenant = scope->caller.tenant;
    b.prepared = std::async(std::launch::async, [this, context, r, dataset, tenant, first_index] {
      absl::StatusOr<Ingestor::Prepared> out = absl::UnknownError("not run");
      tenants_->RunIngest(tenant, r->examples_size(), static_cast<int64_t>(r->ByteSizeLong()), [&] {
        if (context->IsCancelled()) {
          out = absl::CancelledError("the client went away while the batch waited for its turn");
          return;
        }
        out = ingestor_.Prepare(*dataset, r->examples(), first_index);
      });
      return out;
    });
    return b;
  };
  // Writes a started batch (after its embedding is done) and settles its reservation.
  auto commit = [&](Batch& b) -> absl::Status {
    absl::StatusOr<Ingestor::Prepared> prepared = b.prepared.get();
    const int64_t accepted_before = response->accepted();
    const int64_t duplicates_before = response->duplicates();
    const int64_t rejected_before = response->rejected();
    absl::StatusOr<int64_t> grown = absl::UnknownError("not run");
    if (!prepared.ok()) {
      grown = prepared.status();
    } else {
      grown = ingestor_.Commit(*state, b.request->mutable_examples(), b.first_index,
                               *std::move(prepared),
                               /*report_ids=*/false, response,
                               /*defer_sync=*/true);
    }
    if (metrics_ != nullptr && grown.ok()) {
      metrics_->RecordIngest(response->accepted() - accepted_before,
                             response->duplicates() - duplicates_before,
                             response->rejected() - rejected_before);
    }
    tenants_->CommitIngest(*scope->tenant, b.reservation,
                           grown.ok() ? response->accepted() - accepted_before : 0,
                           grown.ok() ? *grown : 0);
    return grown.status();
  };
  // Waits for a started batch that will not be written and gives its reservation back.
  auto abandon = [&](Batch& b) {
    b.prepared.wait();
    tenants_->CommitIngest(*scope->tenant, b.reservation, 0, 0);
  };

  std::deque<Batch> started;  // started, not yet written, in message order
  // Writes the oldest started batch; on failure gives the later ones back unwritten.
  auto commit_oldest = [&]() -> absl::Status {
    absl::Status s = commit(started.front());
    started.pop_front();
    if (!s.ok()) {
      for (Batch& b : started) abandon(b);
      started.clear();
    }
    return s;
  };
  // Ends the stream with `status` after writing the batches still in flight (the messages
  // before a bad one are stored, as when each was written before the next was read).
  auto end = [&](absl::Status status) {
    while (!started.empty()) {
      absl::Status s = commit_oldest();
      if (status.ok()) status = s;
    }
    return finish(status);
  };
  auto request = std::make_unique<v1::IngestExamplesRequest>();
  while (reader->Read(request.get())) {
    if (state == nullptr ||
        (!request->dataset().empty() && request->dataset() != state->Snapshot().dataset().name())) {
      if (state != nullptr) {
        return end(InvalidField(absl::StrCat("messages[", message, "].dataset"),
                                "one stream ingests into one dataset"));
      }
      auto found = FindDataset(*scope, "dataset", request->dataset());
      if (!found.ok()) return end(found.status());
      state = *std::move(found);
    }
    const int records = request->examples_size();
    if (records > limits_.max_records_per_request) {
      return end(InvalidField(absl::StrCat("messages[", message, "].examples"),
                              absl::StrCat(records, " records; at most ",
                                           limits_.max_records_per_request, " per message")));
    }
    if (records > 0) {
      auto reservation =
          ReserveIngest(*scope, *state, records, static_cast<int64_t>(request->ByteSizeLong()));
      if (!reservation.ok()) return end(reservation.status());
      // A client that loses the stream can resend it whole: what was stored comes back as
      // duplicates.
      wrote = true;
      started.push_back(start(std::move(request), next_index, *reservation));
      request = std::make_unique<v1::IngestExamplesRequest>();
      if (started.size() > kStarted) {
        if (absl::Status s = commit_oldest(); !s.ok()) return finish(s);
      }
    }
    next_index += records;
    ++message;
  }
  if (state == nullptr) return ToGrpc(InvalidField("dataset", "the stream sent no message"));
  return end(absl::OkStatus());
}

absl::StatusOr<storage::ExampleRecord> CurationService::LoadExample(uint64_t dataset_id,
                                                                    const std::string& id) const {
  auto entry = store_->FindId(dataset_id, id);
  if (!entry.ok()) return entry.status();
  if (!entry->has_value()) return absl::NotFoundError(absl::StrCat("example '", id, "' not found"));
  return store_->GetExample(dataset_id, (*entry)->seq);
}

grpc::Status CurationService::GetExamples(grpc::ServerContext* context,
                                          const v1::GetExamplesRequest* request,
                                          v1::GetExamplesResponse* response) {
  auto scope = Enter(*context, v1::ROLE_READER);
  if (!scope.ok()) return ToGrpc(scope.status());
  auto state = FindDataset(*scope, "dataset", request->dataset());
  if (!state.ok()) return ToGrpc(state.status());
  if (request->ids_size() > limits_.max_ids_per_get) {
    return ToGrpc(InvalidField("ids", absl::StrCat("at most ", limits_.max_ids_per_get)));
  }
  for (int i = 0; i < request->ids_size(); ++i) {
    if (auto e =
            CheckRequestId(absl::StrCat("ids[", i, "]"), request->ids(i), limits_.max_id_bytes)) {
      return Invalid(*e);
    }
  }
  const storage::DatasetRecord record = (*state)->Snapshot();
  // The reply is the examples of the distinct ids, in the order of their first mention, and
  // it stops before the one that would take it past one message (ReplyBudgetBytes): the
  // client asks again for the ids after the last one returned. Without both, 1,000 copies of
  // one large id built gigabytes before failing, and any reply over the limit failed whole.
  // (GetExamplesResponse has no field naming the ids left out; until it does, "a prefix of
  // the distinct ids, in order" is the contract, see the README.)
  const int64_t budget = ReplyBudgetBytes(limits_);
  int64_t reply_bytes = 0;
  absl::flat_hash_set<absl::string_view> seen;
  for (int i = 0; i < request->ids_size(); ++i) {
    const std::string& id = request->ids(i);
    if (!seen.insert(id).second) continue;
    auto entry = store_->FindId(record.internal_id(), id);
    if (!entry.ok()) return ToGrpc(entry.status());
    if (!entry->has_value()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("ids[", i, "]: example '", id, "' not found"));
    }
    auto example = store_->GetExample(record.internal_id(), (*entry)->seq);
    if (!example.ok()) return ToGrpc(example.status());
    v1::Example out = std::move(*example->mutable_example());
    if (request->include_embeddings()) {
      auto vectors = ReadVectors(*store_, record, (*entry)->seq, out.has_pair());
      if (!vectors.ok()) return ToGrpc(vectors.status());
      if (out.has_pair()) {
        const auto middle = vectors->begin() + vectors->size() / 2;
        out.mutable_pair()->mutable_chosen_embedding()->Add(vectors->begin(), middle);
        out.mutable_pair()->mutable_rejected_embedding()->Add(middle, vectors->end());
      } else {
        out.mutable_unpaired()->mutable_embedding()->Add(vectors->begin(), vectors->end());
      }
    }
    const int64_t size = EmbeddedBytes(static_cast<int64_t>(out.ByteSizeLong()));
    if (reply_bytes + size > budget) {
      if (response->examples_size() > 0) break;  // the rest on the next call
      return grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("ids[", i, "]: example '", id, "' is ", size, " bytes, over the ", budget,
                       " bytes one reply may carry (--max-message-bytes)"));
    }
    reply_bytes += size;
    *response->add_examples() = std::move(out);
  }
  return grpc::Status::OK;
}

}  // namespace curation::server
