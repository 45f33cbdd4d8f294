#include "formats/record_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace curation::formats {

using json = nlohmann::json;

// The file's bytes, decompressed when the file starts with gzip's magic bytes. Counts the
// stored bytes read so a progress bar can follow the compressed file. Never seeks, so pipes
// work too. Reads either a file or bytes held in memory; everything past ReadRaw is the same
// for both, so reading memory exercises the code that reads files.
class ByteSource {
 public:
  static constexpr size_t kChunk = 1 << 16;

  ByteSource(std::FILE* file, int64_t total) : file_(file), total_(total) {}
  ByteSource(std::string data, size_t piece_bytes)
      : total_(static_cast<int64_t>(data.size())),
        data_(std::move(data)),
        piece_bytes_(std::clamp<size_t>(piece_bytes, 1, kChunk)) {}
  ~ByteSource() {
    if (inflating_) inflateEnd(&zs_);
    if (file_ != nullptr) std::fclose(file_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  // Reads the first chunk and decides between plain and gzip. Call once, before Read.
  absl::Status Start() {
    // The gzip magic takes two bytes, and a read may return fewer (memory read in pieces).
    size_t n = 0;
    while (n < 2) {
      absl::StatusOr<size_t> got = ReadRaw(n);
      if (!got.ok()) return got.status();
      if (*got == 0) break;
      n += *got;
    }
    gzip_ = n >= 2 && static_cast<unsigned char>(in_[0]) == 0x1f &&
            static_cast<unsigned char>(in_[1]) == 0x8b;
    zs_.next_in = reinterpret_cast<Bytef*>(in_.data());
    zs_.avail_in = static_cast<uInt>(n);
    return absl::OkStatus();
  }

  int64_t consumed() const { return consumed_; }
  int64_t total() const { return total_; }

  // Appends some bytes to *out; returns false (and appends nothing) at the end of the data.
  absl::StatusOr<bool> Read(std::string* out) {
    if (!damage_.ok()) return damage_;
    while (true) {
      if (zs_.avail_in == 0) {
        absl::StatusOr<size_t> n = ReadRaw();
        if (!n.ok()) return n.status();
        if (*n == 0) {
          // A gzip file may end only between members.
          if (inflating_) return absl::DataLossError("truncated gzip stream");
          return false;
        }
        zs_.next_in = reinterpret_cast<Bytef*>(in_.data());
        zs_.avail_in = static_cast<uInt>(*n);
      }
      if (!gzip_) {
        out->append(reinterpret_cast<const char*>(zs_.next_in), zs_.avail_in);
        zs_.avail_in = 0;
        return true;
      }
      absl::StatusOr<size_t> produced = Inflate(out);
      if (!produced.ok()) return produced.status();
      if (*produced > 0) return true;
    }
  }

 private:
  // Reads raw bytes into in_ from `offset` on; returns how many (0 at the end).
  absl::StatusOr<size_t> ReadRaw(size_t offset = 0) {
    if (file_ == nullptr) {
      const size_t n = std::min({piece_bytes_, data_.size() - data_pos_, in_.size() - offset});
      std::memcpy(in_.data() + offset, data_.data() + data_pos_, n);
      data_pos_ += n;
      consumed_ += static_cast<int64_t>(n);
      return n;
    }
    size_t n = std::fread(in_.data() + offset, 1, in_.size() - offset, file_);
    if (n < in_.size() - offset && std::ferror(file_)) {
      return absl::InternalError(absl::StrCat("read failed: ", std::strerror(errno)));
    }
    consumed_ += static_cast<int64_t>(n);
    return n;
  }

  // Inflates until some output is produced or the input chunk runs out; returns the number of
  // bytes appended.
  absl::StatusOr<size_t> Inflate(std::string* out) {
    while (zs_.avail_in > 0) {
      if (!inflating_) {
        // Anything after a finished member must be another member, as `cat a.gz b.gz`
        // makes them.
        zs_.zalloc = Z_NULL;
        zs_.zfree = Z_NULL;
        zs_.opaque = Z_NULL;
        if (inflateInit2(&zs_, 15 + 16) != Z_OK) return absl::InternalError("inflateInit2 failed");
        inflating_ = true;
      }
      zs_.next_out = reinterpret_cast<Bytef*>(out_.data());
      zs_.avail_out = static_cast<uInt>(out_.size());
      int rc = inflate(&zs_, Z_NO_FLUSH);
      size_t produced = out_.size() - zs_.avail_out;
      out->append(out_.data(), produced);
      if (rc == Z_STREAM_END) {
        inflateEnd(&zs_);
        inflating_ = false;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        absl::Status damage = absl::DataLossError(
            absl::StrCat("corrupt gzip stream: ", zs_.msg != nullptr ? zs_.msg : "inflate failed"));
        if (produced == 0) return damage;
        // Hand over what was inflated before the damage first, as when the damage lies in a
        // later chunk of the file; otherwise whether the records before it are returned
        // would depend on how the file happens to be chunked.
        damage_ = damage;
        return produced;
      }
      if (produced > 0) return produced;
    }
    return 0;
  }

  std::FILE* file_ = nullptr;  // null when reading data_
  int64_t total_;
  std::string data_;
  size_t data_pos_ = 0;
  size_t piece_bytes_ = kChunk;
  bool gzip_ = false;
  int64_t consumed_ = 0;
  std::vector<char> in_ = std::vector<char>(kChunk);
  std::vector<char> out_ = std::vector<char>(kChunk);
  z_stream zs_{};
  bool inflating_ = false;
  absl::Status damage_;  // a corrupt stream found after inflating some output; sticky
};

namespace {

// A record that is well-formed but deliberately not returned.
struct Skip {
  std::string reason;
};

absl::Status FieldError(absl::string_view field, absl::string_view want, const json& got) {
  return absl::InvalidArgumentError(
      absl::StrCat("field \"", field, "\" must be ", want, ", got ", got.type_name()));
}

// Joins conversational messages the way a reader of the text would see them.
absl::StatusOr<std::string> JoinMessages(absl::string_view field, const json& messages,
                                         size_t begin = 0) {
  std::vector<std::string> lines;
  for (size_t i = begin; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object() || !m.contains("content") || !m["content"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "field \"", field, "\" message ", i, " must be an object with a string \"content\""));
    }
    std::string role = "user";
    if (auto it = m.find("role"); it != m.end() && it->is_string()) role = *it;
    lines.push_back(absl::StrCat(role, ": ", m["content"].get_ref<const std::string&>()));
  }
  return absl::StrJoin(lines, "\n");
}

// The field's value, or an error naming it when the record lacks it.
absl::StatusOr<const json*> Field(const json& obj, absl::string_view field) {
  auto it = obj.find(std::string(field));
  if (it == obj.end()) {
    return absl::InvalidArgumentError(absl::StrCat("missing field \"", field, "\""));
  }
  return &*it;
}

// A text field that TRL allows as a plain string or a list of messages.
absl::StatusOr<std::string> TextOrMessages(const json& obj, absl::string_view field) {
  absl::StatusOr<const json*> f = Field(obj, field);
  if (!f.ok()) return f.status();
  const json& v = **f;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) return JoinMessages(field, v);
  return FieldError(field, "a string or a list of messages", v);
}

absl::StatusOr<std::string> StringField(const json& obj, absl::string_view field) {
  absl::StatusOr<const json*> f = Field(obj, field);
  if (!f.ok()) return f.status();
  const json& v = **f;
  if (!v.is_string()) return FieldError(field, "a string", v);
  return v.get<std::string>();
}

absl::Status ReadEmbedding(const json& obj, absl::string_view field, std::vector<float>* out) {
  auto it = obj.find(std::string(field));
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) return FieldError(field, "an array of numbers", *it);
  out->reserve(it->size());
  for (const json& x : *it) {
    if (!x.is_number()) return FieldError(field, "an array of numbers", *it);
    const double v = x.get<double>();
    if (!(std::fabs(v) <= std::numeric_limits<float>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat("field \"", field, "\" holds ", v, ", out of float range"));
    }
    out->push_back(static_cast<float>(v));
  }
  return absl::OkStatus();
}

constexpr absl::string_view kAssistant = "\n\nAssistant:";

void TrimOneLeadingSpace(std::string* s) {
  if (!s->empty() && (*s)[0] == ' ') s->erase(0, 1);
}

absl::Status SplitHh(std::string chosen, std::string rejected, Record* out) {
  size_t cut = std::string::npos;
  size_t last = absl::string_view(chosen).rfind(kAssistant);
  if (last == std::string::npos) {
    return absl::InvalidArgumentError("HH transcript \"chosen\" has no \"\\n\\nAssistant:\" turn");
  }
  if (absl::StartsWith(rejected, absl::string_view(chosen).substr(0, last + kAssistant.size()))) {
    cut = last + kAssistant.size();
  } else {
    // The transcripts diverge before chosen's last turn: fall back to the last turn marker
    // inside their common prefix.
    size_t common = 0;
    while (common < chosen.size() && common < rejected.size() &&
           chosen[common] == rejected[common]) {
      ++common;
    }
    size_t p = absl::string_view(chosen).substr(0, common).rfind(kAssistant);
    if (p == std::string::npos) {
      return absl::InvalidArgumentError(
          "HH transcripts \"chosen\" and \"rejected\" share no prefix ending in "
          "\"\\n\\nAssistant:\"");
    }
    cut = p + kAssistant.size();
  }
  out->prompt = chosen.substr(0, cut);
  out->chosen = chosen.substr(cut);
  out->rejected = rejected.substr(cut);
  TrimOneLeadingSpace(&out->chosen);
  TrimOneLeadingSpace(&out->rejected);
  return absl::OkStatus();
}

absl::Status ReadTrl(const json& obj, Record* out) {
  const json& c = obj["chosen"];
  const json& r = obj["rejected"];
  if (!obj.contains("prompt") && c.is_array() && r.is_array()) {
    // TRL's implicit-prompt conversational form: the shared leading messages are the prompt.
    size_t shared = 0;
    while (shared + 1 < c.size() && shared + 1 < r.size() && c[shared] == r[shared]) ++shared;
    json head = json::array();
    for (size_t i = 0; i < shared; ++i) head.push_back(c[i]);
    absl::StatusOr<std::string> p = JoinMessages("chosen", head);
    absl::StatusOr<std::string> ch = JoinMessages("chosen", c, shared);
    absl::StatusOr<std::string> rj = JoinMessages("rejected", r, shared);
    if (!p.ok()) return p.status();
    if (!ch.ok()) return ch.status();
    if (!rj.ok()) return rj.status();
    out->prompt = *std::move(p);
    out->chosen = *std::move(ch);
    out->rejected = *std::move(rj);
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> p = TextOrMessages(obj, "prompt");
  if (!p.ok()) return p.status();
  absl::StatusOr<std::string> ch = TextOrMessages(obj, "chosen");
  if (!ch.ok()) return ch.status();
  absl::StatusOr<std::string> rj = TextOrMessages(obj, "rejected");
  if (!rj.ok()) return rj.status();
  out->prompt = *std::move(p);
  out->chosen = *std::move(ch);
  out->rejected = *std::move(rj);
  return absl::OkStatus();
}

absl::Status ReadKto(const json& obj, Record* out) {
  out->is_pair = false;
  absl::StatusOr<std::string> p = TextOrMessages(obj, "prompt");
  if (!p.ok()) return p.status();
  absl::StatusOr<std::string> c = TextOrMessages(obj, "completion");
  if (!c.ok()) return c.status();
  out->prompt = *std::move(p);
  out->completion = *std::move(c);
  const json& label = obj["label"];
  if (label.is_boolean()) {
    out->desirable = label.get<bool>();
  } else if (label.is_string()) {
    std::string l = absl::AsciiStrToLower(label.get<std::string>());
    if (l == "desirable" || l == "true") {
      out->desirable = true;
    } else if (l == "undesirable" || l == "false") {
      out->desirable = false;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "field \"label\" must be true/false or \"desirable\"/\"undesirable\", got \"",
          label.get<std::string>(), "\""));
    }
  } else {
    return FieldError("label", "a bool or \"desirable\"/\"undesirable\"", label);
  }
  return absl::OkStatus();
}

// PandaLM's responses are raw model outputs, and a few of them were stored as JSON scalars
// (the output "true" became the bool true); they are text all the same.
absl::StatusOr<std::string> ResponseField(const json& obj, absl::string_view field) {
  absl::StatusOr<const json*> f = Field(obj, field);
  if (!f.ok()) return f.status();
  const json& v = **f;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return std::string(v.get<bool>() ? "true" : "false");
  if (v.is_number()) return v.dump();
  return FieldError(field, "a string", v);
}

// Returns a Skip reason instead of a record when the annotators did not prefer one response.
absl::StatusOr<std::optional<Skip>> ReadPandaLm(const json& obj, Record* out) {
  absl::StatusOr<std::string> instruction = StringField(obj, "instruction");
  if (!instruction.ok()) return instruction.status();
  std::string input;
  if (auto it = obj.find("input"); it != obj.end() && !it->is_null()) {
    if (!it->is_string()) return FieldError("input", "a string", *it);
    input = it->get<std::string>();
  }
  absl::StatusOr<std::string> r1 = ResponseField(obj, "response1");
  if (!r1.ok()) return r1.status();
  absl::StatusOr<std::string> r2 = ResponseField(obj, "response2");
  if (!r2.ok()) return r2.status();

  int votes[3] = {0, 0, 0};  // tie, response1, response2
  int annotators = 0;
  for (int k = 1;; ++k) {
    std::string field = absl::StrCat("annotator", k);
    auto it = obj.find(field);
    if (it == obj.end()) break;
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 2) {
      return FieldError(field, "0, 1 or 2", *it);
    }
    ++votes[it->get<int64_t>()];
    ++annotators;
  }
  if (annotators == 0) {
    return absl::InvalidArgumentError("PandaLM record has no \"annotator1\" field");
  }
  // A strict majority; with three annotators, two agreeing.
  int winner = -1;
  for (int v = 0; v < 3; ++v) {
    if (2 * votes[v] > annotators) winner = v;
  }
  if (winner == -1) return Skip{"pandalm_no_majority"};
  if (winner == 0) return Skip{"pandalm_tie"};

  out->prompt = *instruction;
  if (!input.empty()) absl::StrAppend(&out->prompt, "\n\n", input);
  out->chosen = winner == 1 ? *r1 : *r2;
  out->rejected = winner == 1 ? *r2 : *r1;
  return std::nullopt;
}

std::string Stringify(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();  // numbers: integers exactly, floats in their shortest round-trip form
}

bool IsPandaLm(const json& obj) { return obj.contains("response1") && obj.contains("response2"); }

// Converts one parsed object into *out, or says why it is skipped.
absl::StatusOr<std::optional<Skip>> ParseObject(const json& obj, Record* out) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a JSON object, got ", obj.type_name()));
  }
  std::vector<absl::string_view> consumed = {"id", "chosen_embedding", "rejected_embedding",
                                             "embedding"};
  std::optional<Skip> skip;
  if (IsPandaLm(obj)) {
    absl::StatusOr<std::optional<Skip>> s = ReadPandaLm(obj, out);
    if (!s.ok()) return s.status();
    skip = *s;
    consumed.insert(consumed.end(), {"instruction", "input", "response1", "response2", "idx"});
  } else if (obj.contains("completion") && obj.contains("label")) {
    if (absl::Status s = ReadKto(obj, out); !s.ok()) return s;
    consumed.insert(consumed.end(), {"prompt", "completion", "label"});
  } else if (obj.contains("chosen") && obj.contains("rejected")) {
    const json& c = obj["chosen"];
    const json& r = obj["rejected"];
    if (obj.contains("prompt") || (c.is_array() && r.is_array())) {
      if (absl::Status s = ReadTrl(obj, out); !s.ok()) return s;
    } else {
      if (!c.is_string()) return FieldError("chosen", "a string", c);
      if (!r.is_string()) return FieldError("rejected", "a string", r);
      if (absl::Status s = SplitHh(c.get<std::string>(), r.get<std::string>(), out); !s.ok()) {
        return s;
      }
    }
    consumed.insert(consumed.end(), {"prompt", "chosen", "rejected"});
  } else {
    return absl::InvalidArgumentError(
        "unrecognised record: expected {prompt, chosen, rejected}, {chosen, rejected}, "
        "{prompt, completion, label} or PandaLM's {instruction, input, response1, response2, "
        "annotator1..3}");
  }
  if (skip.has_value()) return skip;

  if (auto it = obj.find("id"); it != obj.end() && !it->is_null()) {
    if (it->is_string()) {
      out->id = it->get<std::string>();
    } else if (it->is_number_integer()) {
      out->id = it->dump();
    } else {
      return FieldError("id", "a string or an integer", *it);
    }
  }
  for (absl::string_view f : {"chosen_embedding", "rejected_embedding", "embedding"}) {
    std::vector<float>* dst = f == "chosen_embedding"     ? &out->chosen_embedding
                              : f == "rejected_embedding" ? &out->rejected_embedding
                                                          : &out->embedding;
    if (absl::Status s = ReadEmbedding(obj, f, dst); !s.ok()) return s;
  }

  for (const auto& [key, value] : obj.items()) {
    bool is_consumed = false;
    for (absl::string_view c : consumed) is_consumed = is_consumed || key == c;
    if (IsPandaLm(obj) && absl::StartsWith(key, "annotator")) is_consumed = true;
    if (is_consumed || !(value.is_string() || value.is_number() || value.is_boolean())) continue;
    out->metadata[key] = Stringify(value);
  }
  if (IsPandaLm(obj)) {
    if (auto it = obj.find("idx"); it != obj.end() && !it->is_null()) {
      out->metadata["pandalm_idx"] = Stringify(*it);
    }
  }
  return std::nullopt;
}

absl::StatusOr<json> ParseJson(absl::string_view text) {
  // nlohmann reports the position and cause of a syntax error only through its exception;
  // it is caught right here and never crosses our API.
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // parse_error, or out_of_range for 1e999
    return absl::InvalidArgumentError(absl::StrCat("malformed JSON: ", e.what()));
  }
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

RecordReader::RecordReader(std::string path, std::unique_ptr<ByteSource> source, bool is_array)
    : path_(std::move(path)), source_(std::move(source)), is_array_(is_array) {}

RecordReader::~RecordReader() = default;

absl::StatusOr<std::unique_ptr<RecordReader>> RecordReader::Open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::string msg = absl::StrCat(path, ": ", std::strerror(errno));
    return errno == ENOENT ? absl::NotFoundError(msg) : absl::InvalidArgumentError(msg);
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    std::fclose(f);
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory"));
  }
  // Pipes and other special files have no size; progress is then unknown (0).
  uintmax_t size = std::filesystem::file_size(path, ec);
  return FromSource(path, std::make_unique<ByteSource>(f, ec ? 0 : static_cast<int64_t>(size)));
}

absl::StatusOr<std::unique_ptr<RecordReader>> RecordReader::OpenBytes(std::string name,
                                                                      std::string data,
                                                                      size_t piece_bytes) {
  return FromSource(std::move(name), std::make_unique<ByteSource>(std::move(data), piece_bytes));
}

absl::StatusOr<std::unique_ptr<RecordReader>> RecordReader::FromSource(
    std::string path, std::unique_ptr<ByteSource> source) {
  if (absl::Status s = source->Start(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  }

  // Sniff the container from the first non-space byte of the (decompressed) data, keeping
  // every byte read so JSON Lines numbering still starts at the file's first line.
  std::unique_ptr<RecordReader> reader(new RecordReader(path, std::move(source), false));
  std::string& buf = reader->buf_;
  size_t i = 0;
  // A UTF-8 byte-order mark is looked for only once three bytes are in: a first read may
  // return fewer (a gzip member of a byte or two) and split it.
  bool bom_known = false;
  while (true) {
    if (!bom_known && buf.size() >= 3) {
      bom_known = true;
      if (absl::StartsWith(buf, "\xEF\xBB\xBF")) i = 3;
    }
    if (bom_known) {
      while (i < buf.size() && IsSpace(buf[i])) ++i;
      if (i < buf.size()) break;
    }
    absl::StatusOr<bool> more = reader->source_->Read(&buf);
    if (!more.ok()) {
      return absl::Status(more.status().code(), absl::StrCat(path, ": ", more.status().message()));
    }
    if (!*more) break;
  }
  while (i < buf.size() && IsSpace(buf[i])) ++i;  // data of fewer than three bytes
  if (i < buf.size() && buf[i] == '[') {
    reader->is_array_ = true;
    reader->pos_ = i;
    reader->text_line_ = 1 + std::count(buf.begin(), buf.begin() + i, '\n');
  } else if (i < buf.size() && buf[i] != '{') {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not JSON Lines or a JSON array (first character '", std::string(1, buf[i]), "')"));
  }
  return reader;
}

int64_t RecordReader::bytes_consumed() const { return source_->consumed(); }
int64_t RecordReader::total_bytes() const { return source_->total(); }

std::string RecordReader::Where() const {
  if (is_array_) return absl::StrCat(path_, ": element ", line_, " (line ", element_line_, ")");
  return absl::StrCat(path_, ":", line_);
}

absl::StatusOr<bool> RecordReader::Fill() {
  if (pos_ < buf_.size()) return true;
  buf_.clear();
  pos_ = 0;
  while (buf_.empty()) {
    absl::StatusOr<bool> more = source_->Read(&buf_);
    if (!more.ok()) return more.status();
    if (!*more) return false;
  }
  return true;
}

absl::StatusOr<bool> RecordReader::NextLine(std::string* text) {
  text->clear();
  while (true) {
    absl::StatusOr<bool> more = Fill();
    if (!more.ok()) return more.status();
    if (!*more) return !text->empty();
    size_t nl = buf_.find('\n', pos_);
    if (nl == std::string::npos) {
      text->append(buf_, pos_, std::string::npos);
      pos_ = buf_.size();
      continue;
    }
    text->append(buf_, pos_, nl - pos_);
    pos_ = nl + 1;
    return true;
  }
}

absl::StatusOr<bool> RecordReader::NextElement(std::string* text) {
  text->clear();
  if (array_done_) return AfterArray();
  // Scans one element by bracket depth, minding strings, so elements stream without parsing
  // the whole array.
  int depth = 0;
  bool in_string = false, escaped = false, started = false;
  while (true) {
    absl::StatusOr<bool> more = Fill();
    if (!more.ok()) return more.status();
    if (!*more) return absl::DataLossError("unterminated JSON array");
    char c = buf_[pos_++];
    if (c == '\n') ++text_line_;
    if (!array_started_) {
      // Open() left pos_ on the '['.
      array_started_ = true;
      continue;
    }
    if (in_string) {
      text->push_back(c);
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (depth == 0 && (c == ',' || c == ']')) {
      if (c == ']') array_done_ = true;
      if (!started) {
        if (c == ']' && line_ == 0) return AfterArray();  // "[]"
        ++line_;
        element_line_ = text_line_;
        sticky_ = absl::InvalidArgumentError(absl::StrCat(Where(), ": empty array element"));
        return sticky_;
      }
      return true;
    }
    if (!started && IsSpace(c)) continue;
    if (!started) {
      started = true;
      element_line_ = text_line_;
    }
    text->push_back(c);
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

absl::StatusOr<bool> RecordReader::AfterArray() {
  // A file is one array; anything but whitespace after its ']' (a second array, a stray
  // record) would otherwise be dropped without a word.
  while (true) {
    absl::StatusOr<bool> more = Fill();
    if (!more.ok()) return more.status();
    if (!*more) return false;
    const char c = buf_[pos_++];
    if (c == '\n') ++text_line_;
    if (IsSpace(c)) continue;
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected content after the array's closing ']': '", std::string(1, c),
                     "' on line ", text_line_, "; a file holds one JSON array"));
  }
}

absl::StatusOr<bool> RecordReader::NextText(std::string* text) {
  return is_array_ ? NextElement(text) : NextLine(text);
}

absl::StatusOr<bool> RecordReader::Next(Record* out) {
  if (!sticky_.ok()) return sticky_;
  std::string text;
  while (true) {
    absl::StatusOr<bool> got = NextText(&text);
    if (!got.ok()) {
      if (!sticky_.ok()) return sticky_;
      sticky_ = absl::Status(got.status().code(),
                             absl::StrCat(path_, ": after ", is_array_ ? "element " : "line ",
                                          line_, ": ", got.status().message()));
      return sticky_;
    }
    if (!*got) return false;
    if (is_array_) {
      ++line_;
    } else {
      ++line_;
      if (!text.empty() && text.back() == '\r') text.pop_back();
      if (line_ == 1 && absl::StartsWith(text, "\xEF\xBB\xBF")) text.erase(0, 3);
      if (absl::StripAsciiWhitespace(text).empty()) continue;
    }
    absl::StatusOr<json> obj = ParseJson(text);
    if (!obj.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(), ": ", obj.status().message()));
    }
    *out = Record{};
    absl::StatusOr<std::optional<Skip>> skip = ParseObject(*obj, out);
    if (!skip.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(), ": ", skip.status().message()));
    }
    if (skip->has_value()) {
      ++skipped_;
      ++skipped_by_reason_[(*skip)->reason];
      continue;
    }
    return true;
  }
}

}  // namespace curation::formats
