#include "console/console.h"

#include <civetweb.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "console/assets.h"
#include "server/telemetry.h"

namespace curation::console {
namespace {

// Scripts, styles and data only from the console itself, nothing inline: a text that reached
// the page as markup (it never should: the script sets textContent only) could not run.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 499:
      return "Client Closed Request";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Internal Server Error";
  }
}

std::string Decode(absl::string_view in, bool form) {
  std::string out(in.size() + 1, '\0');
  const int n = mg_url_decode(in.data(), static_cast<int>(in.size()), out.data(),
                              static_cast<int>(out.size()), form ? 1 : 0);
  out.resize(n < 0 ? 0 : n);
  return out;
}

HttpRequest Parse(const mg_request_info* info) {
  HttpRequest request;
  request.method = info->request_method ? info->request_method : "";
  // Already URL-decoded by civetweb, with "." and ".." segments resolved.
  request.path = info->local_uri ? info->local_uri : "";
  if (info->query_string != nullptr) {
    for (absl::string_view pair : absl::StrSplit(info->query_string, '&', absl::SkipEmpty())) {
      const size_t eq = pair.find('=');
      request.query.emplace_back(
          Decode(pair.substr(0, eq), true),
          eq == absl::string_view::npos ? "" : Decode(pair.substr(eq + 1), true));
    }
  }
  for (int i = 0; i < info->num_headers; ++i) {
    const char* name = info->http_headers[i].name;
    const char* value = info->http_headers[i].value ? info->http_headers[i].value : "";
    if (absl::EqualsIgnoreCase(name, "Authorization")) request.authorization.push_back(value);
    if (absl::EqualsIgnoreCase(name, "Cookie")) {
      request.cookie = request.cookie.empty() ? value : absl::StrCat(request.cookie, "; ", value);
    }
    if (absl::EqualsIgnoreCase(name, "Content-Type")) request.content_type = value;
    if (absl::EqualsIgnoreCase(name, "Origin")) request.origin = value;
    if (absl::EqualsIgnoreCase(name, "Host")) request.host = value;
  }
  return request;
}

void Write(mg_connection* conn, const HttpResponse& response, bool head_only) {
  std::string head = absl::StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status),
                                  "\r\nContent-Type: ", response.content_type,
                                  "\r\nContent-Length: ", response.body.size(),
                                  "\r\nContent-Security-Policy: ", kContentSecurityPolicy,
                                  "\r\nX-Content-Type-Options: nosniff"
                                  "\r\nX-Frame-Options: DENY"
                                  "\r\nReferrer-Policy: no-referrer"
                                  "\r\nCache-Control: no-store"
                                  "\r\nConnection: close\r\n");
  for (const auto& [name, value] : response.headers)
    absl::StrAppend(&head, name, ": ", value, "\r\n");
  head += "\r\n";
  mg_write(conn, head.data(), head.size());
  if (!head_only && !response.body.empty()) {
    mg_write(conn, response.body.data(), response.body.size());
  }
}

HttpResponse TextError(int status, const std::string& message) {
  HttpResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = absl::StrCat(R"({"error":{"code":")",
                               status == 413 ? "RESOURCE_EXHAUSTED" : "INVALID_ARGUMENT",
                               R"(","message":")", message, R"("}})");
  return response;
}

// Runs `work` on a thread of the default stack size and waits for it. civetweb's threads
// have 100 KB stacks in Debian's build, which AddressSanitizer's frames overflow (nlohmann's
// serializer alone nearly fills one): nothing of ours runs on them but this hand-off.
template <typename Work>
void OnFullStack(Work&& work) {
  std::thread worker(std::forward<Work>(work));
  worker.join();
}

int ServeConnection(mg_connection* conn, const Console* console) {
  const auto started = std::chrono::steady_clock::now();
  const mg_request_info* info = mg_get_request_info(conn);
  HttpRequest request = Parse(info);
  HttpResponse response;
  if (info->content_length > static_cast<long long>(kMaxBodyBytes)) {
    response = TextError(413, absl::StrCat("request bodies are at most ", kMaxBodyBytes, " bytes"));
  } else {
    char buffer[1024];
    int n;
    while (request.body.size() <= kMaxBodyBytes &&
           (n = mg_read(conn, buffer, sizeof(buffer))) > 0) {
      request.body.append(buffer, n);
    }
    if (request.body.size() > kMaxBodyBytes) {
      response =
          TextError(413, absl::StrCat("request bodies are at most ", kMaxBodyBytes, " bytes"));
    } else {
      response = console->Serve(request);
    }
  }
  Write(conn, response, request.method == "HEAD");
  // The path and status only: never a header (the token), nor the query string.
  server::LogEvent(response.status >= 500 ? "warn" : "info", "console request",
                   {{"method", request.method},
                    {"path", request.path},
                    {"status", std::to_string(response.status)},
                    {"remote", info->remote_addr},
                    {"ms", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now() - started)
                                              .count())}});
  return response.status;
}

// On a civetweb thread: the request is parsed, answered and logged on a full-size stack.
int HandleRequest(mg_connection* conn, void* data) {
  int status = 500;
  OnFullStack([&] { status = ServeConnection(conn, static_cast<const Console*>(data)); });
  return status;
}

int LogMessage(const mg_connection*, const char* message) {
  OnFullStack([message] { server::LogEvent("warn", "console http", {{"message", message}}); });
  return 1;
}

}  // namespace

HttpResponse Console::Serve(const HttpRequest& request) const {
  if (request.path.rfind("/api/", 0) == 0) return api_->Handle(request);
  HttpResponse response;
  const Asset* asset = FindAsset(request.path);
  if (asset == nullptr) {
    response.status = 404;
    response.content_type = "text/plain; charset=utf-8";
    response.body = "not found\n";
    return response;
  }
  if (request.method != "GET" && request.method != "HEAD") {
    response.status = 405;
    response.content_type = "text/plain; charset=utf-8";
    response.body = "method not allowed\n";
    return response;
  }
  response.content_type = std::string(asset->content_type);
  response.body = std::string(asset->content);
  return response;
}

absl::StatusOr<std::unique_ptr<Console>> Console::Start(const Options& options,
                                                        std::shared_ptr<grpc::Channel> channel,
                                                        const server::Authenticator* auth) {
  if (options.listen.empty()) return absl::InvalidArgumentError("console: no address");
  // civetweb takes "HOST:PORT" for IPv4 and "[HOST]:PORT" for IPv6, as the flag does.
  std::unique_ptr<Console> console(new Console(std::make_unique<Api>(std::move(channel), auth)));
  mg_init_library(0);
  const std::string threads = std::to_string(std::max(1, options.threads));
  const char* config[] = {"listening_ports",
                          options.listen.c_str(),
                          "num_threads",
                          threads.c_str(),
                          "request_timeout_ms",
                          "30000",
                          "enable_keep_alive",
                          "no",
                          nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = LogMessage;
  console->context_ = mg_start(&callbacks, nullptr, config);
  if (console->context_ == nullptr) {
    mg_exit_library();
    return absl::UnavailableError("console: cannot listen on " + options.listen);
  }
  mg_set_request_handler(console->context_, "/", HandleRequest, console.get());
  mg_server_port ports[4];
  const int n = mg_get_server_ports(console->context_, 4, ports);
  console->port_ = n > 0 ? ports[0].port : 0;
  return console;
}

Console::~Console() {
  if (context_ != nullptr) {
    mg_stop(context_);
    mg_exit_library();
  }
}

}  // namespace curation::console
