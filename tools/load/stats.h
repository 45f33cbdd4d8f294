// Client-side measurements of the load tool: latencies and error codes per RPC, kept per
// worker thread without locks and merged at the end.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace curation::load {

// What a measurement belongs to: the phase of the run, the tenant and the RPC.
struct Series {
  std::string phase;   // "baseline" or "contention"
  std::string tenant;  // "bulk" or "interactive"
  std::string rpc;     // e.g. "IngestExamples"
  bool operator<(const Series& o) const {
    return std::tie(phase, tenant, rpc) < std::tie(o.phase, o.tenant, o.rpc);
  }
};

class Recorder {
 public:
  // One finished call: its wall-clock latency in seconds and its status. Latencies are kept
  // for successful calls only, so a flood of quick rejections cannot flatter a percentile;
  // every failure is counted by code.
  void Add(const Series& series, double seconds, grpc::StatusCode code);

  // Adds everything `other` recorded.
  void Merge(const Recorder& other);

  // Latencies (seconds) of the successful calls of `series`, unsorted; empty if none.
  const std::vector<double>& Latencies(const Series& series) const;
  // Failed calls by code, for every series that has any.
  const std::map<Series, std::map<grpc::StatusCode, int64_t>>& errors() const { return errors_; }
  // Every series seen, successful or not.
  std::vector<Series> AllSeries() const;

 private:
  std::map<Series, std::vector<double>> latencies_;
  std::map<Series, std::map<grpc::StatusCode, int64_t>> errors_;
};

// The q-quantile (0 <= q <= 1) of `values` by the nearest-rank method; NaN when empty.
// Sorts a copy, so `values` is left as it is.
double Quantile(std::vector<double> values, double q);

// "RESOURCE_EXHAUSTED" and so on.
std::string CodeName(grpc::StatusCode code);

}  // namespace curation::load
