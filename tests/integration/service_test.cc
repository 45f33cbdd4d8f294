// The whole flow through the generated client against the real server: create, ingest,
// duplicates, select (ISA and random), read selections back, export.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <set>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    server_ = ServerProcess::Start(dir_ + "/db");
    stub_ = server_->Stub();
  }

  v1::Dataset Create(const v1::Dataset& d) {
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = d;
    v1::Dataset reply;
    grpc::ClientContext context;
    grpc::Status s = stub_->CreateDataset(&context, request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return reply;
  }

  v1::IngestExamplesResponse Ingest(const std::string& dataset,
                                    const std::vector<v1::Example>& examples) {
    v1::IngestExamplesRequest request;
    request.set_dataset(dataset);
    for (const auto& e : examples) *request.add_examples() = e;
    v1::IngestExamplesResponse reply;
    grpc::ClientContext context;
    grpc::Status s = stub_->IngestExamples(&context, request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return reply;
  }

  v1::Dataset Get(const std::string& name) {
    v1::GetDatasetRequest request;
    request.set_name(name);
    v1::Dataset reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->GetDataset(&context, request, &reply).ok());
    return reply;
  }

  grpc::Status Select(const v1::SelectRequest& request, v1::Selection* reply) {
    grpc::ClientContext context;
    return stub_->Select(&context, request, reply);
  }

  std::vector<v1::ExportedRecord> Export(const std::string& id, v1::ExportFormat format,
                                         grpc::Status* status) {
    v1::ExportSelectionRequest request;
    request.set_selection_id(id);
    request.set_format(format);
    grpc::ClientContext context;
    auto stream = stub_->ExportSelection(&context, request);
    std::vector<v1::ExportedRecord> out;
    v1::ExportSelectionResponse message;
    while (stream->Read(&message)) {
      for (const auto& r : message.records()) out.push_back(r);
      EXPECT_EQ(message.sent(), static_cast<int64_t>(out.size()));
    }
    *status = stream->Finish();
    return out;
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::CurationService::Stub> stub_;
};

TEST_F(ServiceTest, WholeFlowOnRealPairs) {
  const std::vector<v1::Example> pairs = HhPairs(300);
  ASSERT_EQ(pairs.size(), 300u);
  v1::Dataset created = Create(MakeDataset("hh", v1::DATASET_KIND_PAIRS, 0));
  EXPECT_EQ(created.embedding().source(), v1::EmbeddingConfig::SOURCE_BUILTIN);
  EXPECT_GT(created.embedding().dim(), 0);
  EXPECT_FALSE(created.embedding().embedder().empty());

  v1::IngestExamplesResponse ingest = Ingest("hh", pairs);
  EXPECT_EQ(ingest.accepted(), 300);
  EXPECT_EQ(ingest.duplicates(), 0);
  EXPECT_EQ(ingest.rejected(), 0);
  ASSERT_EQ(ingest.ids_size(), 300);
  EXPECT_EQ(ingest.ids(0).size(), 33u);  // "h" + 32 hex digits
  EXPECT_EQ(std::set<std::string>(ingest.ids().begin(), ingest.ids().end()).size(), 300u);

  v1::Dataset d = Get("hh");
  EXPECT_EQ(d.example_count(), 300);
  EXPECT_EQ(d.indexed_vectors(), 600);
  EXPECT_GT(d.stored_bytes(), 0);

  // Stored content comes back exactly.
  v1::GetExamplesRequest get;
  get.set_dataset("hh");
  get.add_ids(ingest.ids(7));
  get.set_include_embeddings(true);
  v1::GetExamplesResponse got;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->GetExamples(&context, get, &got).ok());
  }
  ASSERT_EQ(got.examples_size(), 1);
  EXPECT_EQ(got.examples(0).pair().chosen(), pairs[7].pair().chosen());
  EXPECT_EQ(got.examples(0).pair().chosen_embedding_size(), d.embedding().dim());

  // ISA at 10%: 30 pairs, scores are ISA's Delta = -p log p <= 0, best first.
  v1::SelectRequest isa;
  isa.set_dataset("hh");
  isa.mutable_budget()->set_fraction(0.1);
  isa.set_method(v1::SELECTION_METHOD_ISA);
  isa.set_display_name("isa-10");
  v1::Selection isa_sel;
  grpc::Status s = Select(isa, &isa_sel);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(isa_sel.unit(), v1::SELECTION_UNIT_PAIR);
  EXPECT_EQ(isa_sel.items_size(), 30);
  EXPECT_EQ(isa_sel.summary().pool_size(), 300);
  EXPECT_EQ(isa_sel.isa().components(), 2);
  EXPECT_EQ(isa_sel.isa().covariance(), v1::COVARIANCE_DIAG);
  EXPECT_EQ(isa_sel.summary().fit().weights_size(), 2);
  EXPECT_GT(isa_sel.summary().fit().iterations(), 0);
  for (int i = 1; i < isa_sel.items_size(); ++i) {
    EXPECT_GE(isa_sel.items(i - 1).score(), isa_sel.items(i).score());
    EXPECT_LE(isa_sel.items(i).score(), 0.0);
  }

  // The same inputs and seed give the same ids; the stored selection matches the reply.
  v1::Selection again;
  ASSERT_TRUE(Select(isa, &again).ok());
  ASSERT_EQ(again.items_size(), isa_sel.items_size());
  for (int i = 0; i < again.items_size(); ++i) {
    EXPECT_EQ(again.items(i).example_id(), isa_sel.items(i).example_id());
  }
  EXPECT_NE(again.id(), isa_sel.id());

  v1::SelectRequest random = isa;
  random.set_method(v1::SELECTION_METHOD_RANDOM);
  random.clear_display_name();
  random.mutable_budget()->set_count(25);
  random.set_seed(7);
  v1::Selection r1, r2, r3;
  ASSERT_TRUE(Select(random, &r1).ok());
  ASSERT_TRUE(Select(random, &r2).ok());
  random.set_seed(8);
  ASSERT_TRUE(Select(random, &r3).ok());
  ASSERT_EQ(r1.items_size(), 25);
  std::vector<std::string> ids1, ids2, ids3;
  for (const auto& i : r1.items()) ids1.push_back(i.example_id());
  for (const auto& i : r2.items()) ids2.push_back(i.example_id());
  for (const auto& i : r3.items()) ids3.push_back(i.example_id());
  EXPECT_EQ(ids1, ids2);
  EXPECT_NE(ids1, ids3);
  EXPECT_EQ(std::set<std::string>(ids1.begin(), ids1.end()).size(), 25u);

  v1::GetSelectionRequest gs;
  gs.set_id(isa_sel.id());
  v1::Selection stored;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->GetSelection(&context, gs, &stored).ok());
  }
  EXPECT_EQ(stored.SerializeAsString(), isa_sel.SerializeAsString());

  // Newest first, without items, paginated.
  v1::ListSelectionsRequest list;
  list.set_dataset("hh");
  list.set_page_size(2);
  std::vector<std::string> listed;
  do {
    v1::ListSelectionsResponse page;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListSelections(&context, list, &page).ok());
    for (const auto& sel : page.selections()) {
      listed.push_back(sel.id());
      EXPECT_EQ(sel.items_size(), 0);
    }
    list.set_page_token(page.next_page_token());
  } while (!list.page_token().empty());
  ASSERT_EQ(listed.size(), 5u);
  EXPECT_EQ(listed.back(), isa_sel.id());
  EXPECT_EQ(Get("hh").selection_count(), 5);

  // Export in TRL: the selected pairs, in selection order, with their texts.
  grpc::Status export_status;
  auto trl = Export(isa_sel.id(), v1::EXPORT_FORMAT_TRL, &export_status);
  ASSERT_TRUE(export_status.ok()) << export_status.error_message();
  ASSERT_EQ(trl.size(), 30u);
  for (size_t i = 0; i < trl.size(); ++i) {
    EXPECT_EQ(trl[i].id(), isa_sel.items(i).example_id());
    EXPECT_FALSE(trl[i].chosen().empty());
    EXPECT_FALSE(trl[i].rejected().empty());
  }
  // KTO: every pair becomes a desirable and an undesirable record.
  auto kto = Export(isa_sel.id(), v1::EXPORT_FORMAT_KTO, &export_status);
  ASSERT_TRUE(export_status.ok());
  ASSERT_EQ(kto.size(), 60u);
  EXPECT_TRUE(kto[0].label());
  EXPECT_FALSE(kto[1].label());
  EXPECT_EQ(kto[0].completion(), trl[0].chosen());
  EXPECT_EQ(kto[1].completion(), trl[0].rejected());
}

TEST_F(ServiceTest, ExampleUnitSplitsPairs) {
  Create(MakeDataset("split", v1::DATASET_KIND_PAIRS, 0));
  Ingest("split", HhPairs(100));
  v1::SelectRequest request;
  request.set_dataset("split");
  request.set_unit(v1::SELECTION_UNIT_EXAMPLE);
  request.mutable_budget()->set_fraction(0.25);
  v1::Selection sel;
  ASSERT_TRUE(Select(request, &sel).ok());
  EXPECT_EQ(sel.summary().pool_size(), 200);
  EXPECT_EQ(sel.items_size(), 50);
  EXPECT_EQ(sel.summary().desirable_count() + sel.summary().undesirable_count(), 50);
  for (const auto& item : sel.items()) EXPECT_NE(item.side(), v1::SIDE_UNSPECIFIED);
  grpc::Status status;
  Export(sel.id(), v1::EXPORT_FORMAT_TRL, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  auto kto = Export(sel.id(), v1::EXPORT_FORMAT_UNSPECIFIED, &status);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(kto.size(), 50u);
  for (size_t i = 0; i < kto.size(); ++i) {
    EXPECT_EQ(kto[i].label(), sel.items(i).side() == v1::SIDE_CHOSEN);
  }
}

TEST_F(ServiceTest, DuplicatesAreReportedNotStored) {
  Create(MakeDataset("dups", v1::DATASET_KIND_PAIRS, 0));
  std::vector<v1::Example> pairs = HhPairs(20);
  EXPECT_EQ(Ingest("dups", pairs).accepted(), 20);
  // The same records again, plus one repeated inside the request.
  std::vector<v1::Example> again = pairs;
  again.push_back(pairs[0]);
  v1::IngestExamplesResponse reply = Ingest("dups", again);
  EXPECT_EQ(reply.accepted(), 0);
  EXPECT_EQ(reply.duplicates(), 21);
  EXPECT_EQ(Get("dups").example_count(), 20);

  // A client id reused for different content is rejected, not overwritten.
  std::vector<v1::Example> named = {pairs[1], pairs[2]};
  named[0].set_id("mine");
  named[1].set_id("mine");
  reply = Ingest("dups", named);
  EXPECT_EQ(reply.accepted(), 1);
  EXPECT_EQ(reply.rejected(), 1);
  ASSERT_EQ(reply.errors_size(), 1);
  EXPECT_EQ(reply.errors(0).index(), 1);
  EXPECT_EQ(reply.errors(0).field(), "examples[1].id");
  EXPECT_EQ(reply.ids(0), "mine");
  EXPECT_EQ(reply.ids(1), "");
  EXPECT_EQ(Get("dups").example_count(), 21);
}

TEST_F(ServiceTest, ClientEmbeddingsAndUnpairedData) {
  // float32: the vectors come back exactly as sent (the default, float16, rounds them).
  v1::Dataset kto = MakeDataset("kto", v1::DATASET_KIND_UNPAIRED, 4);
  kto.mutable_embedding()->set_encoding(v1::EmbeddingConfig::ENCODING_FLOAT32);
  Create(kto);
  std::vector<v1::Example> examples;
  for (int i = 0; i < 40; ++i) {
    v1::Example e;
    e.mutable_unpaired()->set_prompt("question " + std::to_string(i));
    e.mutable_unpaired()->set_completion("answer " + std::to_string(i));
    e.mutable_unpaired()->set_label(i % 4 == 0 ? v1::LABEL_UNDESIRABLE : v1::LABEL_DESIRABLE);
    // Two tight clusters, and one point halfway between them: the least typical point,
    // which ISA as written must rank first.
    const float c = i == 39 ? 2.5f : (i < 20 ? 0.f : 5.f);
    const float j = i == 39 ? 0.f : 0.05f;
    for (float v : {c + j * (i % 7), c - j * (i % 5), c + j * (i % 3), c - j * (i % 2)})
      e.mutable_unpaired()->add_embedding(v);
    (*e.mutable_metadata())["source"] = i % 2 ? "a" : "b";
    examples.push_back(e);
  }
  v1::IngestExamplesResponse reply = Ingest("kto", examples);
  EXPECT_EQ(reply.accepted(), 40);
  v1::Dataset d = Get("kto");
  EXPECT_EQ(d.desirable_count(), 30);
  EXPECT_EQ(d.undesirable_count(), 10);
  EXPECT_EQ(d.indexed_vectors(), 40);

  v1::GetExamplesRequest get;
  get.set_dataset("kto");
  get.add_ids(reply.ids(3));
  get.set_include_embeddings(true);
  v1::GetExamplesResponse got;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->GetExamples(&context, get, &got).ok());
  }
  ASSERT_EQ(got.examples(0).unpaired().embedding_size(), 4);
  EXPECT_EQ(got.examples(0).unpaired().embedding(0), examples[3].unpaired().embedding(0));
  EXPECT_EQ(got.examples(0).metadata().at("source"), "a");

  v1::SelectRequest request;
  request.set_dataset("kto");
  request.mutable_budget()->set_count(3);
  request.set_method(v1::SELECTION_METHOD_ISA);
  v1::Selection sel;
  grpc::Status s = Select(request, &sel);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(sel.unit(), v1::SELECTION_UNIT_EXAMPLE);
  EXPECT_EQ(sel.items(0).example_id(), reply.ids(39));

  request.set_unit(v1::SELECTION_UNIT_PAIR);
  s = Select(request, &sel);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("unit"), std::string::npos);
}

TEST_F(ServiceTest, DatasetsListAndDelete) {
  for (const char* name : {"c", "a", "b"}) Create(MakeDataset(name, v1::DATASET_KIND_PAIRS, 0));
  Ingest("b", HhPairs(5));
  v1::SelectRequest request;
  request.set_dataset("b");
  request.mutable_budget()->set_count(2);
  request.set_method(v1::SELECTION_METHOD_RANDOM);
  v1::Selection sel;
  ASSERT_TRUE(Select(request, &sel).ok());

  v1::ListDatasetsRequest list;
  list.set_page_size(2);
  std::vector<std::string> names;
  do {
    v1::ListDatasetsResponse page;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListDatasets(&context, list, &page).ok());
    for (const auto& d : page.datasets()) names.push_back(d.name());
    list.set_page_token(page.next_page_token());
  } while (!list.page_token().empty());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));

  v1::DeleteDatasetRequest del;
  del.set_name("b");
  v1::DeleteDatasetResponse deleted;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->DeleteDataset(&context, del, &deleted).ok());
  }
  EXPECT_EQ(deleted.deleted_examples(), 5);
  EXPECT_EQ(deleted.deleted_selections(), 1);
  {
    grpc::ClientContext context;
    v1::DeleteDatasetResponse again;
    EXPECT_EQ(stub_->DeleteDataset(&context, del, &again).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  v1::GetSelectionRequest gs;
  gs.set_id(sel.id());
  v1::Selection gone;
  grpc::ClientContext context;
  EXPECT_EQ(stub_->GetSelection(&context, gs, &gone).error_code(), grpc::StatusCode::NOT_FOUND);
  // A new dataset of the same name starts empty: nothing of the old one leaks in.
  Create(MakeDataset("b", v1::DATASET_KIND_PAIRS, 0));
  EXPECT_EQ(Get("b").example_count(), 0);
  EXPECT_EQ(Get("b").indexed_vectors(), 0);
}

TEST_F(ServiceTest, SelectStreamAndDeadlines) {
  Create(MakeDataset("s", v1::DATASET_KIND_PAIRS, 0));
  Ingest("s", HhPairs(200));
  v1::SelectRequest request;
  request.set_dataset("s");
  request.mutable_budget()->set_count(20);
  grpc::ClientContext context;
  auto stream = stub_->SelectStream(&context, request);
  v1::SelectProgress update;
  v1::Selection last;
  int selections = 0;
  while (stream->Read(&update)) {
    if (update.has_selection()) {
      last = update.selection();
      ++selections;
    } else {
      EXPECT_GE(update.progress().fraction(), 0.0);
      EXPECT_LE(update.progress().fraction(), 1.0);
      // Queued for a worker, or the default method for pairs at work.
      const std::string& stage = update.progress().stage();
      EXPECT_TRUE(stage.rfind("queued: ", 0) == 0 || stage == "starting" ||
                  stage == "herding: building the pool" || stage == "herding on 200 pairs")
          << stage;
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(selections, 1);
  EXPECT_EQ(last.method(), v1::SELECTION_METHOD_HERDING);
  EXPECT_EQ(last.items_size(), 20);
  v1::GetSelectionRequest get;
  get.set_id(last.id());
  v1::Selection stored;
  {
    grpc::ClientContext c;
    ASSERT_TRUE(stub_->GetSelection(&c, get, &stored).ok());
  }
  EXPECT_EQ(stored.SerializeAsString(), last.SerializeAsString());

  // A deadline already past: DEADLINE_EXCEEDED, and nothing is stored for the caller.
  v1::Selection sel;
  grpc::ClientContext late;
  late.set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
  EXPECT_EQ(stub_->Select(&late, request, &sel).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(Get("s").selection_count(), 1);
}

TEST_F(ServiceTest, HealthAndReflection) {
  auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(health->Check(&context, request, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }

  // Reflection lets generic tools (grpcurl, Postman) discover the API.
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  auto stream = reflection->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  grpc::reflection::v1alpha::ServerReflectionResponse reply;
  ASSERT_TRUE(stream->Read(&reply));
  std::set<std::string> services;
  for (const auto& s : reply.list_services_response().service()) services.insert(s.name());
  EXPECT_TRUE(services.count("curation.v1.CurationService"));
  EXPECT_TRUE(services.count("grpc.health.v1.Health"));
  // And the file describing the API comes back whole.
  grpc::reflection::v1alpha::ServerReflectionRequest file;
  file.set_file_containing_symbol("curation.v1.CurationService");
  ASSERT_TRUE(stream->Write(file));
  ASSERT_TRUE(stream->Read(&reply));
  ASSERT_GT(reply.file_descriptor_response().file_descriptor_proto_size(), 0);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace curation::testing
