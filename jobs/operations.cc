#include "jobs/operations.h"

#include <google/protobuf/util/time_util.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace curation::jobs {
namespace {

using google::protobuf::util::TimeUtil;

constexpr char kPrefix[] = "operations/";

// Sorts by creation time (newest last in key order), then 64 random bits, so a name can be
// neither guessed nor enumerated.
//
// The random bits come from the OS for each operation (a few a second at most), not from a
// thread_local generator: static TLS is carved out of every thread's stack, and the metrics
// server's threads (civetweb, 100 KB stacks, 60 KB of them OpenBLAS's TLS) have none to spare.
std::string NewId() {
  std::random_device os;
  const uint64_t random = (static_cast<uint64_t>(os()) << 32) | os();
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  return absl::StrFormat("%016x%016x", static_cast<uint64_t>(micros), random);
}

std::string Key(const std::string& tenant, const std::string& id) {
  return absl::StrCat(tenant, "/", id);
}

// The request without its request_id, serialised deterministically.
std::string Fingerprint(const storage::OperationRecord& record) {
  storage::OperationRecord copy;
  switch (record.request_case()) {
    case storage::OperationRecord::kSelect:
      *copy.mutable_select() = record.select();
      copy.mutable_select()->clear_request_id();
      break;
    case storage::OperationRecord::kEvaluate:
      *copy.mutable_evaluate() = record.evaluate();
      copy.mutable_evaluate()->clear_request_id();
      break;
    case storage::OperationRecord::kRecommend:
      *copy.mutable_recommend() = record.recommend();
      copy.mutable_recommend()->clear_request_id();
      break;
    default:
      break;
  }
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  copy.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

v1::OperationState StateOf(const absl::Status& status) {
  if (status.ok()) return v1::OPERATION_STATE_SUCCEEDED;
  if (absl::IsCancelled(status)) return v1::OPERATION_STATE_CANCELLED;
  return v1::OPERATION_STATE_FAILED;
}

}  // namespace

std::string OperationIdOf(const std::string& name) {
  const std::string prefix = kPrefix;
  if (name.size() != prefix.size() + 32 || name.compare(0, prefix.size(), prefix) != 0) return "";
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    const char c = name[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return "";
  }
  return name.substr(prefix.size());
}

Operations::Operations(store::Store* store, Scheduler* scheduler, JobRunner* runner,
                       Options options)
    : store_(store), scheduler_(scheduler), runner_(runner), options_(options) {
  sweeper_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!closing_) {
      if (sweep_cv_.wait_for(lock, options_.sweep_every, [this] { return closing_; })) break;
      lock.unlock();
      ExpireNow().IgnoreError();
      lock.lock();
    }
  });
}

Operations::~Operations() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  sweep_cv_.notify_all();
  sweeper_.join();
  // Jobs report to this object when they end: stop them and wait until every one has (they
  // stop within about a second), whatever order the owner destroys things in.
  scheduler_->Shutdown();
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (live_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Operations::MarkDone(storage::OperationRecord* record, const absl::Status& status) const {
  v1::Operation* op = record->mutable_operation();
  v1::OperationMetadata* meta = op->mutable_metadata();
  op->set_done(true);
  meta->set_state(StateOf(status));
  meta->set_queue_position(-1);
  meta->clear_progress();
  const auto now = TimeUtil::GetCurrentTime();
  *meta->mutable_end_time() = now;
  *meta->mutable_expire_time() = now + TimeUtil::SecondsToDuration(options_.retention.count());
  if (!status.ok()) {
    op->mutable_error()->set_code(static_cast<int32_t>(status.code()));
    op->mutable_error()->set_message(std::string(status.message()));
  }
}

absl::Status Operations::Account(const std::string& tenant, int64_t bytes, bool enforce) const {
  if (!options_.account || bytes == 0) return absl::OkStatus();
  return options_.account(tenant, bytes, enforce);
}

absl::StatusOr<Operations::Started> Operations::Start(storage::OperationRecord record,
                                                      bool durable) {
  record.set_request_fingerprint(Fingerprint(record));
  const std::string& request_id = record.operation().metadata().request_id();
  std::unique_lock<std::mutex> start_lock(start_mu_, std::defer_lock);
  if (!request_id.empty()) {
    start_lock.lock();
    auto existing_id = store_->FindOperationByRequestId(record.tenant(), request_id);
    if (!existing_id.ok()) return existing_id.status();
    if (existing_id->has_value()) {
      auto existing = store_->GetOperation(record.tenant(), **existing_id);
      if (!existing.ok()) return existing.status();
      if (existing->request_fingerprint() != record.request_fingerprint()) {
        return absl::AlreadyExistsError(absl::StrCat("request_id: '", request_id,
                                                     "' was sent before with a different "
                                                     "request (",
                                                     existing->operation().name(), ")"));
      }
      const std::string name = existing->operation().name();
      auto op = Get(record.tenant(), name);
      if (!op.ok()) return op.status();
      return Started{*std::move(op), LiveJob(record.tenant(), name)};
    }
  }
  auto cost = runner_->Prepare(&record);
  if (!cost.ok()) return cost.status();
  v1::Operation* op = record.mutable_operation();
  op->set_name(absl::StrCat(kPrefix, NewId()));
  op->set_done(false);
  v1::OperationMetadata* meta = op->mutable_metadata();
  meta->set_state(v1::OPERATION_STATE_QUEUED);
  *meta->mutable_create_time() = TimeUtil::GetCurrentTime();
  meta->set_estimated_memory_bytes(cost->memory_bytes);
  meta->set_estimated_seconds(cost->seconds);
  meta->set_queue_position(-1);
  const int64_t bytes = static_cast<int64_t>(record.ByteSizeLong());
  if (absl::Status s = Account(record.tenant(), bytes, /*enforce=*/true); !s.ok()) return s;
  if (absl::Status s = store_->PutOperation(record, /*defer_sync=*/!durable); !s.ok()) {
    Account(record.tenant(), -bytes, false).IgnoreError();
    return s;
  }
  auto shared = std::make_shared<storage::OperationRecord>(std::move(record));
  {
    std::lock_guard<std::mutex> lock(mu_);
    accounted_[Key(shared->tenant(), OperationIdOf(shared->operation().name()))] = bytes;
  }
  auto started = Submit(shared);
  if (!started.ok()) {
    store_->DeleteOperation(*shared).IgnoreError();
    std::lock_guard<std::mutex> lock(mu_);
    accounted_.erase(Key(shared->tenant(), OperationIdOf(shared->operation().name())));
    Account(shared->tenant(), -bytes, false).IgnoreError();
  }
  return started;
}

absl::StatusOr<Operations::Started> Operations::Submit(
    std::shared_ptr<storage::OperationRecord> record) {
  const std::string tenant = record->tenant();
  const std::string name = record->operation().name();
  const std::string key = Key(tenant, OperationIdOf(name));
  JobCost cost;
  cost.memory_bytes = record->operation().metadata().estimated_memory_bytes();
  cost.seconds = record->operation().metadata().estimated_seconds();
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_[key] = Live{nullptr, record};
  }
  auto persisted = std::make_shared<bool>(false);
  auto run = [this, record, persisted](JobControl& control) -> absl::Status {
    storage::OperationRecord work;
    {
      std::lock_guard<std::mutex> lock(mu_);
      v1::OperationMetadata* meta = record->mutable_operation()->mutable_metadata();
      meta->set_state(v1::OPERATION_STATE_RUNNING);
      meta->set_attempts(meta->attempts() + 1);
      meta->set_queue_position(-1);
      *meta->mutable_start_time() = TimeUtil::GetCurrentTime();
      work = *record;
    }
    // Not synced on its own: after a crash a RUNNING and a QUEUED operation both run again.
    if (absl::Status s = store_->PutOperation(work, /*defer_sync=*/true); !s.ok()) return s;
    auto result = runner_->Run(
        &work, control, [this](storage::OperationRecord* r) { MarkDone(r, absl::OkStatus()); });
    if (!result.ok()) return result.status();
    std::lock_guard<std::mutex> lock(mu_);
    *record = std::move(work);
    *persisted = *result;
    return absl::OkStatus();
  };
  auto on_done = [this, record, persisted](Job& job, const absl::Status& status) {
    OnDone(record, job, status, *persisted);
  };
  const std::string kind = v1::OperationKind_Name(record->operation().metadata().kind());
  auto job = scheduler_->Submit(tenant, kind, cost, std::move(run), std::move(on_done));
  if (!job.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(key);
    return job.status();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it != live_.end()) it->second.job = *job;
  }
  auto op = Get(tenant, name);
  if (!op.ok()) return op.status();
  return Started{*std::move(op), *job};
}

void Operations::OnDone(const std::shared_ptr<storage::OperationRecord>& record, const Job& job,
                        const absl::Status& status, bool persisted) {
  const std::string key = Key(record->tenant(), OperationIdOf(record->operation().name()));
  // Stopped by shutdown: left as stored (queued or running), to run again after the restart.
  const bool shutdown = absl::IsUnavailable(status) && scheduler_->shutting_down();
  int64_t delta = 0;
  if (!shutdown) {
    storage::OperationRecord done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!status.ok()) MarkDone(record.get(), status);
      done = *record;
      auto it = accounted_.find(key);
      delta = static_cast<int64_t>(done.ByteSizeLong()) - (it == accounted_.end() ? 0 : it->second);
    }
    if (!status.ok() || !persisted) store_->PutOperation(done).IgnoreError();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(key);
    accounted_.erase(key);
  }
  // The result is stored whatever the quota says: the work is done and was admitted.
  Account(record->tenant(), delta, false).IgnoreError();
}

absl::StatusOr<storage::OperationRecord> Operations::Load(const std::string& tenant,
                                                          const std::string& name) const {
  const std::string id = OperationIdOf(name);
  auto not_found =
      absl::NotFoundError(absl::StrCat("operation '", name.substr(0, 128), "' not found"));
  if (id.empty()) return not_found;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(Key(tenant, id));
    if (it != live_.end()) return *it->second.record;
  }
  auto record = store_->GetOperation(tenant, id);
  if (absl::IsNotFound(record.status())) return not_found;
  return record;
}

int64_t Operations::CountLive(const std::string& tenant, uint64_t dataset_internal_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t count = 0;
  for (const auto& [key, live] : live_) {
    if (live.record->tenant() == tenant &&
        live.record->dataset_internal_id() == dataset_internal_id) {
      ++count;
    }
  }
  return count;
}

std::shared_ptr<Job> Operations::LiveJob(const std::string& tenant, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(Key(tenant, OperationIdOf(name)));
  return it == live_.end() ? nullptr : it->second.job;
}

v1::Operation Operations::View(const storage::OperationRecord& record, const Job* job) {
  v1::Operation op = record.operation();
  if (job == nullptr || op.done()) return op;
  v1::OperationMetadata* meta = op.mutable_metadata();
  switch (job->state()) {
    case Job::State::kQueued:
      meta->set_state(v1::OPERATION_STATE_QUEUED);
      meta->set_queue_position(scheduler_->QueuePosition(*job));
      meta->mutable_progress()->set_stage(
          absl::StrCat("queued: ", meta->queue_position(), " job(s) start first"));
      meta->mutable_progress()->set_elapsed_seconds(
          std::chrono::duration<double>(std::chrono::system_clock::now() - job->submit_time())
              .count());
      break;
    case Job::State::kRunning: {
      meta->set_state(v1::OPERATION_STATE_RUNNING);
      v1::Progress* progress = meta->mutable_progress();
      progress->set_stage(job->control().stage());
      progress->set_fraction(job->control().fraction());
      progress->set_elapsed_seconds(
          std::chrono::duration<double>(std::chrono::system_clock::now() - job->start_time())
              .count());
      break;
    }
    case Job::State::kDone:
      break;
  }
  return op;
}

absl::StatusOr<v1::Operation> Operations::Get(const std::string& tenant, const std::string& name) {
  auto record = Load(tenant, name);
  if (!record.ok()) return record.status();
  std::shared_ptr<Job> job = LiveJob(tenant, name);
  v1::Operation op = View(*record, job.get());
  if (op.done()) {
    if (absl::Status s = runner_->Expand(*record, &op); !s.ok()) return s;
  }
  return op;
}

absl::StatusOr<std::vector<v1::Operation>> Operations::List(const std::string& tenant,
                                                            const std::string& dataset,
                                                            const std::string& after_name,
                                                            int limit) {
  std::string before;
  if (!after_name.empty()) {
    before = OperationIdOf(after_name);
    if (before.empty())
      return absl::InvalidArgumentError("page_token: not a token this server issued");
  }
  std::vector<v1::Operation> out;
  while (static_cast<int>(out.size()) < limit) {
    auto page = store_->ListOperations(tenant, before, std::max(limit, 64));
    if (!page.ok()) return page.status();
    if (page->empty()) break;
    for (const storage::OperationRecord& stored : *page) {
      before = OperationIdOf(stored.operation().name());
      if (!dataset.empty() && stored.operation().metadata().dataset() != dataset) continue;
      // Live records are newer than the stored ones; results stay out of lists.
      auto record = Load(tenant, stored.operation().name());
      if (!record.ok()) continue;
      std::shared_ptr<Job> job = LiveJob(tenant, stored.operation().name());
      v1::Operation op = View(*record, job.get());
      op.clear_selection();
      op.clear_evaluation();
      op.clear_recommendation();
      out.push_back(std::move(op));
      if (static_cast<int>(out.size()) == limit) break;
    }
  }
  return out;
}

absl::StatusOr<v1::Operation> Operations::Cancel(const std::string& tenant, const std::string& name,
                                                 const std::string& why) {
  auto record = Load(tenant, name);
  if (!record.ok()) return record.status();
  if (std::shared_ptr<Job> job = LiveJob(tenant, name)) {
    scheduler_->Cancel(job, absl::CancelledError(why));
    // The job's callbacks stop it within about a second; report it done if it is by then.
    job->Wait(std::chrono::seconds(2));
  }
  return Get(tenant, name);
}

absl::StatusOr<v1::Operation> Operations::Wait(const std::string& tenant, const std::string& name,
                                               std::chrono::steady_clock::duration timeout,
                                               const std::function<bool()>& give_up) {
  auto record = Load(tenant, name);
  if (!record.ok()) return record.status();
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::shared_ptr<Job> job = LiveJob(tenant, name)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until || (give_up && give_up())) break;
    job->Wait(
        std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(200)));
  }
  return Get(tenant, name);
}

absl::StatusOr<int> Operations::Recover() {
  std::vector<storage::OperationRecord> pending;
  absl::Status s = store_->ForEachOperation([&](storage::OperationRecord record) {
    const int64_t bytes = static_cast<int64_t>(record.ByteSizeLong());
    Account(record.tenant(), bytes, false).IgnoreError();
    if (!record.operation().done()) {
      std::lock_guard<std::mutex> lock(mu_);
      accounted_[Key(record.tenant(), OperationIdOf(record.operation().name()))] = bytes;
      pending.push_back(std::move(record));
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  int resubmitted = 0;
  for (storage::OperationRecord& record : pending) {
    const std::string key = Key(record.tenant(), OperationIdOf(record.operation().name()));
    const int64_t before = static_cast<int64_t>(record.ByteSizeLong());
    record.mutable_operation()->mutable_metadata()->set_state(v1::OPERATION_STATE_QUEUED);
    auto cost = runner_->Prepare(&record);
    absl::Status failed = cost.status();
    if (cost.ok()) {
      v1::OperationMetadata* meta = record.mutable_operation()->mutable_metadata();
      meta->set_estimated_memory_bytes(cost->memory_bytes);
      meta->set_estimated_seconds(cost->seconds);
      auto started = Submit(std::make_shared<storage::OperationRecord>(record));
      if (started.ok()) {
        ++resubmitted;
        continue;
      }
      failed = started.status();
    }
    // The dataset is gone, the request no longer fits the server's limits, ...: the
    // operation ends with that error instead of running.
    MarkDone(&record, failed);
    if (absl::Status put = store_->PutOperation(record); !put.ok()) return put;
    {
      std::lock_guard<std::mutex> lock(mu_);
      accounted_.erase(key);
    }
    Account(record.tenant(), static_cast<int64_t>(record.ByteSizeLong()) - before, false)
        .IgnoreError();
  }
  return resubmitted;
}

absl::StatusOr<int> Operations::ExpireNow() {
  const auto now = TimeUtil::GetCurrentTime();
  std::vector<storage::OperationRecord> expired;
  absl::Status s = store_->ForEachOperation([&](storage::OperationRecord record) {
    const auto& meta = record.operation().metadata();
    if (record.operation().done() && meta.has_expire_time() && meta.expire_time() < now) {
      expired.push_back(std::move(record));
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  for (const auto& record : expired) {
    if (absl::Status d = store_->DeleteOperation(record); !d.ok()) return d;
    Account(record.tenant(), -static_cast<int64_t>(record.ByteSizeLong()), false).IgnoreError();
  }
  return static_cast<int>(expired.size());
}

}  // namespace curation::jobs
