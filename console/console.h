// The web console: an HTTP server (civetweb) on its own port that serves the console's
// pages (HTML, CSS and JavaScript compiled into the binary, see assets/) and its JSON API
// (api.h). Off unless curation-server is started with --console-listen.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "console/api.h"

struct mg_context;

namespace curation::console {

class Console {
 public:
  struct Options {
    std::string listen;  // HOST:PORT (port 0 picks one); [::1]:PORT for IPv6
    int threads = 4;     // requests served at once; more wait for a free thread
  };

  // Listens and serves until destroyed. `channel` reaches the curation.v1 service (the
  // server's in-process channel); `auth` outlives the console. An error if the address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<Console>> Start(const Options& options,
                                                        std::shared_ptr<grpc::Channel> channel,
                                                        const server::Authenticator* auth);
  // Stops listening and waits for the requests being served (each ends within its calls'
  // deadline, or at once once the gRPC server has shut down).
  ~Console();

  int port() const { return port_; }

  // Answers one request: the API under /api/, the embedded assets elsewhere. Adds the
  // security headers (Content-Security-Policy and others). Thread-safe.
  HttpResponse Serve(const HttpRequest& request) const;

 private:
  explicit Console(std::unique_ptr<Api> api) : api_(std::move(api)) {}

  std::unique_ptr<Api> api_;
  mg_context* context_ = nullptr;
  int port_ = 0;
};

}  // namespace curation::console
