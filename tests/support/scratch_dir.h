// Scratch directories for tests, removed when the test program exits.
//
// RocksDB preallocates its files, so every server a test starts leaves tens to hundreds of MB
// behind; a suite that kept them filled the disk within a day of runs. Set
// CURATION_KEEP_TEST_DIRS=1 to keep them for a post-mortem.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace curation::testing {

// A fresh, empty directory "curation-<pid>-<name>" under $TEST_TMPDIR or the system's
// temporary directory. The same name twice in one process gives the same (emptied) directory.
inline std::string ScratchDir(const std::string& name) {
  struct Registry {
    std::mutex mu;
    std::vector<std::filesystem::path> dirs;
    ~Registry() {
      const char* keep = std::getenv("CURATION_KEEP_TEST_DIRS");
      if (keep != nullptr && std::string(keep) == "1") return;
      std::error_code ignored;
      for (const auto& dir : dirs) std::filesystem::remove_all(dir, ignored);
    }
  };
  static Registry registry;
  const char* base = std::getenv("TEST_TMPDIR");
  std::filesystem::path dir =
      std::filesystem::path(base != nullptr ? base
                                            : std::filesystem::temp_directory_path().string()) /
      ("curation-" + std::to_string(getpid()) + "-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::lock_guard<std::mutex> lock(registry.mu);
  registry.dirs.push_back(dir);
  return dir.string();
}

}  // namespace curation::testing
