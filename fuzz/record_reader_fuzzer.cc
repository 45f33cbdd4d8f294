// libFuzzer target for the file readers (formats/record_reader.h): the bytes are a file's
// content (JSON Lines, a JSON array, or either gzip-compressed) and every record is read.
//
// Each input is read twice, once in 64 KiB chunks as a file is and once in small pieces, and
// both reads must agree record for record and status for status: this is how short inputs
// reach the code for lines, array elements and gzip members that straddle chunk boundaries.
// Beyond sanitizer reports, the contract of RecordReader::Next is checked: no exception
// escapes, an unreadable record never stops the reader from moving on, container damage is
// sticky, line() never goes back, and records are internally consistent.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "formats/record_reader.h"

namespace curation::formats {
namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "record_reader_fuzzer: contract violated: %s\n", what.c_str());
  std::abort();
}

std::string Floats(const std::vector<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) Fail("a vector holds a non-finite value");
  }
  return absl::StrJoin(v, ",");
}

// A record as one comparable string, after checking that its fields fit its kind.
std::string Describe(const Record& r) {
  if (r.is_pair && (!r.completion.empty() || r.desirable.has_value())) {
    Fail("a pair carries an unpaired record's fields");
  }
  if (!r.is_pair && (!r.chosen.empty() || !r.rejected.empty() || !r.desirable.has_value())) {
    Fail("an unpaired record carries a pair's fields or lacks its label");
  }
  std::string out =
      absl::StrCat(r.is_pair, "|", r.id, "|", r.prompt, "|", r.chosen, "|", r.rejected, "|",
                   r.completion, "|", r.desirable.value_or(false), "|", Floats(r.chosen_embedding),
                   "|", Floats(r.rejected_embedding), "|", Floats(r.embedding));
  for (const auto& [k, v] : r.metadata) absl::StrAppend(&out, "|", k, "=", v);
  return out;
}

// Reads every record of `data` handed over `piece` bytes at a time; returns what was read,
// one entry per call of Next (and per skip reason), for comparison across piece sizes.
std::vector<std::string> ReadAll(const std::string& data, size_t piece) {
  std::vector<std::string> events;
  auto reader = RecordReader::OpenBytes("input", data, piece);
  if (!reader.ok()) {
    if (reader.status().code() == absl::StatusCode::kNotFound) Fail("OpenBytes gave NotFound");
    events.push_back(reader.status().ToString());
    return events;
  }
  RecordReader& r = **reader;
  Record record;
  int64_t last_line = 0;
  // Every call of Next consumes at least one line or element, each at least one byte; past
  // that many calls the reader is looping. Gzip may inflate, so allow for its ratio.
  const size_t max_calls = 1100 * data.size() + 16;
  for (size_t calls = 0;; ++calls) {
    if (calls > max_calls) Fail("Next keeps returning without reaching the end");
    absl::StatusOr<bool> more = r.Next(&record);
    if (r.line() < last_line) Fail("line() went back");
    const bool advanced = r.line() > last_line;
    last_line = r.line();
    if (!more.ok()) {
      events.push_back(more.status().ToString());
      if (more.status().code() == absl::StatusCode::kInvalidArgument && advanced) continue;
      // Container damage (or an unusable array element) is sticky: the same status again.
      absl::StatusOr<bool> again = r.Next(&record);
      if (again.ok() || again.status() != more.status()) {
        Fail(absl::StrCat("status not sticky: ", more.status().ToString(), " then ",
                          again.ok() ? "ok" : again.status().ToString()));
      }
      break;
    }
    if (!*more) {
      absl::StatusOr<bool> again = r.Next(&record);
      if (!again.ok() || *again) Fail("Next after the end did not return false again");
      break;
    }
    events.push_back(Describe(record));
  }
  int64_t skipped = 0;
  for (const auto& [reason, count] : r.skipped_by_reason()) {
    events.push_back(absl::StrCat("skipped ", reason, " ", count));
    skipped += count;
  }
  if (skipped != r.skipped()) Fail("skipped() is not the sum of skipped_by_reason()");
  if (r.bytes_consumed() > r.total_bytes()) Fail("bytes_consumed() exceeds total_bytes()");
  return events;
}

}  // namespace
}  // namespace curation::formats

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using curation::formats::ReadAll;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string> whole = ReadAll(bytes, 1 << 16);
  // A piece size that varies with the input, so boundaries fall everywhere over a run.
  const size_t piece = 1 + size % 7;
  const std::vector<std::string> pieces = ReadAll(bytes, piece);
  if (whole != pieces) {
    std::fprintf(stderr, "record_reader_fuzzer: reading in pieces of %zu bytes differs:\n", piece);
    for (size_t i = 0; i < std::max(whole.size(), pieces.size()); ++i) {
      std::fprintf(stderr, "  [%zu] %s\n   vs %s\n", i, i < whole.size() ? whole[i].c_str() : "-",
                   i < pieces.size() ? pieces[i].c_str() : "-");
    }
    std::abort();
  }
  return 0;
}
