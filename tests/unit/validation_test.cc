// Request validation without a server: each rule names the exact field.
#include "server/validation.h"

#include <gtest/gtest.h>

#include <cmath>

namespace curation::server {
namespace {

v1::Dataset Pairs(int client_dim) {
  v1::Dataset d;
  d.set_name("d");
  d.set_kind(v1::DATASET_KIND_PAIRS);
  d.mutable_embedding()->set_source(client_dim ? v1::EmbeddingConfig::SOURCE_CLIENT
                                               : v1::EmbeddingConfig::SOURCE_BUILTIN);
  d.mutable_embedding()->set_dim(client_dim ? client_dim : 512);
  return d;
}

v1::Example Pair() {
  v1::Example e;
  e.mutable_pair()->set_prompt("Why is the sky blue?");
  e.mutable_pair()->set_chosen("Rayleigh scattering.");
  e.mutable_pair()->set_rejected("Because it is.");
  return e;
}

std::string FieldOf(const v1::Example& e, const v1::Dataset& d, const Limits& limits = {}) {
  auto error = CheckExample(e, d, limits, "examples[4]");
  return error ? error->field : "";
}

TEST(ValidationTest, AcceptsAGoodPair) { EXPECT_EQ(FieldOf(Pair(), Pairs(0)), ""); }

TEST(ValidationTest, NamesTheOffendingField) {
  v1::Example e = Pair();
  e.mutable_pair()->set_prompt(" \t\n");
  EXPECT_EQ(FieldOf(e, Pairs(0)), "examples[4].pair.prompt");
  e = Pair();
  Limits small;
  small.max_text_bytes = 10;
  EXPECT_EQ(FieldOf(e, Pairs(0), small), "examples[4].pair.prompt");
  e = Pair();
  e.set_id("bad\nid");
  EXPECT_EQ(FieldOf(e, Pairs(0)), "examples[4].id");
  e = Pair();
  (*e.mutable_metadata())[""] = "x";
  EXPECT_EQ(FieldOf(e, Pairs(0)), "examples[4].metadata[\"\"]");
}

TEST(ValidationTest, VectorsMustMatchTheDataset) {
  v1::Example e = Pair();
  EXPECT_EQ(FieldOf(e, Pairs(2)), "examples[4].pair.chosen_embedding");
  e.mutable_pair()->add_chosen_embedding(1);
  e.mutable_pair()->add_chosen_embedding(2);
  e.mutable_pair()->add_rejected_embedding(1);
  e.mutable_pair()->add_rejected_embedding(INFINITY);
  EXPECT_EQ(FieldOf(e, Pairs(2)), "examples[4].pair.rejected_embedding[1]");
  e.mutable_pair()->set_rejected_embedding(1, 0.5f);
  EXPECT_EQ(FieldOf(e, Pairs(2)), "");
  // The same vectors are refused where the server embeds.
  EXPECT_EQ(FieldOf(e, Pairs(0)), "examples[4].pair.chosen_embedding");
}

TEST(ValidationTest, UnpairedNeedsALabel) {
  v1::Dataset d = Pairs(0);
  d.set_kind(v1::DATASET_KIND_UNPAIRED);
  v1::Example e;
  e.mutable_unpaired()->set_prompt("p");
  e.mutable_unpaired()->set_completion("c");
  EXPECT_EQ(FieldOf(e, d), "examples[4].unpaired.label");
  e.mutable_unpaired()->set_label(v1::LABEL_UNDESIRABLE);
  EXPECT_EQ(FieldOf(e, d), "");
  EXPECT_EQ(FieldOf(Pair(), d), "examples[4].unpaired");
}

TEST(ValidationTest, DatasetNames) {
  EXPECT_FALSE(CheckDatasetName("name", "hh-rlhf_v2.1").has_value());
  EXPECT_TRUE(CheckDatasetName("name", "").has_value());
  EXPECT_TRUE(CheckDatasetName("name", "-x").has_value());
  EXPECT_TRUE(CheckDatasetName("name", "a/b").has_value());
  EXPECT_TRUE(CheckDatasetName("name", std::string(65, 'a')).has_value());
}

TEST(ValidationTest, HugeFiniteVectorComponentsAreRefusedByPath) {
  // 3e38 is finite, yet the pair mean (chosen + rejected) / 2 overflows to infinity.
  v1::Example e = Pair();
  for (float x : {0.5f, 3e38f}) e.mutable_pair()->add_chosen_embedding(x);
  for (float x : {0.5f, 0.25f}) e.mutable_pair()->add_rejected_embedding(x);
  auto error = CheckExample(e, Pairs(2), Limits{}, "examples[4]");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->field, "examples[4].pair.chosen_embedding[1]");
  EXPECT_NE(error->reason.find("outside [-1e+06, 1e+06]"), std::string::npos) << error->reason;
  e.mutable_pair()->set_chosen_embedding(1, -kMaxEmbeddingMagnitude);  // the bound itself is in
  EXPECT_EQ(FieldOf(e, Pairs(2)), "");
  e.mutable_pair()->set_rejected_embedding(0, -1.5e6f);
  EXPECT_EQ(FieldOf(e, Pairs(2)), "examples[4].pair.rejected_embedding[0]");
}

TEST(ValidationTest, RequestIdsAreBounded) {
  EXPECT_FALSE(CheckRequestId("id", std::string(256, 'a'), 256).has_value());
  auto error = CheckRequestId("selection_id", std::string(257, 'a'), 256);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->field, "selection_id");
  EXPECT_EQ(error->reason, "is 257 bytes; at most 256 bytes");
  EXPECT_EQ(CheckRequestId("ids[3]", "", 256)->reason, "required");
}

}  // namespace
}  // namespace curation::server
