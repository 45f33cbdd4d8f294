// libFuzzer target for the .npy header parser (formats/npy_reader.h): the bytes are a whole
// file's start and its length the file's size.
//
// Beyond sanitizer reports, the contract of ParseNpyHeader is checked: it never throws or
// reads past the bytes, an error is InvalidArgument naming the file, and an accepted header
// describes exactly the bytes that follow it (data_offset + data_bytes == size, the element
// size times the shape's product), in C order, with at most kMaxNpyDims dimensions.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "formats/npy_reader.h"

namespace curation::formats {
namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "npy_header_fuzzer: contract violated: %s\n", what.c_str());
  std::abort();
}

}  // namespace
}  // namespace curation::formats

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace curation::formats;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto header = ParseNpyHeader(bytes, static_cast<int64_t>(size), "fuzz.npy");
  if (!header.ok()) {
    if (header.status().code() != absl::StatusCode::kInvalidArgument) Fail("not InvalidArgument");
    if (header.status().message().find("fuzz.npy") != 0) Fail("the error does not name the file");
    return 0;
  }
  if (header->shape.size() > static_cast<size_t>(kMaxNpyDims)) Fail("too many dimensions");
  if (header->data_offset > 12 + kMaxNpyHeaderBytes || header->data_offset < 10) {
    Fail("data_offset outside the header's bounds");
  }
  __int128 product = header->element_bytes();
  for (int64_t d : header->shape) {
    if (d < 0) Fail("a negative dimension");
    product *= d;
  }
  if (product != header->data_bytes) Fail("data_bytes is not the shape's size");
  if (header->data_offset + header->data_bytes != static_cast<int64_t>(size)) {
    Fail("the header does not describe the rest of the file");
  }
  (void)header->Describe();
  // The float16 widening must be total: every bit pattern converts.
  if (size >= 2) (void)HalfToFloat(static_cast<uint16_t>(data[0] | (data[1] << 8)));
  return 0;
}
