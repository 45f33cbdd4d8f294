// Reads preference-data files (the CLI's `ingest` input) as a stream of Records.
//
// Containers, detected from the bytes rather than the file name:
//   - JSON Lines, one object a line (blank lines are ignored);
//   - one JSON array of objects (PandaLM's test set), when the first non-space character is '[';
//   - either of the two gzip-compressed (magic bytes 1f 8b; concatenated members are read too).
//
// Record formats, detected per object from its fields:
//   - TRL:       {prompt, chosen, rejected} as strings, or as lists of {role, content} messages
//                (conversational form; without "prompt", the messages chosen and rejected share
//                at the start become the prompt). Messages are joined as "role: content" lines.
//   - Anthropic HH: {chosen, rejected} full "\n\nHuman: ...\n\nAssistant: ..." transcripts; the
//                prompt is their shared prefix through the last shared "\n\nAssistant:".
//   - KTO:       {prompt, completion, label}, label a bool or "desirable"/"undesirable"/
//                "true"/"false"; an unpaired record.
//   - PandaLM:   {instruction, input, response1, response2, annotator1..3}; a 2-of-3 majority
//                for one response decides chosen/rejected. Ties and split votes are not
//                preferences, so such records are skipped and counted, never returned.
// Any record may carry "id" (string or integer), "chosen_embedding", "rejected_embedding" and
// "embedding" (arrays of numbers). Every other top-level string, number or bool field lands in
// Record::metadata, stringified.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace curation::formats {

struct Record {
  bool is_pair = true;
  std::string id;  // the client's id, "" when the record has none
  std::string prompt;
  std::string chosen, rejected;   // set when is_pair
  std::string completion;         // set when !is_pair
  std::optional<bool> desirable;  // the unpaired label; true = desirable
  std::map<std::string, std::string> metadata;
  std::vector<float> chosen_embedding, rejected_embedding, embedding;  // empty when absent
};

class ByteSource;

// Streams records from one file. Not thread-safe; use one reader per thread.
class RecordReader {
 public:
  // Opens `path` and sniffs its container. Returns NotFound if the file does not exist and
  // InvalidArgument if it is neither JSON Lines nor a JSON array (judged by its first
  // non-space character). An empty file opens fine and yields no records.
  static absl::StatusOr<std::unique_ptr<RecordReader>> Open(const std::string& path);

  // Reads `data` exactly as Open reads a file with those bytes (same containers, formats,
  // statuses), naming it `name` in messages; for fuzzing and tests, which then need no file.
  // The data is handed over `piece_bytes` (>= 1) at a time, as a file is read a chunk at a
  // time, so that small inputs can reach the code paths of records and gzip members that
  // straddle chunk boundaries. Never NotFound.
  static absl::StatusOr<std::unique_ptr<RecordReader>> OpenBytes(std::string name, std::string data,
                                                                 size_t piece_bytes = 1 << 16);

  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // Stores the next record in *out (overwriting all of it) and returns true; returns false at
  // the end of the file. A record that cannot be read (bad JSON, unknown shape, wrong field
  // type) returns InvalidArgument naming "file:line" (or "file: element N") and the reason;
  // calling Next again continues with the following record, so the caller decides whether to
  // stop. Damage to the container itself (truncated gzip, unterminated array, read error) is
  // returned as DataLoss or Internal and every later call returns the same status.
  absl::StatusOr<bool> Next(Record* out);

  // The 1-based line (JSON Lines) or element number (JSON array) of the record last read,
  // whether returned, failed or skipped; 0 before the first call to Next.
  int64_t line() const { return line_; }

  // Bytes of the file as stored (compressed, for gzip) read so far, and the file's size. Read
  // ahead is buffered, so bytes_consumed() runs a little ahead of the records returned; meant
  // for progress bars.
  int64_t bytes_consumed() const;
  int64_t total_bytes() const;

  // Records left out on purpose (not errors), in total and by reason, e.g. "pandalm_tie".
  int64_t skipped() const { return skipped_; }
  const std::map<std::string, int64_t>& skipped_by_reason() const { return skipped_by_reason_; }

 private:
  RecordReader(std::string path, std::unique_ptr<ByteSource> source, bool is_array);
  // Open's second half, shared with OpenBytes: starts `source` and sniffs the container.
  static absl::StatusOr<std::unique_ptr<RecordReader>> FromSource(
      std::string path, std::unique_ptr<ByteSource> source);

  // Reads the next raw JSON text (a line or an array element) into *text; false at the end.
  absl::StatusOr<bool> NextText(std::string* text);
  absl::StatusOr<bool> NextLine(std::string* text);
  // After the array's ']': false at the end of the input, INVALID_ARGUMENT at anything but
  // whitespace.
  absl::StatusOr<bool> AfterArray();
  absl::StatusOr<bool> NextElement(std::string* text);
  // Makes sure buf_ holds at least one byte past pos_ if the file has any; false at the end.
  absl::StatusOr<bool> Fill();
  std::string Where() const;

  std::string path_;
  std::unique_ptr<ByteSource> source_;
  bool is_array_;
  std::string buf_;  // decompressed bytes; [pos_, size) not yet consumed
  size_t pos_ = 0;
  int64_t line_ = 0;
  int64_t text_line_ = 1;  // physical line of the file at pos_, for array error messages
  int64_t element_line_ = 0;
  bool array_started_ = false;
  bool array_done_ = false;
  absl::Status sticky_;  // a container error, returned by every later Next
  int64_t skipped_ = 0;
  std::map<std::string, int64_t> skipped_by_reason_;
};

}  // namespace curation::formats
