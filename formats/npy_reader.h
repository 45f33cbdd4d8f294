// Reads client vectors from NumPy .npy files (the CLI's `ingest --embeddings`).
//
// Accepted: format versions 1.0 and 2.0; dtype '<f4' (float32) or '<f2' (float16, widened to
// float32 exactly); fortran_order False (C order); any shape of up to 8 dimensions. The header
// is validated strictly (numpy's own dictionary literal: 'descr', 'fortran_order' and 'shape'
// once each, nothing else) and the file must be exactly header + data long, so a truncated or
// padded file is an error rather than misaligned vectors. Rows are read from the file on
// demand (pread), never held whole: files may be far larger than memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace curation::formats {

enum class NpyDtype { kFloat32, kFloat16 };

struct NpyHeader {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<int64_t> shape;  // empty for a scalar
  int64_t data_offset = 0;     // where the values start in the file
  int64_t data_bytes = 0;      // product(shape) * element size

  int element_bytes() const { return dtype == NpyDtype::kFloat32 ? 4 : 2; }
  // "float32 (1000, 2, 256)", for messages.
  std::string Describe() const;
};

// The most header bytes accepted (numpy's own np.load default, max_header_size).
inline constexpr int64_t kMaxNpyHeaderBytes = 10000;
// The most dimensions accepted.
inline constexpr int kMaxNpyDims = 8;

// Parses the start of a .npy file, `prefix` (at least the magic, version, length and header;
// more is ignored), for a file of `file_bytes` bytes named `name` in messages. InvalidArgument
// naming the file and what is wrong: bad magic, an unsupported version, a header longer than
// kMaxNpyHeaderBytes or cut short, a malformed dictionary, a dtype other than '<f4'/'<f2',
// fortran_order True, a negative or overflowing shape, or a size that does not match
// `file_bytes`.
absl::StatusOr<NpyHeader> ParseNpyHeader(absl::string_view prefix, int64_t file_bytes,
                                         absl::string_view name);

// float16 bits to float32, exactly (subnormals, infinities and NaNs included).
float HalfToFloat(uint16_t h);

class NpyReader {
 public:
  // Opens and validates `path` (ParseNpyHeader). NotFound if it does not exist.
  static absl::StatusOr<std::unique_ptr<NpyReader>> Open(const std::string& path);
  ~NpyReader();
  NpyReader(const NpyReader&) = delete;
  NpyReader& operator=(const NpyReader&) = delete;

  const NpyHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  // shape[0], or 1 for a scalar.
  int64_t rows() const;
  // Values in one row: the product of shape[1:].
  int64_t row_values() const;

  // Writes rows [first, first + count) as float32 into out[0, count * row_values()).
  // InvalidArgument if the rows are out of range; DataLoss if the file reads short (it shrank
  // since Open). Thread-compatible: concurrent calls on one reader are fine (pread).
  absl::Status ReadRows(int64_t first, int64_t count, float* out) const;

 private:
  NpyReader(std::string path, int fd, NpyHeader header);
  std::string path_;
  int fd_;
  NpyHeader header_;
};

}  // namespace curation::formats
