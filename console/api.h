// The web console's JSON API: a thin adapter from HTTP to the curation.v1 gRPC service.
//
// Every data request becomes one or more calls on a gRPC channel to the server itself (an
// in-process channel in curation-server), carrying the caller's token as the "authorization"
// metadata. Authentication, tenancy, validation and limits are therefore the gRPC service's
// own; this layer adds only HTTP parsing, paging of a selection's items, the score histogram
// and the overlap of two selections. Routes and their parameters: README, "The web console".
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "curation/v1/curation.grpc.pb.h"

namespace curation::server {
class Authenticator;
}

namespace curation::console {

// One HTTP request, already parsed by the HTTP server.
struct HttpRequest {
  std::string method;                                      // "GET", "POST", ...
  std::string path;                                        // URL-decoded, without the query string
  std::vector<std::pair<std::string, std::string>> query;  // URL-decoded, in order
  // Values of every "Authorization" header (more than one is refused, as over gRPC).
  std::vector<std::string> authorization;
  std::string cookie;        // the "Cookie" header, if any
  std::string content_type;  // the "Content-Type" header, if any
  std::string origin;        // the "Origin" header, if any
  std::string host;          // the "Host" header, if any
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // besides the security headers
};

// The cookie the console keeps the token in after sign-in (HttpOnly, SameSite=Strict).
inline constexpr char kTokenCookie[] = "curation_console_token";
// Items per page of a selection: at most this many.
inline constexpr int kMaxItemsPerPage = 500;
// Histogram bins: at most this many.
inline constexpr int kMaxHistogramBins = 200;
// Request bodies (only sign-in has one): at most this many bytes.
inline constexpr size_t kMaxBodyBytes = 16 * 1024;

class Api {
 public:
  // `channel` reaches the curation.v1 service; `auth` (not owned, outlives this) only names
  // the signed-in caller's tenant and role for display and checks a token at sign-in. Every
  // data access is decided by the gRPC service.
  Api(std::shared_ptr<grpc::Channel> channel, const server::Authenticator* auth);

  // Answers one request under /api/. Thread-safe.
  HttpResponse Handle(const HttpRequest& request) const;

 private:
  std::unique_ptr<v1::CurationService::Stub> stub_;
  const server::Authenticator* auth_;
};

// The HTTP status for a gRPC status code (UNAUTHENTICATED 401, PERMISSION_DENIED 403,
// NOT_FOUND 404, INVALID_ARGUMENT 400, RESOURCE_EXHAUSTED 429, ...).
int HttpStatusFor(grpc::StatusCode code);

}  // namespace curation::console
