// The transport-free parts of jobs/: the scheduler's fairness, caps, memory budget and
// cancellation; the plan and the pipeline's groups; cost estimates and degenerate settings.
// Operations are tested against the real server (tests/integration/jobs_test.cc).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "jobs/cost.h"
#include "jobs/operations.h"
#include "jobs/pipeline.h"
#include "jobs/scheduler.h"
#include "jobs/selection_plan.h"

namespace curation::jobs {
namespace {

using namespace std::chrono_literals;

// A gate jobs wait on, so a test decides when they finish.
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // Waits until open or the job is stopped; CANCELLED then, as a library would return.
  absl::Status Wait(JobControl& control) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!open_) {
      if (control.stopped()) return absl::CancelledError("stopped");
      cv_.wait_for(lock, 5ms);
    }
    return absl::OkStatus();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct Recorder {
  std::mutex mu;
  std::vector<std::string> started;
  void Add(const std::string& s) {
    std::lock_guard<std::mutex> lock(mu);
    started.push_back(s);
  }
  std::vector<std::string> Get() {
    std::lock_guard<std::mutex> lock(mu);
    return started;
  }
};

Scheduler::PolicyFn Policy(int running = 8, int queued = 16, double weight_b = 1) {
  return [=](const std::string& tenant) {
    TenantPolicy p;
    p.max_running = running;
    p.max_queued = queued;
    p.weight = tenant == "b" ? weight_b : 1;
    return p;
  };
}

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5000ms) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(SchedulerTest, AnotherTenantsJobStartsBeforeTheFirstTenantsBacklog) {
  Scheduler::Options options;
  options.workers = 1;
  Scheduler scheduler(options, Policy());
  Gate gate;
  Recorder recorder;
  auto job = [&](const std::string& label) {
    return [&, label](JobControl& control) {
      recorder.Add(label);
      return gate.Wait(control);
    };
  };
  std::vector<std::shared_ptr<Job>> jobs;
  // a1 runs; a2, a3 queue; then b1 arrives and must start right after a1, before a2.
  for (const char* label : {"a1", "a2", "a3"}) {
    jobs.push_back(*scheduler.Submit("a", "select", {}, job(label), nullptr));
  }
  ASSERT_TRUE(WaitFor([&] { return recorder.Get().size() == 1; }));
  jobs.push_back(*scheduler.Submit("b", "select", {}, job("b1"), nullptr));
  EXPECT_EQ(scheduler.QueuePosition(*jobs[3]), 0);  // next, ahead of a2
  EXPECT_EQ(scheduler.QueuePosition(*jobs[1]), 1);
  gate.Open();
  for (auto& j : jobs) ASSERT_TRUE(j->Wait(5s));
  EXPECT_EQ(recorder.Get(), (std::vector<std::string>{"a1", "b1", "a2", "a3"}));
}

TEST(SchedulerTest, NoTenantHoldsEveryWorker) {
  Scheduler::Options options;
  options.workers = 2;
  Scheduler scheduler(options, Policy(/*running=*/8));
  Gate gate;
  std::atomic<int> running_a{0};
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 3; ++i) {
    jobs.push_back(*scheduler.Submit(
        "a", "select", {},
        [&](JobControl& c) {
          ++running_a;
          return gate.Wait(c);
        },
        nullptr));
  }
  ASSERT_TRUE(WaitFor([&] { return running_a.load() == 1; }));
  std::this_thread::sleep_for(50ms);
  // With two workers a tenant runs at most one job: the other worker waits for others.
  EXPECT_EQ(running_a.load(), 1);
  std::atomic<bool> b_ran{false};
  auto b = *scheduler.Submit(
      "b", "select", {},
      [&](JobControl&) {
        b_ran = true;
        return absl::OkStatus();
      },
      nullptr);
  ASSERT_TRUE(b->Wait(5s));  // ran while a's jobs still hold their worker
  EXPECT_TRUE(b_ran.load());
  EXPECT_EQ(jobs[0]->state(), Job::State::kRunning);
  gate.Open();
  for (auto& j : jobs) ASSERT_TRUE(j->Wait(5s));
}

TEST(SchedulerTest, RefusesOversizedJobsAndFullQueues) {
  Scheduler::Options options;
  options.workers = 1;
  options.max_job_memory_bytes = int64_t{1} << 30;
  options.memory_budget_bytes = int64_t{2} << 30;
  std::vector<std::string> refusals;
  Scheduler::Hooks hooks;
  hooks.refused = [&](const std::string& tenant, const std::string& reason) {
    refusals.push_back(tenant + ":" + reason);
  };
  Scheduler scheduler(options, Policy(8, /*queued=*/2), hooks);
  JobCost huge;
  huge.memory_bytes = int64_t{3} << 30;
  auto refused = scheduler.Submit(
      "a", "select", huge, [](JobControl&) { return absl::OkStatus(); }, nullptr);
  ASSERT_TRUE(absl::IsResourceExhausted(refused.status()));
  EXPECT_NE(refused.status().message().find("max_job_memory"), std::string::npos);
  EXPECT_NE(refused.status().message().find("3 GiB"), std::string::npos)
      << refused.status().message();

  Gate gate;
  std::vector<std::shared_ptr<Job>> jobs;
  jobs.push_back(*scheduler.Submit(
      "a", "select", {}, [&](JobControl& c) { return gate.Wait(c); }, nullptr));
  ASSERT_TRUE(WaitFor([&] { return jobs[0]->state() == Job::State::kRunning; }));
  for (int i = 0; i < 2; ++i) {
    jobs.push_back(*scheduler.Submit(
        "a", "select", {}, [&](JobControl& c) { return gate.Wait(c); }, nullptr));
  }
  auto full = scheduler.Submit(
      "a", "select", {}, [](JobControl&) { return absl::OkStatus(); }, nullptr);
  ASSERT_TRUE(absl::IsResourceExhausted(full.status()));
  EXPECT_NE(full.status().message().find("max_queued_jobs"), std::string::npos);
  EXPECT_EQ(refusals, (std::vector<std::string>{"a:max_job_memory", "a:max_queued_jobs"}));
  gate.Open();
  for (auto& j : jobs) ASSERT_TRUE(j->Wait(5s));
}

TEST(SchedulerTest, JobsWaitForMemoryRatherThanRunPastTheBudget) {
  Scheduler::Options options;
  options.workers = 3;
  options.max_job_memory_bytes = 600;
  options.memory_budget_bytes = 1000;
  Scheduler scheduler(options, Policy());
  Gate gate;
  std::atomic<int> running{0}, peak{0};
  auto body = [&](JobControl& c) {
    const int now = ++running;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    absl::Status s = gate.Wait(c);
    --running;
    return s;
  };
  JobCost cost;
  cost.memory_bytes = 600;
  auto first = *scheduler.Submit("a", "select", cost, body, nullptr);
  auto second = *scheduler.Submit("b", "select", cost, body, nullptr);
  ASSERT_TRUE(WaitFor([&] { return running.load() == 1; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(running.load(), 1);  // 600 + 600 > 1000: the second waits
  EXPECT_EQ(second->state(), Job::State::kQueued);
  gate.Open();
  ASSERT_TRUE(first->Wait(5s));
  ASSERT_TRUE(second->Wait(5s));
  EXPECT_EQ(peak.load(), 1);
  EXPECT_TRUE(second->status().ok());
}

TEST(SchedulerTest, CancelEndsQueuedAndRunningJobsWithTheReason) {
  Scheduler::Options options;
  options.workers = 1;
  Scheduler scheduler(options, Policy());
  Gate gate;
  std::atomic<int> done_calls{0};
  auto on_done = [&](Job&, const absl::Status&) { ++done_calls; };
  std::atomic<bool> queued_ran{false};
  auto running = *scheduler.Submit(
      "a", "select", {}, [&](JobControl& c) { return gate.Wait(c); }, on_done);
  auto queued = *scheduler.Submit(
      "a", "select", {},
      [&](JobControl&) {
        queued_ran = true;
        return absl::OkStatus();
      },
      on_done);
  ASSERT_TRUE(WaitFor([&] { return running->state() == Job::State::kRunning; }));
  scheduler.Cancel(queued, absl::CancelledError("by test"));
  EXPECT_EQ(queued->state(), Job::State::kDone);
  EXPECT_TRUE(absl::IsCancelled(queued->status()));
  scheduler.Cancel(running, absl::CancelledError("by test"));
  ASSERT_TRUE(running->Wait(5s));
  EXPECT_TRUE(absl::IsCancelled(running->status()));
  EXPECT_EQ(running->status().message(), "by test");
  EXPECT_FALSE(queued_ran.load());
  EXPECT_EQ(done_calls.load(), 2);
}

TEST(SchedulerTest, ATimeLimitEndsTheJobDeadlineExceeded) {
  Scheduler::Options options;
  options.workers = 1;
  options.max_job_seconds = 0.05;
  Scheduler scheduler(options, Policy());
  Gate never;
  auto job = *scheduler.Submit(
      "a", "select", {}, [&](JobControl& c) { return never.Wait(c); }, nullptr);
  ASSERT_TRUE(job->Wait(5s));
  EXPECT_TRUE(absl::IsDeadlineExceeded(job->status())) << job->status();
  EXPECT_NE(job->status().message().find("max_job_seconds"), std::string::npos);
}

TEST(SchedulerTest, WeightsShareTurns) {
  Scheduler::Options options;
  options.workers = 1;
  Scheduler scheduler(options, Policy(8, 16, /*weight_b=*/2));
  Gate gate;
  Recorder recorder;
  auto first = *scheduler.Submit(
      "z", "select", {}, [&](JobControl& c) { return gate.Wait(c); }, nullptr);
  ASSERT_TRUE(WaitFor([&] { return first->state() == Job::State::kRunning; }));
  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 3; ++i) {
    for (const char* t : {"a", "b"}) {
      const std::string label = std::string(t) + std::to_string(i);
      jobs.push_back(*scheduler.Submit(
          t, "select", {},
          [&, label](JobControl&) {
            recorder.Add(label);
            return absl::OkStatus();
          },
          nullptr));
    }
  }
  gate.Open();
  for (auto& j : jobs) ASSERT_TRUE(j->Wait(5s));
  // b (weight 2) takes two turns for each of a's.
  EXPECT_EQ(recorder.Get(), (std::vector<std::string>{"a0", "b0", "b1", "a1", "b2", "a2"}));
}

TEST(SchedulerTest, ShutdownEndsQueuedJobsUnavailableAndStopsRunningOnes) {
  Scheduler::Options options;
  options.workers = 1;
  auto scheduler = std::make_unique<Scheduler>(options, Policy());
  Gate never;
  auto running = *scheduler->Submit(
      "a", "select", {}, [&](JobControl& c) { return never.Wait(c); }, nullptr);
  auto queued = *scheduler->Submit(
      "a", "select", {}, [&](JobControl& c) { return never.Wait(c); }, nullptr);
  ASSERT_TRUE(WaitFor([&] { return running->state() == Job::State::kRunning; }));
  scheduler->Shutdown();
  ASSERT_TRUE(running->Wait(5s));
  ASSERT_TRUE(queued->Wait(5s));
  EXPECT_TRUE(absl::IsUnavailable(running->status()));
  EXPECT_TRUE(absl::IsUnavailable(queued->status()));
  EXPECT_TRUE(absl::IsUnavailable(
      scheduler
          ->Submit(
              "a", "select", {}, [](JobControl&) { return absl::OkStatus(); }, nullptr)
          .status()));
}

// ---------------------------------------------------------------------------------------
// Pipeline pieces

TEST(PipelineTest, GroupsBalanceLabelsAndStrataWithRequestedShares) {
  v1::Constraints c;
  c.set_balance_labels(true);
  c.set_stratify_by("src");
  c.set_desirable_share(0.75);
  const std::vector<int8_t> labels = {index::kDesirable, index::kUndesirable, index::kDesirable,
                                      index::kUndesirable};
  const std::vector<int32_t> strata = {0, 0, 1, 1};
  selection::GroupConstraint g = MakeGroups(c, labels, strata, 2);
  EXPECT_EQ(g.group, (std::vector<int32_t>{0, 2, 1, 3}));  // label * strata + stratum
  ASSERT_EQ(g.shares.size(), 4u);
  EXPECT_DOUBLE_EQ(g.shares[0] + g.shares[1], 0.75);
  EXPECT_DOUBLE_EQ(g.shares[2] + g.shares[3], 0.25);

  v1::Constraints labels_only;
  labels_only.set_balance_labels(true);
  g = MakeGroups(labels_only, labels, {}, 1);
  EXPECT_EQ(g.group, (std::vector<int32_t>{0, 1, 0, 1}));
  EXPECT_TRUE(g.shares.empty());  // the pool's own ratio
}

TEST(PipelineTest, PlanAndBudgetResolveDefaultsAndRefuseOutOfRange) {
  v1::SelectRequest request;
  request.set_dataset("d");
  auto plan = PlanSelection(request, v1::DATASET_KIND_UNPAIRED, 8);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // The measured default: herding, with label balance for single completions.
  EXPECT_EQ(plan->resolved.method(), v1::SELECTION_METHOD_HERDING);
  EXPECT_TRUE(plan->resolved.constraints().balance_labels());
  EXPECT_EQ(plan->spec.method, "herding");

  v1::Budget budget;
  budget.set_count(11);
  auto k = ResolveBudget(budget, 10, "pairs");
  ASSERT_TRUE(absl::IsInvalidArgument(k.status()));
  EXPECT_EQ(std::string(k.status().message().substr(0, 12)), "budget.count");
  budget.set_fraction(0.25);
  EXPECT_EQ(*ResolveBudget(budget, 10, "pairs"), 3);  // 2.5 rounds half away from zero
}

TEST(CostTest, FullCovarianceIsSizedAndDegenerateFitsAreRefused) {
  v1::SelectRequest request;
  request.set_method(v1::SELECTION_METHOD_ISA);
  request.mutable_isa()->set_covariance(v1::COVARIANCE_FULL);
  request.mutable_isa()->set_components(64);
  auto plan = PlanSelection(request, v1::DATASET_KIND_PAIRS, 4096);
  ASSERT_TRUE(plan.ok()) << plan.status();
  // 64 covariances of 4096 x 4096 doubles, four arrays of them: about 34 GB.
  const JobCost cost = EstimateSelection(*plan, {300'000, 4096}, 3000);
  EXPECT_GT(cost.memory_bytes, int64_t{34} << 30);
  // The bomb: 100 rows cannot estimate 64 covariances of 1024 dimensions.
  absl::Status s = CheckDegenerate(*plan, {100, 1024});
  ASSERT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_EQ(std::string(s.message().substr(0, 15)), "isa.covariance:") << s;
  s = CheckDegenerate(*plan, {1000, 1024}, "select.");
  ASSERT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_EQ(std::string(s.message().substr(0, 22)), "select.isa.covariance:") << s;
  s = CheckDegenerate(*plan, {50, 8});  // fewer units than components
  ASSERT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_EQ(std::string(s.message().substr(0, 15)), "isa.components:") << s;
  EXPECT_TRUE(CheckDegenerate(*plan, {64 * 1024, 1024}).ok());

  // The same request with a diagonal covariance is small.
  request.mutable_isa()->set_covariance(v1::COVARIANCE_DIAG);
  plan = PlanSelection(request, v1::DATASET_KIND_PAIRS, 4096);
  ASSERT_TRUE(plan.ok());
  EXPECT_LT(EstimateSelection(*plan, {300'000, 4096}, 3000).memory_bytes, int64_t{16} << 30);
}

// The pool is read in place from the index's codes: a method that scans it (herding above its
// exact limit, facility location's projected graph, random) is not charged a float32 copy of
// ten million pairs (20 GB at 512 floats), and one that decodes it (ISA, kcenter) is.
TEST(CostTest, MethodsThatReadCodesInPlaceAreNotChargedAFloatCopy) {
  const PoolShape ten_million{10'000'000, 512};
  const double floats = 10'000'000.0 * 512 * 4;
  v1::SelectRequest request;
  request.mutable_budget()->set_fraction(0.01);
  auto plan = PlanSelection(request, v1::DATASET_KIND_PAIRS, 256);  // the default: herding
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->resolved.method(), v1::SELECTION_METHOD_HERDING);
  EXPECT_LT(EstimateSelection(*plan, ten_million, 100'000).memory_bytes, floats / 8);
  request.set_method(v1::SELECTION_METHOD_RANDOM);
  plan = PlanSelection(request, v1::DATASET_KIND_PAIRS, 256);
  ASSERT_TRUE(plan.ok());
  EXPECT_LT(EstimateSelection(*plan, ten_million, 100'000).memory_bytes, floats / 20);
  request.set_method(v1::SELECTION_METHOD_FACILITY_LOCATION);
  plan = PlanSelection(request, v1::DATASET_KIND_PAIRS, 256);
  ASSERT_TRUE(plan.ok());
  EXPECT_LT(EstimateSelection(*plan, {10'000'000, 256}, 100'000).memory_bytes, floats / 2);
  request.set_method(v1::SELECTION_METHOD_KCENTER);
  plan = PlanSelection(request, v1::DATASET_KIND_PAIRS, 256);
  ASSERT_TRUE(plan.ok());
  EXPECT_GT(EstimateSelection(*plan, {10'000'000, 256}, 100'000).memory_bytes, floats / 2);
  // Below its exact limit herding decodes the rows it scans at every step.
  request.set_method(v1::SELECTION_METHOD_HERDING);
  plan = PlanSelection(request, v1::DATASET_KIND_PAIRS, 256);
  ASSERT_TRUE(plan.ok());
  EXPECT_GT(EstimateSelection(*plan, {40'000, 512}, 400).memory_bytes, 40'000.0 * 512 * 4);
}

}  // namespace
}  // namespace curation::jobs
