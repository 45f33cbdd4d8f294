// Every selection method, filter, constraint and ranking through the real server: the HH
// sample for real text, and small client-embedded unpaired datasets whose geometry, labels
// and metadata the test controls.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

constexpr int kDim = 8;

// Code points of UTF-8 text, counted independently of the server.
int64_t CodePoints(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class SelectionMethodsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    server_ = ServerProcess::Start(dir_ + "/db");
    stub_ = server_->Stub();
  }

  void Create(const v1::Dataset& d) {
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = d;
    v1::Dataset reply;
    grpc::ClientContext context;
    grpc::Status s = stub_->CreateDataset(&context, request, &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  std::vector<std::string> Ingest(const std::string& dataset,
                                  const std::vector<v1::Example>& examples) {
    v1::IngestExamplesRequest request;
    request.set_dataset(dataset);
    for (const auto& e : examples) *request.add_examples() = e;
    v1::IngestExamplesResponse reply;
    grpc::ClientContext context;
    grpc::Status s = stub_->IngestExamples(&context, request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(reply.accepted(), static_cast<int64_t>(examples.size()));
    return {reply.ids().begin(), reply.ids().end()};
  }

  // The HH sample as dataset "hh", every pair tagged source=a or b alternately.
  void CreateHh() {
    Create(MakeDataset("hh", v1::DATASET_KIND_PAIRS, 0));
    hh_ = HhPairs(500);
    for (size_t i = 0; i < hh_.size(); ++i) {
      (*hh_[i].mutable_metadata())["source"] = i % 2 ? "a" : "b";
    }
    hh_ids_ = Ingest("hh", hh_);
  }

  // An unpaired dataset of `n` examples with random directions in kDim dimensions, the
  // first `desirable` of them desirable, ids "u<i>", metadata from `source(i)` if given.
  void CreateUnpaired(const std::string& name, int n, int desirable,
                      const std::function<std::string(int)>& source = nullptr) {
    Create(MakeDataset(name, v1::DATASET_KIND_UNPAIRED, kDim));
    std::mt19937 rng(17);
    std::normal_distribution<float> normal;
    std::vector<v1::Example> examples;
    for (int i = 0; i < n; ++i) {
      v1::Example e;
      e.set_id("u" + std::to_string(i));
      e.mutable_unpaired()->set_prompt("q" + std::to_string(i));
      e.mutable_unpaired()->set_completion("a" + std::to_string(i));
      e.mutable_unpaired()->set_label(i < desirable ? v1::LABEL_DESIRABLE : v1::LABEL_UNDESIRABLE);
      for (int j = 0; j < kDim; ++j) e.mutable_unpaired()->add_embedding(normal(rng));
      if (source) {
        const std::string value = source(i);
        if (!value.empty()) (*e.mutable_metadata())["src"] = value;
      }
      examples.push_back(std::move(e));
    }
    Ingest(name, examples);
  }

  grpc::Status Select(const v1::SelectRequest& request, v1::Selection* reply) {
    grpc::ClientContext context;
    return stub_->Select(&context, request, reply);
  }

  v1::Selection MustSelect(const v1::SelectRequest& request) {
    v1::Selection reply;
    grpc::Status s = Select(request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << request.DebugString();
    return reply;
  }

  std::vector<v1::ExportedRecord> Export(const std::string& id, int64_t count,
                                         grpc::Status* status) {
    v1::ExportSelectionRequest request;
    request.set_selection_id(id);
    request.set_count(count);
    grpc::ClientContext context;
    auto stream = stub_->ExportSelection(&context, request);
    std::vector<v1::ExportedRecord> out;
    v1::ExportSelectionResponse message;
    while (stream->Read(&message)) {
      for (const auto& r : message.records()) out.push_back(r);
    }
    *status = stream->Finish();
    return out;
  }

  int SelectionCount(const std::string& dataset) {
    v1::ListSelectionsRequest list;
    list.set_dataset(dataset);
    list.set_page_size(1000);
    v1::ListSelectionsResponse reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->ListSelections(&context, list, &reply).ok());
    return reply.selections_size();
  }

  static std::vector<std::string> Keys(const v1::Selection& s, int limit = -1) {
    std::vector<std::string> out;
    for (int i = 0; i < s.items_size() && (limit < 0 || i < limit); ++i) {
      out.push_back(s.items(i).example_id() + "/" + std::to_string(s.items(i).side()));
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::CurationService::Stub> stub_;
  std::vector<v1::Example> hh_;
  std::vector<std::string> hh_ids_;
};

const v1::SelectionMethod kAllMethods[] = {v1::SELECTION_METHOD_ISA,
                                           v1::SELECTION_METHOD_RANDOM,
                                           v1::SELECTION_METHOD_FACILITY_LOCATION,
                                           v1::SELECTION_METHOD_KCENTER,
                                           v1::SELECTION_METHOD_HERDING,
                                           v1::SELECTION_METHOD_DEDUP};

TEST_F(SelectionMethodsTest, EveryMethodAndUnitIsDistinctAndDeterministic) {
  CreateHh();
  for (v1::SelectionMethod method : kAllMethods) {
    for (v1::SelectionUnit unit : {v1::SELECTION_UNIT_PAIR, v1::SELECTION_UNIT_EXAMPLE}) {
      SCOPED_TRACE(v1::SelectionMethod_Name(method) + " " + v1::SelectionUnit_Name(unit));
      v1::SelectRequest request;
      request.set_dataset("hh");
      request.set_method(method);
      request.set_unit(unit);
      request.set_seed(3);
      request.mutable_budget()->set_count(25);
      const v1::Selection a = MustSelect(request);
      const v1::Selection b = MustSelect(request);
      EXPECT_EQ(a.method(), method);
      EXPECT_EQ(a.summary().selected_count(), 25);
      EXPECT_EQ(a.summary().pool_size(),
                static_cast<int64_t>(hh_.size()) * (unit == v1::SELECTION_UNIT_PAIR ? 1 : 2));
      const std::vector<std::string> keys = Keys(a);
      ASSERT_EQ(keys.size(), 25u);
      EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), 25u);
      EXPECT_EQ(keys, Keys(b));
      EXPECT_TRUE(std::isfinite(a.summary().min_score()));
      EXPECT_TRUE(std::isfinite(a.summary().max_score()));
      if (method == v1::SELECTION_METHOD_KCENTER) {
        EXPECT_TRUE(std::isinf(a.items(0).score()));
      }
      if (unit == v1::SELECTION_UNIT_EXAMPLE) {
        EXPECT_EQ(a.summary().desirable_count() + a.summary().undesirable_count(), 25);
      }
    }
  }
}

TEST_F(SelectionMethodsTest, DefaultMethodIsHerdingAndRecorded) {
  CreateHh();
  CreateUnpaired("kto", 60, 40);
  for (const char* dataset : {"hh", "kto"}) {
    v1::SelectRequest request;
    request.set_dataset(dataset);
    request.mutable_budget()->set_count(10);
    const v1::Selection s = MustSelect(request);
    EXPECT_EQ(s.method(), v1::SELECTION_METHOD_HERDING) << dataset;
    EXPECT_EQ(s.unit(),
              std::string(dataset) == "hh" ? v1::SELECTION_UNIT_PAIR : v1::SELECTION_UNIT_EXAMPLE);
    EXPECT_FALSE(s.has_isa());
    // Single completions keep the pool's label ratio by default (40:20 of 10 is 6.7:3.3, so
    // 7:3 by largest remainders); pairs are one of each anyway.
    if (std::string(dataset) == "kto") {
      EXPECT_TRUE(s.constraints().balance_labels());
      EXPECT_EQ(s.summary().desirable_count(), 7);
      EXPECT_EQ(s.summary().undesirable_count(), 3);
    } else {
      EXPECT_FALSE(s.constraints().balance_labels());
    }
    v1::GetSelectionRequest get;
    get.set_id(s.id());
    v1::Selection stored;
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->GetSelection(&context, get, &stored).ok());
    EXPECT_EQ(stored.method(), v1::SELECTION_METHOD_HERDING);
  }
}

TEST_F(SelectionMethodsTest, IsaFullCovarianceAndPcaReportTheFit) {
  CreateUnpaired("kto", 200, 100);
  v1::SelectRequest request;
  request.set_dataset("kto");
  request.set_method(v1::SELECTION_METHOD_ISA);
  request.mutable_budget()->set_count(20);
  request.mutable_isa()->set_covariance(v1::COVARIANCE_FULL);
  request.mutable_isa()->set_n_init(2);
  request.mutable_isa()->set_init(v1::MIXTURE_INIT_KMEANS_PLUS_PLUS);
  v1::Selection full = MustSelect(request);
  EXPECT_EQ(full.isa().covariance(), v1::COVARIANCE_FULL);
  EXPECT_EQ(full.isa().n_init(), 2);
  EXPECT_EQ(full.items_size(), 20);
  EXPECT_EQ(full.summary().fit().weights_size(), 2);
  EXPECT_GT(full.summary().fit().iterations(), 0);
  EXPECT_GE(full.summary().fit().fit_seconds(), 0);
  EXPECT_DOUBLE_EQ(full.summary().fit().retained_variance(), 1.0);

  request.mutable_isa()->set_pca_dim(3);
  v1::Selection pca = MustSelect(request);
  EXPECT_EQ(pca.isa().pca_dim(), 3);
  EXPECT_GT(pca.summary().fit().retained_variance(), 0.0);
  EXPECT_LT(pca.summary().fit().retained_variance(), 1.0);  // isotropic data: about 3/8
  EXPECT_EQ(pca.summary().fit().weights_size(), 2);

  request.mutable_isa()->set_pca_dim(kDim + 1);
  v1::Selection refused;
  grpc::Status s = Select(request, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("isa.pca_dim:", 0), 0u) << s.error_message();
}

TEST_F(SelectionMethodsTest, DedupNeverKeepsTwoPlantedDuplicates) {
  CreateUnpaired("kto", 60, 30);
  // Five more copies of u0's vector under other ids and texts.
  v1::GetExamplesRequest get;
  get.set_dataset("kto");
  get.add_ids("u0");
  get.set_include_embeddings(true);
  v1::GetExamplesResponse got;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->GetExamples(&context, get, &got).ok());
  }
  std::vector<v1::Example> copies;
  for (int c = 0; c < 5; ++c) {
    v1::Example e = got.examples(0);
    e.set_id("dup" + std::to_string(c));
    e.mutable_unpaired()->set_completion("copy " + std::to_string(c));
    copies.push_back(e);
  }
  Ingest("kto", copies);
  const std::set<std::string> planted = {"u0", "dup0", "dup1", "dup2", "dup3", "dup4"};
  auto planted_in = [&](const v1::Selection& s) {
    int n = 0;
    for (const auto& item : s.items()) n += planted.count(item.example_id());
    return n;
  };

  v1::SelectRequest request;
  request.set_dataset("kto");
  request.set_method(v1::SELECTION_METHOD_DEDUP);
  request.mutable_budget()->set_count(60);  // every unit dedup keeps
  v1::Selection dedup = MustSelect(request);
  EXPECT_DOUBLE_EQ(dedup.filter().dedup_threshold(), 0.95);
  EXPECT_EQ(planted_in(dedup), 1);
  request.mutable_budget()->set_count(61);
  v1::Selection too_many;
  EXPECT_EQ(Select(request, &too_many).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // The filter in front of another method, also for a ranking of everything kept.
  for (v1::SelectionMethod method : {v1::SELECTION_METHOD_HERDING, v1::SELECTION_METHOD_KCENTER}) {
    v1::SelectRequest other;
    other.set_dataset("kto");
    other.set_method(method);
    other.mutable_filter()->set_dedup_threshold(0.99);
    other.mutable_budget()->set_count(60);
    EXPECT_EQ(planted_in(MustSelect(other)), 1);
    other.mutable_budget()->set_count(10);
    other.set_ranking(true);
    v1::Selection ranked = MustSelect(other);
    EXPECT_EQ(ranked.items_size(), 60);
    EXPECT_EQ(planted_in(ranked), 1);
  }
  // Without dedup, herding over all 65 rows holds every copy.
  v1::SelectRequest plain;
  plain.set_dataset("kto");
  plain.set_method(v1::SELECTION_METHOD_HERDING);
  plain.mutable_budget()->set_count(65);
  EXPECT_EQ(planted_in(MustSelect(plain)), 6);
}

TEST_F(SelectionMethodsTest, MetadataAndLengthFilters) {
  CreateHh();
  v1::SelectRequest request;
  request.set_dataset("hh");
  request.set_method(v1::SELECTION_METHOD_RANDOM);
  request.mutable_budget()->set_fraction(1.0);
  (*request.mutable_filter()->mutable_metadata_equals())["source"] = "a";
  v1::Selection only_a = MustSelect(request);
  std::set<std::string> expect_a;
  for (size_t i = 0; i < hh_.size(); ++i) {
    if (i % 2) expect_a.insert(hh_ids_[i]);
  }
  std::set<std::string> got_a;
  for (const auto& item : only_a.items()) got_a.insert(item.example_id());
  EXPECT_EQ(got_a, expect_a);
  EXPECT_EQ(only_a.summary().pool_size(), static_cast<int64_t>(expect_a.size()));
  EXPECT_EQ(only_a.summary().filtered_out(), static_cast<int64_t>(hh_.size() - expect_a.size()));
  EXPECT_EQ(only_a.filter().metadata_equals().at("source"), "a");

  // Lengths: prompt plus the longer answer, in code points.
  request.clear_filter();
  request.mutable_filter()->set_min_chars(300);
  request.mutable_filter()->set_max_chars(900);
  std::set<std::string> expect_len;
  for (size_t i = 0; i < hh_.size(); ++i) {
    const auto& p = hh_[i].pair();
    const int64_t chars =
        CodePoints(p.prompt()) + std::max(CodePoints(p.chosen()), CodePoints(p.rejected()));
    if (chars >= 300 && chars <= 900) expect_len.insert(hh_ids_[i]);
  }
  ASSERT_GT(expect_len.size(), 10u);
  ASSERT_LT(expect_len.size(), hh_.size());
  v1::Selection by_len = MustSelect(request);
  std::set<std::string> got_len;
  for (const auto& item : by_len.items()) got_len.insert(item.example_id());
  EXPECT_EQ(got_len, expect_len);

  // A filter nothing passes.
  request.clear_filter();
  (*request.mutable_filter()->mutable_metadata_equals())["source"] = "nowhere";
  v1::Selection none;
  EXPECT_EQ(Select(request, &none).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(SelectionMethodsTest, LabelBalanceAndStrata) {
  // 70 desirable, 30 undesirable; src: 45 "x", 27 "y", 18 "z", 10 without the key.
  CreateUnpaired("kto", 100, 70, [](int i) {
    const int r = (i * 37) % 100;  // spread the strata over both labels
    return r < 45 ? "x" : r < 72 ? "y" : r < 90 ? "z" : "";
  });
  std::map<std::string, std::string> src;
  std::map<std::string, bool> desirable;
  for (int i = 0; i < 100; ++i) {
    const int r = (i * 37) % 100;
    src["u" + std::to_string(i)] = r < 45 ? "x" : r < 72 ? "y" : r < 90 ? "z" : "-";
    desirable["u" + std::to_string(i)] = i < 70;
  }
  auto labels = [&](const v1::Selection& s) {
    int d = 0;
    for (const auto& item : s.items()) d += desirable[item.example_id()];
    return std::make_pair(d, s.items_size() - d);
  };

  for (v1::SelectionMethod method :
       {v1::SELECTION_METHOD_HERDING, v1::SELECTION_METHOD_KCENTER, v1::SELECTION_METHOD_RANDOM}) {
    SCOPED_TRACE(v1::SelectionMethod_Name(method));
    v1::SelectRequest request;
    request.set_dataset("kto");
    request.set_method(method);
    request.mutable_constraints()->set_balance_labels(true);
    request.mutable_budget()->set_count(10);
    v1::Selection s = MustSelect(request);
    EXPECT_EQ(labels(s), std::make_pair(7, 3));
    EXPECT_EQ(s.summary().desirable_count(), 7);
    EXPECT_EQ(s.summary().undesirable_count(), 3);
    // 10.5 / 4.5: the equal remainders go to the lower group, desirable.
    request.mutable_budget()->set_count(15);
    EXPECT_EQ(labels(MustSelect(request)), std::make_pair(11, 4));
    request.mutable_constraints()->set_desirable_share(0.5);
    request.mutable_budget()->set_count(20);
    EXPECT_EQ(labels(MustSelect(request)), std::make_pair(10, 10));
    // More undesirable examples than the pool holds.
    request.mutable_budget()->set_count(80);
    v1::Selection refused;
    EXPECT_EQ(Select(request, &refused).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

    // Strata: 4.5, 2.7, 1.8, 1.0 -> 4, 3, 2, 1 by largest remainders.
    v1::SelectRequest strata;
    strata.set_dataset("kto");
    strata.set_method(method);
    strata.mutable_constraints()->set_stratify_by("src");
    strata.mutable_budget()->set_count(10);
    std::map<std::string, int> per;
    const v1::Selection stratified = MustSelect(strata);
    for (const auto& item : stratified.items()) ++per[src[item.example_id()]];
    EXPECT_EQ(per, (std::map<std::string, int>{{"x", 4}, {"y", 3}, {"z", 2}, {"-", 1}}));

    // Both: every (label, stratum) group in proportion; the label split still exact.
    strata.mutable_constraints()->set_balance_labels(true);
    strata.mutable_budget()->set_count(20);
    EXPECT_EQ(labels(MustSelect(strata)), std::make_pair(14, 6));
  }
}

TEST_F(SelectionMethodsTest, IdsAndLabelsSurviveARestart) {
  // The index keeps ids and labels in memory; at start-up they come from the store.
  CreateUnpaired("kto", 50, 35);
  v1::SelectRequest request;
  request.set_dataset("kto");
  request.set_method(v1::SELECTION_METHOD_KCENTER);
  request.mutable_constraints()->set_balance_labels(true);
  request.mutable_budget()->set_count(10);
  const v1::Selection before = MustSelect(request);
  server_.reset();
  server_ = ServerProcess::Start(dir_ + "/db");
  stub_ = server_->Stub();
  const v1::Selection after = MustSelect(request);
  EXPECT_EQ(Keys(after), Keys(before));
  EXPECT_EQ(after.summary().desirable_count(), 7);
  for (const auto& item : after.items()) {
    EXPECT_EQ(item.example_id()[0], 'u');
  }
}

TEST_F(SelectionMethodsTest, RankingPrefixesAreSelectionsAndExportHonoursCount) {
  CreateHh();
  const int64_t pool = static_cast<int64_t>(hh_.size());
  for (v1::SelectionMethod method : {v1::SELECTION_METHOD_HERDING, v1::SELECTION_METHOD_KCENTER,
                                     v1::SELECTION_METHOD_FACILITY_LOCATION}) {
    SCOPED_TRACE(v1::SelectionMethod_Name(method));
    v1::SelectRequest request;
    request.set_dataset("hh");
    request.set_method(method);
    request.set_seed(5);
    request.mutable_budget()->set_count(20);
    const v1::Selection plain = MustSelect(request);
    request.set_ranking(true);
    const v1::Selection ranked = MustSelect(request);
    EXPECT_TRUE(ranked.summary().ranked());
    EXPECT_EQ(ranked.summary().selected_count(), 20);
    ASSERT_EQ(ranked.items_size(), pool);
    EXPECT_EQ(Keys(ranked, 20), Keys(plain));
    const std::vector<std::string> all = Keys(ranked);
    EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), static_cast<size_t>(pool));

    grpc::Status status;
    auto first = Export(ranked.id(), 0, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(first.size(), 20u);
    auto more = Export(ranked.id(), 50, &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(more.size(), 50u);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(more[i].id(), ranked.items(i).example_id());
    Export(ranked.id(), pool + 1, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message().rfind("count:", 0), 0u) << status.error_message();
  }
  // A plain selection exports a prefix of itself too.
  v1::SelectRequest request;
  request.set_dataset("hh");
  request.set_method(v1::SELECTION_METHOD_RANDOM);
  request.mutable_budget()->set_count(30);
  const v1::Selection plain = MustSelect(request);
  grpc::Status status;
  EXPECT_EQ(Export(plain.id(), 7, &status).size(), 7u);
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(Export(plain.id(), 0, &status).size(), 30u);
  Export(plain.id(), 31, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SelectionMethodsTest, InvalidOptionsNameTheirFieldAndStoreNothing) {
  CreateHh();
  CreateUnpaired("kto", 40, 20);
  struct Case {
    std::string dataset;
    std::function<void(v1::SelectRequest*)> set;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"hh", [](auto* r) { r->set_method(static_cast<v1::SelectionMethod>(99)); }, "method"},
      {"hh", [](auto* r) { r->mutable_isa()->set_components(3); }, "isa"},  // default: herding
      {"hh",
       [](auto* r) {
         r->set_method(v1::SELECTION_METHOD_ISA);
         r->mutable_facility_location()->set_neighbours(10);
       },
       "facility_location"},
      {"hh",
       [](auto* r) {
         r->set_method(v1::SELECTION_METHOD_ISA);
         r->mutable_isa()->set_n_init(21);
       },
       "isa.n_init"},
      {"hh",
       [](auto* r) {
         r->set_method(v1::SELECTION_METHOD_ISA);
         r->mutable_isa()->set_init(static_cast<v1::MixtureInit>(7));
       },
       "isa.init"},
      {"hh",
       [](auto* r) {
         r->set_method(v1::SELECTION_METHOD_ISA);
         r->mutable_isa()->set_pca_dim(-1);
       },
       "isa.pca_dim"},
      {"hh",
       [](auto* r) {
         r->set_method(v1::SELECTION_METHOD_FACILITY_LOCATION);
         r->mutable_facility_location()->set_neighbours(1);
       },
       "facility_location.neighbours"},
      {"hh",
       [](auto* r) {
         r->set_method(v1::SELECTION_METHOD_FACILITY_LOCATION);
         r->mutable_facility_location()->set_epsilon(1.5);
       },
       "facility_location.epsilon"},
      {"hh", [](auto* r) { r->mutable_filter()->set_dedup_threshold(1.5); },
       "filter.dedup_threshold"},
      {"hh", [](auto* r) { r->mutable_filter()->set_dedup_threshold(-0.1); },
       "filter.dedup_threshold"},
      {"hh", [](auto* r) { r->mutable_filter()->set_min_chars(-1); }, "filter.min_chars"},
      {"hh", [](auto* r) { r->mutable_filter()->set_max_chars(-1); }, "filter.max_chars"},
      {"hh",
       [](auto* r) {
         r->mutable_filter()->set_min_chars(100);
         r->mutable_filter()->set_max_chars(50);
       },
       "filter.min_chars"},
      {"kto", [](auto* r) { r->mutable_constraints()->set_desirable_share(0.5); },
       "constraints.desirable_share"},
      {"kto",
       [](auto* r) {
         r->mutable_constraints()->set_balance_labels(true);
         r->mutable_constraints()->set_desirable_share(1.0);
       },
       "constraints.desirable_share"},
      {"hh", [](auto* r) { r->mutable_constraints()->set_balance_labels(true); },
       "constraints.balance_labels"},
      {"hh",
       [](auto* r) {
         r->set_method(v1::SELECTION_METHOD_FACILITY_LOCATION);
         r->mutable_facility_location()->set_stochastic(true);
         r->set_ranking(true);
       },
       "ranking"},
      {"kto",
       [](auto* r) {
         r->mutable_constraints()->set_stratify_by("src");
         r->set_ranking(true);
       },
       "ranking"},
      {"kto", [](auto* r) { r->set_unit(v1::SELECTION_UNIT_PAIR); }, "unit"},
  };
  for (const Case& c : cases) {
    v1::SelectRequest request;
    request.set_dataset(c.dataset);
    request.mutable_budget()->set_count(5);
    c.set(&request);
    v1::Selection reply;
    grpc::Status s = Select(request, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(s.error_message().rfind(c.field + ":", 0), 0u)
        << c.field << " <- " << s.error_message();
  }
  EXPECT_EQ(SelectionCount("hh"), 0);
  EXPECT_EQ(SelectionCount("kto"), 0);
}

TEST_F(SelectionMethodsTest, CliRankingAndScoresSvg) {
  const std::string addr = server_->address();
  CommandResult r = RunCli(addr, {"datasets", "create", "hh"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunCli(addr, {"ingest", "hh", TestDataPath("hh-rlhf-harmless-sample.jsonl.gz")});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const std::string svg = dir_ + "/scores.svg";
  r = RunCli(addr, {"select", "hh", "--budget", "20", "--method", "herding", "--ranking",
                    "--scores-svg", svg, "--name", "ranked"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("herding chose 20 of 499 pairs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ranking: all 499 items"), std::string::npos) << r.out;
  const std::string id = r.out.substr(0, r.out.find(' '));
  std::string text = ReadFile(svg);
  EXPECT_EQ(text.rfind("<svg", 0), 0u);
  EXPECT_EQ(Count(text, "class=\"bar\""), 60);  // selected and whole ranking, 30 bins each
  EXPECT_EQ(Count(text, "<svg"), Count(text, "</svg>"));

  r = RunCli(addr, {"select", "hh", "--budget", "5%", "--method", "isa", "--pca-dim", "4",
                    "--n-init", "2", "--init", "kmeans++", "--scores-svg", svg});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("mixture:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pca: 4 dimensions kept"), std::string::npos) << r.out;
  text = ReadFile(svg);
  EXPECT_EQ(Count(text, "class=\"bar\""), 30);

  // kcenter's first score is +infinity; the JSON output still parses.
  r = RunCli(addr, {"--json", "select", "hh", "--budget", "10", "--method", "kcenter", "--where",
                    "nothing=matches"});
  EXPECT_EQ(r.exit_code, 1);  // the filter leaves nothing
  r = RunCli(addr, {"--json", "select", "hh", "--budget", "10", "--method", "kcenter", "--dedup",
                    "0.99", "--min-chars", "10"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["method"], "SELECTION_METHOD_KCENTER");
  EXPECT_EQ(json["items"].size(), 10u);

  const std::string out = dir_ + "/export.jsonl";
  r = RunCli(addr, {"export", id, "--count", "7", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Count(ReadFile(out), "\n"), 7);
  r = RunCli(addr, {"export", id, "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Count(ReadFile(out), "\n"), 20);

  r = RunCli(addr, {"select", "hh", "--budget", "5", "--method", "magic"});
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace curation::testing
