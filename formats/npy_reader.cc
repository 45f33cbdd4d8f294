#include "formats/npy_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace curation::formats {
namespace {

static_assert(std::endian::native == std::endian::little, "reads little-endian data in place");

constexpr absl::string_view kMagic = "\x93NUMPY";

// A cursor over numpy's header, a Python dictionary literal such as
// "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 256), }" padded with spaces and '\n'.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  bool Eat(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() const { return pos_ >= text_.size(); }
  size_t pos() const { return pos_; }

  std::optional<std::string> String() {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) return std::nullopt;
    const char quote = text_[pos_++];
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\') return std::nullopt;  // numpy never writes escapes
      ++pos_;
    }
    if (pos_ >= text_.size()) return std::nullopt;
    return std::string(text_.substr(start, pos_++ - start));
  }

  std::optional<bool> Bool() {
    SkipSpace();
    for (auto [word, value] : {std::pair{absl::string_view("True"), true}, {"False", false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    return std::nullopt;
  }

  // A tuple of non-negative integers: "()", "(3,)", "(3, 4)", "(3, 4,)".
  std::optional<std::vector<int64_t>> Tuple() {
    if (!Eat('(')) return std::nullopt;
    std::vector<int64_t> values;
    bool trailing_comma = false;
    while (!Eat(')')) {
      if (!values.empty() && !trailing_comma) return std::nullopt;  // "(3 4)"
      SkipSpace();
      int64_t v = 0;
      size_t digits = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        if (++digits > 15) return std::nullopt;  // past 10^15: no real file, and no overflow
        v = v * 10 + (text_[pos_++] - '0');
      }
      if (digits == 0) return std::nullopt;
      values.push_back(v);
      trailing_comma = Eat(',');
    }
    if (values.size() == 1 && !trailing_comma) return std::nullopt;  // "(3)" is not a tuple
    return values;
  }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
};

uint32_t LittleEndian(absl::string_view bytes) {
  uint32_t v = 0;
  for (size_t i = bytes.size(); i-- > 0;) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  return v;
}

}  // namespace

std::string NpyHeader::Describe() const {
  return absl::StrCat(dtype == NpyDtype::kFloat32 ? "float32" : "float16", " (",
                      absl::StrJoin(shape, ", "), shape.size() == 1 ? ",)" : ")");
}

absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view prefix, int64_t file_bytes,
                                         absl::string_view name) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a .npy file we can read: ", why));
  };
  if (prefix.size() < kMagic.size() + 2 || prefix.substr(0, kMagic.size()) != kMagic) {
    return bad("no .npy magic (\\x93NUMPY) at the start");
  }
  const int major = static_cast<unsigned char>(prefix[6]);
  const int minor = static_cast<unsigned char>(prefix[7]);
  if ((major != 1 && major != 2) || minor != 0) {
    return bad(absl::StrCat("format version ", major, ".", minor, "; only 1.0 and 2.0 are read"));
  }
  const size_t length_bytes = major == 1 ? 2 : 4;
  if (prefix.size() < 8 + length_bytes) return bad("the header length is cut short");
  const int64_t header_len = LittleEndian(prefix.substr(8, length_bytes));
  if (header_len > kMaxNpyHeaderBytes) {
    return bad(absl::StrCat("a header of ", header_len, " bytes; at most ", kMaxNpyHeaderBytes));
  }
  const int64_t data_offset = 8 + static_cast<int64_t>(length_bytes) + header_len;
  if (static_cast<int64_t>(prefix.size()) < data_offset || file_bytes < data_offset) {
    return bad(absl::StrCat("the header (", header_len, " bytes) is cut short"));
  }
  absl::string_view text = prefix.substr(8 + length_bytes, header_len);
  if (text.empty() || text.back() != '\n') return bad("the header does not end in a newline");
  text.remove_suffix(1);

  HeaderParser p(text);
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<std::vector<int64_t>> shape;
  if (!p.Eat('{')) return bad("the header is not a dictionary");
  while (!p.Eat('}')) {
    std::optional<std::string> key = p.String();
    if (!key) return bad(absl::StrCat("a malformed header key at byte ", p.pos()));
    if (!p.Eat(':')) return bad(absl::StrCat("no ':' after header key '", *key, "'"));
    if (*key == "descr" && !descr) {
      descr = p.String();
      if (!descr) return bad("'descr' is not a string (structured dtypes are not read)");
    } else if (*key == "fortran_order" && !fortran_order) {
      fortran_order = p.Bool();
      if (!fortran_order) return bad("'fortran_order' is not True or False");
    } else if (*key == "shape" && !shape) {
      shape = p.Tuple();
      if (!shape) return bad("'shape' is not a tuple of non-negative integers");
    } else {
      return bad(absl::StrCat("an unexpected or repeated header key '", *key, "'"));
    }
    if (!p.Eat(',')) {
      if (!p.Eat('}')) return bad(absl::StrCat("a malformed header at byte ", p.pos()));
      break;
    }
  }
  p.SkipSpace();
  if (!p.AtEnd()) return bad(absl::StrCat("bytes after the header dictionary at ", p.pos()));
  if (!descr || !fortran_order || !shape) {
    return bad("the header lacks one of 'descr', 'fortran_order' and 'shape'");
  }

  NpyHeader h;
  if (*descr == "<f4") {
    h.dtype = NpyDtype::kFloat32;
  } else if (*descr == "<f2") {
    h.dtype = NpyDtype::kFloat16;
  } else {
    return bad(absl::StrCat("dtype '", *descr,
                            "'; only little-endian float32 ('<f4') and float16 ('<f2') are read"));
  }
  if (*fortran_order) {
    return bad("fortran_order is True; write the array in C order (np.ascontiguousarray)");
  }
  if (shape->size() > kMaxNpyDims) {
    return bad(absl::StrCat(shape->size(), " dimensions; at most ", kMaxNpyDims));
  }
  h.shape = *std::move(shape);
  h.data_offset = data_offset;
  int64_t bytes = h.element_bytes();
  for (int64_t d : h.shape) {
    if (__builtin_mul_overflow(bytes, d, &bytes)) return bad("the shape's size overflows");
  }
  h.data_bytes = bytes;
  if (file_bytes - data_offset != bytes) {
    return bad(absl::StrCat("shape ", h.Describe(), " needs ", bytes, " bytes of data after the ",
                            data_offset, "-byte header, but the file has ",
                            file_bytes - data_offset));
  }
  return h;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // infinity or NaN (payload kept)
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // +-0
  } else {
    // Subnormal: normalise; every float16 subnormal is a normal float32.
    int e = 113;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

NpyReader::NpyReader(std::string path, int fd, NpyHeader header)
    : path_(std::move(path)), fd_(fd), header_(std::move(header)) {}

NpyReader::~NpyReader() { ::close(fd_); }

absl::StatusOr<std::unique_ptr<NpyReader>> NpyReader::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string message = absl::StrCat(path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(message) : absl::InvalidArgumentError(message);
  }
  auto close_on_error = [fd](absl::Status s) {
    ::close(fd);
    return s;
  };
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return close_on_error(absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file")));
  }
  std::string prefix(std::min<int64_t>(st.st_size, 12 + kMaxNpyHeaderBytes), '\0');
  size_t got = 0;
  while (got < prefix.size()) {
    const ssize_t n = ::pread(fd, prefix.data() + got, prefix.size() - got, got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  prefix.resize(got);
  auto header = ParseNpyHeader(prefix, st.st_size, path);
  if (!header.ok()) return close_on_error(header.status());
  return std::unique_ptr<NpyReader>(new NpyReader(path, fd, *std::move(header)));
}

int64_t NpyReader::rows() const { return header_.shape.empty() ? 1 : header_.shape[0]; }

int64_t NpyReader::row_values() const {
  int64_t n = 1;
  for (size_t i = 1; i < header_.shape.size(); ++i) n *= header_.shape[i];
  return n;
}

absl::Status NpyReader::ReadRows(int64_t first, int64_t count, float* out) const {
  if (first < 0 || count < 0 || first > rows() || count > rows() - first) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": rows [", first, ", ", first + count,
                                                   ") are outside its ", rows(), " rows"));
  }
  const int64_t values = count * row_values();
  const int elem = header_.element_bytes();
  // float32 lands in place; float16 goes through a bounded buffer and is widened.
  constexpr int64_t kChunkValues = 1 << 16;
  std::vector<uint16_t> halves;
  if (header_.dtype == NpyDtype::kFloat16) halves.resize(std::min(values, kChunkValues));
  int64_t done = 0;
  while (done < values) {
    const int64_t n =
        header_.dtype == NpyDtype::kFloat32 ? values - done : std::min(values - done, kChunkValues);
    char* dst = header_.dtype == NpyDtype::kFloat32 ? reinterpret_cast<char*>(out + done)
                                                    : reinterpret_cast<char*>(halves.data());
    const int64_t offset = header_.data_offset + (first * row_values() + done) * elem;
    int64_t got = 0;
    while (got < n * elem) {
      const ssize_t r = ::pread(fd_, dst + got, n * elem - got, offset + got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        return absl::InternalError(absl::StrCat(path_, ": read failed: ", std::strerror(errno)));
      }
      if (r == 0) {
        return absl::DataLossError(absl::StrCat(path_,
                                                ": the file is shorter than its header "
                                                "says (did it change while being read?)"));
      }
      got += r;
    }
    if (header_.dtype == NpyDtype::kFloat16) {
      for (int64_t i = 0; i < n; ++i) out[done + i] = HalfToFloat(halves[i]);
    }
    done += n;
  }
  return absl::OkStatus();
}

}  // namespace curation::formats
