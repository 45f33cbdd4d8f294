// Fair admission of tenants' work into a stage of limited width (the embedding of large
// ingest batches): at most `slots` holders at once. When a slot frees and several tenants
// wait, it goes to the next of them in round-robin order after the tenant served last, and
// within a tenant to its oldest waiter. So a tenant with many streams waits its turn like a
// tenant with one, instead of a plain FIFO letting whoever queues most take every slot.
//
// The bookkeeping (Enqueue, Release) is separate from the waiting (Acquire) so tests can
// check the order of admission without threads or timing.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace curation::server {

class FairQueue {
 public:
  using Ticket = uint64_t;

  explicit FairQueue(int slots) : slots_(slots < 1 ? 1 : slots) {}
  FairQueue(const FairQueue&) = delete;
  FairQueue& operator=(const FairQueue&) = delete;

  int slots() const { return slots_; }

  // Bookkeeping. Enqueue returns a new ticket of `tenant`; it may be admitted at once
  // (Admitted tells). Release frees an admitted ticket's slot, or withdraws a waiting one, and
  // admits waiters into the freed slots. Each returns the tickets it admitted, in order.
  std::vector<Ticket> Enqueue(const std::string& tenant, Ticket* ticket) {
    std::vector<Ticket> admitted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      *ticket = next_ticket_++;
      waiting_[tenant].push_back(*ticket);
      tenant_of_[*ticket] = tenant;
      admitted = AdmitLocked();
    }
    if (!admitted.empty()) cv_.notify_all();
    return admitted;
  }
  std::vector<Ticket> Release(Ticket ticket) {
    std::vector<Ticket> admitted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = tenant_of_.find(ticket);
      if (it == tenant_of_.end()) return admitted;
      if (admitted_.erase(ticket) == 0) {
        std::deque<Ticket>& queue = waiting_[it->second];
        for (auto q = queue.begin(); q != queue.end(); ++q) {
          if (*q == ticket) {
            queue.erase(q);
            break;
          }
        }
        if (queue.empty()) waiting_.erase(it->second);
      }
      tenant_of_.erase(it);
      admitted = AdmitLocked();
    }
    if (!admitted.empty()) cv_.notify_all();
    return admitted;
  }
  bool Admitted(Ticket ticket) const {
    std::lock_guard<std::mutex> lock(mu_);
    return admitted_.count(ticket) > 0;
  }
  // Tickets waiting for a slot, over all tenants.
  size_t waiting() const {
    std::lock_guard<std::mutex> lock(mu_);
    return tenant_of_.size() - admitted_.size();
  }

  // A slot held until destruction.
  class Turn {
   public:
    Turn(FairQueue* queue, Ticket ticket) : queue_(queue), ticket_(ticket) {}
    ~Turn() { queue_->Release(ticket_); }
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;

   private:
    FairQueue* queue_;
    Ticket ticket_;
  };
  // Blocks until `tenant` is admitted, then holds the slot until the Turn is destroyed.
  std::unique_ptr<Turn> Acquire(const std::string& tenant) {
    Ticket ticket = 0;
    Enqueue(tenant, &ticket);
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return admitted_.count(ticket) > 0; });
    }
    return std::make_unique<Turn>(this, ticket);
  }

 private:
  // Fills free slots from the waiting tenants, round robin.
  std::vector<Ticket> AdmitLocked() {
    std::vector<Ticket> admitted;
    while (static_cast<int>(admitted_.size()) < slots_ && !waiting_.empty()) {
      // The first waiting tenant after the last one served, wrapping around.
      auto it = waiting_.upper_bound(last_served_);
      if (it == waiting_.end()) it = waiting_.begin();
      const Ticket ticket = it->second.front();
      it->second.pop_front();
      last_served_ = it->first;
      if (it->second.empty()) waiting_.erase(it);
      admitted_.insert(ticket);
      admitted.push_back(ticket);
    }
    return admitted;
  }

  const int slots_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Ticket next_ticket_ = 1;
  std::map<std::string, std::deque<Ticket>> waiting_;  // tenants with waiters only
  std::map<Ticket, std::string> tenant_of_;            // every ticket not yet released
  std::set<Ticket> admitted_;
  std::string last_served_;
};

}  // namespace curation::server
