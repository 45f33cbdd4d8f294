#include "server/remote_partition.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "cluster/forwarding.h"
#include "common/status.h"
#include "server/curation_service.h"
#include "server/selection_ids.h"

namespace curation::server {
namespace {

using cluster::v1::PartitionStepRequest;
using cluster::v1::PartitionStepResponse;

// A step can be a whole local selection over a large partition.
constexpr auto kStepDeadline = std::chrono::minutes(30);
constexpr int64_t kGatherChunk = 4096;

void ToWire(const selection::MixtureParameters& p, cluster::v1::MixtureParameters* out) {
  out->set_covariance(p.covariance == selection::Covariance::kSpherical ? 1 : 0);
  out->mutable_weights()->Add(p.weights.begin(), p.weights.end());
  out->mutable_means()->Add(p.means.begin(), p.means.end());
  out->mutable_covariances()->Add(p.covariances.begin(), p.covariances.end());
  out->mutable_center()->Add(p.center.begin(), p.center.end());
}

class RemotePartition final : public jobs::PoolPartition {
 public:
  RemotePartition(ClusterNode& node, std::string tenant, std::string dataset, int index,
                  storage::PartitionPlacement placement, v1::SelectRequest resolved,
                  std::chrono::milliseconds retry_for)
      : node_(node),
        tenant_(std::move(tenant)),
        dataset_(std::move(dataset)),
        index_(index),
        placement_(std::move(placement)),
        resolved_(std::move(resolved)),
        retry_for_(retry_for) {}

  const std::string& member() const override { return placement_.member(); }

  absl::StatusOr<selection::PartitionSummary> Summarize() override {
    PartitionStepRequest request;
    request.mutable_summarize();
    ASSIGN_OR_RETURN(PartitionStepResponse r, Call(request));
    selection::PartitionSummary out;
    out.rows = r.rows();
    out.dim = r.dim();
    out.kept = r.kept();
    out.sum.assign(r.sum().begin(), r.sum().end());
    return out;
  }

  absl::StatusOr<selection::PartitionRows> SmallestHashes(uint64_t seed, int64_t k,
                                                          bool with_values) override {
    PartitionStepRequest request;
    auto* step = request.mutable_smallest_hashes();
    step->set_seed(seed);
    step->set_k(k);
    step->set_with_values(with_values);
    ASSIGN_OR_RETURN(PartitionStepResponse r, Call(request));
    return Rows(r);
  }

  absl::StatusOr<selection::PartitionRows> SelectLocal(
      const selection::LocalSelectRequest& local) override {
    PartitionStepRequest request;
    auto* step = request.mutable_select_local();
    step->set_k(local.k);
    step->set_seed(local.seed);
    step->mutable_herding_target()->Add(local.herding_target.begin(), local.herding_target.end());
    step->set_with_values(local.with_values);
    ASSIGN_OR_RETURN(PartitionStepResponse r, Call(request));
    return Rows(r);
  }

  absl::StatusOr<selection::MixtureStatistics> MixtureStep(
      const selection::MixtureParameters& params) override {
    PartitionStepRequest request;
    ToWire(params, request.mutable_mixture_step());
    ASSIGN_OR_RETURN(PartitionStepResponse r, Call(request));
    selection::MixtureStatistics out;
    out.rows = r.statistics_rows();
    out.log_likelihood = r.log_likelihood();
    out.resp.assign(r.resp().begin(), r.resp().end());
    out.resp_x.assign(r.resp_x().begin(), r.resp_x().end());
    out.resp_x2.assign(r.resp_x2().begin(), r.resp_x2().end());
    return out;
  }

  absl::StatusOr<selection::LikelihoodTail> LowestLikelihoods(
      const selection::MixtureParameters& params, int64_t k) override {
    PartitionStepRequest request;
    auto* step = request.mutable_lowest_likelihoods();
    ToWire(params, step->mutable_parameters());
    step->set_k(k);
    ASSIGN_OR_RETURN(PartitionStepResponse r, Call(request));
    selection::PartitionRows rows = Rows(r);
    selection::LikelihoodTail out;
    out.min_log_likelihood = r.min_log_likelihood();
    out.max_log_likelihood = r.max_log_likelihood();
    out.sum_log_likelihood = r.sum_log_likelihood();
    out.rows = std::move(rows.rows);
    out.log_likelihoods = std::move(rows.scores);
    out.keys = std::move(rows.keys);
    out.values = std::move(rows.values);
    return out;
  }

  absl::StatusOr<jobs::SelectedUnit> Unit(int64_t row) const override {
    auto it = units_.find(row);
    if (it == units_.end()) {
      return absl::NotFoundError(
          absl::StrCat("row ", row, " of partition ", index_, " was never returned"));
    }
    return it->second;
  }

  absl::Status GatherPairs(std::vector<std::string>* ids, std::vector<float>* values,
                           int* dim) override {
    for (int64_t offset = 0;; offset += kGatherChunk) {
      PartitionStepRequest request;
      request.mutable_gather_pairs()->set_offset(offset);
      request.mutable_gather_pairs()->set_limit(kGatherChunk);
      ASSIGN_OR_RETURN(PartitionStepResponse r, Call(request));
      // An empty partition may not know its dimension; the others do.
      if (r.dim() > 0) *dim = static_cast<int>(r.dim());
      const size_t floats = r.values().size() / sizeof(float);
      const size_t at = values->size();
      values->resize(at + floats);
      if (floats > 0) {
        std::memcpy(values->data() + at, r.values().data(), floats * sizeof(float));
      }
      for (std::string& id : *r.mutable_ids()) ids->push_back(std::move(id));
      if (offset + kGatherChunk >= r.rows()) return absl::OkStatus();
    }
  }

 private:
  selection::PartitionRows Rows(const PartitionStepResponse& r) {
    selection::PartitionRows out;
    out.rows.assign(r.row_numbers().begin(), r.row_numbers().end());
    out.scores.assign(r.scores().begin(), r.scores().end());
    out.keys.assign(r.keys().begin(), r.keys().end());
    out.values.resize(r.values().size() / sizeof(float));
    if (!out.values.empty()) {
      std::memcpy(out.values.data(), r.values().data(), out.values.size() * sizeof(float));
    }
    for (int i = 0; i < r.row_numbers_size(); ++i) {
      jobs::SelectedUnit& unit = units_[r.row_numbers(i)];
      unit.id = r.ids(i);
      unit.side = i < r.sides_size() ? r.sides(i) : -1;
      unit.label = i < r.labels_size() ? r.labels(i) : -1;
    }
    return out;
  }

  // One step, retried while the member is unreachable, for at most retry_for_.
  absl::StatusOr<PartitionStepResponse> Call(PartitionStepRequest request) {
    request.set_tenant(tenant_);
    request.set_dataset(dataset_);
    request.set_internal_id(placement_.internal_id());
    // Pinned at 0 (the partition held nothing then) is sent as -1: 0 would mean "now".
    request.set_pool_seq(!pinned_ ? 0 : (pool_seq_ == 0 ? -1 : pool_seq_));
    *request.mutable_select() = resolved_;
    const auto give_up = std::chrono::steady_clock::now() + retry_for_;
    auto pause = std::chrono::milliseconds(100);
    absl::Status last;
    while (true) {
      std::optional<storage::MemberRecord> member = node_.membership()->Find(placement_.member());
      if (member.has_value()) {
        grpc::ClientContext context;
        context.AddMetadata(cluster::kMemberKeyHeader, MemberKey());
        context.set_deadline(std::chrono::system_clock::now() + kStepDeadline);
        auto stub = cluster::v1::MemberService::NewStub(node_.channels()->Get(member->address()));
        PartitionStepResponse response;
        grpc::Status s = stub->PartitionStep(&context, request, &response);
        if (s.ok()) {
          if (!pinned_) {
            pool_seq_ = response.pool_seq();
            pinned_ = true;
          }
          return response;
        }
        last = FromGrpc(s);
        if (s.error_code() != grpc::StatusCode::UNAVAILABLE) {
          return absl::Status(last.code(), absl::StrCat("partition ", index_, " on member ",
                                                        placement_.member(), ": ", last.message()));
        }
      } else {
        last = absl::UnavailableError("not registered");
      }
      if (std::chrono::steady_clock::now() + pause > give_up) break;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(2000));
    }
    return absl::UnavailableError(absl::StrCat("partition ", index_, " of dataset '", dataset_,
                                               "' on member ", placement_.member(),
                                               " is unavailable: ", last.message()));
  }

  ClusterNode& node_;
  const std::string tenant_;
  const std::string dataset_;
  const int index_;
  const storage::PartitionPlacement placement_;
  const v1::SelectRequest resolved_;
  const std::chrono::milliseconds retry_for_;
  int64_t pool_seq_ = 0;
  bool pinned_ = false;
  std::map<int64_t, jobs::SelectedUnit> units_;
};

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<jobs::PoolPartition>>> OpenRemotePartitions(
    ClusterNode& node, const std::string& tenant, const std::string& dataset,
    const v1::SelectRequest& resolved, std::chrono::milliseconds retry_for) {
  ASSIGN_OR_RETURN(std::optional<cluster::Placement> placement,
                   node.directory()->Fetch(tenant, dataset));
  if (!placement.has_value() || placement->record.partitions().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset '", dataset, "' has no partitions in the directory"));
  }
  std::vector<std::unique_ptr<jobs::PoolPartition>> out;
  const auto& partitions = placement->record.partitions();
  for (int i = 0; i < partitions.size(); ++i) {
    out.push_back(std::make_unique<RemotePartition>(node, tenant, dataset, i, partitions[i],
                                                    resolved, retry_for));
  }
  return out;
}

}  // namespace curation::server
