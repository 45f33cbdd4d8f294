// Jobs and operations against the real server: admission by cost, fair turns between
// tenants, operations that survive kill -9, request_id, cancellation and limits.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "curation/v1/admin.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

using namespace std::chrono_literals;

constexpr char kAdminToken[] = "jobs-admin-token-0123456789abcdef";

std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  context->set_deadline(std::chrono::system_clock::now() + 5min);
  return context;
}

// The server's peak resident memory so far (VmHWM), in bytes.
int64_t PeakRss(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// `n` pairs with random client vectors of `dim` dimensions (seeded).
std::vector<v1::Example> RandomPairs(int n, int dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<v1::Example> out;
  for (int i = 0; i < n; ++i) {
    v1::Example e;
    e.set_id("p" + std::to_string(i));
    v1::PreferencePair* p = e.mutable_pair();
    p->set_prompt("prompt " + std::to_string(i));
    p->set_chosen("chosen " + std::to_string(i));
    p->set_rejected("rejected " + std::to_string(i));
    for (int j = 0; j < dim; ++j) p->add_chosen_embedding(normal(rng));
    for (int j = 0; j < dim; ++j) p->add_rejected_embedding(normal(rng) + 0.5f);
    out.push_back(std::move(e));
  }
  return out;
}

class JobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::ofstream(dir_ + "/admin-token") << kAdminToken << "\n";
  }

  void Start(std::vector<std::string> flags = {}) {
    server_.reset();
    server_ = ServerProcess::Start(dir_ + "/db", flags);
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::CurationService::NewStub(channel);
    admin_ = v1::AdminService::NewStub(channel);
  }

  void StartWithAuth(std::vector<std::string> flags = {}) {
    flags.push_back("--auth=true");
    flags.push_back("--admin-token-file=" + dir_ + "/admin-token");
    Start(flags);
  }

  std::string TenantToken(const std::string& tenant) {
    v1::CreateTenantRequest create;
    create.mutable_tenant()->set_name(tenant);
    v1::Tenant t;
    EXPECT_TRUE(admin_->CreateTenant(As(kAdminToken).get(), create, &t).ok());
    v1::CreateTokenRequest request;
    request.set_tenant(tenant);
    request.set_role(v1::ROLE_WRITER);
    v1::CreateTokenResponse reply;
    grpc::Status s = admin_->CreateToken(As(kAdminToken).get(), request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return reply.secret();
  }

  void CreatePairs(const std::string& token, const std::string& name, int n, int dim) {
    v1::CreateDatasetRequest create;
    *create.mutable_dataset() = MakeDataset(name, v1::DATASET_KIND_PAIRS, dim);
    v1::Dataset d;
    grpc::Status s = stub_->CreateDataset(As(token).get(), create, &d);
    ASSERT_TRUE(s.ok()) << s.error_message();
    const std::vector<v1::Example> all = RandomPairs(n, dim, 11);
    for (int from = 0; from < n; from += 2000) {
      v1::IngestExamplesRequest ingest;
      ingest.set_dataset(name);
      for (int i = from; i < std::min(n, from + 2000); ++i) *ingest.add_examples() = all[i];
      v1::IngestExamplesResponse reply;
      s = stub_->IngestExamples(As(token).get(), ingest, &reply);
      ASSERT_TRUE(s.ok()) << s.error_message();
      ASSERT_EQ(reply.accepted(), std::min(n, from + 2000) - from);
    }
  }

  // A full-covariance ISA fit that runs until its iterations end (tol is out of reach).
  static v1::SelectRequest LongFit(const std::string& dataset, int max_iter, uint64_t seed = 0) {
    v1::SelectRequest r;
    r.set_seed(seed);
    r.set_dataset(dataset);
    r.set_method(v1::SELECTION_METHOD_ISA);
    r.mutable_budget()->set_count(10);
    r.mutable_isa()->set_covariance(v1::COVARIANCE_FULL);
    r.mutable_isa()->set_max_iter(max_iter);
    r.mutable_isa()->set_tol(1e-300);
    return r;
  }

  v1::Operation StartSelect(const std::string& token, const v1::SelectRequest& r) {
    v1::Operation op;
    grpc::Status s = stub_->StartSelect(As(token).get(), r, &op);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return op;
  }

  v1::Operation Get(const std::string& token, const std::string& name) {
    v1::GetOperationRequest r;
    r.set_name(name);
    v1::Operation op;
    grpc::Status s = stub_->GetOperation(As(token).get(), r, &op);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return op;
  }

  v1::Operation Wait(const std::string& token, const std::string& name, double seconds = 300) {
    v1::WaitOperationRequest r;
    r.set_name(name);
    r.set_timeout_seconds(seconds);
    v1::Operation op;
    grpc::Status s = stub_->WaitOperation(As(token).get(), r, &op);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return op;
  }

  v1::Operation Cancel(const std::string& token, const std::string& name) {
    v1::CancelOperationRequest r;
    r.set_name(name);
    v1::Operation op;
    grpc::Status s = stub_->CancelOperation(As(token).get(), r, &op);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return op;
  }

  // Polls until the operation is running (or done); false after 60 s.
  bool WaitRunning(const std::string& token, const std::string& name) {
    for (int i = 0; i < 600; ++i) {
      v1::Operation op = Get(token, name);
      if (op.done() || op.metadata().state() == v1::OPERATION_STATE_RUNNING) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  int64_t SelectionCount(const std::string& token, const std::string& dataset) {
    v1::GetDatasetRequest r;
    r.set_name(dataset);
    v1::Dataset d;
    EXPECT_TRUE(stub_->GetDataset(As(token).get(), r, &d).ok());
    return d.selection_count();
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::CurationService::Stub> stub_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

// The hostile request of the jobs issue: 64 full covariances of 1024 dimensions from 100 pairs
// (about 2 GB for nothing a fit could estimate) is refused before anything is allocated, on
// every RPC that could run it; and a job above --max-job-memory is refused naming both figures.
TEST_F(JobsTest, TheIsaBombIsRefusedBeforeItAllocates) {
  Start();
  CreatePairs("", "wide", 100, 1024);
  const int64_t before = PeakRss(server_->pid());
  ASSERT_GT(before, 0);
  v1::SelectRequest bomb = LongFit("wide", 100);
  bomb.mutable_isa()->set_components(64);
  bomb.set_unit(v1::SELECTION_UNIT_EXAMPLE);
  {
    v1::EvaluateSelectionRequest request;
    *request.mutable_select() = bomb;
    auto context = As("");
    auto stream = stub_->EvaluateSelection(context.get(), request);
    v1::EvaluateSelectionProgress message;
    while (stream->Read(&message)) {
    }
    grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message().rfind("select.isa.covariance: FULL with 64 components", 0), 0u)
        << s.error_message();
  }
  {
    v1::Selection reply;
    grpc::Status s = stub_->Select(As("").get(), bomb, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    v1::Operation op;
    s = stub_->StartSelect(As("").get(), bomb, &op);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
  const int64_t after = PeakRss(server_->pid());
  std::cout << "server peak RSS " << before / (1 << 20) << " MiB before, " << after / (1 << 20)
            << " MiB after the bomb\n";
  EXPECT_LT(after - before, int64_t{100} << 20);
  // Nothing was queued or stored for the refused requests.
  v1::ListOperationsRequest list;
  v1::ListOperationsResponse ops;
  ASSERT_TRUE(stub_->ListOperations(As("").get(), list, &ops).ok());
  EXPECT_EQ(ops.operations_size(), 0);

  // A well-formed job whose estimate is above the per-job limit.
  Start({"--max-job-memory=8M"});
  v1::SelectRequest herding;
  herding.set_dataset("wide");
  herding.mutable_budget()->set_count(10);
  v1::Selection reply;
  grpc::Status s = stub_->Select(As("").get(), herding, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message().rfind("max_job_memory: the job's estimated peak memory, ", 0), 0u)
      << s.error_message();
  EXPECT_NE(s.error_message().find("limit of 0.0078125 GiB"), std::string::npos)
      << s.error_message();
}

// With one worker: tenant A's first job runs, its second waits; tenant B's job, submitted
// after A's second, starts before it. B cannot see or cancel A's operations.
TEST_F(JobsTest, AnotherTenantsJobStartsBeforeTheFirstTenantsSecond) {
  StartWithAuth({"--selection-threads=1"});
  const std::string a = TenantToken("team-a");
  const std::string b = TenantToken("team-b");
  CreatePairs(a, "big", 4000, 64);
  CreatePairs(b, "small", 200, 8);
  const v1::Operation a1 = StartSelect(a, LongFit("big", 10'000));
  ASSERT_TRUE(WaitRunning(a, a1.name()));
  const v1::Operation a2 = StartSelect(a, LongFit("big", 10'000, 1));
  v1::SelectRequest quick;
  quick.set_dataset("small");
  quick.set_method(v1::SELECTION_METHOD_RANDOM);
  quick.mutable_budget()->set_count(10);
  const v1::Operation b1 = StartSelect(b, quick);
  EXPECT_EQ(Get(b, b1.name()).metadata().queue_position(), 0);  // next, ahead of a2
  EXPECT_EQ(Get(a, a2.name()).metadata().queue_position(), 1);

  // B sees nothing of A's.
  v1::GetOperationRequest get;
  get.set_name(a1.name());
  v1::Operation seen;
  EXPECT_EQ(stub_->GetOperation(As(b).get(), get, &seen).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::CancelOperationRequest cancel;
  cancel.set_name(a1.name());
  EXPECT_EQ(stub_->CancelOperation(As(b).get(), cancel, &seen).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // A's first job ends; the worker goes to B before A's second.
  EXPECT_EQ(Cancel(a, a1.name()).metadata().state(), v1::OPERATION_STATE_CANCELLED);
  const v1::Operation b_done = Wait(b, b1.name());
  ASSERT_TRUE(b_done.done());
  EXPECT_EQ(b_done.metadata().state(), v1::OPERATION_STATE_SUCCEEDED);
  EXPECT_EQ(b_done.selection().items_size(), 10);
  ASSERT_TRUE(WaitRunning(a, a2.name()));
  const v1::Operation a2_now = Get(a, a2.name());
  EXPECT_LE(b_done.metadata().start_time().seconds() * 1'000'000'000LL +
                b_done.metadata().start_time().nanos(),
            a2_now.metadata().start_time().seconds() * 1'000'000'000LL +
                a2_now.metadata().start_time().nanos());
  Cancel(a, a2.name());
}

// An operation outlives the server: killed with SIGKILL while its job runs, the restarted
// server runs it again on the same pool (examples ingested meanwhile are not in it) and ends
// with the selection an uninterrupted run makes.
TEST_F(JobsTest, AnOperationSurvivesKill9AndEndsWithTheSameSelection) {
  Start();
  CreatePairs("", "d", 3000, 48);
  // About a second or two of EM on this machine's release build: long enough to be killed
  // in the middle, short enough to run twice.
  v1::SelectRequest request = LongFit("d", 3000);
  request.set_seed(5);
  request.set_request_id("nightly-1");
  const v1::Operation started = StartSelect("", request);
  ASSERT_TRUE(WaitRunning("", started.name()));
  // Data arriving after the submission must not change the result.
  {
    v1::IngestExamplesRequest more;
    more.set_dataset("d");
    for (auto& e : RandomPairs(50, 48, 99)) {
      e.set_id("late-" + e.id());
      *more.add_examples() = e;
    }
    v1::IngestExamplesResponse reply;
    ASSERT_TRUE(stub_->IngestExamples(As("").get(), more, &reply).ok());
  }
  ASSERT_EQ(Get("", started.name()).done(), false) << "the fit ended before the kill";
  server_->Signal(SIGKILL);
  Start();
  const v1::Operation done = Wait("", started.name());
  ASSERT_TRUE(done.done());
  ASSERT_EQ(done.metadata().state(), v1::OPERATION_STATE_SUCCEEDED) << done.error().message();
  EXPECT_EQ(done.metadata().attempts(), 2);
  EXPECT_EQ(done.selection().summary().pool_size(), 3000);

  // The same request without the new examples: a dataset holding only the first 3000.
  CreatePairs("", "d2", 3000, 48);
  v1::SelectRequest again = request;
  again.set_dataset("d2");
  again.clear_request_id();
  v1::Selection uninterrupted;
  grpc::Status s = stub_->Select(As("").get(), again, &uninterrupted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(done.selection().items_size(), uninterrupted.items_size());
  for (int i = 0; i < uninterrupted.items_size(); ++i) {
    EXPECT_EQ(done.selection().items(i).example_id(), uninterrupted.items(i).example_id());
    EXPECT_EQ(done.selection().items(i).score(), uninterrupted.items(i).score());
  }
  EXPECT_EQ(SelectionCount("", "d"), 1);  // stored once, not once per attempt
}

TEST_F(JobsTest, ARepeatedRequestIdGivesTheSameOperation) {
  Start();
  CreatePairs("", "d", 300, 8);
  v1::SelectRequest request;
  request.set_dataset("d");
  request.set_method(v1::SELECTION_METHOD_KCENTER);
  request.mutable_budget()->set_count(20);
  request.set_request_id("retry-me");
  const v1::Operation first = StartSelect("", request);
  const v1::Operation second = StartSelect("", request);
  EXPECT_EQ(first.name(), second.name());
  const v1::Operation done = Wait("", first.name());
  ASSERT_TRUE(done.done());
  // The synchronous call with the same request_id returns that operation's selection: no
  // new work, nothing stored twice.
  v1::Selection sync;
  ASSERT_TRUE(stub_->Select(As("").get(), request, &sync).ok());
  EXPECT_EQ(sync.id(), done.selection().id());
  EXPECT_EQ(SelectionCount("", "d"), 1);
  // The same id with another request is refused.
  request.mutable_budget()->set_count(21);
  v1::Operation op;
  grpc::Status s = stub_->StartSelect(As("").get(), request, &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(s.error_message().find(first.name()), std::string::npos) << s.error_message();
  v1::ListOperationsRequest list;
  v1::ListOperationsResponse ops;
  ASSERT_TRUE(stub_->ListOperations(As("").get(), list, &ops).ok());
  ASSERT_EQ(ops.operations_size(), 1);
  EXPECT_EQ(ops.operations(0).name(), first.name());
  EXPECT_EQ(ops.operations(0).metadata().request_id(), "retry-me");
}

TEST_F(JobsTest, CancelStopsARunningFullCovarianceFitWithinAboutASecond) {
  Start();
  CreatePairs("", "d", 4000, 64);
  const v1::Operation op = StartSelect("", LongFit("d", 10'000));
  ASSERT_TRUE(WaitRunning("", op.name()));
  std::this_thread::sleep_for(500ms);  // well inside the EM iterations
  const auto asked = std::chrono::steady_clock::now();
  v1::Operation cancelled = Cancel("", op.name());
  if (!cancelled.done()) cancelled = Wait("", op.name(), 30);
  const double latency =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count();
  std::cout << "cancel latency of a running full-covariance fit: " << latency << " s\n";
  ASSERT_TRUE(cancelled.done());
  EXPECT_EQ(cancelled.metadata().state(), v1::OPERATION_STATE_CANCELLED);
  EXPECT_EQ(cancelled.error().code(), static_cast<int>(grpc::StatusCode::CANCELLED));
  EXPECT_LT(latency, 5.0);  // a liveness bound; the figure above is the measurement
  EXPECT_EQ(SelectionCount("", "d"), 0);
}

TEST_F(JobsTest, LimitsAreEnforcedWithPreciseStatuses) {
  Start({"--max-job-seconds=0.5", "--default-max-queued-jobs=1", "--selection-threads=1"});
  CreatePairs("", "d", 2000, 32);
  auto code_and_message = [](const grpc::Status& s) {
    return std::to_string(s.error_code()) + " " + s.error_message();
  };
  // A job past its time limit ends DEADLINE_EXCEEDED naming the limit.
  v1::Selection sel;
  grpc::Status s = stub_->Select(As("").get(), LongFit("d", 10'000), &sel);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << code_and_message(s);
  EXPECT_NE(s.error_message().find("max_job_seconds"), std::string::npos) << s.error_message();

  // One queued job per tenant here: the second is refused.
  Start({"--default-max-queued-jobs=1", "--selection-threads=1"});
  const v1::Operation running = StartSelect("", LongFit("d", 10'000));
  ASSERT_TRUE(WaitRunning("", running.name()));
  const v1::Operation queued = StartSelect("", LongFit("d", 10'000, 1));
  v1::Operation op;
  s = stub_->StartSelect(As("").get(), LongFit("d", 10'000, 2), &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << code_and_message(s);
  EXPECT_EQ(s.error_message().rfind("max_queued_jobs", 0), 0u) << s.error_message();
  Cancel("", queued.name());
  Cancel("", running.name());

  // Lists and names a caller controls are bounded.
  v1::RecommendBudgetRequest recommend;
  recommend.set_dataset("d");
  for (int i = 1; i <= 51; ++i) recommend.add_budgets_percent(i);
  s = stub_->StartRecommendBudget(As("").get(), recommend, &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("budgets_percent: at most 50", 0), 0u) << s.error_message();
  v1::SelectRequest bad_id = LongFit("d", 10);
  bad_id.set_request_id(std::string(129, 'x'));
  s = stub_->StartSelect(As("").get(), bad_id, &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("request_id: at most 128 bytes", 0), 0u) << s.error_message();
  v1::WaitOperationRequest wait;
  wait.set_name(running.name());
  wait.set_timeout_seconds(601);
  s = stub_->WaitOperation(As("").get(), wait, &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("timeout_seconds", 0), 0u) << s.error_message();
  v1::GetOperationRequest get;
  get.set_name("operations/0123456789abcdef0123456789abcdef");
  EXPECT_EQ(stub_->GetOperation(As("").get(), get, &op).error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_name(std::string(300, 'o'));
  EXPECT_EQ(stub_->GetOperation(As("").get(), get, &op).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// A tenant's job quotas, set by an admin, bound its own jobs below the server's defaults.
TEST_F(JobsTest, TenantJobQuotasApplyToTheirJobsOnly) {
  StartWithAuth({"--selection-threads=2"});
  v1::CreateTenantRequest create;
  create.mutable_tenant()->set_name("capped");
  v1::Quotas* q = create.mutable_tenant()->mutable_quotas();
  q->set_scheduling_weight(5000);
  v1::Tenant t;
  grpc::Status s = admin_->CreateTenant(As(kAdminToken).get(), create, &t);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("tenant.quotas.scheduling_weight", 0), 0u) << s.error_message();
  q->set_scheduling_weight(2);
  q->set_max_queued_jobs(1);
  q->set_max_job_seconds(0.3);
  q->set_max_concurrent_selections(1);
  ASSERT_TRUE(admin_->CreateTenant(As(kAdminToken).get(), create, &t).ok());
  v1::CreateTokenRequest token_request;
  token_request.set_tenant("capped");
  token_request.set_role(v1::ROLE_WRITER);
  v1::CreateTokenResponse token;
  ASSERT_TRUE(admin_->CreateToken(As(kAdminToken).get(), token_request, &token).ok());
  const std::string capped = token.secret();
  const std::string free = TenantToken("free");
  CreatePairs(capped, "d", 2000, 32);
  CreatePairs(free, "d", 2000, 32);

  // Its time limit: 0.3 s, far below the server's hour.
  v1::Selection sel;
  s = stub_->Select(As(capped).get(), LongFit("d", 10'000), &sel);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_NE(s.error_message().find("limit of 0.3 s"), std::string::npos) << s.error_message();

  // One running and one queued job; a third is refused. Another tenant is not affected.
  q->set_max_job_seconds(0);
  v1::UpdateTenantQuotasRequest update;
  update.set_name("capped");
  *update.mutable_quotas() = *q;
  ASSERT_TRUE(admin_->UpdateTenantQuotas(As(kAdminToken).get(), update, &t).ok());
  const v1::Operation running = StartSelect(capped, LongFit("d", 10'000));
  ASSERT_TRUE(WaitRunning(capped, running.name()));
  const v1::Operation queued = StartSelect(capped, LongFit("d", 10'000, 1));
  v1::Operation op;
  s = stub_->StartSelect(As(capped).get(), LongFit("d", 10'000, 2), &op);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("tenant 'capped' has 1 jobs queued"), std::string::npos)
      << s.error_message();
  v1::SelectRequest quick;
  quick.set_dataset("d");
  quick.set_method(v1::SELECTION_METHOD_RANDOM);
  quick.mutable_budget()->set_count(10);
  ASSERT_TRUE(stub_->Select(As(free).get(), quick, &sel).ok());
  // Usage shows the running and the queued job.
  v1::GetTenantRequest get;
  get.set_name("capped");
  ASSERT_TRUE(admin_->GetTenant(As(kAdminToken).get(), get, &t).ok());
  EXPECT_EQ(t.usage().running_selections(), 1);
  EXPECT_EQ(t.usage().queued_jobs(), 1);
  Cancel(capped, queued.name());
  Cancel(capped, running.name());
}

// Stored selections and operations are the tenant's storage: they count in stored_bytes
// (then and after a restart) and a selection past max_stored_bytes is refused, naming it.
TEST_F(JobsTest, SelectionsAndOperationsCountAgainstTheStorageQuota) {
  StartWithAuth();
  const std::string token = TenantToken("t");
  CreatePairs(token, "d", 2000, 8);
  auto usage = [&] {
    v1::GetTenantRequest get;
    get.set_name("t");
    v1::Tenant t;
    EXPECT_TRUE(admin_->GetTenant(As(kAdminToken).get(), get, &t).ok());
    return t.usage().stored_bytes();
  };
  const int64_t ingested = usage();
  v1::UpdateTenantQuotasRequest update;
  update.set_name("t");
  update.mutable_quotas()->set_max_stored_bytes(ingested + 150'000);
  v1::Tenant t;
  ASSERT_TRUE(admin_->UpdateTenantQuotas(As(kAdminToken).get(), update, &t).ok());

  // Whole-pool rankings of 2000 pairs, about 50 KB each, until the quota refuses one.
  v1::SelectRequest ranking;
  ranking.set_dataset("d");
  ranking.set_method(v1::SELECTION_METHOD_RANDOM);
  ranking.set_ranking(true);
  ranking.mutable_budget()->set_count(10);
  int stored = 0;
  grpc::Status s;
  int64_t selection_bytes = 0;
  for (int i = 0; i < 10; ++i) {
    ranking.set_seed(i);
    v1::Selection sel;
    s = stub_->Select(As(token).get(), ranking, &sel);
    if (!s.ok()) break;
    ++stored;
    selection_bytes += static_cast<int64_t>(sel.ByteSizeLong());
  }
  EXPECT_GE(stored, 1);
  EXPECT_LT(stored, 10);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("quota max_stored_bytes of tenant 't'"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(SelectionCount(token, "d"), stored);  // the refused one was not stored
  const int64_t after = usage();
  EXPECT_GE(after - ingested, selection_bytes);  // the selections, and their operations
  // Counted again from the store after a restart.
  StartWithAuth();
  EXPECT_EQ(usage(), after);
}

// Finished operations expire after the retention period; what they made stays.
TEST_F(JobsTest, FinishedOperationsExpireAndTheirSelectionsStay) {
  Start({"--operation-retention-hours=0.0006"});  // about 2 s
  CreatePairs("", "d", 100, 8);
  v1::SelectRequest request;
  request.set_dataset("d");
  request.set_method(v1::SELECTION_METHOD_RANDOM);
  request.mutable_budget()->set_count(5);
  const v1::Operation done = Wait("", StartSelect("", request).name());
  ASSERT_TRUE(done.done());
  EXPECT_TRUE(done.metadata().has_expire_time());
  v1::GetOperationRequest get;
  get.set_name(done.name());
  v1::Operation op;
  grpc::StatusCode code = grpc::StatusCode::OK;
  for (int i = 0; i < 100 && code == grpc::StatusCode::OK; ++i) {
    std::this_thread::sleep_for(100ms);
    code = stub_->GetOperation(As("").get(), get, &op).error_code();
  }
  EXPECT_EQ(code, grpc::StatusCode::NOT_FOUND);
  v1::GetSelectionRequest selection;
  selection.set_id(done.selection().id());
  v1::Selection stored;
  EXPECT_TRUE(stub_->GetSelection(As("").get(), selection, &stored).ok());
}

}  // namespace
}  // namespace curation::testing
