// libFuzzer target for request validation (server/validation.h): the bytes are parsed as an
// IngestExamplesRequest and as a CreateDatasetRequest, as the server would receive them, and
// every example is checked against fixed dataset configurations under the default limits and
// under tight ones (so that short inputs reach every size check).
//
// Beyond "no crash, no sanitizer report", each verdict is checked against the contract in
// validation.h and the API: an error names a field under the path the caller gave, and an
// example or dataset that passes really satisfies every documented rule, re-derived here
// independently. A violation aborts, which libFuzzer reports as a crash with the input.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "curation/v1/curation.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "server/limits.h"
#include "server/validation.h"

namespace curation::server {
namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "validation_fuzzer: contract violated: %s\n", what.c_str());
  std::abort();
}

bool Blank(const std::string& s) { return s.find_first_not_of(" \t\n\r") == std::string::npos; }

bool TextOk(const std::string& s, const Limits& limits) {
  return !Blank(s) && static_cast<int64_t>(s.size()) <= limits.max_text_bytes;
}

bool VectorOk(const google::protobuf::RepeatedField<float>& v, const v1::EmbeddingConfig& c) {
  if (c.source() != v1::EmbeddingConfig::SOURCE_CLIENT) return v.empty();
  if (v.size() != c.dim()) return false;
  for (float x : v) {
    // Finite and within the documented magnitude (README, "Examples": |x| <= 1e6).
    if (!std::isfinite(x) || std::fabs(x) > 1e6f) return false;
  }
  return true;
}

// What CheckExample must have enforced for `e` to pass into `d`.
bool ExampleOk(const v1::Example& e, const v1::Dataset& d, const Limits& limits) {
  if (static_cast<int64_t>(e.id().size()) > limits.max_id_bytes) return false;
  for (unsigned char c : e.id()) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  if (e.metadata_size() > limits.max_metadata_entries) return false;
  for (const auto& [key, value] : e.metadata()) {
    if (key.empty() || static_cast<int64_t>(key.size()) > limits.max_metadata_key_bytes) {
      return false;
    }
    if (static_cast<int64_t>(value.size()) > limits.max_metadata_value_bytes) return false;
  }
  if (d.kind() == v1::DATASET_KIND_PAIRS) {
    if (!e.has_pair()) return false;
    const v1::PreferencePair& p = e.pair();
    return TextOk(p.prompt(), limits) && TextOk(p.chosen(), limits) &&
           TextOk(p.rejected(), limits) && p.chosen() != p.rejected() &&
           VectorOk(p.chosen_embedding(), d.embedding()) &&
           VectorOk(p.rejected_embedding(), d.embedding());
  }
  if (!e.has_unpaired()) return false;
  const v1::UnpairedExample& u = e.unpaired();
  return TextOk(u.prompt(), limits) && TextOk(u.completion(), limits) &&
         (u.label() == v1::LABEL_DESIRABLE || u.label() == v1::LABEL_UNDESIRABLE) &&
         VectorOk(u.embedding(), d.embedding());
}

bool NameOk(const std::string& name) {
  if (name.empty() || name.size() > 64 || !absl::ascii_isalnum(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// What CheckNewDataset must have enforced for `d` to pass.
bool DatasetOk(const v1::Dataset& d, const Limits& limits) {
  if (!NameOk(d.name()) || !v1::DatasetKind_IsValid(d.kind())) return false;
  if (d.description().size() > 4096) return false;
  const v1::EmbeddingConfig& e = d.embedding();
  if (!v1::EmbeddingConfig::Encoding_IsValid(e.encoding())) return false;
  switch (e.source()) {
    case v1::EmbeddingConfig::SOURCE_UNSPECIFIED:
    case v1::EmbeddingConfig::SOURCE_BUILTIN:
      if (e.dim() != 0 || e.projection().dim() != 0) return false;
      break;
    case v1::EmbeddingConfig::SOURCE_CLIENT:
      if (e.dim() < 1 || e.dim() > limits.max_client_dim) return false;
      if (e.projection().dim() != 0 &&
          (e.projection().dim() < 1 || e.projection().dim() >= e.dim())) {
        return false;
      }
      break;
    default:
      return false;
  }
  return e.projection().dim() != 0 || !e.projection().keep_original();
}

void CheckError(const std::optional<FieldError>& error, absl::string_view prefix) {
  if (!error.has_value()) return;
  if (!absl::StartsWith(error->field, prefix)) {
    Fail(absl::StrCat("field \"", error->field, "\" is not under \"", prefix, "\""));
  }
  if (error->reason.empty()) Fail(absl::StrCat("empty reason for ", error->field));
  const absl::Status status = InvalidField(error->field, error->reason);
  if (status.code() != absl::StatusCode::kInvalidArgument ||
      !absl::StartsWith(status.message(), error->field)) {
    Fail(absl::StrCat("InvalidField gave ", status.ToString()));
  }
}

struct Fixture {
  std::vector<v1::Dataset> datasets;
  std::vector<Limits> limits;
};

const Fixture& GetFixture() {
  static const Fixture* fixture = [] {
    auto* f = new Fixture;
    for (v1::DatasetKind kind : {v1::DATASET_KIND_PAIRS, v1::DATASET_KIND_UNPAIRED}) {
      for (bool client : {false, true}) {
        v1::Dataset d;
        d.set_name(absl::StrCat("fuzz-", kind, "-", client));
        d.set_kind(kind);
        // As the server stores them: built-in datasets carry the embedder's dimension.
        d.mutable_embedding()->set_source(client ? v1::EmbeddingConfig::SOURCE_CLIENT
                                                 : v1::EmbeddingConfig::SOURCE_BUILTIN);
        d.mutable_embedding()->set_dim(client ? 4 : 256);
        f->datasets.push_back(d);
      }
    }
    f->limits.push_back(Limits{});
    Limits tight;
    tight.max_text_bytes = 32;
    tight.max_id_bytes = 8;
    tight.max_metadata_entries = 2;
    tight.max_metadata_key_bytes = 4;
    tight.max_metadata_value_bytes = 8;
    tight.max_client_dim = 16;
    f->limits.push_back(tight);
    return f;
  }();
  return *fixture;
}

}  // namespace
}  // namespace curation::server

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Invalid UTF-8 in a proto3 string makes parsing fail with an ERROR log line per input;
  // the failure is what matters, the log only drowns the fuzzer's output.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace curation;
  using namespace curation::server;
  const Fixture& fixture = GetFixture();
  const int n = static_cast<int>(size);

  v1::IngestExamplesRequest ingest;
  if (ingest.ParseFromArray(data, n)) {
    for (const Limits& limits : fixture.limits) {
      for (const v1::Dataset& dataset : fixture.datasets) {
        for (int i = 0; i < ingest.examples_size(); ++i) {
          const std::string path = absl::StrCat("examples[", i, "]");
          const v1::Example& example = ingest.examples(i);
          std::optional<FieldError> error = CheckExample(example, dataset, limits, path);
          CheckError(error, path);
          if (error.has_value() == ExampleOk(example, dataset, limits)) {
            Fail(absl::StrCat(path, " into ", dataset.name(), ": CheckExample says ",
                              error.has_value() ? error->field + ": " + error->reason : "ok",
                              " for ", example.ShortDebugString()));
          }
        }
      }
    }
    CheckError(CheckDatasetName("dataset", ingest.dataset()), "dataset");
  }

  v1::CreateDatasetRequest create;
  if (create.ParseFromArray(data, n)) {
    for (const Limits& limits : fixture.limits) {
      std::optional<FieldError> error = CheckNewDataset(create.dataset(), limits);
      CheckError(error, "dataset.");
      if (error.has_value() == DatasetOk(create.dataset(), limits)) {
        Fail(absl::StrCat("CheckNewDataset says ",
                          error.has_value() ? error->field + ": " + error->reason : "ok", " for ",
                          create.dataset().ShortDebugString()));
      }
    }
    const bool name_ok = !CheckDatasetName("name", create.dataset().name()).has_value();
    if (name_ok != NameOk(create.dataset().name())) {
      Fail(absl::StrCat("CheckDatasetName disagrees on \"", create.dataset().name(), "\""));
    }
  }
  return 0;
}
