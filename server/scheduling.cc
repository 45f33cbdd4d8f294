#include "server/scheduling.h"

#include <unistd.h>

#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

// OpenBLAS's own thread pool (the proxy's logistic regression runs on it); not behind
// OpenMP's per-thread setting, so it is capped once for the whole process.
extern "C" void openblas_set_num_threads(int threads);

namespace curation::server {
namespace {

int64_t PhysicalMemory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : int64_t{8} << 30;
}

}  // namespace

absl::StatusOr<int64_t> ParseByteSize(const std::string& text) {
  std::string t(absl::StripAsciiWhitespace(text));
  int shift = 0;
  if (!t.empty()) {
    switch (absl::ascii_toupper(t.back())) {
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      default:
        break;
    }
    if (shift > 0) t.pop_back();
  }
  double value = 0;
  if (t.empty() || !absl::SimpleAtod(t, &value) || !(value > 0) ||
      value * static_cast<double>(int64_t{1} << shift) > 9e18) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a positive size (e.g. 6G, 512M, 1048576)"));
  }
  return static_cast<int64_t>(value * static_cast<double>(int64_t{1} << shift));
}

absl::StatusOr<std::unique_ptr<jobs::Scheduler>> MakeScheduler(const SchedulingFlags& flags,
                                                               TenantRegistry* tenants,
                                                               Metrics* metrics) {
  jobs::Scheduler::Options options;
  options.workers = flags.workers > 0
                        ? flags.workers
                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int64_t memory = PhysicalMemory();
  options.max_job_memory_bytes = memory / 4;
  if (!flags.max_job_memory.empty()) {
    auto parsed = ParseByteSize(flags.max_job_memory);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--max-job-memory: ", parsed.status().message()));
    }
    options.max_job_memory_bytes = *parsed;
  }
  options.memory_budget_bytes = std::max(memory / 2, options.max_job_memory_bytes);
  if (!flags.job_memory_budget.empty()) {
    auto parsed = ParseByteSize(flags.job_memory_budget);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--job-memory-budget: ", parsed.status().message()));
    }
    options.memory_budget_bytes = *parsed;
  }
  if (options.memory_budget_bytes < options.max_job_memory_bytes) {
    return absl::InvalidArgumentError(
        "--job-memory-budget: must be at least --max-job-memory, or the largest admitted job "
        "could never run");
  }
  if (flags.max_job_seconds < 0) return absl::InvalidArgumentError("--max-job-seconds: negative");
  if (flags.default_max_running < 1 || flags.default_max_queued < 1) {
    return absl::InvalidArgumentError(
        "--default-max-running-jobs and --default-max-queued-jobs: must be at least 1");
  }
  options.max_job_seconds = flags.max_job_seconds;
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  options.threads = flags.job_threads < 0 ? std::max(1, cores - 1) : flags.job_threads;
  if (options.threads > 0) openblas_set_num_threads(options.threads);

  auto policy = [tenants, flags](const std::string& name) {
    jobs::TenantPolicy p;
    p.max_running = flags.default_max_running;
    p.max_queued = flags.default_max_queued;
    auto tenant = tenants->Find(name);
    if (!tenant.ok()) return p;
    std::lock_guard<std::mutex> lock((*tenant)->mu);
    const v1::Quotas& q = (*tenant)->tenant.quotas();
    if (q.max_concurrent_selections() > 0) p.max_running = q.max_concurrent_selections();
    if (q.max_queued_jobs() > 0) p.max_queued = q.max_queued_jobs();
    if (q.scheduling_weight() > 0) p.weight = q.scheduling_weight();
    if (q.max_job_seconds() > 0) p.max_seconds = q.max_job_seconds();
    return p;
  };
  // Usage counters of the tenants and the gauges follow the scheduler's own figures.
  auto publish = std::make_shared<std::function<void(const std::string&)>>();
  jobs::Scheduler::Hooks hooks;
  hooks.refused = [metrics](const std::string& tenant, const std::string& reason) {
    if (metrics != nullptr) metrics->RecordJobRefusal(tenant, reason);
    if (metrics != nullptr) metrics->RecordQuotaRejection(tenant, reason);
    LogEvent("warn", "job refused", {{"tenant", tenant}, {"reason", reason}});
  };
  hooks.started = [metrics, publish](const jobs::Job& job, double wait) {
    if (metrics != nullptr) metrics->RecordJobStart(job.tenant(), job.kind(), wait);
    (*publish)(job.tenant());
  };
  hooks.finished = [metrics, publish](const jobs::Job& job, const absl::Status& status,
                                      double seconds) {
    if (metrics != nullptr) {
      metrics->RecordJobEnd(job.tenant(), job.kind(), static_cast<int>(status.code()), seconds);
    }
    const double waited =
        std::chrono::duration<double>(job.start_time() - job.submit_time()).count();
    LogEvent(status.ok() ? "info" : "warn", "job ended",
             {{"tenant", job.tenant()},
              {"kind", job.kind()},
              {"code", absl::StatusCodeToString(status.code())},
              {"wait_seconds", absl::StrFormat("%.3f", waited)},
              {"run_seconds", absl::StrFormat("%.3f", seconds)},
              {"estimated_memory_bytes", std::to_string(job.cost().memory_bytes)},
              {"error", std::string(status.message().substr(0, 200))}});
    (*publish)(job.tenant());
  };
  hooks.queue_changed = [publish](const std::string& tenant) { (*publish)(tenant); };
  auto scheduler = std::make_unique<jobs::Scheduler>(options, policy, hooks);
  jobs::Scheduler* raw = scheduler.get();
  *publish = [raw, tenants, metrics](const std::string& tenant) {
    const auto load = raw->Load();
    auto it = load.find(tenant);
    const int queued = it == load.end() ? 0 : it->second.first;
    const int running = it == load.end() ? 0 : it->second.second;
    if (metrics != nullptr) metrics->SetJobLoad(tenant, queued, running);
    if (auto t = tenants->Find(tenant); t.ok()) {
      std::lock_guard<std::mutex> lock((*t)->mu);
      (*t)->running_selections = running;
      (*t)->queued_jobs = queued;
    }
  };
  return scheduler;
}

}  // namespace curation::server
