// curation-embed: embeds a preference-pairs file with the built-in embedder, writing the same
// matrix layout as shared/tools/embed_lsa.py so the proxy tools can score the embedder.
//
//   curation-embed PAIRS.jsonl[.gz] OUT_PREFIX [--max-pairs N] [--threads T] [--dim D]
//       [--char-weight W] [--char-min N] [--char-max N] [--punct-weight W] [--bigram-weight W]
//
// Writes OUT_PREFIX.f32 (row-major float32; rows = embed(prompt + "\n" + chosen) for every
// pair, then embed(prompt + "\n" + rejected) for every pair) and OUT_PREFIX.json
// ({"rows", "dim", "pairs"}), and prints the throughput (wall and CPU time of the embedding
// alone; reading the file is not counted). Options other than the file names
// pick a non-default variant of the built-in embedder (see hashed_ngram_embedder.h), for
// experiments.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "embedding/embedder.h"
#include "embedding/hashed_ngram_embedder.h"
#include "formats/record_reader.h"

namespace {

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int Usage() {
  std::fprintf(stderr,
               "usage: curation-embed PAIRS.jsonl[.gz] OUT_PREFIX [--max-pairs N] [--threads T]\n"
               "       [--dim D] [--char-weight W] [--char-min N] [--char-max N]\n"
               "       [--punct-weight W] [--bigram-weight W]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using curation::embedding::HashedNgramEmbedder;
  using curation::embedding::HashedNgramOptions;
  if (argc < 3) return Usage();
  std::string in_path = argv[1], out_prefix = argv[2];
  int64_t max_pairs = 0;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  HashedNgramOptions opt;
  for (int i = 3; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) return Usage();
    const char* v = argv[++i];
    if (flag == "--max-pairs") {
      max_pairs = std::atoll(v);
    } else if (flag == "--threads") {
      threads = static_cast<unsigned>(std::max(1, std::atoi(v)));
    } else if (flag == "--dim") {
      opt.dim = std::atoi(v);
    } else if (flag == "--bigram-weight") {
      opt.bigram_weight = std::strtof(v, nullptr);
    } else if (flag == "--char-weight") {
      opt.char_weight = std::strtof(v, nullptr);
    } else if (flag == "--char-min") {
      opt.char_min = std::atoi(v);
    } else if (flag == "--char-max") {
      opt.char_max = std::atoi(v);
    } else if (flag == "--punct-weight") {
      opt.punct_weight = std::strtof(v, nullptr);
    } else {
      return Usage();
    }
  }
  if (opt.dim <= 0) return Usage();

  auto reader = curation::formats::RecordReader::Open(in_path);
  if (!reader.ok()) {
    std::fprintf(stderr, "%s\n", reader.status().ToString().c_str());
    return 1;
  }
  // Texts for all chosen rows, then all rejected rows, as embed_lsa.py lays them out.
  std::vector<std::string> chosen, rejected;
  curation::formats::Record rec;
  while (max_pairs == 0 || static_cast<int64_t>(chosen.size()) < max_pairs) {
    absl::StatusOr<bool> more = (*reader)->Next(&rec);
    if (!more.ok()) {
      std::fprintf(stderr, "%s\n", more.status().ToString().c_str());
      return 1;
    }
    if (!*more) break;
    if (!rec.is_pair) continue;
    chosen.push_back(rec.prompt + "\n" + rec.chosen);
    rejected.push_back(rec.prompt + "\n" + rec.rejected);
  }
  const int64_t pairs = static_cast<int64_t>(chosen.size());
  const int64_t rows = 2 * pairs;

  HashedNgramEmbedder embedder(opt);
  const int dim = embedder.dim();
  std::vector<float> matrix(static_cast<size_t>(rows) * dim);
  auto start = std::chrono::steady_clock::now();
  const double cpu_start = ProcessCpuSeconds();
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int64_t r = t; r < rows; r += threads) {
        const std::string& text = r < pairs ? chosen[r] : rejected[r - pairs];
        embedder.Embed(text, matrix.data() + r * dim);
      }
    });
  }
  for (std::thread& w : workers) w.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu_secs = ProcessCpuSeconds() - cpu_start;

  std::ofstream f32(out_prefix + ".f32", std::ios::binary);
  f32.write(reinterpret_cast<const char*>(matrix.data()),
            static_cast<std::streamsize>(matrix.size() * sizeof(float)));
  std::ofstream meta(out_prefix + ".json");
  meta << "{\"rows\": " << rows << ", \"dim\": " << dim << ", \"pairs\": " << pairs << "}";
  if (!f32 || !meta) {
    std::fprintf(stderr, "failed to write %s.{f32,json}\n", out_prefix.c_str());
    return 1;
  }
  std::printf("%s: %lld pairs, dim %d, %u threads, %.2f s, %.0f pairs/s\n",
              std::string(embedder.name()).c_str(), static_cast<long long>(pairs), dim, threads,
              secs, secs > 0 ? pairs / secs : 0.0);
  // The same work in CPU time, which a busy machine does not inflate as it does wall time:
  // for comparing against other steps' CPU cost (bench/ingest.sh).
  std::printf("cpu: %.2f CPU-seconds, %.0f pairs per CPU-second\n", cpu_secs,
              cpu_secs > 0 ? pairs / cpu_secs : 0.0);
  return 0;
}
