// MemberService.PartitionStep: a partition's side of a distributed selection. Translates the
// wire to jobs::PartitionPool and selection::Partition and back; the pools of recent steps are
// kept, so that a method's many steps (ISA's EM iterations) build their pool once.
#include <openssl/crypto.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "cluster/forwarding.h"
#include "common/status.h"
#include "jobs/partition_pool.h"
#include "jobs/selection_plan.h"
#include "server/cluster_node.h"
#include "server/curation_service.h"
#include "server/dataset_move.h"
#include "server/selection_ids.h"

namespace curation::server {
namespace {

using cluster::v1::PartitionStepRequest;
using cluster::v1::PartitionStepResponse;

constexpr int64_t kMaxGatherPairs = 4096;
constexpr int64_t kMaxStepRows = 1 << 22;

bool MemberKeyMatches(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(cluster::kMemberKeyHeader);
  if (it == metadata.end()) return false;
  const std::string expected = MemberKey();
  return it->second.size() == expected.size() &&
         CRYPTO_memcmp(it->second.data(), expected.data(), expected.size()) == 0;
}

selection::MixtureParameters FromWire(const cluster::v1::MixtureParameters& p) {
  selection::MixtureParameters out;
  out.covariance =
      p.covariance() == 1 ? selection::Covariance::kSpherical : selection::Covariance::kDiag;
  out.weights.assign(p.weights().begin(), p.weights().end());
  out.means.assign(p.means().begin(), p.means().end());
  out.covariances.assign(p.covariances().begin(), p.covariances().end());
  out.center.assign(p.center().begin(), p.center().end());
  return out;
}

void PutRows(const jobs::PartitionPool& pool, const selection::PartitionRows& rows,
             PartitionStepResponse* out) {
  const std::vector<std::string> ids = pool.Ids(rows.rows);
  for (size_t i = 0; i < rows.rows.size(); ++i) {
    const int64_t r = rows.rows[i];
    out->add_row_numbers(r);
    out->add_ids(ids[i]);
    out->add_sides(pool.units().side[r]);
    out->add_labels(pool.units().label[r]);
  }
  out->mutable_scores()->Add(rows.scores.begin(), rows.scores.end());
  out->mutable_keys()->Add(rows.keys.begin(), rows.keys.end());
  out->set_values(std::string(reinterpret_cast<const char*>(rows.values.data()),
                              rows.values.size() * sizeof(float)));
}

}  // namespace

std::shared_ptr<jobs::PartitionPool> MemberService::CachedPool(const std::string& key) {
  std::lock_guard<std::mutex> lock(pools_mu_);
  for (auto& entry : pools_) {
    if (entry.key == key) {
      entry.last_use = std::chrono::steady_clock::now();
      return entry.pool;
    }
  }
  return nullptr;
}

void MemberService::KeepPool(const std::string& key, std::shared_ptr<jobs::PartitionPool> pool) {
  std::lock_guard<std::mutex> lock(pools_mu_);
  const auto now = std::chrono::steady_clock::now();
  // A few pools of the runs in progress; one idle for a minute belongs to a finished run.
  std::erase_if(
      pools_, [&](const CachedPoolEntry& e) { return now - e.last_use > std::chrono::minutes(1); });
  if (pools_.size() >= kCachedPools) {
    auto oldest = std::min_element(pools_.begin(), pools_.end(), [](const auto& a, const auto& b) {
      return a.last_use < b.last_use;
    });
    pools_.erase(oldest);
  }
  pools_.push_back({key, std::move(pool), now});
}

grpc::Status MemberService::PartitionStep(grpc::ServerContext* context,
                                          const PartitionStepRequest* request,
                                          PartitionStepResponse* response) {
  if (!MemberKeyMatches(*context)) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "PartitionStep is for the cluster's members only");
  }
  Catalog* catalog = node_->catalog();
  if (catalog == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "still loading");
  std::shared_ptr<DatasetState> state = catalog->Find(request->tenant(), request->dataset());
  const storage::DatasetRecord record = state ? state->Snapshot() : storage::DatasetRecord();
  if (state == nullptr || record.internal_id() != request->internal_id()) {
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("member ", node_->name(), " holds no partition ", request->internal_id(),
                     " of dataset '", request->dataset(), "'"));
  }
  const int64_t pool_seq = request->pool_seq() > 0   ? request->pool_seq()
                           : request->pool_seq() < 0 ? 0
                                                     : record.next_seq();
  response->set_pool_seq(pool_seq);

  if (request->has_gather_pairs()) {
    const auto& gather = request->gather_pairs();
    if (record.dataset().kind() != v1::DATASET_KIND_PAIRS) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "not a pairs dataset");
    }
    if (gather.offset() < 0 || gather.limit() <= 0 || gather.limit() > kMaxGatherPairs) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("gather_pairs: limit in 1..", kMaxGatherPairs));
    }
    const index::UnitMatrix units = state->index->Units(index::UnitLayout::kVectors, pool_seq);
    const int64_t pairs = units.rows / 2;
    response->set_rows(pairs);
    response->set_dim(units.dim);
    const int64_t begin = std::min(gather.offset(), pairs);
    const int64_t end = std::min(pairs, begin + gather.limit());
    std::string values((end - begin) * 2 * units.dim * sizeof(float), '\0');
    units.values.Read(2 * begin, 2 * end, reinterpret_cast<float*>(values.data()));
    std::vector<int64_t> positions;
    for (int64_t i = begin; i < end; ++i) positions.push_back(units.example[2 * i]);
    for (std::string& id : state->index->ExampleIds(positions)) response->add_ids(std::move(id));
    response->set_values(std::move(values));
    return grpc::Status::OK;
  }

  auto plan = jobs::PlanSelection(request->select(), record.dataset().kind(), state->index->dim());
  if (!plan.ok()) return ToGrpc(plan.status());
  const std::string key =
      absl::StrCat(record.internal_id(), "/", pool_seq, "/", plan->resolved.SerializeAsString());
  std::shared_ptr<jobs::PartitionPool> pool = CachedPool(key);
  if (pool == nullptr) {
    auto opened = jobs::PartitionPool::Open(
        *plan,
        jobs::PoolSource{state->index.get(), node_->store(), record.internal_id(), pool_seq});
    if (!opened.ok()) return ToGrpc(opened.status());
    pool = *std::move(opened);
    KeepPool(key, pool);
  }
  selection::Partition& partition = pool->partition();

  switch (request->step_case()) {
    case PartitionStepRequest::kSummarize: {
      auto summary = partition.Summarize();
      if (!summary.ok()) return ToGrpc(summary.status());
      response->set_rows(summary->rows);
      response->set_dim(summary->dim);
      response->set_kept(summary->kept);
      response->mutable_sum()->Add(summary->sum.begin(), summary->sum.end());
      return grpc::Status::OK;
    }
    case PartitionStepRequest::kSmallestHashes: {
      const auto& step = request->smallest_hashes();
      if (step.k() < 0 || step.k() > kMaxStepRows) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "smallest_hashes.k");
      }
      auto rows = partition.SmallestHashes(step.seed(), step.k(), step.with_values());
      if (!rows.ok()) return ToGrpc(rows.status());
      PutRows(*pool, *rows, response);
      return grpc::Status::OK;
    }
    case PartitionStepRequest::kSelectLocal: {
      const auto& step = request->select_local();
      if (step.k() < 0 || step.k() > kMaxStepRows) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "select_local.k");
      }
      selection::LocalSelectRequest local;
      local.k = step.k();
      local.seed = step.seed();
      local.herding_target.assign(step.herding_target().begin(), step.herding_target().end());
      local.with_values = step.with_values();
      auto rows = partition.SelectLocal(local);
      if (!rows.ok()) return ToGrpc(rows.status());
      PutRows(*pool, *rows, response);
      return grpc::Status::OK;
    }
    case PartitionStepRequest::kMixtureStep: {
      auto stats = partition.MixtureStep(FromWire(request->mixture_step()));
      if (!stats.ok()) return ToGrpc(stats.status());
      response->set_statistics_rows(stats->rows);
      response->set_log_likelihood(stats->log_likelihood);
      response->mutable_resp()->Add(stats->resp.begin(), stats->resp.end());
      response->mutable_resp_x()->Add(stats->resp_x.begin(), stats->resp_x.end());
      response->mutable_resp_x2()->Add(stats->resp_x2.begin(), stats->resp_x2.end());
      return grpc::Status::OK;
    }
    case PartitionStepRequest::kLowestLikelihoods: {
      const auto& step = request->lowest_likelihoods();
      if (step.k() < 0 || step.k() > kMaxStepRows) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "lowest_likelihoods.k");
      }
      auto tail = partition.LowestLikelihoods(FromWire(step.parameters()), step.k());
      if (!tail.ok()) return ToGrpc(tail.status());
      response->set_min_log_likelihood(tail->min_log_likelihood);
      response->set_max_log_likelihood(tail->max_log_likelihood);
      response->set_sum_log_likelihood(tail->sum_log_likelihood);
      selection::PartitionRows rows;
      rows.rows = tail->rows;
      rows.scores = tail->log_likelihoods;
      rows.keys = tail->keys;
      rows.values = tail->values;
      PutRows(*pool, rows, response);
      return grpc::Status::OK;
    }
    default:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "step: one step is required");
  }
}

}  // namespace curation::server
