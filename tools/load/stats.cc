#include "tools/load/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "absl/status/status.h"

namespace curation::load {

void Recorder::Add(const Series& series, double seconds, grpc::StatusCode code) {
  if (code == grpc::StatusCode::OK) {
    latencies_[series].push_back(seconds);
  } else {
    ++errors_[series][code];
  }
}

void Recorder::Merge(const Recorder& other) {
  for (const auto& [series, values] : other.latencies_) {
    auto& mine = latencies_[series];
    mine.insert(mine.end(), values.begin(), values.end());
  }
  for (const auto& [series, codes] : other.errors_) {
    for (const auto& [code, n] : codes) errors_[series][code] += n;
  }
}

const std::vector<double>& Recorder::Latencies(const Series& series) const {
  static const std::vector<double> kNone;
  auto it = latencies_.find(series);
  return it == latencies_.end() ? kNone : it->second;
}

std::vector<Series> Recorder::AllSeries() const {
  std::set<Series> all;
  for (const auto& [series, values] : latencies_) all.insert(series);
  for (const auto& [series, codes] : errors_) all.insert(series);
  return {all.begin(), all.end()};
}

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  // Nearest rank: the smallest value with at least q of the values at or below it.
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

std::string CodeName(grpc::StatusCode code) {
  // gRPC and absl share the canonical codes, and absl can name them.
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace curation::load
