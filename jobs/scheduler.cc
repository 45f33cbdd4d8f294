#include "jobs/scheduler.h"

#include <omp.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace curation::jobs {
namespace {

std::string Gib(int64_t bytes) {
  return absl::StrCat(static_cast<double>(bytes / (int64_t{1} << 20)) / 1024.0, " GiB");
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

Job::State Job::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

absl::Status Job::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

bool Job::Wait(std::chrono::steady_clock::duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return state_ == State::kDone; });
}

Job::SystemTime Job::start_time() const {
  std::lock_guard<std::mutex> lock(mu_);
  return start_time_;
}

Job::SystemTime Job::end_time() const {
  std::lock_guard<std::mutex> lock(mu_);
  return end_time_;
}

Scheduler::Scheduler(Options options, PolicyFn policy, Hooks hooks)
    : options_(options), policy_(std::move(policy)), hooks_(std::move(hooks)) {
  for (int i = 0; i < std::max(1, options_.workers); ++i) threads_.emplace_back([this] { Work(); });
}

Scheduler::~Scheduler() {
  Shutdown();
  for (auto& t : threads_) t.join();
}

void Scheduler::AdjustThreads() const {
  if (options_.threads <= 0) return;
  const int share = std::max(1, options_.threads / std::max(1, running_count_.load()));
  if (omp_get_max_threads() != share) omp_set_num_threads(share);
}

int Scheduler::RunningCap(const TenantPolicy& policy) const {
  const int reserve_cap = std::max(1, options_.workers - 1);
  return std::max(1, std::min(policy.max_running, reserve_cap));
}

absl::StatusOr<std::shared_ptr<Job>> Scheduler::Submit(const std::string& tenant,
                                                       const std::string& kind, JobCost cost,
                                                       Job::Run run, Job::Done on_done) {
  auto refuse = [&](const std::string& reason, const std::string& message) {
    if (hooks_.refused) hooks_.refused(tenant, reason);
    return absl::ResourceExhaustedError(message);
  };
  if (cost.memory_bytes > options_.max_job_memory_bytes) {
    return refuse(
        "max_job_memory",
        absl::StrCat("max_job_memory: the job's estimated peak memory, ", Gib(cost.memory_bytes),
                     ", exceeds the server's limit of ", Gib(options_.max_job_memory_bytes),
                     " per job (--max-job-memory); ask for fewer components, a "
                     "smaller pca_dim, a diagonal covariance or fewer neighbours"));
  }
  auto job = std::make_shared<Job>();
  job->tenant_ = tenant;
  job->kind_ = kind;
  job->cost_ = cost;
  job->run_ = std::move(run);
  job->on_done_ = std::move(on_done);
  job->submit_time_ = std::chrono::system_clock::now();
  job->queued_at_ = std::chrono::steady_clock::now();
  const TenantPolicy policy = policy_(tenant);
  size_t full_at = 0;  // the queue length that refused the job, if one did
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return absl::UnavailableError("the server is shutting down");
    TenantQueue& q = tenants_[tenant];
    if (static_cast<int>(q.queued.size()) >= policy.max_queued) {
      full_at = q.queued.size();
    } else {
      // A tenant that was idle joins at the current virtual time: waiting earns no credit.
      if (q.queued.empty() && q.running == 0) q.pass = std::max(q.pass, virtual_time_);
      q.queued.push_back(job);
    }
  }
  if (full_at > 0 || policy.max_queued <= 0) {
    return refuse("max_queued_jobs",
                  absl::StrCat("max_queued_jobs: tenant '", tenant, "' has ", full_at,
                               " jobs queued, its limit; retry when one has started"));
  }
  cv_.notify_all();
  if (hooks_.queue_changed) hooks_.queue_changed(tenant);
  return job;
}

std::shared_ptr<Job> Scheduler::PickLocked() {
  std::string best;
  double best_pass = std::numeric_limits<double>::infinity();
  std::chrono::steady_clock::time_point best_time{};
  for (auto& [tenant, q] : tenants_) {
    if (q.queued.empty()) continue;
    const TenantPolicy policy = policy_(tenant);
    if (q.running >= RunningCap(policy)) continue;
    const Job& head = *q.queued.front();
    // Jobs wait rather than run past the budget; one job alone always fits (max_job_memory
    // is at most the budget), so nothing waits forever on an idle server.
    if (memory_in_use_ > 0 &&
        memory_in_use_ + head.cost_.memory_bytes > options_.memory_budget_bytes) {
      continue;
    }
    if (q.pass < best_pass || (q.pass == best_pass && head.queued_at_ < best_time)) {
      best = tenant;
      best_pass = q.pass;
      best_time = head.queued_at_;
    }
  }
  if (best_pass == std::numeric_limits<double>::infinity()) return nullptr;
  TenantQueue& q = tenants_[best];
  std::shared_ptr<Job> job = q.queued.front();
  q.queued.pop_front();
  q.running += 1;
  virtual_time_ = q.pass;
  q.pass += 1.0 / std::max(1e-3, policy_(best).weight);
  memory_in_use_ += job->cost_.memory_bytes;
  running_count_.fetch_add(1);
  running_.push_back(job);
  return job;
}

void Scheduler::Work() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        if (closing_) return true;
        job = PickLocked();
        return job != nullptr;
      });
      if (job == nullptr) return;  // closing
    }
    const double waited = Seconds(std::chrono::steady_clock::now() - job->queued_at_);
    // Whoever sees the job running sees a stage, before the run has set its own.
    job->control_.SetStage("starting");
    {
      std::lock_guard<std::mutex> lock(job->mu_);
      job->state_ = Job::State::kRunning;
      job->start_time_ = std::chrono::system_clock::now();
    }
    TenantPolicy policy = policy_(job->tenant_);
    double limit = options_.max_job_seconds;
    if (policy.max_seconds > 0 && (limit <= 0 || policy.max_seconds < limit)) {
      limit = policy.max_seconds;
    }
    if (limit > 0) {
      job->control_.SetDeadline(
          std::chrono::steady_clock::now() +
              std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(limit)),
          absl::StrCat("max_job_seconds: the job ran past its limit of ", limit, " s"));
    }
    job->control_.set_tick([this] { AdjustThreads(); });
    AdjustThreads();
    if (hooks_.started) hooks_.started(*job, waited);
    const auto began = std::chrono::steady_clock::now();
    absl::Status status = job->control_.stopped() ? job->control_.stop_reason()
                                                  : job->control_.Outcome(job->run_(job->control_));
    if (hooks_.finished)
      hooks_.finished(*job, status, Seconds(std::chrono::steady_clock::now() - began));
    {
      std::lock_guard<std::mutex> lock(mu_);
      TenantQueue& q = tenants_[job->tenant_];
      q.running -= 1;
      memory_in_use_ -= job->cost_.memory_bytes;
      running_count_.fetch_sub(1);
      running_.erase(std::find(running_.begin(), running_.end(), job));
    }
    cv_.notify_all();
    Finish(job, std::move(status));
  }
}

void Scheduler::Finish(const std::shared_ptr<Job>& job, absl::Status status) {
  if (job->on_done_) job->on_done_(*job, status);
  {
    std::lock_guard<std::mutex> lock(job->mu_);
    job->state_ = Job::State::kDone;
    job->status_ = std::move(status);
    job->end_time_ = std::chrono::system_clock::now();
  }
  job->cv_.notify_all();
}

void Scheduler::Cancel(const std::shared_ptr<Job>& job, const absl::Status& reason) {
  bool was_queued = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto t = tenants_.find(job->tenant_);
    if (t != tenants_.end()) {
      auto& queued = t->second.queued;
      auto it = std::find(queued.begin(), queued.end(), job);
      if (it != queued.end()) {
        queued.erase(it);
        was_queued = true;
      }
    }
  }
  job->control_.Stop(reason);
  if (was_queued) {
    cv_.notify_all();
    if (hooks_.queue_changed) hooks_.queue_changed(job->tenant_);
    Finish(job, job->control_.stop_reason());
  }
}

int Scheduler::QueuePosition(const Job& job) const {
  std::lock_guard<std::mutex> lock(mu_);
  // Replays the turns the tenants would take, ignoring caps and memory: an estimate.
  struct Sim {
    double pass;
    double step;
    size_t next = 0;
    const std::deque<std::shared_ptr<Job>>* queued;
  };
  std::vector<Sim> sims;
  for (const auto& [tenant, q] : tenants_) {
    if (q.queued.empty()) continue;
    sims.push_back({q.pass, 1.0 / std::max(1e-3, policy_(tenant).weight), 0, &q.queued});
  }
  int position = 0;
  while (true) {
    Sim* best = nullptr;
    for (Sim& s : sims) {
      if (s.next < s.queued->size() && (best == nullptr || s.pass < best->pass)) best = &s;
    }
    if (best == nullptr) return -1;
    if ((*best->queued)[best->next].get() == &job) return position;
    ++best->next;
    best->pass += best->step;
    ++position;
  }
}

std::map<std::string, std::pair<int, int>> Scheduler::Load() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::pair<int, int>> out;
  for (const auto& [tenant, q] : tenants_) {
    out[tenant] = {static_cast<int>(q.queued.size()), q.running};
  }
  return out;
}

bool Scheduler::shutting_down() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closing_;
}

void Scheduler::Shutdown() {
  std::vector<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    closing_ = true;
    for (auto& [tenant, q] : tenants_) {
      for (auto& job : q.queued) dropped.push_back(job);
      q.queued.clear();
    }
    for (auto& job : running_)
      job->control_.Stop(absl::UnavailableError("the server is shutting down"));
  }
  cv_.notify_all();
  for (auto& job : dropped) {
    job->control_.Stop(absl::UnavailableError("the server is shutting down"));
    Finish(job, job->control_.stop_reason());
  }
}

}  // namespace curation::jobs
