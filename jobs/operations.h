// Operations: jobs that outlive the call that started them (the google.longrunning
// conventions, AIP-151), stored in RocksDB.
//
// Start() validates the request through the JobRunner (nothing is stored for a bad request),
// stores the operation QUEUED and submits its job to the scheduler. The job marks it RUNNING,
// runs it, and stores the result or the error. After a crash, Recover() submits every
// operation that was not done again: same request, same pool snapshot, so the same result.
// Done operations expire after the retention period. A request_id (AIP-155) maps to the
// operation it started: the same tenant sending it again gets that operation, never new work.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "curation/storage/records.pb.h"
#include "jobs/scheduler.h"
#include "store/store.h"

namespace curation::jobs {

// What the service plugs in: how to check, size, run and present each kind of job.
class JobRunner {
 public:
  virtual ~JobRunner() = default;
  // Checks record->request against the current state and, if not set yet, fills the snapshot
  // (dataset_internal_id, pool_seq). Returns the job's estimated cost, or the request's error
  // (INVALID_ARGUMENT with the field path, NOT_FOUND, FAILED_PRECONDITION, ...).
  virtual absl::StatusOr<JobCost> Prepare(storage::OperationRecord* record) = 0;
  // Runs the job on a worker and sets record->operation's result. `succeed(record)` marks the
  // record done; a runner that commits something (a selection) calls it and stores the record
  // in the same write, then returns true; false leaves storing to the caller.
  virtual absl::StatusOr<bool> Run(
      storage::OperationRecord* record, JobControl& control,
      const std::function<void(storage::OperationRecord*)>& succeed) = 0;
  // Fills what a stored operation leaves out (a selection's items) before a caller sees it.
  virtual absl::Status Expand(const storage::OperationRecord& record, v1::Operation* op) = 0;
};

class Operations {
 public:
  struct Options {
    // How long done operations are kept.
    std::chrono::seconds retention{std::chrono::hours(24 * 7)};
    // How often expired operations are looked for.
    std::chrono::seconds sweep_every{std::chrono::minutes(10)};
    // Stored operations count against their tenant's storage: called with the bytes an
    // operation record adds (enforce = true when a new operation is started: an error refuses
    // it) or changes by (its result, its expiry, start-up's count of what is stored). May be
    // empty.
    std::function<absl::Status(const std::string& tenant, int64_t bytes, bool enforce)> account;
  };

  Operations(store::Store* store, Scheduler* scheduler, JobRunner* runner, Options options);
  // Stops the sweeper, shuts the scheduler down and waits until every job it submitted has
  // ended (about a second for running ones), since jobs report here when they end.
  ~Operations();

  struct Started {
    v1::Operation operation;
    // The live job (null if the operation was already done, e.g. a repeated request_id).
    std::shared_ptr<Job> job;
  };
  // Starts an operation for record->tenant with record's request and operation.metadata.kind
  // and .request_id set. A request_id already used by the tenant returns that operation
  // (ALREADY_EXISTS if the request differs). Errors of Prepare and of the scheduler's
  // admission are returned and nothing is stored. `durable`: the queued operation is synced
  // before Start returns (needed when a caller may come back for it: Start* RPCs and calls
  // with a request_id); otherwise its first write waits for the next sync.
  absl::StatusOr<Started> Start(storage::OperationRecord record, bool durable = true);
  // The operation as it is now: live progress and queue position while it waits or runs.
  // NOT_FOUND for an unknown, malformed or other tenant's name.
  absl::StatusOr<v1::Operation> Get(const std::string& tenant, const std::string& name);
  // Newest first; page_token is the last name of the previous page.
  absl::StatusOr<std::vector<v1::Operation>> List(const std::string& tenant,
                                                  const std::string& dataset,
                                                  const std::string& after_name, int limit);
  // Cancels a queued or running operation (it ends CANCELLED); returns it as it is then.
  absl::StatusOr<v1::Operation> Cancel(const std::string& tenant, const std::string& name,
                                       const std::string& why);
  // Waits until the operation is done, `timeout` passes or `give_up()` returns true (polled a
  // few times a second), then returns it as Get does.
  absl::StatusOr<v1::Operation> Wait(const std::string& tenant, const std::string& name,
                                     std::chrono::steady_clock::duration timeout,
                                     const std::function<bool()>& give_up);
  // How many of the tenant's operations on the dataset with internal id `dataset_internal_id`
  // are queued or running (what Catalog::BeginMove must find at 0).
  int64_t CountLive(const std::string& tenant, uint64_t dataset_internal_id) const;
  // The live job of an operation, or null once it is done.
  std::shared_ptr<Job> LiveJob(const std::string& tenant, const std::string& name) const;

  // Start-up: submits every stored operation that is not done again (attempts + 1). Returns
  // how many were resubmitted.
  absl::StatusOr<int> Recover();
  // Deletes done operations past their expire_time; returns how many.
  absl::StatusOr<int> ExpireNow();

 private:
  struct Live {
    std::shared_ptr<Job> job;
    std::shared_ptr<storage::OperationRecord> record;  // guarded by mu_
  };
  // Queues a stored operation's job (from Start, or again from Recover).
  absl::StatusOr<Started> Submit(std::shared_ptr<storage::OperationRecord> record);
  void OnDone(const std::shared_ptr<storage::OperationRecord>& record, const Job& job,
              const absl::Status& status, bool persisted);
  v1::Operation View(const storage::OperationRecord& record, const Job* job);
  void MarkDone(storage::OperationRecord* record, const absl::Status& status) const;
  absl::Status Account(const std::string& tenant, int64_t bytes, bool enforce) const;
  absl::StatusOr<storage::OperationRecord> Load(const std::string& tenant,
                                                const std::string& name) const;

  store::Store* store_;
  Scheduler* scheduler_;
  JobRunner* runner_;
  const Options options_;
  mutable std::mutex mu_;
  // Serialises the request_id check with the first store of an operation.
  std::mutex start_mu_;
  std::map<std::string, Live> live_;  // by tenant "/" id
  // Bytes counted for each live operation's record so far.
  std::map<std::string, int64_t> accounted_;  // by tenant "/" id, guarded by mu_
  bool closing_ = false;
  std::condition_variable sweep_cv_;
  std::thread sweeper_;
};

// "operations/<id>" -> id, or empty if `name` is not of that form.
std::string OperationIdOf(const std::string& name);

}  // namespace curation::jobs
