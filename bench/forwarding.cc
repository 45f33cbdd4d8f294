// curation-bench forwarding: what it costs to call a cluster member that does not hold the
// dataset. Starts Debian's etcd and three real members on loopback (tests/integration's
// LocalCluster), puts one dataset on m1, and calls GetDataset and a 1% herding Select on the
// owner (m1) and on another member (m2), interleaved so both see the same machine, printing
// p50 and p99 of each and the forwarded/direct ratio (issue 13).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/local_cluster.h"
#include "tests/integration/test_data.h"

namespace curation::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "curation-bench forwarding: %s\n", what.c_str());
  std::exit(1);
}

}  // namespace

int RunForwarding(int argc, char** argv) {
  int pairs = 20'000;
  int gets = 2'000;
  int selects = 30;
  std::string work = "/tmp/curation-bench-forwarding";
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--pairs") {
      pairs = std::atoi(v);
    } else if (flag == "--gets") {
      gets = std::atoi(v);
    } else if (flag == "--selects") {
      selects = std::atoi(v);
    } else if (flag == "--work") {
      work = v;
    } else {
      Die("unknown flag " + flag +
          " (usage: curation-bench forwarding [--pairs N] [--gets N] [--selects N] [--work DIR])");
    }
  }
  if (pairs < 100 || gets < 1 || selects < 1) Die("--pairs >= 100, --gets and --selects >= 1");
  std::filesystem::remove_all(work);
  testing::LocalCluster cluster(work, 3);
  const std::string token = cluster.MakeTenant(0, "bench");
  auto owner = cluster.Data(0);
  auto other = cluster.Data(1);
  {
    grpc::ClientContext context;
    testing::Authorize(&context, token);
    v1::CreateDatasetRequest request;
    *request.mutable_dataset() = testing::MakeDataset("fwd", v1::DATASET_KIND_PAIRS, 0);
    request.set_member("m1");
    v1::Dataset reply;
    grpc::Status s = owner->CreateDataset(&context, request, &reply);
    if (!s.ok()) Die("CreateDataset: " + s.error_message());
  }
  {
    const auto sample = testing::HhPairs(500);
    grpc::ClientContext context;
    testing::Authorize(&context, token);
    v1::IngestExamplesResponse reply;
    auto writer = owner->IngestStream(&context, &reply);
    for (int at = 0; at < pairs; at += 1000) {
      v1::IngestExamplesRequest request;
      if (at == 0) request.set_dataset("fwd");
      for (int i = at; i < std::min(pairs, at + 1000); ++i) {
        v1::Example* e = request.add_examples();
        *e = sample[i % sample.size()];
        e->set_id("p" + std::to_string(i));
        e->mutable_pair()->set_prompt(e->pair().prompt() + " #" + std::to_string(i));
      }
      if (!writer->Write(request)) break;
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (!s.ok()) Die("IngestStream: " + s.error_message());
  }

  auto get = [&](v1::CurationService::Stub& stub) {
    grpc::ClientContext context;
    testing::Authorize(&context, token);
    v1::GetDatasetRequest request;
    request.set_name("fwd");
    v1::Dataset reply;
    const auto start = Clock::now();
    grpc::Status s = stub.GetDataset(&context, request, &reply);
    if (!s.ok()) Die("GetDataset: " + s.error_message());
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  };
  auto select = [&](v1::CurationService::Stub& stub) {
    grpc::ClientContext context;
    testing::Authorize(&context, token);
    v1::SelectRequest request;
    request.set_dataset("fwd");
    request.mutable_budget()->set_fraction(0.01);
    request.set_method(v1::SELECTION_METHOD_HERDING);
    v1::Selection reply;
    const auto start = Clock::now();
    grpc::Status s = stub.Select(&context, request, &reply);
    if (!s.ok()) Die("Select: " + s.error_message());
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  };
  // Warm both paths (channels, the owner's caches) before measuring.
  for (int i = 0; i < 50; ++i) get(*owner), get(*other);
  select(*owner), select(*other);

  std::vector<double> get_direct, get_forwarded, select_direct, select_forwarded;
  for (int i = 0; i < gets; ++i) {
    get_direct.push_back(get(*owner));
    get_forwarded.push_back(get(*other));
  }
  for (int i = 0; i < selects; ++i) {
    select_direct.push_back(select(*owner));
    select_forwarded.push_back(select(*other));
  }
  std::printf("forwarding cost, %d pairs on member m1 of 3, one machine (loadavg at end: ", pairs);
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f) != nullptr) {
      buf[std::strcspn(buf, "\n")] = 0;
      std::printf("%s", buf);
    }
    std::fclose(f);
  }
  std::printf(")\n");
  std::printf("%-28s %12s %12s %12s %12s %9s %9s\n", "call", "owner p50", "owner p99", "other p50",
              "other p99", "p50 x", "p99 x");
  auto row = [](const char* name, const char* unit, const std::vector<double>& d,
                const std::vector<double>& f) {
    const double d50 = Percentile(d, 0.5), d99 = Percentile(d, 0.99);
    const double f50 = Percentile(f, 0.5), f99 = Percentile(f, 0.99);
    std::printf("%-28s %9.1f %-2s %9.1f %-2s %9.1f %-2s %9.1f %-2s %8.2fx %8.2fx\n", name, d50,
                unit, d99, unit, f50, unit, f99, unit, f50 / d50, f99 / d99);
  };
  row(("GetDataset (n=" + std::to_string(gets) + ")").c_str(), "us", get_direct, get_forwarded);
  row(("Select herding 1% (n=" + std::to_string(selects) + ")").c_str(), "ms", select_direct,
      select_forwarded);
  return 0;
}

}  // namespace curation::bench
