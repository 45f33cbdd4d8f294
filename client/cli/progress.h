// A one-line progress bar on stderr, drawn only when stderr is a terminal, so logs and pipes
// stay clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace curation::cli {

class ProgressBar {
 public:
  // `label` prefixes the bar; `unit` names what is counted ("records").
  ProgressBar(std::string label, std::string unit);
  ~ProgressBar();
  // done/total of the work (total 0 = unknown); `count` is what the rate is computed on.
  void Update(double done, double total, int64_t count);
  // Clears the line.
  void Finish();

 private:
  std::string label_, unit_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace curation::cli
