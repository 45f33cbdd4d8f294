#include "common/flag_names.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace curation {
namespace {

std::vector<std::string> Rewrite(std::vector<std::string> in) {
  std::vector<char*> argv;
  for (std::string& s : in) argv.push_back(s.data());
  DashedFlagArgs args(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(args.argv()[args.argc()], nullptr);
  return std::vector<std::string>(args.argv(), args.argv() + args.argc());
}

TEST(FlagNamesTest, DashesInNamesBecomeUnderscores) {
  EXPECT_EQ(Rewrite({"prog", "--data-dir", "/x", "--admin-token-file=a-b.token", "--auth=false"}),
            (std::vector<std::string>{"prog", "--data_dir", "/x", "--admin_token_file=a-b.token",
                                      "--auth=false"}));
}

TEST(FlagNamesTest, LeavesValuesProgramNameAndEverythingAfterDoubleDash) {
  EXPECT_EQ(Rewrite({"my-prog", "--prefix=run-1", "-x-y", "pos-arg", "--", "--not-a-flag"}),
            (std::vector<std::string>{"my-prog", "--prefix=run-1", "-x-y", "pos-arg", "--",
                                      "--not-a-flag"}));
}

TEST(FlagNamesTest, UnderscoreFlagNameOfOneArgument) {
  EXPECT_EQ(UnderscoreFlagName("--max-message-bytes=1"), "--max_message_bytes=1");
  EXPECT_EQ(UnderscoreFlagName("--already_ok"), "--already_ok");
  EXPECT_EQ(UnderscoreFlagName("--"), "--");
  EXPECT_EQ(UnderscoreFlagName("value-with-dashes"), "value-with-dashes");
}

}  // namespace
}  // namespace curation
