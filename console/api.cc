#include "console/api.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <set>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "server/auth.h"

namespace curation::console {
namespace {

using nlohmann::json;

// One console request waits this long at most for the service.
constexpr auto kCallTimeout = std::chrono::seconds(30);
// Longest token accepted at sign-in or from the cookie (the server's are about 70 bytes).
constexpr size_t kMaxTokenBytes = 512;

json ErrorBody(const std::string& code, const std::string& message, const std::string& field) {
  json error = {{"code", code}, {"message", message}};
  if (!field.empty()) error["field"] = field;
  return json{{"error", error}};
}

HttpResponse JsonResponse(int status, const json& body) {
  HttpResponse response;
  response.status = status;
  // Non-ASCII is escaped: the body stays valid JSON whatever bytes a text held.
  response.body = body.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  return response;
}

HttpResponse Error(int status, const std::string& code, const std::string& message,
                   const std::string& field = "") {
  return JsonResponse(status, ErrorBody(code, message, field));
}

// "field.path: reason" (common/status.h InvalidField) names the field; anything else does not.
std::string FieldOf(const std::string& message) {
  const size_t colon = message.find(": ");
  if (colon == std::string::npos || colon == 0) return "";
  for (char c : message.substr(0, colon)) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '[' && c != ']') return "";
  }
  return message.substr(0, colon);
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK:
      return "OK";
    case grpc::CANCELLED:
      return "CANCELLED";
    case grpc::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::ABORTED:
      return "ABORTED";
    case grpc::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "INTERNAL";
  }
}

HttpResponse FromGrpc(const grpc::Status& status) {
  return Error(HttpStatusFor(status.error_code()), CodeName(status.error_code()),
               status.error_message(), FieldOf(status.error_message()));
}

HttpResponse FromStatus(const absl::Status& status) {
  const int http = status.code() == absl::StatusCode::kInvalidArgument ? 400 : 500;
  const std::string message(status.message());
  return Error(http, http == 400 ? "INVALID_ARGUMENT" : "INTERNAL", message, FieldOf(message));
}

json ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return nullptr;
  return json::parse(out, nullptr, /*allow_exceptions=*/false);
}

// The query parameters of one route: unknown ones are refused, so a typo is not ignored.
class Query {
 public:
  static absl::StatusOr<Query> Parse(const HttpRequest& request,
                                     std::initializer_list<const char*> allowed) {
    Query query;
    for (const auto& [key, value] : request.query) {
      if (key == "token" || key == "access_token" || key == "authorization") {
        return InvalidField(key,
                            "a token never goes in a URL; send 'Authorization: Bearer <token>' "
                            "or sign in");
      }
      if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }) ==
          allowed.end()) {
        return InvalidField(key, "unknown parameter");
      }
      if (!query.values_.emplace(key, value).second) return InvalidField(key, "given twice");
    }
    return query;
  }

  std::string Get(const std::string& key) const {
    auto it = values_.find(key);
    return it == values_.end() ? "" : it->second;
  }

  // `key` as an integer in [min, max], or `fallback` when absent.
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t fallback, int64_t min,
                              int64_t max) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    int64_t value = 0;
    if (!absl::SimpleAtoi(it->second, &value)) return InvalidField(key, "not an integer");
    if (value < min || value > max) {
      return InvalidField(key, absl::StrCat("must be in [", min, ", ", max, "]"));
    }
    return value;
  }

 private:
  std::map<std::string, std::string> values_;
};

// The token a request carries: its one Authorization header, else the sign-in cookie.
absl::StatusOr<std::string> AuthorizationOf(const HttpRequest& request) {
  if (request.authorization.size() > 1) {
    return absl::UnauthenticatedError(std::string(server::TooManyAuthorizationHeaders().message()));
  }
  std::string value;
  if (request.authorization.size() == 1) {
    value = request.authorization[0];
  } else {
    for (absl::string_view part : absl::StrSplit(request.cookie, ';')) {
      part = absl::StripAsciiWhitespace(part);
      if (absl::ConsumePrefix(&part, kTokenCookie) && absl::ConsumePrefix(&part, "=")) {
        if (!value.empty()) {
          return absl::UnauthenticatedError("more than one " + std::string(kTokenCookie) +
                                            " cookie");
        }
        value = absl::StrCat("Bearer ", part);
      }
    }
  }
  // gRPC metadata values are printable ASCII; anything else is no token of this server's.
  if (value.size() > kMaxTokenBytes + 7) return absl::UnauthenticatedError("token too long");
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return absl::UnauthenticatedError("malformed token");
  }
  return value;
}

// A token as sign-in accepts it: the characters of the server's tokens, which also need no
// quoting in a cookie.
bool TokenCharsOk(const std::string& token) {
  if (token.empty() || token.size() > kMaxTokenBytes) return false;
  for (char c : token) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '-' && c != '.' && c != '~' && c != '+' &&
        c != '/' && c != '=') {
      return false;
    }
  }
  return true;
}

std::string Cookie(const std::string& value, bool clear) {
  // HttpOnly: the page's scripts never read the token; SameSite=Strict: no other site's page
  // sends it. Secure is left to a TLS proxy in front (the console itself serves plain HTTP).
  return absl::StrCat(kTokenCookie, "=", value, "; Path=/; HttpOnly; SameSite=Strict",
                      clear ? "; Max-Age=0" : "");
}

class Handler {
 public:
  Handler(v1::CurationService::Stub& stub, const server::Authenticator* auth,
          const HttpRequest& request, std::string authorization)
      : stub_(stub), auth_(auth), request_(request), authorization_(std::move(authorization)) {}

  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (v1::CurationService::Stub::*method)(grpc::ClientContext*,
                                                                      const Req&, Resp*),
                    const Req& req, Resp* resp) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    if (!authorization_.empty()) context.AddMetadata("authorization", authorization_);
    return (stub_.*method)(&context, req, resp);
  }

  HttpResponse Route() {
    const std::vector<std::string> parts =
        absl::StrSplit(absl::string_view(request_.path).substr(5), '/');  // after "/api/"
    const std::string& m = request_.method;
    const size_t n = parts.size();
    if (n == 1 && parts[0] == "session") {
      if (m == "GET") return Session();
      if (m == "POST") return SignIn();
      if (m == "DELETE") return SignOut();
      return NotAllowed();
    }
    if (n >= 1 && parts[0] == "datasets") {
      if (m != "GET") return NotAllowed();
      if (n == 1) return ListDatasets();
      if (n == 2) return GetDataset(parts[1]);
      if (n == 3 && parts[2] == "selections") return ListSelections(parts[1]);
      if (n == 3 && parts[2] == "operations") return ListOperations(parts[1]);
    }
    if (n >= 2 && parts[0] == "operations") {
      if (n == 2) return m == "GET" ? GetOperation(parts[1]) : NotAllowed();
      if (n == 3 && parts[2] == "cancel") {
        return m == "POST" ? CancelOperation(parts[1]) : NotAllowed();
      }
    }
    if (n >= 2 && parts[0] == "selections") {
      if (m != "GET") return NotAllowed();
      if (n == 2) return SelectionItems(parts[1]);
      if (n == 3 && parts[2] == "histogram") return Histogram(parts[1]);
    }
    if (n == 1 && parts[0] == "compare") return m == "GET" ? Compare() : NotAllowed();
    return Error(404, "NOT_FOUND", "no such API route: " + request_.path);
  }

 private:
  HttpResponse NotAllowed() {
    return Error(405, "METHOD_NOT_ALLOWED",
                 request_.method + " is not allowed on " + request_.path);
  }

  HttpResponse Session() {
    auto query = Query::Parse(request_, {});
    if (!query.ok()) return FromStatus(query.status());
    return Whoami(authorization_, {});
  }

  HttpResponse Whoami(const std::string& authorization,
                      std::vector<std::pair<std::string, std::string>> headers) {
    auto caller = auth_->Resolve(authorization);
    if (!caller.ok()) {
      return Error(401, "UNAUTHENTICATED", std::string(caller.status().message()));
    }
    HttpResponse response = JsonResponse(200, {{"tenant", caller->tenant},
                                               {"role", v1::Role_Name(caller->role)},
                                               {"token_id", caller->token_id},
                                               {"auth", auth_->enabled()}});
    response.headers = std::move(headers);
    return response;
  }

  HttpResponse SignIn() {
    auto query = Query::Parse(request_, {});
    if (!query.ok()) return FromStatus(query.status());
    const json body = json::parse(request_.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("token") || !body["token"].is_string()) {
      return Error(400, "INVALID_ARGUMENT", "the body must be {\"token\": \"...\"}", "token");
    }
    std::string token = body["token"].get<std::string>();
    if (token.empty() && !auth_->enabled()) token = "none";  // any value serves, as over gRPC
    if (!TokenCharsOk(token)) {
      return Error(401, "UNAUTHENTICATED", "malformed token");
    }
    return Whoami("Bearer " + token, {{"Set-Cookie", Cookie(token, false)}});
  }

  HttpResponse SignOut() {
    HttpResponse response = JsonResponse(200, json::object());
    response.headers.push_back({"Set-Cookie", Cookie("", true)});
    return response;
  }

  HttpResponse ListDatasets() {
    auto query = Query::Parse(request_, {"page_size", "page_token"});
    if (!query.ok()) return FromStatus(query.status());
    auto page_size = query->Int("page_size", 0, INT32_MIN, INT32_MAX);
    if (!page_size.ok()) return FromStatus(page_size.status());
    v1::ListDatasetsRequest req;
    req.set_page_size(static_cast<int32_t>(*page_size));
    req.set_page_token(query->Get("page_token"));
    v1::ListDatasetsResponse resp;
    if (auto s = Call(&v1::CurationService::Stub::ListDatasets, req, &resp); !s.ok()) {
      return FromGrpc(s);
    }
    return JsonResponse(200, ToJson(resp));
  }

  HttpResponse GetDataset(const std::string& name) {
    auto query = Query::Parse(request_, {});
    if (!query.ok()) return FromStatus(query.status());
    v1::GetDatasetRequest req;
    req.set_name(name);
    v1::Dataset resp;
    if (auto s = Call(&v1::CurationService::Stub::GetDataset, req, &resp); !s.ok()) {
      return FromGrpc(s);
    }
    return JsonResponse(200, ToJson(resp));
  }

  HttpResponse ListSelections(const std::string& dataset) {
    auto query = Query::Parse(request_, {"page_size", "page_token"});
    if (!query.ok()) return FromStatus(query.status());
    auto page_size = query->Int("page_size", 0, INT32_MIN, INT32_MAX);
    if (!page_size.ok()) return FromStatus(page_size.status());
    v1::ListSelectionsRequest req;
    req.set_dataset(dataset);
    req.set_page_size(static_cast<int32_t>(*page_size));
    req.set_page_token(query->Get("page_token"));
    v1::ListSelectionsResponse resp;
    if (auto s = Call(&v1::CurationService::Stub::ListSelections, req, &resp); !s.ok()) {
      return FromGrpc(s);
    }
    return JsonResponse(200, ToJson(resp));
  }

  HttpResponse ListOperations(const std::string& dataset) {
    auto query = Query::Parse(request_, {"page_size", "page_token"});
    if (!query.ok()) return FromStatus(query.status());
    auto page_size = query->Int("page_size", 0, INT32_MIN, INT32_MAX);
    if (!page_size.ok()) return FromStatus(page_size.status());
    v1::ListOperationsRequest req;
    req.set_dataset(dataset);
    req.set_page_size(static_cast<int32_t>(*page_size));
    req.set_page_token(query->Get("page_token"));
    v1::ListOperationsResponse resp;
    if (auto s = Call(&v1::CurationService::Stub::ListOperations, req, &resp); !s.ok()) {
      return FromGrpc(s);
    }
    // A list shows states and progress; a finished selection's items (possibly a whole
    // ranking) are fetched with the selection.
    for (v1::Operation& op : *resp.mutable_operations()) {
      if (op.has_selection()) op.mutable_selection()->clear_items();
    }
    return JsonResponse(200, ToJson(resp));
  }

  HttpResponse GetOperation(const std::string& id) {
    auto query = Query::Parse(request_, {});
    if (!query.ok()) return FromStatus(query.status());
    v1::GetOperationRequest req;
    req.set_name("operations/" + id);
    v1::Operation resp;
    if (auto s = Call(&v1::CurationService::Stub::GetOperation, req, &resp); !s.ok()) {
      return FromGrpc(s);
    }
    if (resp.has_selection()) resp.mutable_selection()->clear_items();
    return JsonResponse(200, ToJson(resp));
  }

  HttpResponse CancelOperation(const std::string& id) {
    auto query = Query::Parse(request_, {});
    if (!query.ok()) return FromStatus(query.status());
    v1::CancelOperationRequest req;
    req.set_name("operations/" + id);
    v1::Operation resp;
    if (auto s = Call(&v1::CurationService::Stub::CancelOperation, req, &resp); !s.ok()) {
      return FromGrpc(s);
    }
    if (resp.has_selection()) resp.mutable_selection()->clear_items();
    return JsonResponse(200, ToJson(resp));
  }

  // The stored selection with every item; `field` names the parameter in errors.
  grpc::Status FetchSelection(const std::string& id, v1::Selection* selection) {
    v1::GetSelectionRequest req;
    req.set_id(id);
    req.set_view(v1::SELECTION_VIEW_FULL);
    return Call(&v1::CurationService::Stub::GetSelection, req, selection);
  }

  // The selection's own items: the first selected_count of a ranking, all of the others.
  static int64_t SelectedCount(const v1::Selection& selection) {
    return std::min<int64_t>(selection.items_size(), selection.summary().selected_count());
  }

  static json Basic(v1::Selection selection) {
    selection.clear_items();
    return ToJson(selection);
  }

  HttpResponse SelectionItems(const std::string& id) {
    auto query = Query::Parse(request_, {"offset", "limit"});
    if (!query.ok()) return FromStatus(query.status());
    auto offset = query->Int("offset", 0, 0, INT64_MAX);
    if (!offset.ok()) return FromStatus(offset.status());
    auto limit = query->Int("limit", 50, 1, kMaxItemsPerPage);
    if (!limit.ok()) return FromStatus(limit.status());
    v1::Selection selection;
    if (auto s = FetchSelection(id, &selection); !s.ok()) return FromGrpc(s);
    const int64_t total = selection.items_size();
    const int64_t begin = std::min(*offset, total);
    const int64_t end = std::min(begin + *limit, total);

    v1::GetExamplesRequest examples_req;
    examples_req.set_dataset(selection.dataset());
    std::set<std::string> asked;
    for (int64_t i = begin; i < end; ++i) {
      if (asked.insert(selection.items(i).example_id()).second) {
        examples_req.add_ids(selection.items(i).example_id());
      }
    }
    std::unordered_map<std::string, json> examples;
    if (examples_req.ids_size() > 0) {
      v1::GetExamplesResponse examples_resp;
      if (auto s = Call(&v1::CurationService::Stub::GetExamples, examples_req, &examples_resp);
          !s.ok()) {
        return FromGrpc(s);
      }
      for (const v1::Example& example : examples_resp.examples()) {
        examples[example.id()] = ToJson(example);
      }
    }
    json items = json::array();
    const int64_t selected = SelectedCount(selection);
    for (int64_t i = begin; i < end; ++i) {
      const v1::SelectedItem& item = selection.items(i);
      json row = ToJson(item);
      row["rank"] = i + 1;
      row["in_selection"] = i < selected;
      auto it = examples.find(item.example_id());
      row["example"] = it == examples.end() ? json(nullptr) : it->second;
      items.push_back(std::move(row));
    }
    return JsonResponse(200, {{"selection", Basic(std::move(selection))},
                              {"offset", begin},
                              {"limit", *limit},
                              {"total", total},
                              {"items", std::move(items)}});
  }

  HttpResponse Histogram(const std::string& id) {
    auto query = Query::Parse(request_, {"bins"});
    if (!query.ok()) return FromStatus(query.status());
    auto bins = query->Int("bins", 20, 1, kMaxHistogramBins);
    if (!bins.ok()) return FromStatus(bins.status());
    v1::Selection selection;
    if (auto s = FetchSelection(id, &selection); !s.ok()) return FromGrpc(s);
    const int64_t selected = SelectedCount(selection);
    double lo = INFINITY, hi = -INFINITY;
    int64_t non_finite = 0;
    for (int64_t i = 0; i < selected; ++i) {
      const double score = selection.items(i).score();
      if (!std::isfinite(score)) {
        ++non_finite;
        continue;
      }
      lo = std::min(lo, score);
      hi = std::max(hi, score);
    }
    std::vector<int64_t> counts(*bins, 0);
    if (lo <= hi) {
      const double width = hi > lo ? (hi - lo) / static_cast<double>(*bins) : 1.0;
      for (int64_t i = 0; i < selected; ++i) {
        const double score = selection.items(i).score();
        if (!std::isfinite(score)) continue;
        const int64_t bin =
            std::clamp<int64_t>(static_cast<int64_t>((score - lo) / width), 0, *bins - 1);
        ++counts[bin];
      }
    } else {
      lo = hi = 0;
    }
    return JsonResponse(200, {{"selection", Basic(std::move(selection))},
                              {"min", lo},
                              {"max", hi},
                              {"counts", counts},
                              {"scored", selected - non_finite},
                              {"non_finite", non_finite}});
  }

  HttpResponse Compare() {
    auto query = Query::Parse(request_, {"a", "b"});
    if (!query.ok()) return FromStatus(query.status());
    for (const char* key : {"a", "b"}) {
      if (query->Get(key).empty()) {
        return Error(400, "INVALID_ARGUMENT", std::string(key) + ": required (a selection id)",
                     key);
      }
    }
    v1::Selection a, b;
    // An error names the parameter, as the gRPC message names only "id".
    if (auto s = FetchSelection(query->Get("a"), &a); !s.ok()) {
      HttpResponse r = FromGrpc(s);
      if (s.error_code() == grpc::INVALID_ARGUMENT) {
        r = Error(400, "INVALID_ARGUMENT", "a: " + s.error_message(), "a");
      }
      return r;
    }
    if (auto s = FetchSelection(query->Get("b"), &b); !s.ok()) {
      HttpResponse r = FromGrpc(s);
      if (s.error_code() == grpc::INVALID_ARGUMENT) {
        r = Error(400, "INVALID_ARGUMENT", "b: " + s.error_message(), "b");
      }
      return r;
    }
    // A unit is an example, or one side of a pair for EXAMPLE-unit selections.
    auto units = [](const v1::Selection& s) {
      std::set<std::pair<std::string, int>> out;
      for (int64_t i = 0; i < SelectedCount(s); ++i) {
        out.insert({s.items(i).example_id(), s.items(i).side()});
      }
      return out;
    };
    const auto ua = units(a), ub = units(b);
    int64_t both = 0;
    json shared = json::array();
    for (const auto& unit : ua) {
      if (ub.count(unit) == 0) continue;
      ++both;
      if (shared.size() < 20) shared.push_back(unit.first);
    }
    const int64_t either = static_cast<int64_t>(ua.size() + ub.size()) - both;
    return JsonResponse(200, {{"a", Basic(std::move(a))},
                              {"b", Basic(std::move(b))},
                              {"overlap",
                               {{"a_count", ua.size()},
                                {"b_count", ub.size()},
                                {"both", both},
                                {"only_a", static_cast<int64_t>(ua.size()) - both},
                                {"only_b", static_cast<int64_t>(ub.size()) - both},
                                {"jaccard", either > 0 ? static_cast<double>(both) / either : 0.0},
                                {"shared_sample", std::move(shared)}}}});
  }

  v1::CurationService::Stub& stub_;
  const server::Authenticator* auth_;
  const HttpRequest& request_;
  const std::string authorization_;
};

}  // namespace

int HttpStatusFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK:
      return 200;
    case grpc::INVALID_ARGUMENT:
    case grpc::OUT_OF_RANGE:
      return 400;
    case grpc::UNAUTHENTICATED:
      return 401;
    case grpc::PERMISSION_DENIED:
      return 403;
    case grpc::NOT_FOUND:
      return 404;
    case grpc::ALREADY_EXISTS:
    case grpc::ABORTED:
    case grpc::FAILED_PRECONDITION:
      return 409;
    case grpc::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::CANCELLED:
      return 499;
    case grpc::UNIMPLEMENTED:
      return 501;
    case grpc::UNAVAILABLE:
      return 503;
    case grpc::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

Api::Api(std::shared_ptr<grpc::Channel> channel, const server::Authenticator* auth)
    : stub_(v1::CurationService::NewStub(std::move(channel))), auth_(auth) {}

HttpResponse Api::Handle(const HttpRequest& request) const {
  if (!absl::StartsWith(request.path, "/api/")) {
    return Error(404, "NOT_FOUND", "no such API route: " + request.path);
  }
  // The one state-changing call and sign-in refuse other sites' pages: a cross-site form
  // cannot send JSON without a CORS preflight (which this server never grants), and a
  // browser's Origin must be this console's.
  if (request.method != "GET") {
    if (!absl::StartsWith(absl::AsciiStrToLower(request.content_type), "application/json")) {
      return Error(415, "INVALID_ARGUMENT", "send Content-Type: application/json", "Content-Type");
    }
    if (!request.origin.empty() && request.origin != "http://" + request.host &&
        request.origin != "https://" + request.host) {
      return Error(403, "PERMISSION_DENIED", "cross-origin request refused", "Origin");
    }
  }
  auto authorization = AuthorizationOf(request);
  if (!authorization.ok()) {
    return Error(401, "UNAUTHENTICATED", std::string(authorization.status().message()));
  }
  Handler handler(*stub_, auth_, request, *authorization);
  return handler.Route();
}

}  // namespace curation::console
