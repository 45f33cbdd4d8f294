// Test support: a cluster on loopback, as the README runs one on a single machine: Debian's
// real etcd and N real curation-server members (authentication on, one bootstrap admin token),
// each on its own port and RocksDB directory. Members can be killed and restarted with their
// name, port and data directory.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "curation/v1/admin.grpc.pb.h"
#include "curation/v1/curation.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/support/etcd_process.h"

namespace curation::testing {

class LocalCluster {
 public:
  // Starts etcd and `members` members named m1..mN under `dir`. `extra_flags` go to every
  // member. Throws if anything does not start.
  LocalCluster(const std::string& dir, int members, std::vector<std::string> extra_flags = {});
  ~LocalCluster();

  EtcdProcess& etcd() { return *etcd_; }
  int size() const { return static_cast<int>(members_.size()); }
  // Member i (0-based) is named "m<i+1>".
  std::string name(int i) const { return "m" + std::to_string(i + 1); }
  const std::string& address(int i) const { return addresses_[i]; }
  ServerProcess* member(int i) { return members_[i].get(); }
  const std::string& admin_token() const { return admin_token_; }

  // SIGKILL, and waits.
  void Kill(int i);
  // Starts member i again with its name, port and data directory, and waits until SERVING.
  void Restart(int i);

  // Stubs of member i; calls through them carry `token` (default: the admin token).
  std::unique_ptr<v1::CurationService::Stub> Data(int i) const;
  std::unique_ptr<v1::AdminService::Stub> Admin(int i) const;
  // A tenant with a WRITER token, made through member i; returns the token's secret.
  std::string MakeTenant(int i, const std::string& tenant);

 private:
  void Launch(int i);

  std::string dir_;
  std::vector<std::string> extra_flags_;
  std::unique_ptr<EtcdProcess> etcd_;
  std::string admin_token_;
  std::string admin_token_file_;
  std::vector<int> ports_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<ServerProcess>> members_;
};

// Adds "authorization: Bearer <token>" to a client context.
void Authorize(grpc::ClientContext* context, const std::string& token);

}  // namespace curation::testing
