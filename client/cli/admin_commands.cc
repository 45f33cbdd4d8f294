// `curation admin ...` (tenants, tokens, backups, moving datasets) and `curation cluster ...`:
// the operator's commands (need an admin token).
#include <cstdio>

#include "client/cli/commands.h"

namespace curation::cli {
namespace {

// Reads the quota options into `q`; returns "" or a usage error.
std::string ParseQuotas(const Args& args, v1::Quotas* q) {
  try {
    if (auto v = args.Get("max-examples")) q->set_max_examples(std::stoll(*v));
    if (auto v = args.Get("max-bytes")) q->set_max_stored_bytes(std::stoll(*v));
    if (auto v = args.Get("max-datasets")) q->set_max_datasets(std::stoll(*v));
    if (auto v = args.Get("max-selections")) q->set_max_concurrent_selections(std::stoi(*v));
    if (auto v = args.Get("ingest-rate")) q->set_ingest_records_per_second(std::stod(*v));
    if (auto v = args.Get("ingest-burst")) q->set_ingest_burst_records(std::stod(*v));
    if (auto v = args.Get("max-queued-jobs")) q->set_max_queued_jobs(std::stoi(*v));
    if (auto v = args.Get("weight")) q->set_scheduling_weight(std::stod(*v));
    if (auto v = args.Get("max-job-seconds")) q->set_max_job_seconds(std::stod(*v));
  } catch (...) {
    return "quota options take numbers";
  }
  return "";
}

void PrintTenant(const v1::Tenant& t) {
  const auto& q = t.quotas();
  const auto& u = t.usage();
  auto limit = [](double v) { return v > 0 ? std::to_string(static_cast<long long>(v)) : "-"; };
  std::printf(
      "%s: %lld examples (max %s), %lld bytes (max %s), %lld datasets (max %s), "
      "%d jobs running (max %s), %d queued (max %s), weight %s, ingest %s records/s "
      "(burst %s)\n",
      t.name().c_str(), static_cast<long long>(u.examples()), limit(q.max_examples()).c_str(),
      static_cast<long long>(u.stored_bytes()), limit(q.max_stored_bytes()).c_str(),
      static_cast<long long>(u.datasets()), limit(q.max_datasets()).c_str(), u.running_selections(),
      limit(q.max_concurrent_selections()).c_str(), u.queued_jobs(),
      limit(q.max_queued_jobs()).c_str(),
      q.scheduling_weight() > 0 ? std::to_string(q.scheduling_weight()).c_str() : "1",
      limit(q.ingest_records_per_second()).c_str(), limit(q.ingest_burst_records()).c_str());
}

void PrintToken(const v1::Token& t) {
  std::printf("%s  %s  %s%s  %s\n", t.id().c_str(), v1::Role_Name(t.role()).c_str(),
              t.tenant().empty() ? "(all tenants)" : t.tenant().c_str(),
              t.revoked() ? "  REVOKED" : "", t.description().c_str());
}

}  // namespace

int AdminCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  const std::string what = pos.size() > 0 ? pos[0] : "";
  const std::string verb = pos.size() > 1 ? pos[1] : "";
  if (what == "tenants") {
    if ((verb == "create" || verb == "set-quotas") && pos.size() == 3) {
      v1::Quotas quotas;
      if (std::string e = ParseQuotas(args, &quotas); !e.empty()) return Usage(e);
      v1::Tenant reply;
      grpc::Status s;
      if (verb == "create") {
        v1::CreateTenantRequest request;
        request.mutable_tenant()->set_name(pos[2]);
        *request.mutable_tenant()->mutable_quotas() = quotas;
        s = ctx.client->CreateTenant(request, &reply);
      } else {
        v1::UpdateTenantQuotasRequest request;
        request.set_name(pos[2]);
        *request.mutable_quotas() = quotas;
        s = ctx.client->UpdateTenantQuotas(request, &reply);
      }
      if (!s.ok()) return Fail("admin tenants " + verb, s);
      ctx.json ? (void)std::printf("%s\n", ToJson(reply).c_str()) : PrintTenant(reply);
      return 0;
    }
    if (verb == "get" && pos.size() == 3) {
      v1::GetTenantRequest request;
      request.set_name(pos[2]);
      v1::Tenant reply;
      grpc::Status s = ctx.client->GetTenant(request, &reply);
      if (!s.ok()) return Fail("admin tenants get", s);
      ctx.json ? (void)std::printf("%s\n", ToJson(reply).c_str()) : PrintTenant(reply);
      return 0;
    }
    if (verb == "list") {
      v1::ListTenantsRequest request;
      do {
        v1::ListTenantsResponse reply;
        grpc::Status s = ctx.client->ListTenants(request, &reply);
        if (!s.ok()) return Fail("admin tenants list", s);
        for (const auto& t : reply.tenants()) {
          ctx.json ? (void)std::printf("%s\n", ToJson(t).c_str()) : PrintTenant(t);
        }
        request.set_page_token(reply.next_page_token());
      } while (!request.page_token().empty());
      return 0;
    }
    return Usage("admin tenants create|set-quotas|get NAME, or admin tenants list");
  }
  if (what == "tokens") {
    if (verb == "create" && pos.size() == 2) {
      v1::CreateTokenRequest request;
      const std::string role = args.GetOr("role", "");
      if (role == "reader") {
        request.set_role(v1::ROLE_READER);
      } else if (role == "writer") {
        request.set_role(v1::ROLE_WRITER);
      } else if (role == "admin") {
        request.set_role(v1::ROLE_ADMIN);
      } else {
        return Usage("--role must be reader, writer or admin");
      }
      request.set_tenant(args.GetOr("tenant", ""));
      request.set_description(args.GetOr("description", ""));
      v1::CreateTokenResponse reply;
      grpc::Status s = ctx.client->CreateToken(request, &reply);
      if (!s.ok()) return Fail("admin tokens create", s);
      if (ctx.json) {
        std::printf("%s\n", ToJson(reply).c_str());
      } else {
        // The secret on stdout alone, so `TOKEN=$(curation admin tokens create ...)` works;
        // the rest goes to stderr.
        std::fprintf(stderr, "created token %s (%s%s%s); it is shown only now:\n",
                     reply.token().id().c_str(), v1::Role_Name(reply.token().role()).c_str(),
                     reply.token().tenant().empty() ? "" : " of ", reply.token().tenant().c_str());
        std::printf("%s\n", reply.secret().c_str());
      }
      return 0;
    }
    if (verb == "list") {
      v1::ListTokensRequest request;
      request.set_tenant(args.GetOr("tenant", ""));
      v1::ListTokensResponse reply;
      grpc::Status s = ctx.client->ListTokens(request, &reply);
      if (!s.ok()) return Fail("admin tokens list", s);
      for (const auto& t : reply.tokens()) {
        ctx.json ? (void)std::printf("%s\n", ToJson(t).c_str()) : PrintToken(t);
      }
      return 0;
    }
    if (verb == "revoke" && pos.size() == 3) {
      v1::RevokeTokenRequest request;
      request.set_id(pos[2]);
      v1::Token reply;
      grpc::Status s = ctx.client->RevokeToken(request, &reply);
      if (!s.ok()) return Fail("admin tokens revoke", s);
      PrintToken(reply);
      return 0;
    }
    return Usage("admin tokens create|list|revoke");
  }
  if (what == "backup") {
    v1::Backup reply;
    grpc::Status s =
        ctx.client->CreateBackup(v1::CreateBackupRequest(), &reply, std::chrono::hours(1));
    if (!s.ok()) return Fail("admin backup", s);
    std::printf("backup %u in %s (%lld bytes); restore with curation-server --restore-from %s\n",
                reply.backup_id(), reply.directory().c_str(),
                static_cast<long long>(reply.size_bytes()), reply.directory().c_str());
    return 0;
  }
  if (what == "datasets" && verb == "move" && pos.size() == 3) {
    v1::MoveDatasetRequest request;
    request.set_dataset(pos[2]);
    request.set_tenant(args.GetOr("tenant", ""));
    request.set_to_member(args.GetOr("to", ""));
    if (request.tenant().empty() || request.to_member().empty()) {
      return Usage("admin datasets move NAME --tenant T --to MEMBER");
    }
    v1::MoveDatasetResponse reply;
    grpc::Status s = ctx.client->MoveDataset(request, &reply, std::chrono::hours(6));
    if (!s.ok()) return Fail("admin datasets move", s);
    if (ctx.json) {
      std::printf("%s\n", ToJson(reply).c_str());
    } else {
      std::printf("moved %s/%s from %s to %s: %lld examples, %lld bytes in %.1f s\n",
                  request.tenant().c_str(), request.dataset().c_str(), reply.from_member().c_str(),
                  reply.to_member().c_str(), static_cast<long long>(reply.examples()),
                  static_cast<long long>(reply.bytes_copied()), reply.seconds());
    }
    return 0;
  }
  return Usage("admin: tenants, tokens, datasets move or backup?");
}

int ClusterCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  if (pos.size() != 1 || pos[0] != "members") return Usage("cluster: members?");
  v1::ListMembersResponse reply;
  grpc::Status s = ctx.client->ListMembers(v1::ListMembersRequest(), &reply);
  if (!s.ok()) return Fail("cluster members", s);
  if (ctx.json) {
    std::printf("%s\n", ToJson(reply).c_str());
    return 0;
  }
  std::printf("%-24s %-32s %9s %15s  %s\n", "MEMBER", "ADDRESS", "DATASETS", "STORED BYTES",
              "HEALTH");
  for (const v1::Member& m : reply.members()) {
    std::printf("%-24s %-32s %9lld %15lld  %s\n", m.name().c_str(),
                m.address().empty() ? "-" : m.address().c_str(),
                static_cast<long long>(m.datasets()), static_cast<long long>(m.stored_bytes()),
                m.healthy() ? "healthy" : ("DOWN: " + m.detail()).c_str());
  }
  return 0;
}

}  // namespace curation::cli
