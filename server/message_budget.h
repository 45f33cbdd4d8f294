// How much of one gRPC message a reply may fill. Replies that gather records (GetExamples,
// ExportSelection) stop at this many bytes of payload and go on in a later page or message,
// so that no reply a client asked for legitimately fails on --max-message-bytes, and none
// costs the server more memory than one message.
#pragma once

#include <algorithm>
#include <cstdint>

#include "server/limits.h"

namespace curation::server {

// Room left for what is counted only roughly: fields besides the records, and the framing
// of each record (tag and length) the callers add per record.
inline constexpr int64_t kMessageHeadroomBytes = 64 << 10;

inline int64_t ReplyBudgetBytes(const Limits& limits) {
  return std::max<int64_t>(limits.max_message_bytes - kMessageHeadroomBytes,
                           limits.max_message_bytes / 2);
}

// Bytes a submessage of `size` bytes adds to a repeated field: its tag, its length varint
// (at most 5 bytes below 4 GiB) and itself.
inline int64_t EmbeddedBytes(int64_t size) { return 1 + 5 + size; }

}  // namespace curation::server
