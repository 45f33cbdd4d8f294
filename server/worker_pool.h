// A fixed set of threads for large ingest batches (TenantRegistry::RunIngest), so that a burst
// of them queues here instead of tying up every gRPC thread and every core at once. Selections,
// evaluations and recommendations are jobs of jobs/scheduler.h instead.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace curation::server {

class WorkerPool {
 public:
  // `thread_init`, if set, runs first on each worker thread (e.g. to lower its priority).
  explicit WorkerPool(int threads, std::function<void()> thread_init = nullptr) {
    for (int i = 0; i < std::max(1, threads); ++i) {
      threads_.emplace_back([this, thread_init] {
        if (thread_init) thread_init();
        Run();
      });
    }
  }

  // Finishes the queued work, then joins the threads.
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  // Runs `work` on a worker; the future is ready when it has returned.
  std::future<void> Submit(std::function<void()> work) {
    std::packaged_task<void()> task(std::move(work));
    std::future<void> done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
    return done;
  }

 private:
  void Run() {
    while (true) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> queue_;
  bool closing_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace curation::server
