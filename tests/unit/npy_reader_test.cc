#include "formats/npy_reader.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace curation::formats {
namespace {

namespace fs = std::filesystem;

// A .npy file's bytes as numpy writes them: magic, version, header length, the header padded
// with spaces to a multiple of 64 bytes and ended by '\n', then `data`.
std::string Npy(const std::string& dict, const std::string& data, int major = 1, bool pad = true) {
  const size_t length_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  if (pad) {
    while ((8 + length_bytes + header.size() + 1) % 64 != 0) header.push_back(' ');
  }
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  for (size_t i = 0; i < length_bytes; ++i)
    out.push_back(static_cast<char>(header.size() >> (8 * i)));
  return out + header + data;
}

std::string Floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::string Halves(const std::vector<uint16_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(uint16_t));
}

std::string Dict(const std::string& descr, const std::string& shape,
                 const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

class NpyReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           (std::string("npy_reader_test_") + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& contents) {
    std::string path = (dir_ / ("f" + std::to_string(files_++) + ".npy")).string();
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  // The status message of opening `contents`; "" when it opens.
  std::string OpenError(const std::string& contents) {
    auto r = NpyReader::Open(Write(contents));
    if (r.ok()) return "";
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    return std::string(r.status().message());
  }

  fs::path dir_;
  int files_ = 0;
};

TEST_F(NpyReaderTest, ReadsFloat32Pairs) {
  std::vector<float> v(3 * 2 * 4);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * static_cast<float>(i) - 3.25f;
  auto r = NpyReader::Open(Write(Npy(Dict("<f4", "(3, 2, 4)"), Floats(v))));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->header().dtype, NpyDtype::kFloat32);
  EXPECT_EQ((*r)->header().shape, (std::vector<int64_t>{3, 2, 4}));
  EXPECT_EQ((*r)->rows(), 3);
  EXPECT_EQ((*r)->row_values(), 8);
  EXPECT_EQ((*r)->header().Describe(), "float32 (3, 2, 4)");
  std::vector<float> out(16);
  ASSERT_TRUE((*r)->ReadRows(1, 2, out.data()).ok());
  EXPECT_EQ(out, std::vector<float>(v.begin() + 8, v.end()));
  EXPECT_EQ((*r)->ReadRows(2, 2, out.data()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*r)->ReadRows(-1, 1, out.data()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*r)->ReadRows(3, 0, out.data()).ok());
}

TEST_F(NpyReaderTest, ReadsVersion2AndDoubleQuotesAndAnyKeyOrder) {
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  auto r = NpyReader::Open(Write(
      Npy("{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f4\"}", Floats(v), 2)));
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<float> out(6);
  ASSERT_TRUE((*r)->ReadRows(0, 2, out.data()).ok());
  EXPECT_EQ(out, v);
}

TEST_F(NpyReaderTest, WidensFloat16Exactly) {
  // 1, -2, 0.5, 65504 (max), 2^-24 (smallest subnormal), 2^-14 (smallest normal), -0, inf.
  std::vector<uint16_t> h = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x0400, 0x8000, 0x7c00};
  auto r = NpyReader::Open(Write(Npy(Dict("<f2", "(4, 2)"), Halves(h))));
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<float> out(8);
  ASSERT_TRUE((*r)->ReadRows(0, 4, out.data()).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], 0.5f);
  EXPECT_EQ(out[3], 65504.0f);
  EXPECT_EQ(out[4], std::ldexp(1.0f, -24));
  EXPECT_EQ(out[5], std::ldexp(1.0f, -14));
  EXPECT_TRUE(out[6] == 0.0f && std::signbit(out[6]));
  EXPECT_EQ(out[7], std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7e00)));
  // Every subnormal: value = mantissa * 2^-24.
  for (uint16_t m = 1; m < 0x400; ++m) {
    ASSERT_EQ(HalfToFloat(m), std::ldexp(static_cast<float>(m), -24)) << m;
  }
}

TEST_F(NpyReaderTest, ReadsLargeFloat16InChunks) {
  // More values than one conversion chunk, so the chunk loop runs more than once.
  const int rows = 70, dim = 1024;
  std::vector<uint16_t> h(rows * dim);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint16_t>(0x3c00 + (i % 1000));
  auto r = NpyReader::Open(Write(Npy(Dict("<f2", "(70, 1024)"), Halves(h))));
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<float> out(rows * dim);
  ASSERT_TRUE((*r)->ReadRows(0, rows, out.data()).ok());
  for (size_t i = 0; i < h.size(); ++i) ASSERT_EQ(out[i], HalfToFloat(h[i])) << i;
}

TEST_F(NpyReaderTest, EmptyAndOneDimensionalShapes) {
  auto r = NpyReader::Open(Write(Npy(Dict("<f4", "(0, 2, 8)"), "")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->rows(), 0);
  r = NpyReader::Open(Write(Npy(Dict("<f4", "(3,)"), Floats({1, 2, 3}))));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->header().Describe(), "float32 (3,)");
  EXPECT_EQ((*r)->row_values(), 1);
}

TEST_F(NpyReaderTest, MissingFileIsNotFound) {
  auto r = NpyReader::Open((dir_ / "absent.npy").string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("absent.npy"), std::string_view::npos);
}

TEST_F(NpyReaderTest, RefusesMalformedFilesPrecisely) {
  const std::string data = Floats({1, 2, 3, 4});
  auto expect = [&](const std::string& contents, const std::string& fragment) {
    const std::string error = OpenError(contents);
    EXPECT_NE(error.find(fragment), std::string::npos)
        << "wanted '" << fragment << "' in '" << error << "'";
  };
  expect("", "no .npy magic");
  expect("PK\x03\x04 a zip file", "no .npy magic");
  expect(std::string("\x93NUMPY\x03\x00", 8) + "rest", "format version 3.0");
  expect(std::string("\x93NUMPY\x01\x01", 8) + "rest", "format version 1.1");
  expect(std::string("\x93NUMPY\x01\x00", 8), "header length is cut short");
  expect(std::string("\x93NUMPY\x01\x00\x50\x00", 10) + "{'descr'", "cut short");
  // Longer than the limit: numpy's default max_header_size.
  expect(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), " +
                 std::string(kMaxNpyHeaderBytes, ' ') + "}",
             data, 2),
         "at most 10000");
  expect(Npy(Dict("<f4", "(2, 2)"), data).substr(0, 20), "the header (118 bytes) is cut short");
  expect(Npy(Dict(">f4", "(2, 2)"), data), "dtype '>f4'");
  expect(Npy(Dict("<f8", "(2, 2)"), data), "dtype '<f8'");
  expect(Npy(Dict("<i4", "(2, 2)"), data), "dtype '<i4'");
  expect(Npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 2), }", data),
         "structured dtypes");
  expect(Npy(Dict("<f4", "(2, 2)", "True"), data), "fortran_order is True");
  expect(Npy(Dict("<f4", "(2, 2)", "0"), data), "'fortran_order' is not True or False");
  expect(Npy(Dict("<f4", "(2, -2)"), data), "'shape' is not a tuple");
  expect(Npy(Dict("<f4", "(4)"), data), "'shape' is not a tuple");
  expect(Npy(Dict("<f4", "(2 2)"), data), "'shape' is not a tuple");
  expect(Npy(Dict("<f4", "[2, 2]"), data), "'shape' is not a tuple");
  expect(Npy(Dict("<f4", "(9999999999999999, 2)"), data), "'shape' is not a tuple");
  expect(Npy(Dict("<f4", "(1, 1, 1, 1, 1, 1, 1, 1, 4)"), data), "9 dimensions; at most 8");
  expect(Npy(Dict("<f4", "(999999999999999, 999999999999999)"), data), "overflows");
  expect(Npy(Dict("<f4", "(2, 3)"), data), "needs 24 bytes of data after the 128-byte header");
  expect(Npy(Dict("<f4", "(2, 2)"), data + "x"), "but the file has 17");
  expect(Npy(Dict("<f4", "(2, 2)"), data.substr(0, 15)), "but the file has 15");
  expect(Npy("{'descr': '<f4', 'fortran_order': False}", data), "lacks one of");
  expect(Npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", data),
         "repeated header key 'descr'");
  expect(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", data),
         "unexpected or repeated header key 'x'");
  expect(Npy("{'descr': '<f4' 'fortran_order': False, 'shape': (4,)}", data), "malformed header");
  expect(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} junk", data),
         "bytes after the header dictionary");
  expect(Npy("('descr', '<f4')", data), "not a dictionary");
  expect(Npy("{descr: '<f4'}", data), "malformed header key");
  expect(Npy("{'descr': '<f\\x34', 'fortran_order': False, 'shape': (4,)}", data),
         "'descr' is not a string");
  std::string no_newline = Npy(Dict("<f4", "(4,)"), data);
  no_newline[no_newline.size() - data.size() - 1] = ' ';
  expect(no_newline, "does not end in a newline");
  // The valid form of the same, so the cases above fail for their own reason only.
  EXPECT_EQ(OpenError(Npy(Dict("<f4", "(2, 2)"), data)), "");
  EXPECT_EQ(OpenError(Npy(Dict("<f4", "(4,)"), data)), "");
}

TEST_F(NpyReaderTest, ErrorsNameTheFile) {
  const std::string path = Write(Npy(Dict("<f8", "(1,)"), std::string(8, '\0')));
  auto r = NpyReader::Open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path), std::string_view::npos) << r.status();
}

TEST_F(NpyReaderTest, ReadPastAFileThatShrankIsDataLoss) {
  const std::string path = Write(Npy(Dict("<f4", "(2, 2)"), Floats({1, 2, 3, 4})));
  auto r = NpyReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status();
  fs::resize_file(path, fs::file_size(path) - 4);
  std::vector<float> out(4);
  EXPECT_EQ((*r)->ReadRows(0, 2, out.data()).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace curation::formats
