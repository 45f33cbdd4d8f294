// Test support: the real curation-server and curation binaries, run as child processes on
// loopback with a temporary data directory.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "curation/v1/curation.grpc.pb.h"

namespace curation::testing {

// A fresh, empty directory under the test's temporary directory.
std::string MakeTempDir(const std::string& name);

// Where the repository's bundled sample data live.
std::string TestDataPath(const std::string& file);

class ServerProcess {
 public:
  // Starts curation-server on 127.0.0.1 with an OS-chosen port and waits until its health
  // is SERVING. Extra flags are appended to the command line; without "--auth" among them the
  // server runs with --auth=false (the tests of auth pass their own).
  static std::unique_ptr<ServerProcess> Start(
      const std::string& data_dir, const std::vector<std::string>& flags = {},
      std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials());
  ~ServerProcess();

  const std::string& address() const { return address_; }
  // Credentials for clients of this server (TLS tests replace the insecure default).
  void set_credentials(std::shared_ptr<grpc::ChannelCredentials> c) { credentials_ = std::move(c); }
  std::shared_ptr<grpc::ChannelCredentials> credentials() const { return credentials_; }
  // Polls the health service until SERVING or the timeout.
  bool WaitServing(std::chrono::seconds timeout) const;
  pid_t pid() const { return pid_; }
  std::unique_ptr<v1::CurationService::Stub> Stub() const;

  // Sends `signal` and waits for the process; returns its exit status as from waitpid.
  int Signal(int signal);

 private:
  pid_t pid_ = -1;
  std::string address_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_ = grpc::InsecureChannelCredentials();
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the curation CLI against `server` with the given arguments.
CommandResult RunCli(const std::string& server, const std::vector<std::string>& args);

}  // namespace curation::testing
