// Back up through the admin RPC, wipe the data directory, restore with --restore-from, and
// everything is the same: datasets, examples, vectors, selections, tenants and tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "curation/v1/admin.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

constexpr char kAdmin[] = "backup-test-admin-token-0123456789";

std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

// Everything a client can read of a tenant, as one comparable string.
std::string Snapshot(v1::CurationService::Stub& stub, const std::string& token,
                     const std::vector<std::string>& ids) {
  std::string out;
  v1::ListDatasetsRequest list;
  v1::ListDatasetsResponse datasets;
  EXPECT_TRUE(stub.ListDatasets(As(token).get(), list, &datasets).ok());
  for (auto d : datasets.datasets()) {
    d.clear_create_time();
    out += d.SerializeAsString();
    v1::ListSelectionsRequest ls;
    ls.set_dataset(d.name());
    v1::ListSelectionsResponse selections;
    EXPECT_TRUE(stub.ListSelections(As(token).get(), ls, &selections).ok());
    for (const auto& s : selections.selections()) {
      v1::GetSelectionRequest gs;
      gs.set_id(s.id());
      v1::Selection full;
      EXPECT_TRUE(stub.GetSelection(As(token).get(), gs, &full).ok());
      out += full.SerializeAsString();
    }
  }
  v1::GetExamplesRequest get;
  get.set_dataset("hh");
  get.set_include_embeddings(true);
  for (const auto& id : ids) get.add_ids(id);
  v1::GetExamplesResponse examples;
  EXPECT_TRUE(stub.GetExamples(As(token).get(), get, &examples).ok());
  out += examples.SerializeAsString();
  return out;
}

TEST(BackupTest, BackUpWipeRestoreEverythingIsTheSame) {
  const std::string dir = MakeTempDir("backup");
  std::ofstream(dir + "/admin") << kAdmin << "\n";
  const std::vector<std::string> flags = {"--auth=true", "--admin-token-file", dir + "/admin",
                                          "--backup-dir", dir + "/backups"};
  std::string writer, before;
  std::vector<std::string> ids;
  {
    auto server = ServerProcess::Start(dir + "/db", flags);
    auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
    auto stub = v1::CurationService::NewStub(channel);
    auto admin = v1::AdminService::NewStub(channel);
    v1::CreateTenantRequest tenant;
    tenant.mutable_tenant()->set_name("team");
    tenant.mutable_tenant()->mutable_quotas()->set_max_examples(1000);
    v1::Tenant t;
    ASSERT_TRUE(admin->CreateTenant(As(kAdmin).get(), tenant, &t).ok());
    v1::CreateTokenRequest token;
    token.set_tenant("team");
    token.set_role(v1::ROLE_WRITER);
    v1::CreateTokenResponse created;
    ASSERT_TRUE(admin->CreateToken(As(kAdmin).get(), token, &created).ok());
    writer = created.secret();

    v1::CreateDatasetRequest create;
    *create.mutable_dataset() = MakeDataset("hh", v1::DATASET_KIND_PAIRS, 0);
    v1::Dataset d;
    ASSERT_TRUE(stub->CreateDataset(As(writer).get(), create, &d).ok());
    v1::IngestExamplesRequest ingest;
    ingest.set_dataset("hh");
    for (const auto& e : HhPairs(120)) *ingest.add_examples() = e;
    v1::IngestExamplesResponse ingested;
    ASSERT_TRUE(stub->IngestExamples(As(writer).get(), ingest, &ingested).ok());
    ids.assign(ingested.ids().begin(), ingested.ids().end());
    v1::SelectRequest select;
    select.set_dataset("hh");
    select.mutable_budget()->set_fraction(0.1);
    v1::Selection sel;
    ASSERT_TRUE(stub->Select(As(writer).get(), select, &sel).ok());
    before = Snapshot(*stub, writer, ids);

    v1::Backup backup;
    grpc::Status s = admin->CreateBackup(As(kAdmin).get(), v1::CreateBackupRequest(), &backup);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(backup.size_bytes(), 0);
    // Only admins may back up.
    EXPECT_EQ(
        admin->CreateBackup(As(writer).get(), v1::CreateBackupRequest(), &backup).error_code(),
        grpc::StatusCode::PERMISSION_DENIED);
    // Written after the backup: must not come back.
    create.mutable_dataset()->set_name("after-backup");
    ASSERT_TRUE(stub->CreateDataset(As(writer).get(), create, &d).ok());
  }
  std::filesystem::remove_all(dir + "/db");

  std::vector<std::string> restore = flags;
  restore.insert(restore.end(), {"--restore-from", dir + "/backups"});
  auto server = ServerProcess::Start(dir + "/db", restore);
  auto stub = server->Stub();
  EXPECT_EQ(Snapshot(*stub, writer, ids), before);
  v1::GetDatasetRequest get;
  get.set_name("after-backup");
  v1::Dataset d;
  EXPECT_EQ(stub->GetDataset(As(writer).get(), get, &d).error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_name("hh");
  ASSERT_TRUE(stub->GetDataset(As(writer).get(), get, &d).ok());
  EXPECT_EQ(d.indexed_vectors(), 240);
}

TEST(BackupTest, RestoreRefusesAnExistingDatabase) {
  const std::string dir = MakeTempDir("backup-refuse");
  {
    auto server = ServerProcess::Start(dir + "/db", {"--backup-dir", dir + "/backups"});
    auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
    auto admin = v1::AdminService::NewStub(channel);
    grpc::ClientContext context;
    v1::Backup backup;
    ASSERT_TRUE(admin->CreateBackup(&context, v1::CreateBackupRequest(), &backup).ok());
  }
  EXPECT_THROW(ServerProcess::Start(dir + "/db", {"--restore-from", dir + "/backups"}),
               std::runtime_error);
}

}  // namespace
}  // namespace curation::testing
