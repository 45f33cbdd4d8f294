// What ExportSelection sends, without the transport: the training records a selected item
// becomes, and the byte-sized messages they are cut into.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "curation/v1/curation.pb.h"

namespace curation::server {

// The records of one selected item: TRL, one per pair; KTO, a pair's two completions for
// PAIR units (chosen true, then rejected false), else the item's side, or the unpaired
// example itself. `format` is TRL or KTO, already checked against the units.
std::vector<v1::ExportedRecord> ExportRecords(const v1::Example& example,
                                              const v1::SelectedItem& item, v1::ExportFormat format,
                                              bool pair_units);

// Cuts records into messages of at most `budget_bytes` of records (not a record count: a few
// records of megabyte texts would otherwise make one message over --max-message-bytes) and
// writes each through `write`, with `sent` and `total` filled in. Every write's result counts,
// the last one's too: a stream that broke is not an export that succeeded.
class ExportBatcher {
 public:
  // `write` returns false when the stream is broken; `cancelled` tells a client that left
  // from one whose stream failed.
  ExportBatcher(int64_t budget_bytes, int64_t total,
                std::function<bool(const v1::ExportSelectionResponse&)> write,
                std::function<bool()> cancelled);
  // RESOURCE_EXHAUSTED if the record alone is over the budget; CANCELLED or UNAVAILABLE if a
  // write failed.
  absl::Status Add(v1::ExportedRecord record);
  // Writes what is left (one empty message for an empty export).
  absl::Status Finish();

 private:
  absl::Status Flush();

  const int64_t budget_;
  const int64_t total_;
  std::function<bool(const v1::ExportSelectionResponse&)> write_;
  std::function<bool()> cancelled_;
  v1::ExportSelectionResponse message_;
  int64_t message_bytes_ = 0;
  int64_t sent_ = 0;
};

}  // namespace curation::server
