// Size limits the server enforces on requests. Each is a flag of curation-server; the
// defaults suit preference data (a long chat transcript is well under 1 MiB).
#pragma once

#include <cstdint>

#include "curation/v1/curation.pb.h"

namespace curation::server {

struct Limits {
  int64_t max_message_bytes = 64 << 20;      // one gRPC message, either direction
  int64_t max_records_per_request = 10'000;  // examples in one ingest message
  int64_t max_text_bytes = 1 << 20;          // one prompt or completion
  int64_t max_id_bytes = 256;
  int64_t max_metadata_entries = 64;
  int64_t max_metadata_key_bytes = 128;
  int64_t max_metadata_value_bytes = 4096;
  int64_t max_client_dim = 8192;
  int64_t max_ids_per_get = 1000;
  int64_t max_page_size = 1000;
  // Not a limit: the encoding CreateDataset gives a dataset that names none
  // (--default-vector-encoding).
  v1::EmbeddingConfig::Encoding default_encoding = v1::EmbeddingConfig::ENCODING_FLOAT16;
};

}  // namespace curation::server
