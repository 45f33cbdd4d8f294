// `curation ingest --embeddings VECTORS.npy` end to end: .npy files written by NumPy itself
// (float32 and float16, pairs and unpaired), ingested by the CLI into CLIENT-embedding
// datasets on the real server, and the stored vectors read back with GetExamples.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/integration/server_process.h"
#include "tests/integration/test_data.h"

namespace curation::testing {
namespace {

constexpr int kDim = 8;
constexpr int kRecords = 5;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<float> ReadFloats(const std::string& path) {
  const std::string bytes = ReadBytes(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

class IngestVectorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("ingest-vectors");
    server_ = ServerProcess::Start(dir_ + "/db");
    addr_ = server_->address();
    stub_ = server_->Stub();
    // Five pairs and five unpaired records, with ids so the test can fetch them.
    std::ofstream pairs(dir_ + "/pairs.jsonl");
    std::ofstream unpaired(dir_ + "/unpaired.jsonl");
    for (int i = 0; i < kRecords; ++i) {
      pairs << "{\"id\": \"p" << i << "\", \"prompt\": \"Question " << i
            << "?\", \"chosen\": \"A good answer\", \"rejected\": \"A bad answer\"}\n";
      unpaired << "{\"id\": \"u" << i << "\", \"prompt\": \"Question " << i
               << "?\", \"completion\": \"An answer\", \"label\": " << (i % 2 ? "false" : "true")
               << "}\n";
    }
    // NumPy writes the .npy files (the format's reference implementation) and, as the
    // expected values, the same arrays as raw float32 (float16 widened by NumPy).
    const std::string script = dir_ + "/make.py";
    std::ofstream(script) << "import numpy as np, sys\n"
                             "d = sys.argv[1]\n"
                             "rng = np.random.default_rng(7)\n"
                             "for name, shape in (('pairs', (5, 2, 8)), ('unpaired', (5, 8))):\n"
                             "    a = rng.standard_normal(shape).astype(np.float32)\n"
                             "    np.save(f'{d}/{name}32.npy', a)\n"
                             "    a.tofile(f'{d}/{name}32.bin')\n"
                             "    h = a.astype(np.float16)\n"
                             "    np.save(f'{d}/{name}16.npy', h)\n"
                             "    h.astype(np.float32).tofile(f'{d}/{name}16.bin')\n"
                             "np.save(f'{d}/short.npy', np.zeros((4, 2, 8), np.float32))\n"
                             "np.save(f'{d}/wide.npy', np.zeros((5, 2, 9), np.float32))\n"
                             "np.save(f'{d}/fortran.npy', np.asfortranarray(np.zeros((5, 8), "
                             "np.float32)))\n"
                             "np.save(f'{d}/doubles.npy', np.zeros((5, 8)))\n";
    ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " " + dir_).c_str()), 0);
  }

  // The stored vectors of `ids`, chosen then rejected for a pair, in id order.
  std::vector<float> Stored(const std::string& dataset, const std::vector<std::string>& ids) {
    std::vector<float> out;
    for (const v1::Example& e : ReadWithVectors(*stub_, dataset, ids)) {
      if (e.has_pair()) {
        out.insert(out.end(), e.pair().chosen_embedding().begin(),
                   e.pair().chosen_embedding().end());
        out.insert(out.end(), e.pair().rejected_embedding().begin(),
                   e.pair().rejected_embedding().end());
      } else {
        out.insert(out.end(), e.unpaired().embedding().begin(), e.unpaired().embedding().end());
      }
    }
    return out;
  }

  int64_t ExampleCount(const std::string& dataset) {
    v1::GetDatasetRequest request;
    request.set_name(dataset);
    v1::Dataset reply;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->GetDataset(&context, request, &reply).ok());
    return reply.example_count();
  }

  std::string dir_, addr_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::CurationService::Stub> stub_;
};

TEST_F(IngestVectorsTest, StoredVectorsAreTheFilesRows) {
  const std::vector<std::string> pair_ids = {"p0", "p1", "p2", "p3", "p4"};
  const std::vector<std::string> unpaired_ids = {"u0", "u1", "u2", "u3", "u4"};
  for (const std::string bits : {"32", "16"}) {
    SCOPED_TRACE("float" + bits);
    const std::string p = "p" + bits, u = "u" + bits;
    // float32 datasets: the rows come back exactly as the file holds them.
    ASSERT_EQ(
        RunCli(addr_, {"datasets", "create", p, "--dim", "8", "--encoding", "float32"}).exit_code,
        0);
    ASSERT_EQ(RunCli(addr_, {"datasets", "create", u, "--kind", "unpaired", "--dim", "8",
                             "--encoding", "float32"})
                  .exit_code,
              0);

    CommandResult r = RunCli(addr_, {"ingest", p, dir_ + "/pairs.jsonl", "--embeddings",
                                     dir_ + "/pairs" + bits + ".npy", "--batch", "2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("5 accepted, 0 duplicates, 0 rejected"), std::string::npos) << r.out;
    std::vector<float> expected = ReadFloats(dir_ + "/pairs" + bits + ".bin");
    ASSERT_EQ(expected.size(), static_cast<size_t>(kRecords * 2 * kDim));
    EXPECT_EQ(Stored(p, pair_ids), expected);

    r = RunCli(addr_, {"ingest", u, dir_ + "/unpaired.jsonl", "--embeddings",
                       dir_ + "/unpaired" + bits + ".npy"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("5 accepted, 0 duplicates, 0 rejected"), std::string::npos) << r.out;
    expected = ReadFloats(dir_ + "/unpaired" + bits + ".bin");
    ASSERT_EQ(expected.size(), static_cast<size_t>(kRecords * kDim));
    EXPECT_EQ(Stored(u, unpaired_ids), expected);
  }
}

TEST_F(IngestVectorsTest, MismatchesAreRefusedBeforeAnythingIsSent) {
  ASSERT_EQ(RunCli(addr_, {"datasets", "create", "p", "--dim", "8"}).exit_code, 0);
  ASSERT_EQ(
      RunCli(addr_, {"datasets", "create", "u", "--kind", "unpaired", "--dim", "8"}).exit_code, 0);
  ASSERT_EQ(RunCli(addr_, {"datasets", "create", "builtin"}).exit_code, 0);
  const std::string pairs = dir_ + "/pairs.jsonl";

  // Four rows for five records: the error names the file, its shape and the record count.
  CommandResult r = RunCli(addr_, {"ingest", "p", pairs, "--embeddings", dir_ + "/short.npy"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir_ + "/short.npy has shape float32 (4, 2, 8), 4 rows, but " + pairs +
                       " has 5 records"),
            std::string::npos)
      << r.err;

  r = RunCli(addr_, {"ingest", "p", pairs, "--embeddings", dir_ + "/wide.npy"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("has shape float32 (5, 2, 9); expected (N, 2, 8) for the PAIRS dataset"),
            std::string::npos)
      << r.err;

  // An unpaired layout for a pairs dataset, and the other way round.
  r = RunCli(addr_, {"ingest", "p", pairs, "--embeddings", dir_ + "/unpaired32.npy"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("expected (N, 2, 8)"), std::string::npos) << r.err;
  r = RunCli(addr_,
             {"ingest", "u", dir_ + "/unpaired.jsonl", "--embeddings", dir_ + "/pairs32.npy"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("expected (N, 8) for the UNPAIRED dataset"), std::string::npos) << r.err;

  r = RunCli(addr_, {"ingest", "builtin", pairs, "--embeddings", dir_ + "/pairs32.npy"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("built-in embedder"), std::string::npos) << r.err;

  r = RunCli(addr_,
             {"ingest", "u", dir_ + "/unpaired.jsonl", "--embeddings", dir_ + "/fortran.npy"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("fortran_order is True"), std::string::npos) << r.err;
  r = RunCli(addr_,
             {"ingest", "u", dir_ + "/unpaired.jsonl", "--embeddings", dir_ + "/doubles.npy"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("dtype '<f8'"), std::string::npos) << r.err;

  r = RunCli(addr_,
             {"ingest", "u", dir_ + "/unpaired.jsonl", "--embeddings", dir_ + "/absent.npy"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("absent.npy"), std::string::npos) << r.err;

  EXPECT_EQ(ExampleCount("p"), 0);
  EXPECT_EQ(ExampleCount("u"), 0);
  EXPECT_EQ(ExampleCount("builtin"), 0);
}

TEST_F(IngestVectorsTest, RowsStayAlignedPastABadLine) {
  // Line 3 is unreadable: it still owns row 2, so the records after it get rows 3 and 4.
  const std::string file = dir_ + "/gap.jsonl";
  {
    std::ofstream f(file);
    for (int i = 0; i < kRecords; ++i) {
      if (i == 2) {
        f << "{not json\n";
        continue;
      }
      f << "{\"id\": \"g" << i << "\", \"prompt\": \"Q" << i
        << "\", \"chosen\": \"yes\", \"rejected\": \"no\"}\n";
    }
  }
  ASSERT_EQ(
      RunCli(addr_, {"datasets", "create", "g", "--dim", "8", "--encoding", "float32"}).exit_code,
      0);
  CommandResult r = RunCli(addr_, {"ingest", "g", file, "--embeddings", dir_ + "/pairs32.npy"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("4 accepted, 0 duplicates, 1 rejected"), std::string::npos) << r.out;
  const std::vector<float> all = ReadFloats(dir_ + "/pairs32.bin");
  for (int i : {0, 1, 3, 4}) {
    const auto row = all.begin() + i * 2 * kDim;
    EXPECT_EQ(Stored("g", {"g" + std::to_string(i)}), std::vector<float>(row, row + 2 * kDim))
        << "record " << i;
  }
}

// A projected dataset fits its PCA on its first message, which needs 2 x P vectors; the CLI
// makes that message big enough (4 x P vectors) whatever --batch says.
TEST_F(IngestVectorsTest, TheFirstMessageOfAProjectedDatasetCarriesEnoughVectorsToFitOn) {
  ASSERT_EQ(RunCli(addr_, {"datasets", "create", "proj", "--dim", "8", "--project", "2",
                           "--keep-original", "--encoding", "float32"})
                .exit_code,
            0);
  const CommandResult r = RunCli(addr_, {"ingest", "proj", dir_ + "/pairs.jsonl", "--embeddings",
                                         dir_ + "/pairs32.npy", "--batch", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(ExampleCount("proj"), kRecords);
  // The client's vectors are kept, exactly.
  EXPECT_EQ(Stored("proj", {"p0", "p1", "p2", "p3", "p4"}), ReadFloats(dir_ + "/pairs32.bin"));
  const CommandResult got = RunCli(addr_, {"datasets", "get", "proj"});
  EXPECT_NE(got.out.find("projection: PCA to 2 dimensions, fitted on 8 vectors"), std::string::npos)
      << got.out;
}

}  // namespace
}  // namespace curation::testing
