// curation-bench partitioned: every method on a dataset partitioned over three members against
// the same method on the same data held whole by one member, scored by the service's own proxy
// (EvaluateSelection, what `curation evaluate` calls), issue 14's quality table.
//
// Starts Debian's etcd and three real members on loopback (tests/integration's LocalCluster),
// ingests the first --pairs pairs of a matrix written by ../shared/tools/embed_lsa.py (all
// chosen rows, then all rejected rows) as client vectors into "whole" (one member) and "parts"
// (3 partitions), with ids that sort in ingest order so that the proxy's split is the same on
// both. Then, for each method and budget, evaluates the selection made now on each dataset and
// prints both accuracies, random whole pairs' mean and standard deviation at the same size
// (the same draws on both), and whether the partitioned score lies within that deviation of
// one node's.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/local_cluster.h"
#include "tests/integration/test_data.h"

namespace curation::bench {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "curation-bench partitioned: %s\n", what.c_str());
  std::exit(1);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

v1::SelectionMethod MethodOf(const std::string& name) {
  if (name == "random") return v1::SELECTION_METHOD_RANDOM;
  if (name == "isa") return v1::SELECTION_METHOD_ISA;
  if (name == "herding") return v1::SELECTION_METHOD_HERDING;
  if (name == "facility_location") return v1::SELECTION_METHOD_FACILITY_LOCATION;
  if (name == "kcenter") return v1::SELECTION_METHOD_KCENTER;
  if (name == "dedup") return v1::SELECTION_METHOD_DEDUP;
  Die("unknown method " + name);
}

}  // namespace

int RunPartitioned(int argc, char** argv) {
  if (argc < 4) {
    Die("usage: curation-bench partitioned MATRIX.f32 DIM [--pairs N] [--test-pairs N] "
        "[--budgets 0.01,0.02,0.05,0.1] [--methods random,isa,...] [--work DIR]");
  }
  const std::string matrix = argv[2];
  const int dim = std::atoi(argv[3]);
  int pairs = 25'000;
  int test_pairs = 5'000;
  std::vector<std::string> budgets = {"0.01", "0.02", "0.05", "0.1"};
  std::vector<std::string> methods = {"random",  "isa",  "herding", "facility_location",
                                      "kcenter", "dedup"};
  std::string work = "/tmp/curation-bench-partitioned";
  for (int i = 4; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* v = argv[i + 1];
    if (flag == "--pairs") {
      pairs = std::atoi(v);
    } else if (flag == "--test-pairs") {
      test_pairs = std::atoi(v);
    } else if (flag == "--budgets") {
      budgets = Split(v);
    } else if (flag == "--methods") {
      methods = Split(v);
    } else if (flag == "--work") {
      work = v;
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (dim < 1 || pairs < 100 || test_pairs < 10)
    Die("DIM >= 1, --pairs >= 100, --test-pairs >= 10");

  std::ifstream in(matrix, std::ios::binary | std::ios::ate);
  if (!in) Die("cannot read " + matrix);
  const int64_t floats = static_cast<int64_t>(in.tellg()) / 4;
  const int64_t total = floats / dim / 2;  // pairs in the file
  if (total * 2 * dim != floats) Die(matrix + " does not hold 2 x pairs rows of DIM floats");
  pairs = static_cast<int>(std::min<int64_t>(pairs, total));
  std::vector<float> x(floats);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(x.data()), floats * 4);

  std::filesystem::remove_all(work);
  testing::LocalCluster cluster(work, 3);
  const std::string token = cluster.MakeTenant(0, "bench");
  auto stub = cluster.Data(0);
  for (auto [name, partitions] : {std::pair<const char*, int>{"whole", 0}, {"parts", 3}}) {
    {
      grpc::ClientContext context;
      testing::Authorize(&context, token);
      v1::CreateDatasetRequest request;
      *request.mutable_dataset() = testing::MakeDataset(name, v1::DATASET_KIND_PAIRS, dim);
      request.set_partitions(partitions);
      v1::Dataset reply;
      grpc::Status s = stub->CreateDataset(&context, request, &reply);
      if (!s.ok()) Die(std::string("CreateDataset: ") + s.error_message());
    }
    for (int at = 0; at < pairs; at += 2000) {
      grpc::ClientContext context;
      testing::Authorize(&context, token);
      v1::IngestExamplesRequest request;
      request.set_dataset(name);
      for (int i = at; i < std::min(pairs, at + 2000); ++i) {
        v1::Example* e = request.add_examples();
        char id[16];
        std::snprintf(id, sizeof id, "p%06d", i);
        e->set_id(id);
        v1::PreferencePair* p = e->mutable_pair();
        p->set_prompt("prompt " + std::to_string(i));
        p->set_chosen("chosen " + std::to_string(i));
        p->set_rejected("rejected " + std::to_string(i));
        const float* chosen = x.data() + static_cast<int64_t>(i) * dim;
        const float* rejected = x.data() + (total + i) * dim;
        p->mutable_chosen_embedding()->Add(chosen, chosen + dim);
        p->mutable_rejected_embedding()->Add(rejected, rejected + dim);
      }
      v1::IngestExamplesResponse reply;
      grpc::Status s = stub->IngestExamples(&context, request, &reply);
      if (!s.ok()) Die(std::string("IngestExamples: ") + s.error_message());
      if (reply.rejected() > 0) Die("records rejected: " + reply.errors(0).reason());
    }
  }

  auto evaluate = [&](const std::string& dataset, const std::string& method, double fraction) {
    grpc::ClientContext context;
    testing::Authorize(&context, token);
    v1::EvaluateSelectionRequest request;
    v1::SelectRequest* select = request.mutable_select();
    select->set_dataset(dataset);
    select->set_method(MethodOf(method));
    select->mutable_budget()->set_fraction(fraction);
    request.mutable_proxy()->set_test_pairs(test_pairs);
    auto reader = stub->EvaluateSelection(&context, request);
    v1::EvaluateSelectionProgress message;
    v1::Evaluation evaluation;
    while (reader->Read(&message)) {
      if (message.has_evaluation()) evaluation = message.evaluation();
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) Die("EvaluateSelection " + method + " on " + dataset + ": " + s.error_message());
    return evaluation;
  };

  std::printf("proxy accuracy, %d pairs (%d held out), one member vs 3 partitions on 3 members\n",
              pairs, test_pairs);
  std::printf(
      "| method | budget | one node | 3 partitions | difference | random pairs (sd) | "
      "within sd |\n|---|---|---|---|---|---|---|\n");
  int outside = 0;
  for (const std::string& method : methods) {
    for (const std::string& budget : budgets) {
      const double fraction = std::atof(budget.c_str());
      const v1::Evaluation whole = evaluate("whole", method, fraction);
      const v1::Evaluation parts = evaluate("parts", method, fraction);
      const double diff = parts.subset().accuracy() - whole.subset().accuracy();
      const double sd = whole.random_pairs().sd();
      const bool within = std::fabs(diff) <= sd + 1e-12;
      outside += within ? 0 : 1;
      std::printf("| %s | %g%% | %.3f | %.3f | %+.3f | %.3f (%.3f) | %s |\n", method.c_str(),
                  100 * fraction, whole.subset().accuracy(), parts.subset().accuracy(), diff,
                  whole.random_pairs().mean(), sd, within ? "yes" : "no");
      std::fflush(stdout);
    }
  }
  std::printf("%d of %zu rows outside random's standard deviation\n", outside,
              methods.size() * budgets.size());
  return 0;
}

}  // namespace curation::bench
