// The ids the server gives examples sent without one are stored: a re-ingest finds its records
// as duplicates only if the content hash never changes. Pinned against SHA-256 computed
// independently (Python's hashlib) over the documented material.
#include "server/ingestor.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"

namespace curation::server {
namespace {

TEST(IngestorTest, ContentHashOfAPairIsPinned) {
  v1::Example e;
  e.mutable_pair()->set_prompt("What is 2+2?");
  e.mutable_pair()->set_chosen("4");
  e.mutable_pair()->set_rejected("5");
  // sha256(b"pair" + for each text: u64 little-endian length + bytes)
  const std::string hash = Ingestor::ContentHash(e);
  EXPECT_EQ(absl::BytesToHexString(hash),
            "df47211c8be11087805fa7a27c6b46cfd72a885e305cf4fef7405f7a46cf5bf1");
  EXPECT_EQ(Ingestor::HashId(hash), "hdf47211c8be11087805fa7a27c6b46cf");
  // Neither the id, the metadata nor the vectors count.
  e.set_id("mine");
  (*e.mutable_metadata())["source"] = "x";
  e.mutable_pair()->add_chosen_embedding(1.0f);
  EXPECT_EQ(Ingestor::ContentHash(e), hash);
  // Moving a byte from one text to the next does.
  e.mutable_pair()->set_prompt("What is 2+2");
  e.mutable_pair()->set_chosen("?4");
  EXPECT_NE(Ingestor::ContentHash(e), hash);
}

TEST(IngestorTest, ContentHashOfAnUnpairedExampleIsPinned) {
  v1::Example e;
  e.mutable_unpaired()->set_prompt("Say hi");
  e.mutable_unpaired()->set_completion("hi");
  e.mutable_unpaired()->set_label(v1::LABEL_DESIRABLE);
  // sha256(b"unpaired" + the two length-prefixed texts + the label's number as one byte)
  const std::string hash = Ingestor::ContentHash(e);
  EXPECT_EQ(absl::BytesToHexString(hash),
            "2c3f6ed867a5f883be4fa2ef4a3aa5d320d313df2f5da70ea96e164d1b37785c");
  EXPECT_EQ(Ingestor::HashId(hash), "h2c3f6ed867a5f883be4fa2ef4a3aa5d3");
  e.mutable_unpaired()->set_label(v1::LABEL_UNDESIRABLE);
  EXPECT_NE(Ingestor::ContentHash(e), hash);
}

}  // namespace
}  // namespace curation::server
