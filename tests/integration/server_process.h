// Test support: the real curation-server and curation binaries, run as child processes on
// loopback with a temporary data directory.
#pragma once

#include <sys/types.h>

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
  // Starts curation-server on 127.0.0.1 with an OS-chosen port and waits until it serves.
  // Extra flags are appended to the command line.
  static std::unique_ptr<ServerProcess> Start(const std::string& data_dir,
                                              const std::vector<std::string>& flags = {});
  ~ServerProcess();

  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  std::unique_ptr<v1::CurationService::Stub> Stub() const;

  // Sends `signal` and waits for the process; returns its exit status as from waitpid.
  int Signal(int signal);

 private:
  pid_t pid_ = -1;
  std::string address_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the curation CLI against `server` with the given arguments.
CommandResult RunCli(const std::string& server, const std::vector<std::string>& args);

}  // namespace curation::testing
