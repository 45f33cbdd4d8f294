#include "server/auth.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace curation::server {
namespace {

std::string Sha256(absl::string_view s) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

std::string RandomBytes(int n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), n) != 1) {
    // A token must never be predictable; refuse to make one rather than fall back.
    std::abort();
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Load(
    store::Store* store, bool enabled, const std::string& bootstrap_admin_token) {
  std::unique_ptr<IdentityStore> identity = MakeLocalIdentityStore(store);
  auto auth = Load(identity.get(), enabled, bootstrap_admin_token);
  if (!auth.ok()) return auth.status();
  (*auth)->owned_identity_ = std::move(identity);
  return auth;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Load(
    IdentityStore* identity, bool enabled, const std::string& bootstrap_admin_token) {
  auto auth = std::unique_ptr<Authenticator>(new Authenticator(identity, enabled));
  auto tokens = identity->ListTokens();
  if (!tokens.ok()) return tokens.status();
  for (storage::TokenRecord& record : *tokens) {
    if (!record.token().revoked()) auth->by_hash_[record.secret_hash()] = record.token();
    auth->by_id_[record.token().id()] = std::move(record);
  }
  if (!bootstrap_admin_token.empty()) {
    if (bootstrap_admin_token.size() < 16) {
      return absl::InvalidArgumentError("the admin token file must hold at least 16 characters");
    }
    v1::Token token;
    token.set_id("bootstrap");
    token.set_role(v1::ROLE_ADMIN);
    token.set_description("from --admin-token-file");
    auth->by_hash_[Sha256(bootstrap_admin_token)] = token;
  }
  return auth;
}

absl::StatusOr<Caller> Authenticator::Resolve(const std::string& authorization) const {
  if (!enabled_) return Caller{kDefaultTenant, v1::ROLE_ADMIN, ""};
  absl::string_view value = absl::StripAsciiWhitespace(authorization);
  if (value.empty()) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer <token>' metadata");
  }
  if (!absl::StartsWithIgnoreCase(value, "bearer ")) {
    return absl::UnauthenticatedError("authorization must be 'Bearer <token>'");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(value.substr(7));
  std::shared_lock lock(mu_);
  auto it = by_hash_.find(Sha256(token));
  if (it == by_hash_.end()) return absl::UnauthenticatedError("invalid or revoked token");
  return Caller{it->second.tenant(), it->second.role(), it->second.id()};
}

absl::StatusOr<Caller> Authenticator::Authenticate(const grpc::ServerContext& context) const {
  auto [first, last] = context.client_metadata().equal_range("authorization");
  // Two headers would let the check and the access log disagree on who called (one reads
  // the first, another the last); a call names one caller or none.
  if (first != last && std::next(first) != last) return TooManyAuthorizationHeaders();
  std::string header;
  if (first != last) header.assign(first->second.data(), first->second.size());
  return Resolve(header);
}

absl::Status TooManyAuthorizationHeaders() {
  return absl::UnauthenticatedError(
      "more than one 'authorization' metadata entry; send exactly one 'Bearer <token>'");
}

absl::StatusOr<Caller> Authenticator::Authorize(const grpc::ServerContext& context,
                                                v1::Role role) const {
  auto caller = Authenticate(context);
  if (!caller.ok()) return caller.status();
  if (caller->tenant.empty()) {
    return absl::PermissionDeniedError(
        "admin tokens see no tenant's data; use a READER or WRITER token of the tenant");
  }
  if (caller->role < role) {
    return absl::PermissionDeniedError(absl::StrCat("this call needs a ", v1::Role_Name(role),
                                                    " token; this one is ",
                                                    v1::Role_Name(caller->role)));
  }
  return caller;
}

absl::StatusOr<Caller> Authenticator::AuthorizeAdmin(const grpc::ServerContext& context) const {
  auto caller = Authenticate(context);
  if (!caller.ok()) return caller.status();
  if (caller->role != v1::ROLE_ADMIN) {
    return absl::PermissionDeniedError("admin RPCs need a ROLE_ADMIN token");
  }
  return caller;
}

absl::StatusOr<v1::CreateTokenResponse> Authenticator::CreateToken(
    const v1::CreateTokenRequest& request) {
  storage::TokenRecord record;
  v1::Token* token = record.mutable_token();
  token->set_id(absl::BytesToHexString(RandomBytes(8)));
  token->set_tenant(request.tenant());
  token->set_role(request.role());
  token->set_description(request.description());
  *token->mutable_create_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  std::string secret_part;
  absl::WebSafeBase64Escape(RandomBytes(32), &secret_part);
  const std::string secret = absl::StrCat("cur_", token->id(), "_", secret_part);
  record.set_secret_hash(Sha256(secret));
  if (auto stored = identity_->PutToken(record); !stored.ok()) return stored.status();
  ApplyToken(record);
  v1::CreateTokenResponse response;
  *response.mutable_token() = *token;
  response.set_secret(secret);
  return response;
}

absl::StatusOr<v1::Token> Authenticator::RevokeToken(const std::string& id) {
  storage::TokenRecord record;
  {
    std::shared_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return absl::NotFoundError(absl::StrCat("token '", id, "' not found"));
    record = it->second;
  }
  record.mutable_token()->set_revoked(true);
  // Unlocked while it is stored: authentication must not wait for an unreachable etcd.
  if (auto stored = identity_->PutToken(record); !stored.ok()) return stored.status();
  ApplyToken(record);
  return record.token();
}

void Authenticator::ApplyToken(const storage::TokenRecord& record) {
  std::unique_lock lock(mu_);
  auto it = by_id_.find(record.token().id());
  if (it != by_id_.end()) {
    if (it->second.token().revoked()) return;
    if (it->second.secret_hash() != record.secret_hash()) by_hash_.erase(it->second.secret_hash());
  }
  if (record.token().revoked()) {
    by_hash_.erase(record.secret_hash());
  } else {
    by_hash_[record.secret_hash()] = record.token();
  }
  by_id_[record.token().id()] = record;
}

void Authenticator::RemoveToken(const std::string& id) {
  std::unique_lock lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  by_hash_.erase(it->second.secret_hash());
  by_id_.erase(it);
}

std::vector<v1::Token> Authenticator::ListTokens(const std::string& tenant) const {
  std::shared_lock lock(mu_);
  std::vector<v1::Token> out;
  for (const auto& [id, record] : by_id_) {
    if (tenant.empty() || record.token().tenant() == tenant) out.push_back(record.token());
  }
  return out;
}

}  // namespace curation::server
