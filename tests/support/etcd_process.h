// Test support: Debian's real etcd (/usr/bin/etcd), run as a child process on loopback with a
// temporary data directory, for the cluster's tests and benchmarks.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

namespace curation::testing {

// A loopback port the OS says is free now (0 if none). Another process may take it before
// the caller binds it; rare enough for tests.
int FreePort();

// Sends a raw HTTP/1.0 `request` to 127.0.0.1:`port` and returns the whole reply ("" if it
// cannot connect): etcd's JSON gateway and /health, for what the gRPC client does not do.
std::string HttpExchange(int port, const std::string& request);

class EtcdProcess {
 public:
  // Starts a one-member etcd on 127.0.0.1 with OS-chosen free client and peer ports, its data
  // in `data_dir` (created if missing), and waits until it answers (at most ~20 s). nullptr
  // (with the reason on stderr) if it does not start. etcd's log is data_dir/etcd.log. etcd
  // gets SIGKILL when the thread that started it exits (so a crashed test leaves none
  // behind): start it from a thread that outlives it, such as the test's main thread.
  static std::unique_ptr<EtcdProcess> Start(const std::string& data_dir);
  // Kills the process if it still runs.
  ~EtcdProcess();

  // "127.0.0.1:PORT", for EtcdClient and --cluster-etcd.
  const std::string& endpoint() const { return endpoint_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // SIGTERM, and waits for the process to exit.
  void Stop();
  // SIGKILL, and waits.
  void Kill();
  // Starts it again on the same ports and data directory (after Stop or Kill) and waits until
  // it answers. False if it does not come back.
  bool Restart();

 private:
  EtcdProcess() = default;
  bool Launch();

  std::string data_dir_;
  std::string endpoint_;
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace curation::testing
