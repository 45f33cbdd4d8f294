// Building requests for the integration tests from the bundled real samples, and reading
// what the server stored.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "curation/v1/curation.pb.h"
#include "formats/record_reader.h"
#include "tests/integration/server_process.h"

namespace curation::testing {

// The first `limit` pairs of the bundled Anthropic HH sample, as API examples.
inline std::vector<v1::Example> HhPairs(int limit) {
  auto reader = formats::RecordReader::Open(TestDataPath("hh-rlhf-harmless-sample.jsonl.gz"));
  if (!reader.ok()) throw std::runtime_error(std::string(reader.status().message()));
  std::vector<v1::Example> out;
  formats::Record r;
  while (static_cast<int>(out.size()) < limit) {
    auto more = (*reader)->Next(&r);
    if (!more.ok()) throw std::runtime_error(std::string(more.status().message()));
    if (!*more) break;
    // The real file holds a few pairs with an empty answer; the server rightly rejects them,
    // and tests that count acceptances want only valid records.
    if (r.chosen.find_first_not_of(" \n") == std::string::npos ||
        r.rejected.find_first_not_of(" \n") == std::string::npos || r.chosen == r.rejected) {
      continue;
    }
    v1::Example e;
    e.mutable_pair()->set_prompt(r.prompt);
    e.mutable_pair()->set_chosen(r.chosen);
    e.mutable_pair()->set_rejected(r.rejected);
    out.push_back(std::move(e));
  }
  return out;
}

inline v1::Dataset MakeDataset(const std::string& name, v1::DatasetKind kind, int client_dim) {
  v1::Dataset d;
  d.set_name(name);
  d.set_kind(kind);
  if (client_dim > 0) {
    d.mutable_embedding()->set_source(v1::EmbeddingConfig::SOURCE_CLIENT);
    d.mutable_embedding()->set_dim(client_dim);
  }
  return d;
}

// The examples `ids` of `dataset` with their vectors (GetExamples with include_embeddings).
inline std::vector<v1::Example> ReadWithVectors(v1::CurationService::Stub& stub,
                                                const std::string& dataset,
                                                const std::vector<std::string>& ids) {
  v1::GetExamplesRequest request;
  request.set_dataset(dataset);
  for (const auto& id : ids) request.add_ids(id);
  request.set_include_embeddings(true);
  v1::GetExamplesResponse reply;
  grpc::ClientContext context;
  const grpc::Status s = stub.GetExamples(&context, request, &reply);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return {reply.examples().begin(), reply.examples().end()};
}

}  // namespace curation::testing
