// Checks of client input that need no storage: every problem comes back with the path of the
// offending field, so a client can point at the exact record and field.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status.h"
#include "curation/v1/curation.pb.h"
#include "server/limits.h"

namespace curation::server {

// One problem with one field.
struct FieldError {
  std::string field;  // e.g. "examples[3].pair.chosen"
  std::string reason;
};

// A List call's page size: 0 means 100, larger than `max` means `max`; INVALID_ARGUMENT
// "page_size" if negative.
absl::StatusOr<int> PageSize(int32_t requested, int64_t max);

// Dataset names: 1..64 characters of [A-Za-z0-9._-], starting with a letter or digit.
std::optional<FieldError> CheckDatasetName(absl::string_view field, absl::string_view name);

// Ids a caller names (example ids, selection ids): required, at most `max_bytes` bytes, so
// that no caller-sized string reaches a lookup, an error message or a log line.
std::optional<FieldError> CheckRequestId(absl::string_view field, absl::string_view id,
                                         int64_t max_bytes);

// The largest magnitude a client-supplied vector component may have. Selection methods sum
// and square components (a pair's mean, squared distances over up to 8192 dimensions); with
// |x| <= 1e6 every such sum stays far inside float range, while 3e38, though finite, makes
// the pair mean overflow to infinity. Real embeddings are orders of magnitude smaller.
inline constexpr float kMaxEmbeddingMagnitude = 1e6f;

// Checks a CreateDataset request's dataset (name, kind, embedding config, description).
std::optional<FieldError> CheckNewDataset(const v1::Dataset& dataset, const Limits& limits);

// Checks one example against the dataset it goes into. `path` prefixes the field paths of
// the error, e.g. "examples[3]".
std::optional<FieldError> CheckExample(const v1::Example& example, const v1::Dataset& dataset,
                                       const Limits& limits, absl::string_view path);

}  // namespace curation::server
