#include "server/export_stream.h"

#include "absl/strings/str_cat.h"
#include "server/message_budget.h"

namespace curation::server {

std::vector<v1::ExportedRecord> ExportRecords(const v1::Example& ex, const v1::SelectedItem& item,
                                              v1::ExportFormat format, bool pair_units) {
  std::vector<v1::ExportedRecord> out;
  auto add = [&](const std::string* completion, bool label) {
    v1::ExportedRecord& r = out.emplace_back();
    r.set_id(ex.id());
    r.mutable_metadata()->insert(ex.metadata().begin(), ex.metadata().end());
    if (format == v1::EXPORT_FORMAT_TRL) {
      r.set_prompt(ex.pair().prompt());
      r.set_chosen(ex.pair().chosen());
      r.set_rejected(ex.pair().rejected());
    } else {
      r.set_prompt(ex.has_pair() ? ex.pair().prompt() : ex.unpaired().prompt());
      r.set_completion(*completion);
      r.set_label(label);
    }
  };
  if (format == v1::EXPORT_FORMAT_TRL) {
    add(nullptr, false);
  } else if (ex.has_unpaired()) {
    add(&ex.unpaired().completion(), ex.unpaired().label() == v1::LABEL_DESIRABLE);
  } else if (pair_units) {
    add(&ex.pair().chosen(), true);
    add(&ex.pair().rejected(), false);
  } else if (item.side() == v1::SIDE_REJECTED) {
    add(&ex.pair().rejected(), false);
  } else {
    add(&ex.pair().chosen(), true);
  }
  return out;
}

ExportBatcher::ExportBatcher(int64_t budget_bytes, int64_t total,
                             std::function<bool(const v1::ExportSelectionResponse&)> write,
                             std::function<bool()> cancelled)
    : budget_(budget_bytes),
      total_(total),
      write_(std::move(write)),
      cancelled_(std::move(cancelled)) {}

absl::Status ExportBatcher::Flush() {
  const int64_t delivered = sent_;
  sent_ += message_.records_size();
  message_.set_sent(sent_);
  message_.set_total(total_);
  const bool ok = write_(message_);
  message_.Clear();
  message_bytes_ = 0;
  if (ok) return absl::OkStatus();
  if (cancelled_()) return absl::CancelledError("the client went away");
  return absl::UnavailableError(
      absl::StrCat("the export stream broke after ", delivered, " of ", total_, " records"));
}

absl::Status ExportBatcher::Add(v1::ExportedRecord record) {
  const int64_t size = EmbeddedBytes(static_cast<int64_t>(record.ByteSizeLong()));
  if (size > budget_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("record '", record.id().substr(0, 64), "' is ", size, " bytes, over the ",
                     budget_, " bytes one message may carry (--max-message-bytes)"));
  }
  if (message_.records_size() > 0 && message_bytes_ + size > budget_) {
    if (absl::Status s = Flush(); !s.ok()) return s;
  }
  *message_.add_records() = std::move(record);
  message_bytes_ += size;
  return absl::OkStatus();
}

absl::Status ExportBatcher::Finish() {
  if (message_.records_size() > 0 || sent_ == 0) return Flush();
  return absl::OkStatus();
}

}  // namespace curation::server
