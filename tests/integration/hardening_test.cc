// The "Hardening" issue, against the real server on loopback: bounded replies and messages,
// bounded metric labels and log lines, durable acknowledgements, bounded vectors, unguessable
// selection ids, one caller per call, concurrent backups, and page tokens.
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "curation/v1/admin.grpc.pb.h"
#include "store/store.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

constexpr int64_t kMaxMessage = 8 << 20;  // the servers here run with this message limit

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A unary call to any method path with an empty body. Through a completion queue this thread
// drains, not gRPC's callback API: a callback runs on one of gRPC's threads, and the call
// state that gRPC's header code (instrumented, in this binary) wrote here is handed over by
// libgrpc's own synchronisation, which ThreadSanitizer cannot see (115 reports in two tests).
grpc::Status GenericUnary(grpc::GenericStub& generic, const std::string& method) {
  grpc::ClientContext context;
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  grpc::Status status;
  grpc::CompletionQueue cq;
  {
    auto call = generic.PrepareUnaryCall(&context, method, request, &cq);
    call->StartCall();
    call->Finish(&response, &status, &status);
    void* tag = nullptr;
    bool ok = false;
    EXPECT_TRUE(cq.Next(&tag, &ok));
  }
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// The metrics port the server logged at start-up (--metrics-listen 127.0.0.1:0).
int MetricsPort(const std::string& data_dir) {
  std::istringstream log(ReadAll(data_dir + ".log"));
  for (std::string line; std::getline(log, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("msg", "") == "serving metrics") {
      return std::stoi(j.value("port", "0"));
    }
  }
  return 0;
}

// GET /metrics over plain HTTP/1.0 on loopback; the body.
std::string Scrape(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) response.append(buf, n);
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The value of an unlabelled sample, or -1 if absent.
double Sample(const std::string& body, const std::string& name) {
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

std::string Text(char fill, size_t bytes, int n) {
  std::string s = absl::StrCat("answer ", n, " ");
  s.resize(bytes, fill);
  return s;
}

// A pair of two texts of about `bytes` each, with 2-dimensional client vectors.
v1::Example BigPair(int n, size_t bytes) {
  v1::Example e;
  e.set_id(absl::StrCat("big-", n));
  e.mutable_pair()->set_prompt(absl::StrCat("prompt ", n));
  e.mutable_pair()->set_chosen(Text('c', bytes, n));
  e.mutable_pair()->set_rejected(Text('r', bytes, n));
  for (float x : {1.0f + n, 2.0f}) e.mutable_pair()->add_chosen_embedding(x);
  for (float x : {3.0f, 4.0f + n}) e.mutable_pair()->add_rejected_embedding(x);
  return e;
}

class HardeningTest : public ::testing::Test {
 protected:
  void Start(const std::string& name, std::vector<std::string> flags = {}) {
    dir_ = MakeTempDir(name);
    flags.insert(flags.end(), {"--max-message-bytes", std::to_string(kMaxMessage),
                               "--metrics-listen", "127.0.0.1:0"});
    server_ = ServerProcess::Start(dir_ + "/db", flags);
    stub_ = server_->Stub();
  }

  void CreatePairs(const std::string& name, int dim) {
    v1::CreateDatasetRequest create;
    *create.mutable_dataset() = MakeDataset(name, v1::DATASET_KIND_PAIRS, dim);
    v1::Dataset d;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->CreateDataset(&context, create, &d).ok());
  }

  // Ingests `n` pairs of two ~900 KB texts, three per call (one call stays under the limit).
  void IngestBigPairs(const std::string& dataset, int n) {
    for (int first = 0; first < n; first += 3) {
      v1::IngestExamplesRequest ingest;
      ingest.set_dataset(dataset);
      for (int i = first; i < std::min(n, first + 3); ++i) {
        *ingest.add_examples() = BigPair(i, 900'000);
      }
      v1::IngestExamplesResponse reply;
      grpc::ClientContext context;
      grpc::Status s = stub_->IngestExamples(&context, ingest, &reply);
      ASSERT_TRUE(s.ok()) << s.error_message();
      ASSERT_EQ(reply.rejected(), 0) << reply.DebugString().substr(0, 500);
    }
  }

  double Metric(const std::string& name) { return Sample(Scrape(MetricsPort(dir_ + "/db")), name); }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::CurationService::Stub> stub_;
};

// Item 1: repeated ids are dropped, and a reply stops before it would pass one message; the
// client asks again for the ids after the last one returned.
TEST_F(HardeningTest, GetExamplesDropsRepeatedIdsAndStopsAtTheMessageSize) {
  Start("get-examples");
  CreatePairs("big", 2);
  IngestBigPairs("big", 10);

  v1::GetExamplesRequest repeated;
  repeated.set_dataset("big");
  for (int i = 0; i < 100; ++i) repeated.add_ids("big-0");
  v1::GetExamplesResponse reply;
  {
    grpc::ClientContext context;
    grpc::Status s = stub_->GetExamples(&context, repeated, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  ASSERT_EQ(reply.examples_size(), 1);
  EXPECT_EQ(reply.examples(0).id(), "big-0");

  // Ten distinct ids hold ~18 MB: more than one 8 MB message. Each reply is a prefix of the
  // ids asked for, in order; asking again for the rest returns them all.
  std::vector<std::string> wanted;
  for (int i = 0; i < 10; ++i) wanted.push_back(absl::StrCat("big-", i));
  std::vector<std::string> got;
  int calls = 0;
  while (got.size() < wanted.size() && calls < 20) {
    v1::GetExamplesRequest page;
    page.set_dataset("big");
    page.set_include_embeddings(true);
    for (size_t i = got.size(); i < wanted.size(); ++i) page.add_ids(wanted[i]);
    v1::GetExamplesResponse part;
    grpc::ClientContext context;
    grpc::Status s = stub_->GetExamples(&context, page, &part);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_GT(part.examples_size(), 0);
    EXPECT_LE(static_cast<int64_t>(part.ByteSizeLong()), kMaxMessage);
    for (const auto& e : part.examples()) {
      got.push_back(e.id());
      EXPECT_EQ(e.pair().chosen_embedding_size(), 2);
    }
    ++calls;
  }
  EXPECT_EQ(got, wanted);
  EXPECT_GT(calls, 1);  // it did not fit one reply
}

// Item 3: an export is cut into messages by bytes, so every accepted record can be exported.
TEST_F(HardeningTest, ExportCutsMessagesByBytes) {
  Start("export");
  CreatePairs("big", 2);
  IngestBigPairs("big", 10);
  v1::SelectRequest select;
  select.set_dataset("big");
  select.set_method(v1::SELECTION_METHOD_RANDOM);
  select.mutable_budget()->set_count(10);
  v1::Selection selection;
  {
    grpc::ClientContext context;
    grpc::Status s = stub_->Select(&context, select, &selection);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  v1::ExportSelectionRequest request;
  request.set_selection_id(selection.id());
  request.set_format(v1::EXPORT_FORMAT_TRL);
  grpc::ClientContext context;
  auto reader = stub_->ExportSelection(&context, request);
  v1::ExportSelectionResponse message;
  int records = 0, messages = 0;
  while (reader->Read(&message)) {
    EXPECT_LE(static_cast<int64_t>(message.ByteSizeLong()), kMaxMessage);
    records += message.records_size();
    ++messages;
  }
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(records, 10);
  EXPECT_GT(messages, 1);
}

// Item 3, the CLI's side: `curation ingest` cuts its stream messages by bytes.
TEST_F(HardeningTest, CliIngestCutsBatchesByBytes) {
  Start("cli-ingest");
  CreatePairs("big", 2);
  // 20 pairs of two 400 KB texts: 16 MB, twice the server's message limit, in one file.
  const std::string file = dir_ + "/big.jsonl";
  {
    std::ofstream out(file);
    for (int i = 0; i < 20; ++i) {
      nlohmann::json line = {{"prompt", absl::StrCat("prompt ", i)},
                             {"chosen", Text('c', 400'000, i)},
                             {"rejected", Text('r', 400'000, i)},
                             {"chosen_embedding", {1.0, 2.0 + i}},
                             {"rejected_embedding", {3.0 + i, 4.0}}};
      out << line.dump() << "\n";
    }
  }
  CommandResult r = RunCli(server_->address(), {"ingest", "big", file});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("20 accepted"), std::string::npos) << r.out << r.err;
}

// Item 2: a path the server does not serve is one label value, whatever the caller sends.
TEST_F(HardeningTest, UnknownMethodsShareOneMetricLabel) {
  Start("metrics-label");
  auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  const std::string padding(3000, 'x');
  for (int n = 0; n < 5; ++n) {
    EXPECT_EQ(GenericUnary(generic, absl::StrCat("/evil.Svc/", padding, n)).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  {
    v1::ListDatasetsRequest list;
    v1::ListDatasetsResponse datasets;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListDatasets(&context, list, &datasets).ok());
  }
  const std::string body = Scrape(MetricsPort(dir_ + "/db"));
  ASSERT_FALSE(body.empty());
  EXPECT_EQ(body.find("evil.Svc"), std::string::npos);
  EXPECT_NE(body.find(R"(method="unknown")"), std::string::npos);
  EXPECT_NE(body.find(R"(method="/curation.v1.CurationService/ListDatasets")"), std::string::npos);
  EXPECT_LT(body.size(), 200'000u);
}

// Item 4: a unary batch whose records are all duplicates writes nothing, yet acknowledges
// them: it must sync the WAL (they may be another stream's unsynced write) before replying.
TEST_F(HardeningTest, AnAllDuplicateBatchSyncsBeforeItsReply) {
  Start("dup-sync");
  CreatePairs("d", 2);
  v1::IngestExamplesRequest ingest;
  ingest.set_dataset("d");
  *ingest.add_examples() = BigPair(1, 100);
  v1::IngestExamplesResponse first, again;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->IngestExamples(&context, ingest, &first).ok());
    ASSERT_EQ(first.accepted(), 1);
  }
  const double before = Metric("curation_wal_syncs_total");
  ASSERT_GE(before, 0) << "no curation_wal_syncs_total";
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->IngestExamples(&context, ingest, &again).ok());
    ASSERT_EQ(again.duplicates(), 1);
  }
  EXPECT_EQ(Metric("curation_wal_syncs_total"), before + 1);
}

// Item 4: a stream that fails after writing a message syncs before its error reply (the
// client will resend, and the records come back acknowledged as duplicates).
TEST_F(HardeningTest, AStreamThatFailsSyncsWhatItWroteBeforeTheError) {
  Start("stream-sync");
  CreatePairs("d", 2);
  CreatePairs("other", 2);
  const double before = Metric("curation_wal_syncs_total");
  ASSERT_GE(before, 0) << "no curation_wal_syncs_total";
  grpc::ClientContext context;
  v1::IngestExamplesResponse summary;
  auto stream = stub_->IngestStream(&context, &summary);
  v1::IngestExamplesRequest message;
  message.set_dataset("d");
  *message.add_examples() = BigPair(1, 100);
  ASSERT_TRUE(stream->Write(message));
  message.set_dataset("other");  // refused: one stream, one dataset
  stream->Write(message);
  stream->WritesDone();
  grpc::Status s = stream->Finish();
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(Metric("curation_wal_syncs_total"), before + 1);
}

// Item 6: finite but huge components are refused with the component's path.
TEST_F(HardeningTest, HugeVectorComponentsAreRejectedByPath) {
  Start("huge-vectors");
  CreatePairs("d", 2);
  v1::IngestExamplesRequest ingest;
  ingest.set_dataset("d");
  v1::Example e = BigPair(1, 100);
  e.mutable_pair()->set_chosen_embedding(1, 3e38f);
  *ingest.add_examples() = e;
  v1::IngestExamplesResponse reply;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->IngestExamples(&context, ingest, &reply).ok());
  EXPECT_EQ(reply.accepted(), 0);
  ASSERT_EQ(reply.errors_size(), 1);
  EXPECT_EQ(reply.errors(0).field(), "examples[0].pair.chosen_embedding[1]");
  EXPECT_NE(reply.errors(0).reason().find("outside"), std::string::npos);
}

// Item 7: selection ids carry a tag; the sequential form a caller could guess names nothing.
TEST_F(HardeningTest, SelectionIdsAreNotGuessable) {
  Start("selection-ids");
  CreatePairs("d", 2);
  v1::IngestExamplesRequest ingest;
  ingest.set_dataset("d");
  for (int i = 0; i < 20; ++i) *ingest.add_examples() = BigPair(i, 50);
  v1::IngestExamplesResponse ingested;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->IngestExamples(&context, ingest, &ingested).ok());
  }
  v1::SelectRequest select;
  select.set_dataset("d");
  select.set_method(v1::SELECTION_METHOD_RANDOM);
  select.mutable_budget()->set_count(5);
  v1::Selection selection;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Select(&context, select, &selection).ok());
  }
  std::vector<std::string> parts = absl::StrSplit(selection.id(), '-');
  ASSERT_EQ(parts.size(), 4u) << selection.id();
  auto get = [&](const std::string& id) {
    v1::GetSelectionRequest request;
    request.set_id(id);
    v1::Selection out;
    grpc::ClientContext context;
    return stub_->GetSelection(&context, request, &out).error_code();
  };
  EXPECT_EQ(get(selection.id()), grpc::StatusCode::OK);
  // What a caller who knows the scheme would try: the counters without the tag, or a tag
  // made up.
  EXPECT_EQ(get(absl::StrCat(parts[0], "-", parts[1], "-", parts[2])), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(get(absl::StrCat(parts[0], "-", parts[1], "-", parts[2], "-", std::string(32, '0'))),
            grpc::StatusCode::NOT_FOUND);
}

// Item 7: ids of selections stored before tags keep working after an upgrade.
TEST_F(HardeningTest, UntaggedIdsOfSelectionsStoredBeforeTagsStillWork) {
  dir_ = MakeTempDir("legacy-ids");
  std::string legacy_id;
  {
    auto store = store::Store::Open(dir_ + "/db", {});
    ASSERT_TRUE(store.ok()) << store.status();
    storage::DatasetRecord record;
    record.set_tenant("default");
    *record.mutable_dataset() = MakeDataset("old", v1::DATASET_KIND_PAIRS, 2);
    auto created = (*store)->CreateDataset(record);
    ASSERT_TRUE(created.ok()) << created.status();
    storage::DatasetRecord updated = *created;
    updated.set_next_selection_seq(1);
    updated.mutable_dataset()->set_selection_count(1);
    legacy_id = absl::StrCat("sel-", created->internal_id(), "-0");
    v1::Selection selection;
    selection.set_id(legacy_id);
    selection.set_dataset("old");
    ASSERT_TRUE((*store)->PutSelection(updated, 0, selection).ok());
  }
  server_ = ServerProcess::Start(dir_ + "/db");
  stub_ = server_->Stub();
  v1::GetSelectionRequest request;
  request.set_id(legacy_id);
  v1::Selection out;
  grpc::ClientContext context;
  grpc::Status s = stub_->GetSelection(&context, request, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(out.id(), legacy_id);
}

// Item 8: ids are bounded at validation, and no log line grows with a request.
TEST_F(HardeningTest, LongIdsAreRefusedAndLogLinesStayShort) {
  Start("long-ids");
  CreatePairs("d", 2);
  const std::string huge(5 << 20, 's');
  {
    v1::GetSelectionRequest request;
    request.set_id(huge);
    v1::Selection out;
    grpc::ClientContext context;
    grpc::Status s = stub_->GetSelection(&context, request, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "id: is 5242880 bytes; at most 256 bytes");
  }
  {
    v1::ExportSelectionRequest request;
    request.set_selection_id(huge);
    grpc::ClientContext context;
    auto reader = stub_->ExportSelection(&context, request);
    v1::ExportSelectionResponse message;
    while (reader->Read(&message)) {
    }
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "selection_id: is 5242880 bytes; at most 256 bytes");
  }
  {
    v1::GetExamplesRequest request;
    request.set_dataset("d");
    request.add_ids("fine");
    request.add_ids(std::string(300, 'i'));
    v1::GetExamplesResponse out;
    grpc::ClientContext context;
    grpc::Status s = stub_->GetExamples(&context, request, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message(), "ids[1]: is 300 bytes; at most 256 bytes");
  }
  {
    // An unknown method's path is the caller's too.
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    grpc::GenericStub generic(channel);
    GenericUnary(generic, "/evil.Svc/" + std::string(100'000, 'p'));
  }
  server_->Signal(SIGTERM);  // every line written
  std::istringstream log(ReadAll(dir_ + "/db.log"));
  size_t longest = 0, lines = 0;
  for (std::string line; std::getline(log, line); ++lines) longest = std::max(longest, line.size());
  EXPECT_GT(lines, 3u);
  EXPECT_LT(longest, 8192u);
}

// Item 9: a call with two authorization headers is refused, and the log names the token.
TEST_F(HardeningTest, TwoAuthorizationHeadersAreRefusedAndTheLogNamesTheToken) {
  dir_ = MakeTempDir("auth-headers");
  const std::string admin_token = "hardening-test-admin-token-0123456789";
  std::ofstream(dir_ + "/admin") << admin_token << "\n";
  server_ =
      ServerProcess::Start(dir_ + "/db", {"--auth=true", "--admin-token-file", dir_ + "/admin"});
  stub_ = server_->Stub();
  auto admin = v1::AdminService::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  std::map<std::string, v1::CreateTokenResponse> tokens;
  for (const std::string name : {"a", "b"}) {
    grpc::ClientContext c1, c2;
    c1.AddMetadata("authorization", "Bearer " + admin_token);
    c2.AddMetadata("authorization", "Bearer " + admin_token);
    v1::CreateTenantRequest tenant;
    tenant.mutable_tenant()->set_name(name);
    v1::Tenant t;
    ASSERT_TRUE(admin->CreateTenant(&c1, tenant, &t).ok());
    v1::CreateTokenRequest token;
    token.set_tenant(name);
    token.set_role(v1::ROLE_WRITER);
    ASSERT_TRUE(admin->CreateToken(&c2, token, &tokens[name]).ok());
  }
  v1::ListDatasetsRequest list;
  v1::ListDatasetsResponse out;
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + tokens["a"].secret());
    context.AddMetadata("authorization", "Bearer " + tokens["b"].secret());
    grpc::Status s = stub_->ListDatasets(&context, list, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_NE(s.error_message().find("more than one 'authorization'"), std::string::npos)
        << s.error_message();
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + tokens["b"].secret());
    ASSERT_TRUE(stub_->ListDatasets(&context, list, &out).ok());
  }
  server_->Signal(SIGTERM);
  std::istringstream log(ReadAll(dir_ + "/db.log"));
  bool named = false;
  for (std::string line; std::getline(log, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || j.value("msg", "") != "rpc" ||
        j.value("method", "") != "/curation.v1.CurationService/ListDatasets") {
      continue;
    }
    if (j.value("code", "") == "OK") {
      named = j.value("tenant", "") == "b" && j.value("token_id", "") == tokens["b"].token().id();
    } else {
      EXPECT_EQ(j.value("tenant", "?"), "");  // no tenant claimed for a refused call
    }
  }
  EXPECT_TRUE(named);
}

// Item 10: concurrent backups all succeed, and each can be restored by its id.
TEST_F(HardeningTest, ConcurrentBackupsSucceedAndEachRestores) {
  dir_ = MakeTempDir("backups");
  const std::string backups = dir_ + "/backups";
  std::vector<uint32_t> ids;
  {
    server_ = ServerProcess::Start(dir_ + "/db", {"--backup-dir", backups});
    stub_ = server_->Stub();
    CreatePairs("d", 2);
    v1::IngestExamplesRequest ingest;
    ingest.set_dataset("d");
    for (int i = 0; i < 7; ++i) *ingest.add_examples() = BigPair(i, 50);
    v1::IngestExamplesResponse ingested;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->IngestExamples(&context, ingest, &ingested).ok());
    auto admin = v1::AdminService::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    std::vector<std::future<std::pair<grpc::Status, v1::Backup>>> calls;
    for (int i = 0; i < 4; ++i) {
      calls.push_back(std::async(std::launch::async, [&] {
        grpc::ClientContext c;
        v1::Backup backup;
        grpc::Status s = admin->CreateBackup(&c, v1::CreateBackupRequest(), &backup);
        return std::make_pair(s, backup);
      }));
    }
    for (auto& call : calls) {
      auto [status, backup] = call.get();
      EXPECT_TRUE(status.ok()) << status.error_message();
      ids.push_back(backup.backup_id());
    }
    server_->Signal(SIGTERM);
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end()) << "backup ids repeat";
  for (uint32_t id : ids) {
    const std::string restored = absl::StrCat(dir_, "/restored-", id);
    auto server = ServerProcess::Start(
        restored, {"--restore-from", backups, "--restore-backup-id", std::to_string(id)});
    auto stub = server->Stub();
    v1::GetDatasetRequest get;
    get.set_name("d");
    v1::Dataset d;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->GetDataset(&context, get, &d).ok()) << "backup " << id;
    EXPECT_EQ(d.example_count(), 7) << "backup " << id;
  }
}

// Item 12: a page token out of the range this server issues is refused, not overflowed.
TEST_F(HardeningTest, OutOfRangeSelectionPageTokensAreRefused) {
  Start("page-token");
  CreatePairs("d", 2);
  for (const char* raw : {"-9223372036854775808", "-1"}) {
    v1::ListSelectionsRequest request;
    request.set_dataset("d");
    request.set_page_token(absl::WebSafeBase64Escape(raw));
    v1::ListSelectionsResponse out;
    grpc::ClientContext context;
    grpc::Status s = stub_->ListSelections(&context, request, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << raw;
    EXPECT_EQ(s.error_message().rfind("page_token:", 0), 0u) << s.error_message();
  }
}

}  // namespace
}  // namespace curation::testing
