// The job scheduler: every selection, evaluation and budget recommendation runs here, on a
// fixed set of worker threads, whichever RPC asked for it.
//
// Fairness: each tenant has its own FIFO queue; when a worker is free, the tenants that wait
// take turns in proportion to their weights (stride scheduling: the tenant with the smallest
// pass goes next, and its pass grows by 1 / weight), so one tenant's backlog never delays
// another's next job by more than one turn. No tenant holds every worker: with W > 1 workers a
// tenant runs at most W - 1 jobs at once (and at most its quota), so a worker is always
// left for a tenant that arrives while another is busy.
//
// Admission: a job states its estimated peak memory. Above the per-job limit it is refused at
// once (RESOURCE_EXHAUSTED naming estimate and limit); otherwise it waits until the memory of
// the running jobs plus its own fits the server's budget. A queued job holds nothing but its
// request: it builds its inputs when it starts.
//
// Deadlines and cancellation go through the job's JobControl; a job past its time limit ends
// DEADLINE_EXCEEDED, a cancelled queued job ends without running.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "jobs/job_control.h"

namespace curation::jobs {

// What a job is expected to take, estimated from its plan before it runs (cost.h).
struct JobCost {
  int64_t memory_bytes = 0;
  double seconds = 0;
};

// A tenant's limits as the scheduler applies them (quotas with server defaults filled in).
struct TenantPolicy {
  int max_running = 1;
  int max_queued = 16;
  double weight = 1;
  double max_seconds = 0;  // 0: the server's cap only
};

class Scheduler;

// One submitted job. Handles are shared: the scheduler, the operation and a waiting RPC may
// each hold one.
class Job {
 public:
  enum class State { kQueued, kRunning, kDone };
  using SystemTime = std::chrono::system_clock::time_point;

  JobControl& control() { return control_; }
  const JobControl& control() const { return control_; }
  const std::string& tenant() const { return tenant_; }
  const std::string& kind() const { return kind_; }
  const JobCost& cost() const { return cost_; }
  State state() const;
  // The run's result; meaningful once state() is kDone.
  absl::Status status() const;
  // Waits until done or `timeout`; true if done.
  bool Wait(std::chrono::steady_clock::duration timeout) const;
  SystemTime submit_time() const { return submit_time_; }
  // Zero time points until the job started / ended.
  SystemTime start_time() const;
  SystemTime end_time() const;

 private:
  friend class Scheduler;
  using Run = std::function<absl::Status(JobControl&)>;
  using Done = std::function<void(Job&, const absl::Status&)>;

  std::string tenant_;
  std::string kind_;
  JobCost cost_;
  Run run_;
  Done on_done_;
  JobControl control_;
  SystemTime submit_time_;
  std::chrono::steady_clock::time_point queued_at_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  State state_ = State::kQueued;
  absl::Status status_;
  SystemTime start_time_{}, end_time_{};
};

class Scheduler {
 public:
  struct Options {
    int workers = 2;
    // The memory of running jobs together stays under this; a job above max_job_memory_bytes
    // is refused.
    int64_t memory_budget_bytes = int64_t{8} << 30;
    int64_t max_job_memory_bytes = int64_t{4} << 30;
    // Every job's time limit; a tenant's own limit can only be lower. 0: none.
    double max_job_seconds = 0;
    // OpenMP threads the running jobs share (each gets threads / running, at least 1, and
    // follows changes at its progress reports); 0 leaves OpenMP's defaults alone. The server
    // passes cores - 1, so one core always stays free for the RPCs of every tenant.
    int threads = 0;
  };
  // Observers for metrics and logs; any may be empty. Called without the scheduler's lock.
  struct Hooks {
    std::function<void(const std::string& tenant, const std::string& reason)> refused;
    std::function<void(const Job&, double wait_seconds)> started;
    std::function<void(const Job&, const absl::Status&, double run_seconds)> finished;
    // A job of `tenant` joined or left the queue without starting.
    std::function<void(const std::string& tenant)> queue_changed;
  };
  using PolicyFn = std::function<TenantPolicy(const std::string& tenant)>;

  Scheduler(Options options, PolicyFn policy, Hooks hooks = {});
  // Shutdown(), then joins the workers.
  ~Scheduler();

  // Queues `run` as a job of `tenant`. RESOURCE_EXHAUSTED, naming the limit, if the estimate
  // is above the per-job memory limit or the tenant's queue is full; UNAVAILABLE after
  // Shutdown. `on_done(job, status)` is called exactly once when the job ends, run or not,
  // before waiters wake.
  absl::StatusOr<std::shared_ptr<Job>> Submit(const std::string& tenant, const std::string& kind,
                                              JobCost cost, Job::Run run, Job::Done on_done);
  // Stops `job` with `reason`: a queued job ends at once without running, a running one is
  // asked to stop (its run returns within about a second). No-op for a finished job.
  void Cancel(const std::shared_ptr<Job>& job, const absl::Status& reason);
  // How many queued jobs start before `job` if nothing else arrives (-1 unless queued).
  int QueuePosition(const Job& job) const;
  // Queued and running jobs per tenant, for metrics.
  std::map<std::string, std::pair<int, int>> Load() const;
  // Ends every queued job with UNAVAILABLE, stops the running ones and refuses new work.
  void Shutdown();
  bool shutting_down() const;
  const Options& options() const { return options_; }

 private:
  struct TenantQueue {
    std::deque<std::shared_ptr<Job>> queued;
    int running = 0;
    double pass = 0;
  };
  void Work();
  // The next job to start, or null; requires mu_.
  std::shared_ptr<Job> PickLocked();
  void Finish(const std::shared_ptr<Job>& job, absl::Status status);
  int RunningCap(const TenantPolicy& policy) const;
  // Sets the calling worker's OpenMP team size to its share of options_.threads.
  void AdjustThreads() const;

  const Options options_;
  const PolicyFn policy_;
  const Hooks hooks_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, TenantQueue> tenants_;
  int64_t memory_in_use_ = 0;
  std::atomic<int> running_count_{0};
  double virtual_time_ = 0;
  bool closing_ = false;
  std::vector<std::shared_ptr<Job>> running_;
  std::vector<std::thread> threads_;
};

}  // namespace curation::jobs
