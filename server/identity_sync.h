// Keeps this process's Authenticator and TenantRegistry in step with an IdentityStore that
// other processes share (a cluster's etcd), and publishes this process's usage of every
// tenant so that the others' quota checks count it.
//
// Bound on quota overshoot. A member checks a request against its own usage (with what it
// has admitted and not yet written) plus the usage the other members last published. A
// member publishes when its usage changed, at most once per `publish_every` (1 s), and the
// others see it one etcd watch delivery later (milliseconds). So a member's view of the
// others lags by at most L = publish_every + one etcd write and watch delivery (~1 s; more
// while etcd is unreachable, when nothing new is published). Within L the members admit
// independently: with M members, the cluster's total can exceed a quota by at most what the
// M-1 other members admitted in the last L, and never by more than (M-1) x the quota (each
// member alone never passes it). For max_datasets that is at most M-1 datasets when creations
// race; for examples and bytes, at most the other members' ingest over ~1 s (with an ingest
// rate quota, at most (M-1) x (ingest_burst_records + L x ingest_records_per_second) examples:
// rate limits are per member, so a cluster admits up to M x the rate). Once the publications
// have landed, every further request is refused until usage drops below the quota.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/identity_store.h"
#include "server/tenants.h"

namespace curation::server {

class IdentitySync {
 public:
  struct Options {
    // Usage is published at most this often (and only when it changed).
    std::chrono::milliseconds publish_every{1000};
  };

  // Delivers the changes other members make in `identity` to `auth` and `tenants` from now
  // on (after applying, once, everything stored now). The three must outlive this object.
  // For a store that is not shared, does nothing. The store's errors pass through.
  static absl::StatusOr<std::unique_ptr<IdentitySync>> Start(IdentityStore* identity,
                                                             Authenticator* auth,
                                                             TenantRegistry* tenants,
                                                             const Options& options);
  static absl::StatusOr<std::unique_ptr<IdentitySync>> Start(IdentityStore* identity,
                                                             Authenticator* auth,
                                                             TenantRegistry* tenants) {
    return Start(identity, auth, tenants, Options{});
  }
  // Stops publishing and the deliveries; returns when neither runs.
  ~IdentitySync();

  // Starts publishing this process's usage of every tenant: at once, then whenever it
  // changed, at most once per `publish_every`. Call once the datasets are counted (after
  // Catalog::Load), or the first publication understates usage until the next. Once.
  void StartPublishing();
  // Publishes every tenant's usage that changed since its last publication, now. Returns
  // the first error (the failed ones are tried again next time).
  absl::Status PublishNow();

 private:
  IdentitySync(IdentityStore* identity, TenantRegistry* tenants, const Options& options)
      : identity_(identity), tenants_(tenants), options_(options) {}
  void PublishLoop();

  IdentityStore* identity_;
  TenantRegistry* tenants_;
  const Options options_;
  std::mutex publish_mu_;  // one publication at a time; guards published_
  std::map<std::string, v1::TenantUsage> published_;
  std::mutex mu_;  // guards stop_
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread publisher_;
};

}  // namespace curation::server
