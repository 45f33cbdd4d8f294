// Prompt cancellation inside long passes. Not a public interface.
//
// A method's progress callback (SelectOptions::progress, FitProgress) is user code that need
// not be thread-safe, so only the thread that started the call runs it. Cancel lets that
// thread poll the callback between chunks of work it does itself, and lets every other worker
// see the answer through an atomic, so all of them stop within a chunk of the callback first
// returning false. Polling never changes what a finished call computes.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

namespace curation::selection::internal {

class Cancel {
 public:
  using Clock = std::chrono::steady_clock;

  // `progress` (may be empty) must outlive this object. The constructing thread is the owner.
  explicit Cancel(const std::function<bool(double)>& progress)
      : progress_(progress), owner_(std::this_thread::get_id()), last_poll_(Clock::now()) {}
  Cancel(const Cancel&) = delete;
  Cancel& operator=(const Cancel&) = delete;

  // Owner thread: records the share of the work done and calls the callback with it. Returns
  // false once the callback has returned false (then and on every later call).
  bool Report(double done) {
    done_ = done;
    return Poll();
  }

  // Any thread, between chunks of work: true once the work should stop. On the owner thread
  // it calls the callback with the last reported share (so progress only moves forward); on
  // the others it reads an atomic. The callback runs at most every few milliseconds (a clock
  // read otherwise), so this is cheap enough to call every few hundred rows.
  bool Stop() {
    if (stopped_.load(std::memory_order_relaxed)) return true;
    if (std::this_thread::get_id() != owner_ || !progress_) return false;
    // At most one callback per kPollEvery, so that a loop may ask after every small chunk.
    const Clock::time_point now = Clock::now();
    if (now - last_poll_ < kPollEvery) return false;
    return !Poll();
  }

  // Any thread: whether the callback has returned false, without calling it.
  bool stopped() const { return stopped_.load(std::memory_order_relaxed); }

 private:
  static constexpr std::chrono::milliseconds kPollEvery{5};

  bool Poll() {
    last_poll_ = Clock::now();
    if (stopped_.load(std::memory_order_relaxed)) return false;
    if (progress_ && !progress_(done_)) stopped_.store(true, std::memory_order_relaxed);
    return !stopped_.load(std::memory_order_relaxed);
  }

  const std::function<bool(double)>& progress_;
  const std::thread::id owner_;
  double done_ = 0;              // owner thread only
  Clock::time_point last_poll_;  // owner thread only
  std::atomic<bool> stopped_{false};
};

// While alive, FAISS's interruption checks (faiss::InterruptCallback, between the blocks of
// its searches and the iterations of its k-means) poll `cancel` on this thread, and FAISS
// throws faiss::FaissException once it says stop; the caller catches that and returns
// CANCELLED if cancel->stopped(). The process-wide FAISS callback is installed on first use,
// unless someone else installed one (then FAISS calls are not interrupted, only our loops).
// Other threads, and this one outside the scope, are never interrupted.
class FaissInterruptScope {
 public:
  explicit FaissInterruptScope(Cancel* cancel);
  ~FaissInterruptScope();
  FaissInterruptScope(const FaissInterruptScope&) = delete;
  FaissInterruptScope& operator=(const FaissInterruptScope&) = delete;

 private:
  Cancel* previous_;
};

}  // namespace curation::selection::internal
