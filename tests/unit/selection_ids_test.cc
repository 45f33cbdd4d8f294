// Selection ids: tagged ids verify, forged and malformed ones do not, untagged (pre-tag)
// ids still parse, and the key persists in the store.
#include "server/selection_ids.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "absl/strings/str_split.h"
#include "tests/support/scratch_dir.h"

namespace curation::server {
namespace {

TEST(SelectionIdsTest, TaggedIdsVerifyAndForgedOnesDoNot) {
  SetSelectionIdKey("0123456789abcdef-test-key");
  storage::DatasetRecord dataset;
  dataset.set_internal_id(7);
  const std::string id = MakeSelectionId(dataset, 3);
  std::vector<std::string> parts = absl::StrSplit(id, '-');
  ASSERT_EQ(parts.size(), 4u) << id;
  EXPECT_EQ(parts[0], "sel");
  EXPECT_EQ(parts[1], "7");
  EXPECT_EQ(parts[2], "3");
  EXPECT_EQ(parts[3].size(), 32u);
  auto parsed = ParseSelectionId(id);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->dataset_id, 7u);
  EXPECT_EQ(parsed->seq, 3);
  EXPECT_FALSE(parsed->legacy);
  // The tag binds the numbers: the same tag on a neighbouring selection is refused.
  EXPECT_FALSE(ParseSelectionId("sel-7-4-" + parts[3]).has_value());
  EXPECT_FALSE(ParseSelectionId("sel-8-3-" + parts[3]).has_value());
  std::string flipped = id;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  EXPECT_FALSE(ParseSelectionId(flipped).has_value());
  EXPECT_FALSE(ParseSelectionId(id + "0").has_value());
  // Another key makes other tags: ids are unguessable without the server's key.
  SetSelectionIdKey("another-key-0123456789");
  EXPECT_FALSE(ParseSelectionId(id).has_value());
  EXPECT_NE(MakeSelectionId(dataset, 3), id);
}

TEST(SelectionIdsTest, UntaggedIdsParseAsLegacyAndMalformedOnesDoNot) {
  SetSelectionIdKey("0123456789abcdef-test-key");
  auto legacy = ParseSelectionId("sel-12-0");
  ASSERT_TRUE(legacy.has_value());
  EXPECT_TRUE(legacy->legacy);
  EXPECT_EQ(legacy->dataset_id, 12u);
  EXPECT_EQ(legacy->seq, 0);
  for (const char* bad : {"", "sel", "sel-1", "sel-1--2", "sel-01-2", "sel-1-+2", "sel-x-1",
                          "sel-1-2-3-4", "abc-1-2", "sel-1-2-"}) {
    EXPECT_FALSE(ParseSelectionId(bad).has_value()) << bad;
  }
}

TEST(SelectionIdsTest, TheKeyIsCreatedOnceAndKeptInTheStore) {
  const std::string dir = testing::ScratchDir("selection-ids-key");
  std::filesystem::remove_all(dir);
  std::string first;
  {
    auto store = *store::Store::Open(dir, {});
    ASSERT_TRUE(InitSelectionIds(*store).ok());
    first = MakeSelectionId(1, 1);
  }
  SetSelectionIdKey("0123456789abcdef-test-key");
  auto store = *store::Store::Open(dir, {});
  ASSERT_TRUE(InitSelectionIds(*store).ok());
  EXPECT_EQ(MakeSelectionId(1, 1), first);  // ids made before a restart stay valid
  EXPECT_TRUE(ParseSelectionId(first).has_value());
}

}  // namespace
}  // namespace curation::server
