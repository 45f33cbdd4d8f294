#include "tests/support/etcd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>
#include <vector>

namespace curation::testing {
namespace {

constexpr const char* kEtcdBin = "/usr/bin/etcd";
constexpr auto kStartTimeout = std::chrono::seconds(20);

}  // namespace

// A port the OS says is free now. Another process may take it before etcd binds it; etcd
// then fails to start and Start reports it, which is rare enough for tests.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string HttpExchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval timeout{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char buffer[1024];
    ssize_t n;
    while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) reply.append(buffer, n);
  }
  close(fd);
  return reply;
}

namespace {

// GET /health on the client port: etcd answers {"health":"true"} once it has a leader and
// serves requests.
bool Healthy(int port) {
  const std::string reply =
      HttpExchange(port, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  return reply.find("\"health\":\"true\"") != std::string::npos;
}

}  // namespace

std::unique_ptr<EtcdProcess> EtcdProcess::Start(const std::string& data_dir) {
  std::unique_ptr<EtcdProcess> etcd(new EtcdProcess());
  etcd->data_dir_ = data_dir;
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    std::cerr << "EtcdProcess: cannot create " << data_dir << ": " << error.message() << "\n";
    return nullptr;
  }
  etcd->client_port_ = FreePort();
  etcd->peer_port_ = FreePort();
  if (etcd->client_port_ == 0 || etcd->peer_port_ == 0 || etcd->client_port_ == etcd->peer_port_) {
    std::cerr << "EtcdProcess: no free loopback ports\n";
    return nullptr;
  }
  etcd->endpoint_ = "127.0.0.1:" + std::to_string(etcd->client_port_);
  if (!etcd->Launch()) return nullptr;
  return etcd;
}

EtcdProcess::~EtcdProcess() { Kill(); }

bool EtcdProcess::Launch() {
  // etcd's own member data lives in a subdirectory it must own with mode 0700.
  const std::string member_dir = data_dir_ + "/etcd";
  const std::string log_path = data_dir_ + "/etcd.log";
  const std::string client_url = "http://127.0.0.1:" + std::to_string(client_port_);
  const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer_port_);
  std::vector<std::string> args = {kEtcdBin,
                                   "--name=default",
                                   "--data-dir=" + member_dir,
                                   "--listen-client-urls=" + client_url,
                                   "--advertise-client-urls=" + client_url,
                                   "--listen-peer-urls=" + peer_url,
                                   "--initial-advertise-peer-urls=" + peer_url,
                                   "--initial-cluster=default=" + peer_url,
                                   "--logger=zap",
                                   "--log-outputs=stderr"};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    std::cerr << "EtcdProcess: fork: " << std::strerror(errno) << "\n";
    return false;
  }
  if (pid == 0) {
    // Dies with the test rather than outliving a crashed one. (The signal comes when the
    // thread that forked exits: start etcd from a thread that lives as long as it.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
      close(log);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      std::cerr << "EtcdProcess: " << kEtcdBin << " exited at start (status " << status << "); see "
                << log_path << "\n";
      return false;
    }
    if (Healthy(client_port_)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::cerr << "EtcdProcess: etcd did not answer on " << endpoint_ << " within 20 s; see "
            << log_path << "\n";
  Kill();
  return false;
}

void EtcdProcess::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void EtcdProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool EtcdProcess::Restart() {
  if (pid_ > 0) return false;
  return Launch();
}

}  // namespace curation::testing
