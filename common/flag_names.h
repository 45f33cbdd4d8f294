// The command-line tools document their flags the usual way, --data-dir; absl spells them
// --data_dir. DashedFlagArgs lets both work: it copies argv with the name part of every
// "--flag" (up to an '=') turned from dashes to underscores, before absl::ParseCommandLine.
// Values are left alone ("--prefix=a-b" keeps "a-b"), as is everything after a bare "--",
// which ends the flags.
#pragma once

#include <string>
#include <vector>

namespace curation {

// `arg` with the dashes of its flag name turned into underscores, if it is a "--flag".
inline std::string UnderscoreFlagName(std::string arg) {
  if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
    for (size_t i = 2; i < arg.size() && arg[i] != '='; ++i) {
      if (arg[i] == '-') arg[i] = '_';
    }
  }
  return arg;
}

// Owns the rewritten copy of argv; argv() stays valid for the object's lifetime.
class DashedFlagArgs {
 public:
  DashedFlagArgs(int argc, char** argv) {
    bool flags_ended = false;
    for (int i = 0; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--") flags_ended = true;
      args_.push_back(i == 0 || flags_ended ? std::move(arg) : UnderscoreFlagName(std::move(arg)));
    }
    for (std::string& arg : args_) pointers_.push_back(arg.data());
    pointers_.push_back(nullptr);  // argv[argc] is null by convention
  }
  DashedFlagArgs(const DashedFlagArgs&) = delete;
  DashedFlagArgs& operator=(const DashedFlagArgs&) = delete;

  int argc() const { return static_cast<int>(args_.size()); }
  char** argv() { return pointers_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> pointers_;
};

}  // namespace curation
