#include "client/cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace curation::cli {

ProgressBar::ProgressBar(std::string label, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      enabled_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(double done, double total, int64_t count) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  // A terminal redrawn more than ten times a second only costs time.
  if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  drawn_ = true;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double rate = seconds > 0 ? count / seconds : 0;
  constexpr int kWidth = 30;
  const double share = total > 0 ? std::min(1.0, done / total) : 0;
  const int filled = static_cast<int>(share * kWidth);
  std::string bar(filled, '#');
  bar.append(kWidth - filled, '.');
  std::fprintf(stderr, "\r%s [%s] %3.0f%%  %lld %s  %.0f/s ", label_.c_str(), bar.c_str(),
               share * 100, static_cast<long long>(count), unit_.c_str(), rate);
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace curation::cli
