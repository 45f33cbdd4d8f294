// The live state of one job, shared by the scheduler, the worker that runs it and whoever
// watches it (an RPC relaying progress, an operation's reader): its stage and share done, and
// the stop signal that cancellation, deadlines and shutdown raise.
//
// Library calls get a progress callback from Range(); it returns false as soon as the job is
// stopped, which is how a stop reaches the inside of an EM iteration or a graph build.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>

#include "absl/status/status.h"

namespace curation::jobs {

class JobControl {
 public:
  using Clock = std::chrono::steady_clock;

  void SetStage(std::string stage) {
    std::lock_guard<std::mutex> lock(mu_);
    stage_ = std::move(stage);
  }
  std::string stage() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stage_;
  }
  double fraction() const { return fraction_.load(std::memory_order_relaxed); }
  void SetFraction(double f) { fraction_.store(std::clamp(f, 0.0, 1.0)); }

  // Stops the job; the first reason is the one reported (CANCELLED, DEADLINE_EXCEEDED,
  // UNAVAILABLE at shutdown). Safe from any thread, any number of times.
  void Stop(absl::Status reason) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_.load()) return;
    reason_ = std::move(reason);
    stopped_.store(true);
  }
  // The run ends DEADLINE_EXCEEDED once `deadline` passes (checked at every progress call).
  void SetDeadline(Clock::time_point deadline, std::string what) {
    std::lock_guard<std::mutex> lock(mu_);
    deadline_what_ = std::move(what);
    deadline_ns_.store(deadline.time_since_epoch().count());
    has_deadline_.store(true);
  }
  // True once stopped or past the deadline. Cheap: polled from inner loops.
  bool stopped() {
    if (stopped_.load(std::memory_order_relaxed)) return true;
    if (has_deadline_.load() && Clock::now().time_since_epoch().count() >= deadline_ns_.load()) {
      std::string what;
      {
        std::lock_guard<std::mutex> lock(mu_);
        what = deadline_what_;
      }
      Stop(absl::DeadlineExceededError(what));
      return true;
    }
    return false;
  }
  // Why the job stopped (OK if it was not).
  absl::Status stop_reason() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }
  // The status a run that returned `status` ends with: a library CANCELLED caused by a stop
  // becomes the stop's reason.
  absl::Status Outcome(absl::Status status) {
    if (!stopped() || status.ok() || !absl::IsCancelled(status)) return status;
    return stop_reason();
  }

  // A library progress callback whose [0, 1] fills [from, to] of the job; false = stop.
  // Each call also runs the tick (see set_tick), on the thread that reports.
  std::function<bool(double)> Range(double from, double to) {
    return [this, from, to](double d) {
      SetFraction(from + (to - from) * std::clamp(d, 0.0, 1.0));
      if (tick_) tick_();
      return !stopped();
    };
  }
  // Set once by the scheduler before the job runs: how a running job follows the server's
  // load (its share of the cores) at every progress report.
  void set_tick(std::function<void()> tick) { tick_ = std::move(tick); }

 private:
  mutable std::mutex mu_;
  std::string stage_;
  std::atomic<double> fraction_{0};
  std::atomic<bool> stopped_{false};
  absl::Status reason_;
  std::atomic<bool> has_deadline_{false};
  std::atomic<Clock::rep> deadline_ns_{0};
  std::string deadline_what_;
  std::function<void()> tick_;
};

}  // namespace curation::jobs
