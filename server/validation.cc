#include "server/validation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace curation::server {
namespace {

bool IsBlank(absl::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return true;
}

std::optional<FieldError> CheckText(std::string path, absl::string_view text,
                                    const Limits& limits) {
  if (IsBlank(text)) return FieldError{std::move(path), "must not be empty"};
  if (static_cast<int64_t>(text.size()) > limits.max_text_bytes) {
    return FieldError{std::move(path), absl::StrCat("is ", text.size(), " bytes; the limit is ",
                                                    limits.max_text_bytes)};
  }
  return std::nullopt;
}

std::optional<FieldError> CheckVector(std::string path,
                                      const google::protobuf::RepeatedField<float>& values,
                                      const v1::EmbeddingConfig& config) {
  if (config.source() != v1::EmbeddingConfig::SOURCE_CLIENT) {
    if (values.empty()) return std::nullopt;
    return FieldError{std::move(path), "this dataset uses the built-in embedder; send no vectors"};
  }
  if (values.size() != config.dim()) {
    return FieldError{
        std::move(path),
        absl::StrCat("has ", values.size(), " values; the dataset's dimension is ", config.dim())};
  }
  for (int i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return FieldError{absl::StrCat(path, "[", i, "]"), "must be finite (not NaN or infinity)"};
    }
    if (std::fabs(values[i]) > kMaxEmbeddingMagnitude) {
      return FieldError{absl::StrCat(path, "[", i, "]"),
                        absl::StrCat(values[i], " is outside [-", kMaxEmbeddingMagnitude, ", ",
                                     kMaxEmbeddingMagnitude, "]")};
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<int> PageSize(int32_t requested, int64_t max) {
  if (requested < 0) return InvalidField("page_size", "must not be negative");
  return requested == 0 ? 100 : static_cast<int>(std::min<int64_t>(requested, max));
}

std::optional<FieldError> CheckDatasetName(absl::string_view field, absl::string_view name) {
  if (name.empty()) return FieldError{std::string(field), "required"};
  if (name.size() > 64) return FieldError{std::string(field), "at most 64 characters"};
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return FieldError{std::string(field), "must start with a letter or digit"};
  for (char c : name) {
    if (!alnum(c) && c != '-' && c != '_' && c != '.') {
      return FieldError{std::string(field), "only letters, digits, '-', '_' and '.' are allowed"};
    }
  }
  return std::nullopt;
}

std::optional<FieldError> CheckRequestId(absl::string_view field, absl::string_view id,
                                         int64_t max_bytes) {
  if (id.empty()) return FieldError{std::string(field), "required"};
  if (static_cast<int64_t>(id.size()) > max_bytes) {
    return FieldError{std::string(field),
                      absl::StrCat("is ", id.size(), " bytes; at most ", max_bytes, " bytes")};
  }
  return std::nullopt;
}

std::optional<FieldError> CheckNewDataset(const v1::Dataset& dataset, const Limits& limits) {
  if (auto e = CheckDatasetName("dataset.name", dataset.name())) return e;
  if (!v1::DatasetKind_IsValid(dataset.kind())) {
    return FieldError{"dataset.kind", "unknown kind"};
  }
  const auto& embedding = dataset.embedding();
  switch (embedding.source()) {
    case v1::EmbeddingConfig::SOURCE_UNSPECIFIED:
    case v1::EmbeddingConfig::SOURCE_BUILTIN:
      if (embedding.dim() != 0) {
        return FieldError{"dataset.embedding.dim",
                          "is set by the server for the built-in embedder; leave it 0"};
      }
      break;
    case v1::EmbeddingConfig::SOURCE_CLIENT:
      if (embedding.dim() < 1 || embedding.dim() > limits.max_client_dim) {
        return FieldError{"dataset.embedding.dim",
                          absl::StrCat("must be between 1 and ", limits.max_client_dim,
                                       " for client-supplied vectors")};
      }
      break;
    default:
      return FieldError{"dataset.embedding.source", "unknown source"};
  }
  if (!v1::EmbeddingConfig::Encoding_IsValid(embedding.encoding())) {
    return FieldError{"dataset.embedding.encoding", "unknown encoding"};
  }
  if (const int32_t out = embedding.projection().dim(); out != 0) {
    if (embedding.source() != v1::EmbeddingConfig::SOURCE_CLIENT) {
      return FieldError{"dataset.embedding.projection.dim",
                        "only for client-supplied vectors (SOURCE_CLIENT)"};
    }
    if (out < 1 || out >= embedding.dim()) {
      return FieldError{"dataset.embedding.projection.dim",
                        absl::StrCat("must be between 1 and ", embedding.dim() - 1,
                                     " (below the vectors' dimension), or 0 for none")};
    }
  } else if (embedding.projection().keep_original()) {
    return FieldError{"dataset.embedding.projection.keep_original",
                      "needs a projection (projection.dim)"};
  }
  if (dataset.description().size() > 4096) {
    return FieldError{"dataset.description", "at most 4096 bytes"};
  }
  return std::nullopt;
}

std::optional<FieldError> CheckExample(const v1::Example& example, const v1::Dataset& dataset,
                                       const Limits& limits, absl::string_view path) {
  const std::string p(path);
  if (static_cast<int64_t>(example.id().size()) > limits.max_id_bytes) {
    return FieldError{p + ".id", absl::StrCat("at most ", limits.max_id_bytes, " bytes")};
  }
  for (unsigned char c : example.id()) {
    if (c < 0x20 || c == 0x7f) return FieldError{p + ".id", "must not contain control characters"};
  }
  if (static_cast<int64_t>(example.metadata_size()) > limits.max_metadata_entries) {
    return FieldError{p + ".metadata",
                      absl::StrCat("at most ", limits.max_metadata_entries, " entries")};
  }
  for (const auto& [key, value] : example.metadata()) {
    if (key.empty() || static_cast<int64_t>(key.size()) > limits.max_metadata_key_bytes) {
      return FieldError{
          absl::StrCat(p, ".metadata[\"", key.substr(0, 64), "\"]"),
          absl::StrCat("keys must be 1 to ", limits.max_metadata_key_bytes, " bytes")};
    }
    if (static_cast<int64_t>(value.size()) > limits.max_metadata_value_bytes) {
      return FieldError{
          absl::StrCat(p, ".metadata[\"", key, "\"]"),
          absl::StrCat("values are at most ", limits.max_metadata_value_bytes, " bytes")};
    }
  }

  const bool pairs = dataset.kind() == v1::DATASET_KIND_PAIRS;
  if (pairs) {
    if (!example.has_pair()) {
      return FieldError{p + ".pair", example.has_unpaired()
                                         ? "this dataset holds pairs; send pair, not unpaired"
                                         : "required"};
    }
    const auto& pair = example.pair();
    if (auto e = CheckText(p + ".pair.prompt", pair.prompt(), limits)) return e;
    if (auto e = CheckText(p + ".pair.chosen", pair.chosen(), limits)) return e;
    if (auto e = CheckText(p + ".pair.rejected", pair.rejected(), limits)) return e;
    if (pair.chosen() == pair.rejected()) {
      return FieldError{p + ".pair.rejected", "is identical to chosen; a pair needs two answers"};
    }
    if (auto e = CheckVector(p + ".pair.chosen_embedding", pair.chosen_embedding(),
                             dataset.embedding())) {
      return e;
    }
    return CheckVector(p + ".pair.rejected_embedding", pair.rejected_embedding(),
                       dataset.embedding());
  }
  if (!example.has_unpaired()) {
    return FieldError{p + ".unpaired", example.has_pair()
                                           ? "this dataset holds unpaired examples; send "
                                             "unpaired, not pair"
                                           : "required"};
  }
  const auto& u = example.unpaired();
  if (auto e = CheckText(p + ".unpaired.prompt", u.prompt(), limits)) return e;
  if (auto e = CheckText(p + ".unpaired.completion", u.completion(), limits)) return e;
  if (u.label() != v1::LABEL_DESIRABLE && u.label() != v1::LABEL_UNDESIRABLE) {
    return FieldError{p + ".unpaired.label", "must be LABEL_DESIRABLE or LABEL_UNDESIRABLE"};
  }
  return CheckVector(p + ".unpaired.embedding", u.embedding(), dataset.embedding());
}

}  // namespace curation::server
