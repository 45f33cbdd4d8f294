// The server's job scheduler, built from its flags and the tenants' quotas: how many workers,
// the memory limits (parsed from sizes such as "6G"), each tenant's policy (running and
// queued jobs, weight, time limit), and the hooks that feed metrics and tenants' usage.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "jobs/scheduler.h"
#include "server/telemetry.h"
#include "server/tenants.h"

namespace curation::server {

struct SchedulingFlags {
  int workers = 0;                // 0: one per core
  std::string max_job_memory;     // "" = a quarter of physical memory
  std::string job_memory_budget;  // "" = half of physical memory
  double max_job_seconds = 3600;
  int default_max_running = 2;
  int default_max_queued = 16;
  int job_threads = -1;  // -1: cores - 1 (at least 1); 0: OpenMP's defaults
};

// "6G", "512M", "64K" or plain bytes (binary units). INVALID_ARGUMENT otherwise.
absl::StatusOr<int64_t> ParseByteSize(const std::string& text);

// INVALID_ARGUMENT naming the flag for a bad size or a non-positive limit.
absl::StatusOr<std::unique_ptr<jobs::Scheduler>> MakeScheduler(const SchedulingFlags& flags,
                                                               TenantRegistry* tenants,
                                                               Metrics* metrics);

}  // namespace curation::server
