// Admission order of the fair queue: round robin across tenants, FIFO within one, never more
// holders than slots. Checked through the bookkeeping calls, so without threads or timing,
// plus one blocking hand-over between two threads.
#include "server/fair_queue.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

namespace curation::server {
namespace {

using Tickets = std::vector<FairQueue::Ticket>;

// Enqueues a ticket of `tenant` and returns how many tickets that admitted (the new one, if
// any: a free slot never leaves another ticket waiting).
size_t Admits(FairQueue& q, const std::string& tenant, FairQueue::Ticket* ticket) {
  const Tickets admitted = q.Enqueue(tenant, ticket);
  EXPECT_TRUE(admitted.empty() || admitted == Tickets{*ticket});
  return admitted.size();
}

TEST(FairQueueTest, OneSlotGoesRoundRobinAcrossTenantsWithWaiters) {
  FairQueue q(1);
  FairQueue::Ticket a1 = 0, a2 = 0, a3 = 0, b1 = 0, b2 = 0, c1 = 0;
  EXPECT_EQ(Admits(q, "bulk", &a1), 1u);  // a free slot: admitted at once
  EXPECT_TRUE(q.Enqueue("bulk", &a2).empty());
  EXPECT_TRUE(q.Enqueue("bulk", &a3).empty());
  EXPECT_TRUE(q.Enqueue("interactive", &b1).empty());
  EXPECT_TRUE(q.Enqueue("interactive", &b2).empty());
  EXPECT_TRUE(q.Enqueue("other", &c1).empty());
  EXPECT_EQ(q.waiting(), 5u);
  // A plain FIFO would now serve bulk's a2 and a3 before anyone else.
  EXPECT_EQ(q.Release(a1), Tickets{b1});
  EXPECT_EQ(q.Release(b1), Tickets{c1});
  EXPECT_EQ(q.Release(c1), Tickets{a2});
  EXPECT_EQ(q.Release(a2), Tickets{b2});
  EXPECT_EQ(q.Release(b2), Tickets{a3});
  EXPECT_EQ(q.Release(a3), Tickets{});
  EXPECT_EQ(q.waiting(), 0u);
}

TEST(FairQueueTest, NeverMoreHoldersThanSlotsAndAFreedSlotIsRefilled) {
  FairQueue q(2);
  FairQueue::Ticket a1 = 0, a2 = 0, a3 = 0, b1 = 0;
  EXPECT_EQ(Admits(q, "a", &a1), 1u);
  EXPECT_EQ(Admits(q, "a", &a2), 1u);  // alone, a tenant may use every slot
  EXPECT_TRUE(q.Enqueue("a", &a3).empty());
  EXPECT_TRUE(q.Enqueue("b", &b1).empty());
  EXPECT_TRUE(q.Admitted(a1) && q.Admitted(a2));
  EXPECT_FALSE(q.Admitted(a3) || q.Admitted(b1));
  EXPECT_EQ(q.Release(a2), Tickets{b1});  // b waited less, but a was served last
  EXPECT_EQ(q.Release(a1), Tickets{a3});
}

TEST(FairQueueTest, AWithdrawnWaiterIsSkippedAndUnknownTicketsAreIgnored) {
  FairQueue q(1);
  FairQueue::Ticket a1 = 0, b1 = 0, b2 = 0, c1 = 0;
  q.Enqueue("a", &a1);
  q.Enqueue("b", &b1);
  q.Enqueue("b", &b2);
  q.Enqueue("c", &c1);
  EXPECT_TRUE(q.Release(b1).empty());  // b1 gave up waiting: nothing is admitted
  EXPECT_EQ(q.waiting(), 2u);
  EXPECT_EQ(q.Release(a1), Tickets{b2});
  EXPECT_TRUE(q.Release(a1).empty());  // released twice: no effect
  EXPECT_TRUE(q.Release(12345).empty());
  EXPECT_EQ(q.Release(b2), Tickets{c1});
}

TEST(FairQueueTest, AcquireBlocksUntilTheHolderReleases) {
  FairQueue q(1);
  auto held = q.Acquire("bulk");
  std::promise<void> entered;
  std::thread waiter([&] {
    auto turn = q.Acquire("interactive");
    entered.set_value();
  });
  // The waiter cannot get in while the slot is held; wait until it is queued, then release.
  while (q.waiting() == 0) std::this_thread::yield();
  EXPECT_EQ(q.waiting(), 1u);
  held.reset();
  entered.get_future().wait();
  waiter.join();
  EXPECT_EQ(q.waiting(), 0u);
  FairQueue::Ticket next = 0;
  EXPECT_EQ(Admits(q, "bulk", &next), 1u);  // every slot is free again
}

}  // namespace
}  // namespace curation::server
