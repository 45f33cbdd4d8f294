// Tenants, tokens, roles and quotas against the real server with authentication on.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "curation/v1/admin.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

constexpr char kAdminToken[] = "test-admin-token-0123456789abcdef";

class TenancyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::ofstream(dir_ + "/admin-token") << kAdminToken << "\n";
    Restart();
  }

  void Restart() {
    server_.reset();
    server_ = ServerProcess::Start(dir_ + "/db",
                                   {"--auth=true", "--admin-token-file", dir_ + "/admin-token"});
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::CurationService::NewStub(channel);
    admin_ = v1::AdminService::NewStub(channel);
  }

  static std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }

  void CreateTenant(const std::string& name, const v1::Quotas& quotas = {}) {
    v1::CreateTenantRequest request;
    request.mutable_tenant()->set_name(name);
    *request.mutable_tenant()->mutable_quotas() = quotas;
    v1::Tenant reply;
    grpc::Status s = admin_->CreateTenant(As(kAdminToken).get(), request, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  std::string Token(const std::string& tenant, v1::Role role) {
    v1::CreateTokenRequest request;
    request.set_tenant(tenant);
    request.set_role(role);
    v1::CreateTokenResponse reply;
    grpc::Status s = admin_->CreateToken(As(kAdminToken).get(), request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return reply.secret();
  }

  grpc::Status CreateDataset(const std::string& token, const std::string& name) {
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = MakeDataset(name, v1::DATASET_KIND_PAIRS, 0);
    v1::Dataset reply;
    return stub_->CreateDataset(As(token).get(), request, &reply);
  }

  grpc::Status Ingest(const std::string& token, const std::string& dataset,
                      const std::vector<v1::Example>& examples, v1::IngestExamplesResponse* reply) {
    v1::IngestExamplesRequest request;
    request.set_dataset(dataset);
    for (const auto& e : examples) *request.add_examples() = e;
    return stub_->IngestExamples(As(token).get(), request, reply);
  }

  int64_t Count(const std::string& token, const std::string& dataset) {
    v1::GetDatasetRequest request;
    request.set_name(dataset);
    v1::Dataset reply;
    EXPECT_TRUE(stub_->GetDataset(As(token).get(), request, &reply).ok());
    return reply.example_count();
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::CurationService::Stub> stub_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(TenancyTest, TokensAndRoles) {
  EXPECT_EQ(CreateDataset("", "x").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CreateDataset("cur_0000_wrong", "x").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The admin runs the service, not the tenants' data.
  EXPECT_EQ(CreateDataset(kAdminToken, "x").error_code(), grpc::StatusCode::PERMISSION_DENIED);

  CreateTenant("team-a");
  const std::string writer = Token("team-a", v1::ROLE_WRITER);
  const std::string reader = Token("team-a", v1::ROLE_READER);
  EXPECT_EQ(writer.rfind("cur_", 0), 0u);
  EXPECT_EQ(CreateDataset(reader, "x").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(CreateDataset(writer, "x").ok());
  EXPECT_EQ(Count(reader, "x"), 0);

  // Tenant tokens cannot administer.
  v1::CreateTenantRequest request;
  request.mutable_tenant()->set_name("sneaky");
  v1::Tenant tenant;
  EXPECT_EQ(admin_->CreateTenant(As(writer).get(), request, &tenant).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(admin_->CreateTenant(As("").get(), request, &tenant).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // Only the hash is kept: listing shows ids, never secrets.
  v1::ListTokensRequest list;
  list.set_tenant("team-a");
  v1::ListTokensResponse tokens;
  ASSERT_TRUE(admin_->ListTokens(As(kAdminToken).get(), list, &tokens).ok());
  ASSERT_EQ(tokens.tokens_size(), 2);
  EXPECT_EQ(tokens.DebugString().find(writer.substr(21)), std::string::npos);

  // Tokens survive a restart; a revoked one stops working at once and stays revoked.
  v1::RevokeTokenRequest revoke;
  revoke.set_id(writer.substr(4, 16));
  v1::Token revoked;
  ASSERT_TRUE(admin_->RevokeToken(As(kAdminToken).get(), revoke, &revoked).ok());
  EXPECT_TRUE(revoked.revoked());
  EXPECT_EQ(CreateDataset(writer, "y").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  Restart();
  EXPECT_EQ(CreateDataset(writer, "y").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Count(reader, "x"), 0);
}

TEST_F(TenancyTest, TenantsSeeOnlyTheirOwnData) {
  CreateTenant("a");
  CreateTenant("b");
  const std::string wa = Token("a", v1::ROLE_WRITER);
  const std::string wb = Token("b", v1::ROLE_WRITER);
  ASSERT_TRUE(CreateDataset(wa, "secret-plans").ok());
  ASSERT_TRUE(CreateDataset(wa, "shared-name").ok());
  ASSERT_TRUE(CreateDataset(wb, "shared-name").ok());  // names are per tenant
  v1::IngestExamplesResponse ingested;
  ASSERT_TRUE(Ingest(wa, "secret-plans", HhPairs(10), &ingested).ok());

  // b cannot see, read, write, select, export or delete a's dataset: it does not exist.
  v1::GetDatasetRequest get;
  get.set_name("secret-plans");
  v1::Dataset d;
  grpc::Status s = stub_->GetDataset(As(wb).get(), get, &d);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::IngestExamplesResponse reply;
  EXPECT_EQ(Ingest(wb, "secret-plans", HhPairs(1), &reply).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::ListDatasetsRequest list;
  v1::ListDatasetsResponse listed;
  ASSERT_TRUE(stub_->ListDatasets(As(wb).get(), list, &listed).ok());
  ASSERT_EQ(listed.datasets_size(), 1);
  EXPECT_EQ(listed.datasets(0).name(), "shared-name");
  EXPECT_EQ(listed.datasets(0).example_count(), 0);

  v1::SelectRequest select;
  select.set_dataset("secret-plans");
  select.mutable_budget()->set_count(3);
  select.set_method(v1::SELECTION_METHOD_RANDOM);
  v1::Selection sel;
  ASSERT_TRUE(stub_->Select(As(wa).get(), select, &sel).ok());
  EXPECT_EQ(stub_->Select(As(wb).get(), select, &sel).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::GetSelectionRequest gs;
  gs.set_id(sel.id());
  v1::Selection got;
  EXPECT_TRUE(stub_->GetSelection(As(wa).get(), gs, &got).ok());
  EXPECT_EQ(stub_->GetSelection(As(wb).get(), gs, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ExportSelectionRequest ex;
  ex.set_selection_id(sel.id());
  auto export_context = As(wb);  // a stream's context must outlive the stream
  auto stream = stub_->ExportSelection(export_context.get(), ex);
  v1::ExportSelectionResponse chunk;
  EXPECT_FALSE(stream->Read(&chunk));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  v1::GetExamplesRequest examples;
  examples.set_dataset("secret-plans");
  examples.add_ids(ingested.ids(0));
  v1::GetExamplesResponse ex_reply;
  EXPECT_EQ(stub_->GetExamples(As(wb).get(), examples, &ex_reply).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::DeleteDatasetRequest del;
  del.set_name("secret-plans");
  v1::DeleteDatasetResponse deleted;
  EXPECT_EQ(stub_->DeleteDataset(As(wb).get(), del, &deleted).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Count(wa, "secret-plans"), 10);
}

// IngestStream starts messages ahead of the one it writes. When a write fails (here the first
// message of a projected dataset carries too few vectors to fit its PCA), the messages started
// after it are not written and their quota reservations are given back: a stream that fits
// the quota only without them then succeeds.
TEST_F(TenancyTest, AFailedStreamGivesBackTheMessagesItStartedAhead) {
  v1::Quotas quotas;
  quotas.set_max_examples(250);
  CreateTenant("streams", quotas);
  const std::string w = Token("streams", v1::ROLE_WRITER);
  v1::CreateDatasetRequest create;
  *create.mutable_dataset() = MakeDataset("wide", v1::DATASET_KIND_PAIRS, 16);
  create.mutable_dataset()->mutable_embedding()->mutable_projection()->set_dim(4);
  v1::Dataset created;
  ASSERT_TRUE(stub_->CreateDataset(As(w).get(), create, &created).ok());

  const std::vector<v1::Example> texts = HhPairs(400);
  int next = 0;
  auto message = [&](int pairs) {
    v1::IngestExamplesRequest m;
    m.set_dataset("wide");
    for (int i = 0; i < pairs; ++i, ++next) {
      v1::Example e = texts[next % texts.size()];
      e.set_id("p" + std::to_string(next));
      for (int j = 0; j < 16; ++j) {
        e.mutable_pair()->add_chosen_embedding(static_cast<float>((next * 7 + j * 3) % 11));
        e.mutable_pair()->add_rejected_embedding(static_cast<float>((next * 5 + j) % 13));
      }
      *m.add_examples() = e;
    }
    return m;
  };
  auto stream = [&](const std::vector<v1::IngestExamplesRequest>& messages,
                    v1::IngestExamplesResponse* summary) {
    auto context = As(w);
    auto writer = stub_->IngestStream(context.get(), summary);
    for (const auto& m : messages) {
      if (!writer->Write(m)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  };

  // 3 pairs are 6 vectors, fewer than the 8 a 4-d projection is fitted on; two messages of 100
  // pairs are reserved and started behind it.
  v1::IngestExamplesResponse summary;
  grpc::Status s = stream({message(3), message(100), message(100)}, &summary);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("2 x projection.dim"), std::string::npos) << s.error_message();
  EXPECT_EQ(Count(w, "wide"), 0);

  // 10 + 2 x 100 = 210 records fit the quota of 250 only if the failed stream's 200
  // reservations were given back.
  v1::IngestExamplesResponse again;
  s = stream({message(10), message(100), message(100)}, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.accepted(), 210);
  EXPECT_EQ(Count(w, "wide"), 210);
  // And the quota still counts what is stored: 41 more are refused, naming it.
  s = stream({message(41)}, &again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("max_examples"), std::string::npos) << s.error_message();
}

TEST_F(TenancyTest, QuotasRefuseAndStoreNothing) {
  v1::Quotas quotas;
  quotas.set_max_examples(12);
  quotas.set_max_datasets(1);
  CreateTenant("small", quotas);
  const std::string w = Token("small", v1::ROLE_WRITER);
  ASSERT_TRUE(CreateDataset(w, "only").ok());
  grpc::Status s = CreateDataset(w, "second");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("max_datasets"), std::string::npos) << s.error_message();

  const std::vector<v1::Example> pairs = HhPairs(20);
  v1::IngestExamplesResponse reply;
  ASSERT_TRUE(Ingest(w, "only", {pairs.begin(), pairs.begin() + 10}, &reply).ok());
  s = Ingest(w, "only", {pairs.begin() + 10, pairs.begin() + 15}, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("max_examples"), std::string::npos) << s.error_message();
  EXPECT_EQ(Count(w, "only"), 10);

  // An admin raises the quota and adds a rate limit: a burst passes, the next is refused
  // with when to retry, and nothing of it is stored.
  v1::UpdateTenantQuotasRequest update;
  update.set_name("small");
  update.mutable_quotas()->set_max_datasets(1);
  update.mutable_quotas()->set_ingest_records_per_second(1);
  update.mutable_quotas()->set_ingest_burst_records(5);
  v1::Tenant tenant;
  ASSERT_TRUE(admin_->UpdateTenantQuotas(As(kAdminToken).get(), update, &tenant).ok());
  EXPECT_EQ(tenant.usage().examples(), 10);
  ASSERT_TRUE(Ingest(w, "only", {pairs.begin() + 10, pairs.begin() + 15}, &reply).ok());
  s = Ingest(w, "only", {pairs.begin() + 15, pairs.begin() + 18}, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("retry in"), std::string::npos) << s.error_message();
  s = Ingest(w, "only", pairs, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);  // larger than the burst
  EXPECT_EQ(Count(w, "only"), 15);

  // Usage is derived again from the store after a restart.
  Restart();
  v1::GetTenantRequest get;
  get.set_name("small");
  ASSERT_TRUE(admin_->GetTenant(As(kAdminToken).get(), get, &tenant).ok());
  EXPECT_EQ(tenant.usage().examples(), 15);
  EXPECT_EQ(tenant.usage().datasets(), 1);
  EXPECT_EQ(tenant.quotas().ingest_burst_records(), 5);
}

TEST_F(TenancyTest, CliAdminFlow) {
  const std::string addr = server_->address();
  CommandResult r =
      RunCli(addr, {"--token", kAdminToken, "admin", "tenants", "create", "cli", "--max-examples",
                    "1000", "--max-queued-jobs", "3", "--weight", "2", "--max-job-seconds", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("max 1000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("0 queued (max 3), weight 2"), std::string::npos) << r.out;
  r = RunCli(addr, {"--token", kAdminToken, "admin", "tokens", "create", "--tenant", "cli",
                    "--role", "writer"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string token = r.out.substr(0, r.out.find('\n'));
  r = RunCli(addr, {"--token", token, "datasets", "create", "d"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCli(addr, {"datasets", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("UNAUTHENTICATED"), std::string::npos);
}

}  // namespace
}  // namespace curation::testing
