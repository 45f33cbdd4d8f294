#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "formats/record_reader.h"
#include "gtest/gtest.h"

namespace curation::formats {
namespace {

namespace fs = std::filesystem;

// The repository's bundled samples (tests/data), found from this file's path so the test runs
// from any build directory.
fs::path DataDir() { return fs::path(__FILE__).parent_path().parent_path() / "data"; }

class FormatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           (std::string("formats_test_") + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& contents) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  // Writes `contents` gzip-compressed, as one gzip member per element of `members`.
  std::string WriteGzip(const std::string& name, const std::vector<std::string>& members) {
    std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    for (const std::string& m : members) {
      z_stream zs{};
      EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
      std::string buf(deflateBound(&zs, m.size()) + 64, '\0');
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(m.data()));
      zs.avail_in = m.size();
      zs.next_out = reinterpret_cast<Bytef*>(buf.data());
      zs.avail_out = buf.size();
      EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
      buf.resize(zs.total_out);
      deflateEnd(&zs);
      out << buf;
    }
    return path;
  }

  // Reads every record of `path`, failing the test on any error.
  std::vector<Record> ReadAll(const std::string& path, RecordReader** keep = nullptr) {
    auto reader = RecordReader::Open(path);
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return {};
    std::vector<Record> out;
    Record r;
    while (true) {
      absl::StatusOr<bool> more = (*reader)->Next(&r);
      EXPECT_TRUE(more.ok()) << more.status();
      if (!more.ok() || !*more) break;
      out.push_back(r);
    }
    last_ = *std::move(reader);
    if (keep != nullptr) *keep = last_.get();
    return out;
  }

  fs::path dir_;
  std::unique_ptr<RecordReader> last_;
};

// AlpacaEval's shape (TRL's explicit-prompt format plus a "source" column), with text written
// for this test.
constexpr char kTrlLine[] =
    R"({"prompt": "How did US states get their names?", "chosen": "The origins of US state )"
    R"(names blend Native American languages and European influences.", "rejected": "States )"
    R"(are named after presidents.", "source": "gpt4_1106_preview", "id": 42, "score": 0.5, )"
    R"("verified": true, "tags": ["a"]})";

TEST_F(FormatsTest, ReadsTrlPairsWithMetadataAndIntegerId) {
  std::vector<Record> got = ReadAll(Write("trl.jsonl", std::string(kTrlLine) + "\n"));
  ASSERT_EQ(got.size(), 1u);
  const Record& r = got[0];
  EXPECT_TRUE(r.is_pair);
  EXPECT_EQ(r.id, "42");
  EXPECT_EQ(r.prompt, "How did US states get their names?");
  EXPECT_EQ(r.chosen,
            "The origins of US state names blend Native American languages and European "
            "influences.");
  EXPECT_EQ(r.rejected, "States are named after presidents.");
  EXPECT_FALSE(r.desirable.has_value());
  // Scalars become metadata; the array "tags" does not.
  std::map<std::string, std::string> want = {
      {"source", "gpt4_1106_preview"}, {"score", "0.5"}, {"verified", "true"}};
  EXPECT_EQ(r.metadata, want);
  EXPECT_TRUE(r.chosen_embedding.empty());
}

TEST_F(FormatsTest, ReadsTrlConversationalForms) {
  std::string explicit_prompt =
      R"({"prompt": [{"role": "user", "content": "What color is the sky?"}],)"
      R"( "chosen": [{"role": "assistant", "content": "It is blue."}],)"
      R"( "rejected": [{"role": "assistant", "content": "It is green."}], "id": "c1"})";
  std::string implicit_prompt = R"({"chosen": [{"role": "system", "content": "Be brief."},)"
                                R"( {"role": "user", "content": "What color is the sky?"},)"
                                R"( {"role": "assistant", "content": "It is blue."}],)"
                                R"( "rejected": [{"role": "system", "content": "Be brief."},)"
                                R"( {"role": "user", "content": "What color is the sky?"},)"
                                R"( {"role": "assistant", "content": "It is green."}]})";
  std::vector<Record> got =
      ReadAll(Write("conv.jsonl", explicit_prompt + "\n" + implicit_prompt + "\n"));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].id, "c1");
  EXPECT_EQ(got[0].prompt, "user: What color is the sky?");
  EXPECT_EQ(got[0].chosen, "assistant: It is blue.");
  EXPECT_EQ(got[0].rejected, "assistant: It is green.");
  EXPECT_EQ(got[1].prompt, "system: Be brief.\nuser: What color is the sky?");
  EXPECT_EQ(got[1].chosen, "assistant: It is blue.");
  EXPECT_EQ(got[1].rejected, "assistant: It is green.");
}

// The second record of Anthropic's harmless-base test split, abridged in the middle.
constexpr char kHhLine[] =
    R"({"chosen": "\n\nHuman: How much alcohol can I drink per day?\n\nAssistant: Alcohol is )"
    R"(a depressant, so it can be dangerous to drink more than the equivalent of one drink an )"
    R"(hour.\n\nHuman: I feel much better when I get drunk and consume a lot of alcohol.\n\n)"
    R"(Assistant: Sounds like alcohol is something you use to calm down when you feel )"
    R"(stressed.", "rejected": "\n\nHuman: How much alcohol can I drink per day?\n\n)"
    R"(Assistant: Alcohol is a depressant, so it can be dangerous to drink more than the )"
    R"(equivalent of one drink an hour.\n\nHuman: I feel much better when I get drunk and )"
    R"(consume a lot of alcohol.\n\nAssistant: I\u2019m glad that you\u2019re enjoying your )"
    R"(alcohol intake."})";

TEST_F(FormatsTest, SplitsHhTranscriptsAtTheLastSharedAssistantTurn) {
  std::vector<Record> got = ReadAll(Write("hh.jsonl", std::string(kHhLine) + "\n"));
  ASSERT_EQ(got.size(), 1u);
  const Record& r = got[0];
  EXPECT_TRUE(r.is_pair);
  EXPECT_EQ(r.prompt,
            "\n\nHuman: How much alcohol can I drink per day?\n\nAssistant: Alcohol is a "
            "depressant, so it can be dangerous to drink more than the equivalent of one drink "
            "an hour.\n\nHuman: I feel much better when I get drunk and consume a lot of "
            "alcohol.\n\nAssistant:");
  EXPECT_EQ(r.chosen,
            "Sounds like alcohol is something you use to calm down when you feel stressed.");
  EXPECT_EQ(r.rejected, "I\u2019m glad that you\u2019re enjoying your alcohol intake.");
  EXPECT_TRUE(r.metadata.empty());
}

TEST_F(FormatsTest, HhFallsBackToTheLongestSharedPrefixEndingInAnAssistantTurn) {
  // The transcripts part ways before chosen's last turn.
  std::string line =
      R"({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant: Bye now.",)"
      R"( "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."})";
  std::vector<Record> got = ReadAll(Write("hh2.jsonl", line + "\n"));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].prompt, "\n\nHuman: Hi\n\nAssistant:");
  EXPECT_EQ(got[0].chosen, "Hello!\n\nHuman: Bye\n\nAssistant: Bye now.");
  EXPECT_EQ(got[0].rejected, "Go away.");
}

TEST_F(FormatsTest, HhWithoutAnAssistantTurnIsAnError) {
  auto reader = RecordReader::Open(Write("hh3.jsonl", R"({"chosen": "a", "rejected": "b"})"));
  ASSERT_TRUE(reader.ok());
  Record r;
  absl::StatusOr<bool> got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("hh3.jsonl:1:"), std::string::npos) << got.status();
}

TEST_F(FormatsTest, ReadsKtoLabels) {
  std::string text = R"({"prompt": "Name a prime.", "completion": "7", "label": true})"
                     "\n"
                     R"({"prompt": "Name a prime.", "completion": "9", "label": false})"
                     "\n"
                     R"({"prompt": "Name a prime.", "completion": "11", "label": "desirable"})"
                     "\n"
                     R"({"prompt": "Name a prime.", "completion": "15", "label": "undesirable"})"
                     "\n"
                     R"({"prompt": "Name a prime.", "completion": "2", "label": "true",)"
                     R"( "embedding": [0.5, -1, 2e-3]})"
                     "\n";
  std::vector<Record> got = ReadAll(Write("kto.jsonl", text));
  ASSERT_EQ(got.size(), 5u);
  std::vector<bool> want = {true, false, true, false, true};
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_FALSE(got[i].is_pair);
    EXPECT_EQ(got[i].prompt, "Name a prime.");
    ASSERT_TRUE(got[i].desirable.has_value());
    EXPECT_EQ(*got[i].desirable, want[i]) << i;
    EXPECT_TRUE(got[i].chosen.empty());
  }
  EXPECT_EQ(got[0].completion, "7");
  EXPECT_EQ(got[4].embedding, (std::vector<float>{0.5f, -1.0f, 0.002f}));
}

TEST_F(FormatsTest, RejectsAnUnknownKtoLabel) {
  auto reader = RecordReader::Open(
      Write("kto.jsonl", R"({"prompt": "p", "completion": "c", "label": "maybe"})"));
  ASSERT_TRUE(reader.ok());
  Record r;
  absl::StatusOr<bool> got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("label"), std::string::npos) << got.status();
}

TEST_F(FormatsTest, MissingFieldsAreErrors) {
  std::string text = R"({"response1": "a", "response2": "b", "annotator1": 1})"
                     "\n"
                     R"({"completion": "c", "label": true})"
                     "\n";
  auto reader = RecordReader::Open(Write("missing.jsonl", text));
  ASSERT_TRUE(reader.ok());
  Record r;
  absl::StatusOr<bool> got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find(":1: missing field \"instruction\""), std::string::npos)
      << got.status();
  got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find(":2: missing field \"prompt\""), std::string::npos)
      << got.status();
}

TEST_F(FormatsTest, ReadsEmbeddingFields) {
  std::string line =
      R"({"prompt": "p", "chosen": "c", "rejected": "r", "chosen_embedding": [1, 2.5],)"
      R"( "rejected_embedding": [-3, 0]})";
  std::vector<Record> got = ReadAll(Write("emb.jsonl", line));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].chosen_embedding, (std::vector<float>{1.0f, 2.5f}));
  EXPECT_EQ(got[0].rejected_embedding, (std::vector<float>{-3.0f, 0.0f}));
  EXPECT_TRUE(got[0].metadata.empty());

  auto reader = RecordReader::Open(
      Write("bad_emb.jsonl",
            R"({"prompt": "p", "chosen": "c", "rejected": "r", "embedding": [1, "x"]})"));
  ASSERT_TRUE(reader.ok());
  Record r;
  EXPECT_FALSE((*reader)->Next(&r).ok());
}

TEST_F(FormatsTest, MalformedLineNamesFileAndLineAndReadingGoesOn) {
  std::string text = std::string(kTrlLine) + "\n\n" +               // line 2 is blank and ignored
                     R"({"prompt": "unterminated)" + "\n" +         // line 3
                     R"({"question": "no known fields"})" + "\n" +  // line 4
                     R"({"prompt": "p", "chosen": 5, "rejected": "r"})" + "\n" +  // line 5
                     std::string(kTrlLine) + "\r\n";                              // line 6, CRLF
  auto reader = RecordReader::Open(Write("bad.jsonl", text));
  ASSERT_TRUE(reader.ok()) << reader.status();
  Record r;
  absl::StatusOr<bool> got = (*reader)->Next(&r);
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ((*reader)->line(), 1);

  got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("bad.jsonl:3: malformed JSON"), std::string::npos)
      << got.status();
  EXPECT_EQ((*reader)->line(), 3);

  got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("bad.jsonl:4: unrecognised record"), std::string::npos)
      << got.status();

  got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("bad.jsonl:5: field \"chosen\""), std::string::npos)
      << got.status();

  got = (*reader)->Next(&r);
  ASSERT_TRUE(got.ok() && *got) << got.status();
  EXPECT_EQ((*reader)->line(), 6);
  EXPECT_EQ(r.prompt, "How did US states get their names?");
  EXPECT_EQ(r.metadata.at("source"), "gpt4_1106_preview");

  got = (*reader)->Next(&r);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
}

TEST_F(FormatsTest, DetectsGzipByMagicBytesNotName) {
  std::string text = std::string(kTrlLine) + "\n" + kHhLine + "\n";
  // No ".gz" in the name, and two gzip members as `cat a.gz b.gz` makes.
  std::string path = WriteGzip("pairs.jsonl", {text, std::string(kTrlLine)});
  RecordReader* reader = nullptr;
  std::vector<Record> got = ReadAll(path, &reader);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].rejected, "States are named after presidents.");
  EXPECT_EQ(got[1].rejected, "I\u2019m glad that you\u2019re enjoying your alcohol intake.");
  EXPECT_EQ(got[2].metadata.at("source"), "gpt4_1106_preview");
  EXPECT_EQ(reader->total_bytes(), static_cast<int64_t>(fs::file_size(path)));
  EXPECT_EQ(reader->bytes_consumed(), reader->total_bytes());
}

TEST_F(FormatsTest, TruncatedGzipIsDataLoss) {
  std::string path = WriteGzip("cut.jsonl.gz", {std::string(kTrlLine) + "\n" + kTrlLine});
  fs::resize_file(path, fs::file_size(path) - 6);  // drops the trailer and some data
  auto reader = RecordReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  Record r;
  absl::StatusOr<bool> got = (*reader)->Next(&r);
  while (got.ok() && *got) got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  // The damage is sticky: the reader does not pretend the file ended cleanly.
  EXPECT_EQ((*reader)->Next(&r).status(), got.status());
}

constexpr char kPandaLm[] = R"([
  {"idx": 0, "motivation_app": "Grammarly", "cmp_key": "bloom-7b_llama-7b",
   "instruction": "Rewrite the sentence and make your writing clearer by keeping it concise.",
   "input": "If you have any questions about my rate, please let me know.",
   "response1": "If you have any questions about my rate, please let me know.",
   "response2": "Questions about my rate? Let me know.",
   "annotator1": 2, "annotator2": 2, "annotator3": 1},
  {"idx": 91, "motivation_app": "DeepL", "cmp_key": "llama-7b_opt-7b",
   "instruction": "Translate to English.", "input": "Lucie est \u00e0 la maison.",
   "response1": "Lucie is at home.", "response2": "Lucie is at the house.",
   "annotator1": 0, "annotator2": 0, "annotator3": 1},
  {"idx": 92, "motivation_app": "Wolfram alpha", "cmp_key": "bloom-7b_cerebras-gpt-6.7B",
   "instruction": "Verify the correctness of the given statement.", "input": "",
   "response1": true, "response2": "False.",
   "annotator1": 1, "annotator2": 0, "annotator3": 1},
  {"idx": 93, "motivation_app": "DeepL", "cmp_key": "llama-7b_opt-7b",
   "instruction": "Translate to English.", "input": "Bonjour.",
   "response1": "Hello.", "response2": "Good day.",
   "annotator1": 0, "annotator2": 1, "annotator3": 2}
]
)";

TEST_F(FormatsTest, PandaLmMajorityDecidesAndTiesAreSkipped) {
  RecordReader* reader = nullptr;
  std::vector<Record> got = ReadAll(Write("pandalm.json", kPandaLm), &reader);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].prompt,
            "Rewrite the sentence and make your writing clearer by keeping it concise.\n\nIf you "
            "have any questions about my rate, please let me know.");
  EXPECT_EQ(got[0].chosen, "Questions about my rate? Let me know.");
  EXPECT_EQ(got[0].rejected, "If you have any questions about my rate, please let me know.");
  EXPECT_EQ(got[0].id, "");
  std::map<std::string, std::string> want = {
      {"pandalm_idx", "0"}, {"cmp_key", "bloom-7b_llama-7b"}, {"motivation_app", "Grammarly"}};
  EXPECT_EQ(got[0].metadata, want);

  // Empty input adds nothing to the prompt; a response stored as a JSON bool is still text.
  EXPECT_EQ(got[1].prompt, "Verify the correctness of the given statement.");
  EXPECT_EQ(got[1].chosen, "true");
  EXPECT_EQ(got[1].rejected, "False.");
  EXPECT_EQ(reader->line(), 4);  // the last element, skipped

  EXPECT_EQ(reader->skipped(), 2);
  std::map<std::string, int64_t> reasons = {{"pandalm_tie", 1}, {"pandalm_no_majority", 1}};
  EXPECT_EQ(reader->skipped_by_reason(), reasons);
}

TEST_F(FormatsTest, ArrayErrorsNameTheElement) {
  std::string text =
      "[\n  {\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"},\n"
      "  {\"prompt\": 1, \"chosen\": \"c\", \"rejected\": \"r\"},\n"
      "  {\"prompt\": \"p2\", \"chosen\": \"c\", \"rejected\": \"r\"}\n]";
  auto reader = RecordReader::Open(Write("arr.json", text));
  ASSERT_TRUE(reader.ok());
  Record r;
  ASSERT_TRUE(*(*reader)->Next(&r));
  absl::StatusOr<bool> got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("arr.json: element 2 (line 3): field \"prompt\""),
            std::string::npos)
      << got.status();
  got = (*reader)->Next(&r);
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ(r.prompt, "p2");
  EXPECT_FALSE(*(*reader)->Next(&r));
}

TEST_F(FormatsTest, UnterminatedArrayIsDataLoss) {
  auto reader = RecordReader::Open(
      Write("open.json", R"([{"prompt": "p", "chosen": "c]", "rejected": "r"}, {"prompt": )"));
  ASSERT_TRUE(reader.ok());
  Record r;
  ASSERT_TRUE(*(*reader)->Next(&r));
  EXPECT_EQ(r.chosen, "c]");  // brackets inside strings do not end the element
  absl::StatusOr<bool> got = (*reader)->Next(&r);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(FormatsTest, OpenSniffsTheContainer) {
  EXPECT_EQ(RecordReader::Open((dir_ / "missing.jsonl").string()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(RecordReader::Open(Write("csv.csv", "prompt,chosen,rejected\n")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ReadAll(Write("empty.jsonl", "")).empty());
  EXPECT_TRUE(ReadAll(Write("blank.jsonl", "\n \n")).empty());
  EXPECT_TRUE(ReadAll(Write("empty.json", " [ ] ")).empty());
  // A byte-order mark and leading blank lines keep line numbers true to the file.
  RecordReader* reader = nullptr;
  std::vector<Record> got =
      ReadAll(Write("bom.jsonl", "\xEF\xBB\xBF\n\n" + std::string(kTrlLine) + "\n"), &reader);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(reader->line(), 3);
}

TEST_F(FormatsTest, ReadsTheBundledHhSample) {
  RecordReader* reader = nullptr;
  std::vector<Record> got =
      ReadAll((DataDir() / "hh-rlhf-harmless-sample.jsonl.gz").string(), &reader);
  ASSERT_EQ(got.size(), 500u);
  for (const Record& r : got) {
    ASSERT_TRUE(r.is_pair);
    ASSERT_TRUE(r.prompt.starts_with("\n\nHuman: ")) << r.prompt;
    ASSERT_TRUE(r.prompt.ends_with("\n\nAssistant:")) << r.prompt;
  }
  EXPECT_EQ(got[0].prompt.substr(0, 52),
            "\n\nHuman: what are some pranks with a pen i can do?\n\n");
  EXPECT_TRUE(got[0].chosen.starts_with("No, sorry!  All of these involve a pen"));
  EXPECT_TRUE(got[0].rejected.starts_with("There are lots of funny things you can do with pens"));
  EXPECT_EQ(reader->bytes_consumed(), reader->total_bytes());
}

TEST_F(FormatsTest, ReadsTheBundledPandaLmSample) {
  RecordReader* reader = nullptr;
  std::vector<Record> got = ReadAll((DataDir() / "pandalm-sample.json").string(), &reader);
  // 100 elements: 3 are tie majorities (idx 91, 93 and 94).
  EXPECT_EQ(got.size(), 97u);
  EXPECT_EQ(reader->skipped(), 3);
  EXPECT_EQ(reader->skipped_by_reason().at("pandalm_tie"), 3);
  EXPECT_EQ(reader->line(), 100);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].metadata.at("pandalm_idx"), "0");
  EXPECT_EQ(got[0].chosen, "If you have any questions, please let me know.");  // 3 votes for 2
}

// Found by fuzz/record_reader_fuzzer: a first gzip member of two bytes split the byte-order
// mark, which was then taken for the start of the data.
TEST_F(FormatsTest, ByteOrderMarkSplitAcrossGzipMembers) {
  std::string path = WriteGzip("bom.jsonl.gz", {"\xEF\xBB", "\xBF" + std::string(kTrlLine) + "\n"});
  std::vector<Record> got = ReadAll(path);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].prompt, "How did US states get their names?");
}

// Found by fuzz/record_reader_fuzzer: a gzip stream found corrupt at its end (here, by its
// checksum) used to lose the records before the damage when the file fit in one read chunk,
// and not when it did not. Now they come first, then DataLoss, whatever the file's size.
TEST_F(FormatsTest, RecordsBeforeGzipDamageComeFirst) {
  std::string path = WriteGzip("crc.jsonl.gz", {std::string(kTrlLine) + "\n" + kTrlLine + "\n"});
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-8, std::ios::end);  // the trailer's CRC-32
    f.put('\x5a');
  }
  auto reader = RecordReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  Record r;
  int records = 0;
  absl::StatusOr<bool> got = (*reader)->Next(&r);
  for (; got.ok() && *got; got = (*reader)->Next(&r)) ++records;
  EXPECT_EQ(records, 2);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_EQ((*reader)->Next(&r).status(), got.status());
}

// OpenBytes reads memory as Open reads a file, in whatever pieces the data arrive.
TEST_F(FormatsTest, OpenBytesReadsAsOpenDoes) {
  const std::string path = (DataDir() / "hh-rlhf-harmless-sample.jsonl.gz").string();
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<Record> from_file = ReadAll(path);
  for (size_t piece : {size_t{1} << 16, size_t{7}}) {
    auto reader = RecordReader::OpenBytes("sample", bytes, piece);
    ASSERT_TRUE(reader.ok()) << reader.status();
    Record r;
    size_t n = 0;
    absl::StatusOr<bool> got = (*reader)->Next(&r);
    for (; got.ok() && *got; got = (*reader)->Next(&r), ++n) {
      ASSERT_LT(n, from_file.size());
      EXPECT_EQ(r.prompt, from_file[n].prompt);
      EXPECT_EQ(r.chosen, from_file[n].chosen);
      EXPECT_EQ(r.rejected, from_file[n].rejected);
    }
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(n, from_file.size()) << "piece " << piece;
    EXPECT_EQ((*reader)->bytes_consumed(), static_cast<int64_t>(bytes.size()));
  }
  EXPECT_EQ(RecordReader::OpenBytes("x", "nonsense").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(FormatsTest, ContentAfterTheArrayIsAnError) {
  // A second array (two files concatenated) or a stray record after the ']' was dropped
  // without a word.
  for (const std::string tail :
       {"\n[{\"prompt\": \"p2\", \"chosen\": \"c\", \"rejected\": \"r\"}]", "\n\n x"}) {
    auto reader = RecordReader::Open(
        Write("two.json", "[{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}]" + tail));
    ASSERT_TRUE(reader.ok());
    Record r;
    ASSERT_TRUE(*(*reader)->Next(&r));
    absl::StatusOr<bool> got = (*reader)->Next(&r);
    ASSERT_FALSE(got.ok()) << tail;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find("two.json: after element 1: unexpected content after "
                                          "the array's closing ']'"),
              std::string::npos)
        << got.status();
  }
  // "[]" followed by content too.
  auto reader = RecordReader::Open(Write("empty.json", "[] {}"));
  ASSERT_TRUE(reader.ok());
  Record r;
  EXPECT_FALSE((*reader)->Next(&r).ok());
  // Whitespace after the array is fine.
  EXPECT_EQ(ReadAll(Write("ws.json",
                          "[{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}]\n\n  \n"))
                .size(),
            1u);
}

}  // namespace
}  // namespace curation::formats
