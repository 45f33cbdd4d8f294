// How datasets hold their vectors, against the real server: encodings (float32, float16,
// SQ8; float16 by default) and PCA projections of wide client vectors, through ingest, reads,
// selections and a restart that rebuilds the index from what RocksDB holds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

using Encoding = v1::EmbeddingConfig::Encoding;

// Client vectors with `factors` latent directions plus a little noise, so that a PCA to
// `factors` dimensions keeps nearly all of their variance.
std::vector<float> LowRankVector(std::mt19937_64& rng, int dim, int factors) {
  static std::vector<std::vector<float>> basis;
  std::mt19937_64 basis_rng(7);
  std::normal_distribution<float> normal(0, 1);
  if (basis.size() != static_cast<size_t>(factors) || basis[0].size() != static_cast<size_t>(dim)) {
    basis.assign(factors, std::vector<float>(dim));
    for (auto& b : basis) {
      for (float& v : b) v = normal(basis_rng);
    }
  }
  std::vector<float> x(dim);
  for (const auto& b : basis) {
    const float w = normal(rng);
    for (int j = 0; j < dim; ++j) x[j] += w * b[j];
  }
  for (float& v : x) v += 0.01f * normal(rng);
  return x;
}

v1::Example ClientPair(const std::string& id, const std::vector<float>& chosen,
                       const std::vector<float>& rejected) {
  v1::Example e;
  e.set_id(id);
  e.mutable_pair()->set_prompt("prompt " + id);
  e.mutable_pair()->set_chosen("chosen " + id);
  e.mutable_pair()->set_rejected("rejected " + id);
  e.mutable_pair()->mutable_chosen_embedding()->Add(chosen.begin(), chosen.end());
  e.mutable_pair()->mutable_rejected_embedding()->Add(rejected.begin(), rejected.end());
  return e;
}

grpc::Status Create(v1::CurationService::Stub& stub, v1::Dataset dataset, v1::Dataset* out) {
  v1::CreateDatasetRequest request;
  *request.mutable_dataset() = std::move(dataset);
  grpc::ClientContext context;
  return stub.CreateDataset(&context, request, out);
}

grpc::Status Ingest(v1::CurationService::Stub& stub, const std::string& dataset,
                    const std::vector<v1::Example>& examples, v1::IngestExamplesResponse* reply) {
  v1::IngestExamplesRequest request;
  request.set_dataset(dataset);
  for (const auto& e : examples) *request.add_examples() = e;
  grpc::ClientContext context;
  return stub.IngestExamples(&context, request, reply);
}

v1::Dataset Get(v1::CurationService::Stub& stub, const std::string& name) {
  v1::GetDatasetRequest request;
  request.set_name(name);
  v1::Dataset d;
  grpc::ClientContext context;
  EXPECT_TRUE(stub.GetDataset(&context, request, &d).ok());
  return d;
}

std::vector<std::string> SelectIds(v1::CurationService::Stub& stub, const std::string& dataset) {
  v1::SelectRequest request;
  request.set_dataset(dataset);
  request.mutable_budget()->set_fraction(0.1);
  v1::Selection selection;
  grpc::ClientContext context;
  const grpc::Status s = stub.Select(&context, request, &selection);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::vector<std::string> ids;
  for (const auto& item : selection.items()) ids.push_back(item.example_id());
  return ids;
}

// The largest error each encoding may make on one value of a vector (codec.h's contracts).
double Tolerance(Encoding encoding, const std::vector<float>& vector, float value) {
  switch (encoding) {
    case v1::EmbeddingConfig::ENCODING_FLOAT16:
      return std::max(std::fabs(value) * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
    case v1::EmbeddingConfig::ENCODING_SQ8: {
      const auto [lo, hi] = std::minmax_element(vector.begin(), vector.end());
      return (static_cast<double>(*hi) - *lo) / 510 * 1.001;
    }
    default:
      return 0;
  }
}

TEST(VectorsTest, EveryEncodingRoundTripsSelectsAndSurvivesARestart) {
  const std::string db = MakeTempDir("vectors") + "/db";
  const int dim = 24;
  const std::vector<Encoding> encodings = {
      v1::EmbeddingConfig::ENCODING_UNSPECIFIED, v1::EmbeddingConfig::ENCODING_FLOAT32,
      v1::EmbeddingConfig::ENCODING_FLOAT16, v1::EmbeddingConfig::ENCODING_SQ8};
  std::mt19937_64 rng(1);
  std::vector<v1::Example> pairs;
  for (int i = 0; i < 200; ++i) {
    pairs.push_back(ClientPair("p" + std::to_string(i), LowRankVector(rng, dim, 6),
                               LowRankVector(rng, dim, 6)));
  }
  std::vector<std::string> ids;
  for (const auto& p : pairs) ids.push_back(p.id());
  std::vector<std::vector<v1::Example>> read_before;
  std::vector<std::vector<std::string>> selected_before;
  {
    auto server = ServerProcess::Start(db);
    auto stub = server->Stub();
    for (size_t e = 0; e < encodings.size(); ++e) {
      v1::Dataset d = MakeDataset("d" + std::to_string(e), v1::DATASET_KIND_PAIRS, dim);
      d.mutable_embedding()->set_encoding(encodings[e]);
      v1::Dataset created;
      ASSERT_TRUE(Create(*stub, d, &created).ok());
      // The server's default, when the request names none, is float16.
      const Encoding held = encodings[e] == v1::EmbeddingConfig::ENCODING_UNSPECIFIED
                                ? v1::EmbeddingConfig::ENCODING_FLOAT16
                                : encodings[e];
      EXPECT_EQ(created.embedding().encoding(), held);
      v1::IngestExamplesResponse reply;
      ASSERT_TRUE(Ingest(*stub, d.name(), pairs, &reply).ok());
      ASSERT_EQ(reply.accepted(), 200);
      const std::vector<v1::Example> read = ReadWithVectors(*stub, d.name(), ids);
      ASSERT_EQ(read.size(), pairs.size());
      for (size_t i = 0; i < pairs.size(); ++i) {
        for (int side = 0; side < 2; ++side) {
          const auto& sent =
              side == 0 ? pairs[i].pair().chosen_embedding() : pairs[i].pair().rejected_embedding();
          const auto& got =
              side == 0 ? read[i].pair().chosen_embedding() : read[i].pair().rejected_embedding();
          ASSERT_EQ(got.size(), dim);
          const std::vector<float> vector(sent.begin(), sent.end());
          for (int j = 0; j < dim; ++j) {
            ASSERT_LE(std::fabs(got[j] - sent[j]), Tolerance(held, vector, sent[j]))
                << "encoding " << held << " pair " << i << " side " << side << " value " << j;
          }
        }
      }
      read_before.push_back(read);
      selected_before.push_back(SelectIds(*stub, d.name()));
      EXPECT_EQ(selected_before.back().size(), 20u);
    }
    // What each encoding stores: SQ8 about a quarter of float32's vector bytes.
    const int64_t f32 = Get(*stub, "d1").stored_bytes();
    const int64_t f16 = Get(*stub, "d2").stored_bytes();
    const int64_t sq8 = Get(*stub, "d3").stored_bytes();
    EXPECT_EQ(f32 - f16, 200 * 2 * dim * 2);
    EXPECT_EQ(f32 - sq8, 200 * 2 * (dim * 3 - 8));
  }
  // The index is rebuilt from the stored codes: the same values, the same selections.
  auto server = ServerProcess::Start(db);
  auto stub = server->Stub();
  for (size_t e = 0; e < encodings.size(); ++e) {
    const std::string name = "d" + std::to_string(e);
    const std::vector<v1::Example> read = ReadWithVectors(*stub, name, ids);
    ASSERT_EQ(read.size(), read_before[e].size());
    for (size_t i = 0; i < read.size(); ++i) {
      EXPECT_EQ(read[i].SerializeAsString(), read_before[e][i].SerializeAsString()) << name;
    }
    EXPECT_EQ(SelectIds(*stub, name), selected_before[e]) << name;
    EXPECT_EQ(Get(*stub, name).indexed_vectors(), 400);
  }
}

TEST(VectorsTest, TheServersDefaultEncodingIsAFlagAndAppliesToNewDatasetsOnly) {
  const std::string db = MakeTempDir("vectors-default") + "/db";
  {
    auto server = ServerProcess::Start(db);
    v1::Dataset created;
    ASSERT_TRUE(
        Create(*server->Stub(), MakeDataset("old", v1::DATASET_KIND_PAIRS, 0), &created).ok());
    EXPECT_EQ(created.embedding().encoding(), v1::EmbeddingConfig::ENCODING_FLOAT16);
  }
  auto server = ServerProcess::Start(db, {"--default-vector-encoding=sq8"});
  auto stub = server->Stub();
  v1::Dataset created;
  ASSERT_TRUE(Create(*stub, MakeDataset("new", v1::DATASET_KIND_UNPAIRED, 0), &created).ok());
  EXPECT_EQ(created.embedding().encoding(), v1::EmbeddingConfig::ENCODING_SQ8);
  EXPECT_EQ(Get(*stub, "old").embedding().encoding(), v1::EmbeddingConfig::ENCODING_FLOAT16);
}

TEST(VectorsTest, BadEncodingsAndProjectionsAreRefusedWithTheirField) {
  auto server = ServerProcess::Start(MakeTempDir("vectors-bad") + "/db");
  auto stub = server->Stub();
  struct Case {
    v1::Dataset dataset;
    std::string field;
  };
  std::vector<Case> cases;
  {
    v1::Dataset d = MakeDataset("a", v1::DATASET_KIND_PAIRS, 16);
    d.mutable_embedding()->set_encoding(static_cast<Encoding>(99));
    cases.push_back({d, "dataset.embedding.encoding"});
  }
  {
    v1::Dataset d = MakeDataset("b", v1::DATASET_KIND_PAIRS, 0);  // built-in embedder
    d.mutable_embedding()->mutable_projection()->set_dim(8);
    cases.push_back({d, "dataset.embedding.projection.dim"});
  }
  for (int bad : {16, 17, -1, 1 << 30}) {
    v1::Dataset d = MakeDataset("c", v1::DATASET_KIND_PAIRS, 16);
    d.mutable_embedding()->mutable_projection()->set_dim(bad);
    cases.push_back({d, "dataset.embedding.projection.dim"});
  }
  {
    v1::Dataset d = MakeDataset("d", v1::DATASET_KIND_PAIRS, 16);
    d.mutable_embedding()->mutable_projection()->set_keep_original(true);
    cases.push_back({d, "dataset.embedding.projection.keep_original"});
  }
  for (const Case& c : cases) {
    v1::Dataset out;
    const grpc::Status s = Create(*stub, c.dataset, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(s.error_message().find(c.field), std::string::npos) << s.error_message();
  }
  v1::ListDatasetsRequest list;
  v1::ListDatasetsResponse listed;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->ListDatasets(&context, list, &listed).ok());
  EXPECT_EQ(listed.datasets_size(), 0);
}

TEST(VectorsTest, AProjectionFitsOnTheFirstIngestAndIsStoredWithTheDataset) {
  const std::string db = MakeTempDir("vectors-pca") + "/db";
  const int dim = 96, out_dim = 6;
  std::mt19937_64 rng(3);
  auto make = [&](const std::string& prefix, int count) {
    std::vector<v1::Example> pairs;
    for (int i = 0; i < count; ++i) {
      pairs.push_back(ClientPair(prefix + std::to_string(i), LowRankVector(rng, dim, out_dim),
                                 LowRankVector(rng, dim, out_dim)));
    }
    return pairs;
  };
  const std::vector<v1::Example> first = make("a", 150);
  const v1::Example probe = first[0];
  std::vector<float> projected_before;
  {
    auto server = ServerProcess::Start(db);
    auto stub = server->Stub();
    for (bool keep : {true, false}) {
      v1::Dataset d = MakeDataset(keep ? "kept" : "projected", v1::DATASET_KIND_PAIRS, dim);
      d.mutable_embedding()->set_encoding(v1::EmbeddingConfig::ENCODING_FLOAT32);
      d.mutable_embedding()->mutable_projection()->set_dim(out_dim);
      d.mutable_embedding()->mutable_projection()->set_keep_original(keep);
      v1::Dataset created;
      ASSERT_TRUE(Create(*stub, d, &created).ok());
      EXPECT_EQ(created.embedding().projection().fit_rows(), 0);
      // Too few vectors to fit a 6-d PCA on (2 x 6 are needed): refused, nothing stored.
      v1::IngestExamplesResponse reply;
      const std::vector<v1::Example> few(first.begin(), first.begin() + 5);
      const grpc::Status small = Ingest(*stub, d.name(), few, &reply);
      EXPECT_EQ(small.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
      EXPECT_NE(small.error_message().find("examples"), std::string::npos);
      EXPECT_NE(small.error_message().find("at least 12"), std::string::npos);
      EXPECT_EQ(Get(*stub, d.name()).example_count(), 0);

      ASSERT_TRUE(Ingest(*stub, d.name(), first, &reply).ok());
      EXPECT_EQ(reply.accepted(), 150);
      const v1::Dataset got = Get(*stub, d.name());
      EXPECT_EQ(got.embedding().projection().fit_rows(), 300);
      EXPECT_GT(got.embedding().projection().retained_variance(), 0.99);
      EXPECT_EQ(got.indexed_vectors(), 300);
      const std::vector<v1::Example> read = ReadWithVectors(*stub, d.name(), {probe.id()});
      ASSERT_EQ(read.size(), 1u);
      if (keep) {
        // The client's own vectors, exactly (float32).
        EXPECT_EQ(std::vector<float>(read[0].pair().chosen_embedding().begin(),
                                     read[0].pair().chosen_embedding().end()),
                  std::vector<float>(probe.pair().chosen_embedding().begin(),
                                     probe.pair().chosen_embedding().end()));
      } else {
        ASSERT_EQ(read[0].pair().chosen_embedding_size(), out_dim);
        projected_before.assign(read[0].pair().chosen_embedding().begin(),
                                read[0].pair().chosen_embedding().end());
      }
      EXPECT_EQ(SelectIds(*stub, d.name()).size(), 15u);
    }
  }
  // After a restart the stored projection projects new vectors the same way.
  auto server = ServerProcess::Start(db);
  auto stub = server->Stub();
  v1::Example again = probe;
  again.set_id("again");
  again.mutable_pair()->set_prompt("the same vectors under another id");
  std::vector<v1::Example> later = make("b", 3);
  later.push_back(again);
  v1::IngestExamplesResponse reply;
  ASSERT_TRUE(Ingest(*stub, "projected", later, &reply).ok());
  EXPECT_EQ(reply.accepted(), 4);  // fewer than 12 vectors: only a first ingest fits
  const std::vector<v1::Example> read = ReadWithVectors(*stub, "projected", {"again"});
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(std::vector<float>(read[0].pair().chosen_embedding().begin(),
                               read[0].pair().chosen_embedding().end()),
            projected_before);
  const v1::Dataset got = Get(*stub, "projected");
  EXPECT_EQ(got.embedding().projection().fit_rows(), 300);
  EXPECT_EQ(got.example_count(), 154);
  EXPECT_EQ(SelectIds(*stub, "projected").size(), 15u);
}

}  // namespace
}  // namespace curation::testing
