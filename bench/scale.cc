// curation-bench scale: the service at N pairs, measured through a real server in one run.
//
//   curation-bench scale --pairs N [--source PAIRS.jsonl[.gz]] [--methods herding,...]
//       [--budgets 0.01,0.1] [--encoding sq8|float16|float32] [--work DIR] [--bin DIR]
//       [--embed-pairs N] [--server-flag FLAG]... [--skip-restart]
//
// Writes N pairs as JSONL (synthetic short pairs, or --source's pairs repeated with a copy
// number in the prompt, so that no two are the same), starts curation-server on loopback with
// a fresh data directory, ingests the file with the `curation` CLI, and prints: the ingest
// rate next to curation-embed's on the same file's first --embed-pairs pairs (the embedder
// alone, no service), the server's resident memory at rest and its peak, the restart time
// to SERVING and the memory after it, and the time and peak memory of each method at each
// budget. Every figure comes from this one run on this one machine. The binaries are taken
// from --bin (default: curation-bench's own directory).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "curation/client.h"
#include "formats/record_reader.h"
#include "nlohmann/json.hpp"

namespace curation::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "curation-bench scale: %s\n", what.c_str());
  std::exit(1);
}

struct Options {
  int64_t pairs = 0;
  std::string source;
  std::vector<std::string> methods = {"herding", "facility_location", "isa", "random"};
  std::vector<double> budgets = {0.01, 0.1};
  std::string encoding;
  std::string work = "/tmp/curation-scale";
  std::string bin;
  int64_t embed_pairs = 1'000'000;
  std::vector<std::string> server_flags;
  bool restart = true;
};

// Resident and peak resident memory of a process, in MB (10^6 bytes), from /proc.
struct Memory {
  double rss_mb = 0;
  double peak_mb = 0;
};

Memory ReadMemory(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  Memory m;
  std::string line;
  while (std::getline(status, line)) {
    const auto kb = [&] { return std::atof(line.c_str() + line.find(':') + 1) * 1024 / 1e6; };
    if (line.rfind("VmRSS:", 0) == 0) m.rss_mb = kb();
    if (line.rfind("VmHWM:", 0) == 0) m.peak_mb = kb();
  }
  return m;
}

// Starts counting the peak from the current resident size (Linux: clear_refs 5).
void ResetPeak(pid_t pid) { std::ofstream("/proc/" + std::to_string(pid) + "/clear_refs") << "5"; }

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class Server {
 public:
  // Starts the server on `data_dir` and waits until it serves; records how long that took.
  Server(const Options& options, const std::string& data_dir) {
    const std::string port_file = data_dir + ".port";
    fs::remove(port_file);
    std::vector<std::string> argv = {options.bin + "/curation-server", "--listen=127.0.0.1:0",
                                     "--data-dir=" + data_dir, "--port-file=" + port_file,
                                     "--auth=false"};
    argv.insert(argv.end(), options.server_flags.begin(), options.server_flags.end());
    const auto start = Clock::now();
    pid_ = Spawn(argv, options.work + "/server.log");
    while (!fs::exists(port_file) || fs::file_size(port_file) == 0) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) Die("the server exited; see server.log");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::ifstream in(port_file);
    int port = 0;
    in >> port;
    address_ = "127.0.0.1:" + std::to_string(port);
    client::Options copts;
    copts.server = address_;
    copts.timeout = std::chrono::hours(2);
    auto client = client::Client::Connect(copts);
    if (!client.ok()) Die(client.status().ToString());
    client_ = std::move(*client);
    while (true) {
      auto serving = client_->Serving();
      if (serving.ok() && *serving) break;
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) Die("the server exited; see server.log");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ready_seconds_ = Since(start);
  }
  ~Server() {
    if (pid_ > 0) Stop();
  }

  // SIGTERM, then waits for the process to exit.
  void Stop() {
    kill(pid_, SIGTERM);
    Wait(pid_);
    pid_ = -1;
  }

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  client::Client& client() { return *client_; }
  double ready_seconds() const { return ready_seconds_; }

 private:
  pid_t pid_ = -1;
  std::string address_;
  std::unique_ptr<client::Client> client_;
  double ready_seconds_ = 0;
};

// Short synthetic pairs: a 12-word prompt and two 20-word answers over a Zipf-distributed
// vocabulary of made-up words, with the pair's number in the prompt so that none repeats.
class SyntheticPairs {
 public:
  SyntheticPairs() : rng_(20261130) {
    std::uniform_int_distribution<int> letters(0, 25), length(2, 9);
    for (int w = 0; w < 20'000; ++w) {
      std::string word;
      for (int c = length(rng_); c > 0; --c) word += static_cast<char>('a' + letters(rng_));
      vocabulary_.push_back(word);
    }
    // Zipf(1): P(rank r) proportional to 1 / r, sampled through its cumulative sums.
    double total = 0;
    for (size_t r = 1; r <= vocabulary_.size(); ++r) cumulative_.push_back(total += 1.0 / r);
  }

  std::string Words(int count) {
    std::uniform_real_distribution<double> u(0, cumulative_.back());
    std::string out;
    for (int i = 0; i < count; ++i) {
      const size_t r =
          std::lower_bound(cumulative_.begin(), cumulative_.end(), u(rng_)) - cumulative_.begin();
      if (i > 0) out += ' ';
      out += vocabulary_[std::min(r, vocabulary_.size() - 1)];
    }
    return out;
  }

  nlohmann::json Next(int64_t serial) {
    return {{"prompt", absl::StrCat(Words(12), " (", serial, ")")},
            {"chosen", Words(20)},
            {"rejected", Words(20)}};
  }

 private:
  std::mt19937_64 rng_;
  std::vector<std::string> vocabulary_;
  std::vector<double> cumulative_;
};

void WritePairs(const Options& options, const std::string& path) {
  std::ofstream out(path);
  if (!options.source.empty()) {
    std::vector<formats::Record> source;
    auto reader = formats::RecordReader::Open(options.source);
    if (!reader.ok()) Die(reader.status().ToString());
    formats::Record record;
    while (true) {
      auto more = (*reader)->Next(&record);
      if (!more.ok()) Die(more.status().ToString());
      if (!*more) break;
      if (record.is_pair) source.push_back(record);
    }
    if (source.empty()) Die("no pairs in " + options.source);
    for (int64_t i = 0; i < options.pairs; ++i) {
      const formats::Record& e = source[i % source.size()];
      const int64_t copy = i / static_cast<int64_t>(source.size());
      nlohmann::json j = {
          {"prompt", copy == 0 ? e.prompt : absl::StrCat(e.prompt, " (", copy, ")")},
          {"chosen", e.chosen},
          {"rejected", e.rejected}};
      out << j.dump() << '\n';
    }
  } else {
    SyntheticPairs pairs;
    for (int64_t i = 0; i < options.pairs; ++i) out << pairs.Next(i).dump() << '\n';
  }
  if (!out.flush()) Die("cannot write " + path);
}

std::string Method(const std::string& name) {
  std::string upper;
  for (char c : name) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return upper;
}

Options Parse(int argc, char** argv) {
  Options o;
  o.bin = fs::canonical("/proc/self/exe").parent_path().string();
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--skip-restart") {
      o.restart = false;
      continue;
    }
    if (i + 1 >= argc) Die("missing value of " + flag);
    const std::string value = argv[++i];
    if (flag == "--pairs") {
      o.pairs = std::atoll(value.c_str());
    } else if (flag == "--source") {
      o.source = value;
    } else if (flag == "--methods") {
      o.methods = absl::StrSplit(value, ',');
    } else if (flag == "--budgets") {
      o.budgets.clear();
      for (absl::string_view b : absl::StrSplit(value, ',')) {
        o.budgets.push_back(std::atof(std::string(b).c_str()));
      }
    } else if (flag == "--encoding") {
      o.encoding = value;
    } else if (flag == "--work") {
      o.work = value;
    } else if (flag == "--bin") {
      o.bin = value;
    } else if (flag == "--embed-pairs") {
      o.embed_pairs = std::atoll(value.c_str());
    } else if (flag == "--server-flag") {
      o.server_flags.push_back(value);
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (o.pairs < 100) Die("--pairs N (at least 100) is required");
  return o;
}

}  // namespace

int RunScale(int argc, char** argv) {
  const Options options = Parse(argc, argv);
  fs::remove_all(options.work);
  fs::create_directories(options.work);
  const std::string pairs_file = options.work + "/pairs.jsonl";
  std::printf("# curation-bench scale --pairs %lld (work dir %s)\n",
              static_cast<long long>(options.pairs), options.work.c_str());
  auto start = Clock::now();
  WritePairs(options, pairs_file);
  std::printf("wrote %lld pairs (%.0f MB) in %.1f s\n", static_cast<long long>(options.pairs),
              fs::file_size(pairs_file) / 1e6, Since(start));
  std::fflush(stdout);

  // The embedder alone, on the same file's first pairs: the ceiling for ingest.
  const int64_t embed_pairs = std::min(options.pairs, options.embed_pairs);
  start = Clock::now();
  const int embedded =
      Wait(Spawn({options.bin + "/curation-embed", pairs_file, options.work + "/embed",
                  "--max-pairs", std::to_string(embed_pairs)},
                 options.work + "/embed.log"));
  const double embed_rate = embed_pairs / Since(start);
  if (embedded != 0) Die("curation-embed failed; see embed.log");
  fs::remove(options.work + "/embed.f32");

  const std::string data_dir = options.work + "/data";
  auto server = std::make_unique<Server>(options, data_dir);
  v1::CreateDatasetRequest create;
  create.mutable_dataset()->set_name("scale");
  if (!options.encoding.empty()) {
    v1::EmbeddingConfig::Encoding e;
    if (!v1::EmbeddingConfig::Encoding_Parse("ENCODING_" + Method(options.encoding), &e)) {
      Die("unknown --encoding " + options.encoding);
    }
    create.mutable_dataset()->mutable_embedding()->set_encoding(e);
  }
  v1::Dataset dataset;
  if (grpc::Status s = server->client().CreateDataset(create, &dataset); !s.ok()) {
    Die("CreateDataset: " + s.error_message());
  }
  ResetPeak(server->pid());
  start = Clock::now();
  const int ingested = Wait(Spawn(
      {options.bin + "/curation", "--server", server->address(), "ingest", "scale", pairs_file},
      options.work + "/ingest.log"));
  const double ingest_seconds = Since(start);
  if (ingested != 0) Die("curation ingest failed; see ingest.log");
  const double ingest_rate = options.pairs / ingest_seconds;
  const Memory after_ingest = ReadMemory(server->pid());
  std::printf(
      "ingest: %.0f pairs/s (%.1f s); curation-embed alone: %.0f pairs/s on %lld pairs; "
      "ratio %.2f\n",
      ingest_rate, ingest_seconds, embed_rate, static_cast<long long>(embed_pairs),
      ingest_rate / embed_rate);
  std::printf("server after the ingest: %.0f MB resident, peak %.0f MB during it\n",
              after_ingest.rss_mb, after_ingest.peak_mb);
  std::fflush(stdout);

  double restart_seconds = 0;
  Memory at_rest = after_ingest;
  if (options.restart) {
    server->Stop();
    server = std::make_unique<Server>(options, data_dir);
    restart_seconds = server->ready_seconds();
    at_rest = ReadMemory(server->pid());
    std::printf("restart to SERVING: %.1f s; at rest after it: %.0f MB resident (peak %.0f MB)\n",
                restart_seconds, at_rest.rss_mb, at_rest.peak_mb);
    std::fflush(stdout);
  }

  struct Row {
    std::string method;
    double budget;
    double seconds;
    double peak_mb;
    std::string status;
  };
  std::vector<Row> rows;
  for (const std::string& method : options.methods) {
    for (double budget : options.budgets) {
      v1::SelectRequest request;
      request.set_dataset("scale");
      request.mutable_budget()->set_fraction(budget);
      v1::SelectionMethod m;
      if (!v1::SelectionMethod_Parse("SELECTION_METHOD_" + Method(method), &m)) {
        Die("unknown method " + method);
      }
      request.set_method(m);
      ResetPeak(server->pid());
      const Memory before = ReadMemory(server->pid());
      start = Clock::now();
      v1::Selection selection;
      const grpc::Status s = server->client().Select(request, &selection, std::chrono::hours(2));
      const double seconds = Since(start);
      const Memory after = ReadMemory(server->pid());
      rows.push_back({method, budget, seconds, after.peak_mb,
                      s.ok() ? absl::StrCat(selection.summary().selected_count(), " selected")
                             : absl::StrCat("error: ", s.error_message())});
      std::printf("%s at %g: %.1f s, peak %.0f MB (resident before %.0f MB), %s\n", method.c_str(),
                  budget, seconds, after.peak_mb, before.rss_mb, rows.back().status.c_str());
      std::fflush(stdout);
    }
  }

  std::printf("\n| figure | value |\n|---|---|\n");
  std::printf("| pairs | %lld |\n", static_cast<long long>(options.pairs));
  std::printf("| ingest (CLI, built-in embedder) | %.0f pairs/s |\n", ingest_rate);
  std::printf("| curation-embed alone, same file | %.0f pairs/s (ingest = %.0f%%) |\n", embed_rate,
              100 * ingest_rate / embed_rate);
  std::printf("| resident after ingest / peak during it | %.0f / %.0f MB |\n", after_ingest.rss_mb,
              after_ingest.peak_mb);
  if (options.restart) {
    std::printf("| restart to SERVING | %.1f s |\n", restart_seconds);
    std::printf("| at rest after restart | %.0f MB |\n", at_rest.rss_mb);
  }
  for (const Row& r : rows) {
    // The memory bound is a method's peak against the server at rest.
    const std::string ratio =
        options.restart ? absl::StrFormat(", %.2fx at rest", r.peak_mb / at_rest.rss_mb) : "";
    std::printf("| %s at %g%% | %.1f s, peak %.0f MB%s (%s) |\n", r.method.c_str(), 100 * r.budget,
                r.seconds, r.peak_mb, ratio.c_str(), r.status.c_str());
  }
  server->Stop();
  return 0;
}

}  // namespace curation::bench
