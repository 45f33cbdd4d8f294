// Who is calling: bearer tokens, their roles and tenants.
//
// A token is "cur_<id>_<secret>": the id names it in lists and logs, the secret is random
// (256 bits). The server stores only SHA-256(token), so a leaked database holds no usable
// token. The first admin token comes from a file at start-up and is never stored.
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <string>

#include "absl/status/statusor.h"
#include "curation/storage/records.pb.h"
#include "curation/v1/admin.pb.h"
#include "server/identity_store.h"
#include "store/store.h"

namespace grpc {
class ServerContext;
}

namespace curation::server {

// The authenticated caller of one RPC.
struct Caller {
  std::string tenant;  // empty for admin tokens
  v1::Role role = v1::ROLE_UNSPECIFIED;
  std::string token_id;
};

// The tenant every call acts for when authentication is off.
inline constexpr char kDefaultTenant[] = "default";

// UNAUTHENTICATED: a call carried more than one "authorization" entry.
absl::Status TooManyAuthorizationHeaders();

class Authenticator {
 public:
  // Loads the tokens of `identity` (not owned; it must outlive the authenticator). With
  // `enabled` false every call is an admin of kDefaultTenant. `bootstrap_admin_token`, if not
  // empty, is accepted as an admin token.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Load(
      IdentityStore* identity, bool enabled, const std::string& bootstrap_admin_token);
  // The same over the server's own store (a single server).
  static absl::StatusOr<std::unique_ptr<Authenticator>> Load(
      store::Store* store, bool enabled, const std::string& bootstrap_admin_token);

  bool enabled() const { return enabled_; }

  // The caller of `context`, from its "authorization: Bearer <token>" metadata.
  // UNAUTHENTICATED if the header is missing, sent more than once, or the token unknown or
  // revoked (with authentication off too: a repeated header is a client bug either way).
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext& context) const;
  // Like Authenticate, for a raw header value (used by the logging interceptor).
  absl::StatusOr<Caller> Resolve(const std::string& authorization) const;

  // For data RPCs: the caller's tenant, if the caller has at least `role` in one.
  // PERMISSION_DENIED otherwise (admin tokens see no tenant's data).
  absl::StatusOr<Caller> Authorize(const grpc::ServerContext& context, v1::Role role) const;
  // For admin RPCs: OK only for admin callers.
  absl::StatusOr<Caller> AuthorizeAdmin(const grpc::ServerContext& context) const;

  // Creates and stores a token; returns it with its secret (shown once). The identity
  // store's errors pass through (UNAVAILABLE when etcd is down); nothing changes then.
  absl::StatusOr<v1::CreateTokenResponse> CreateToken(const v1::CreateTokenRequest& request);
  // Stores the token as revoked, then stops accepting it. NOT_FOUND if unknown here.
  absl::StatusOr<v1::Token> RevokeToken(const std::string& id);
  std::vector<v1::Token> ListTokens(const std::string& tenant) const;

  // Changes made elsewhere (IdentitySync). A token created or revoked; a revocation is
  // final, so a late copy of the token from before it changes nothing.
  void ApplyToken(const storage::TokenRecord& record);
  // A token whose record was deleted: it stops authenticating.
  void RemoveToken(const std::string& id);

 private:
  Authenticator(IdentityStore* identity, bool enabled) : identity_(identity), enabled_(enabled) {}

  std::unique_ptr<IdentityStore> owned_identity_;  // for Load(store::Store*)
  IdentityStore* identity_;
  const bool enabled_;
  mutable std::shared_mutex mu_;
  std::map<std::string, v1::Token> by_hash_;           // SHA-256(token) -> token
  std::map<std::string, storage::TokenRecord> by_id_;  // id -> stored record
};

}  // namespace curation::server
