// `curation ingest DATASET FILE [--embeddings VECTORS.npy]`: streams a file's records to the
// server in batches.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/progress.h"
#include "formats/npy_reader.h"
#include "formats/record_reader.h"

namespace curation::cli {
namespace {

v1::Example ToExample(formats::Record& r) {
  v1::Example e;
  e.set_id(std::move(r.id));
  for (auto& [k, v] : r.metadata) (*e.mutable_metadata())[k] = std::move(v);
  if (r.is_pair) {
    v1::PreferencePair* p = e.mutable_pair();
    p->set_prompt(std::move(r.prompt));
    p->set_chosen(std::move(r.chosen));
    p->set_rejected(std::move(r.rejected));
    p->mutable_chosen_embedding()->Add(r.chosen_embedding.begin(), r.chosen_embedding.end());
    p->mutable_rejected_embedding()->Add(r.rejected_embedding.begin(), r.rejected_embedding.end());
  } else {
    v1::UnpairedExample* u = e.mutable_unpaired();
    u->set_prompt(std::move(r.prompt));
    u->set_completion(std::move(r.completion));
    if (r.desirable.has_value()) {
      u->set_label(*r.desirable ? v1::LABEL_DESIRABLE : v1::LABEL_UNDESIRABLE);
    }
    u->mutable_embedding()->Add(r.embedding.begin(), r.embedding.end());
  }
  return e;
}

// Bytes of records one stream message carries at most (a record larger than this goes alone).
// gRPC's default receive limit is 4 MiB, so a message of this size reaches any server, and
// one of curation-server's (64 MiB by default) with room to spare; counting records alone
// sent 500 records of megabyte texts as one message the server had to refuse. Vectors count
// too: a 4096-d pair is 32 KiB of floats, so such a message holds about 128 pairs.
constexpr int64_t kBatchBytes = 4 << 20;
// Messages read ahead of the one being sent: enough to keep the sender busy while the reader
// parses, few enough to bound memory (3 x 4 MiB).
constexpr size_t kMessagesAhead = 2;

// A bounded hand-off of finished messages from the reading thread to the sending one.
class MessageQueue {
 public:
  // Blocks while the queue is full; false (and `m` dropped) once the consumer has stopped.
  bool Push(v1::IngestExamplesRequest m) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return q_.size() < kMessagesAhead || stopped_; });
    if (stopped_) return false;
    q_.push_back(std::move(m));
    cv_.notify_all();
    return true;
  }
  // The producer is done: Pop returns nullopt once the queue is drained.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  std::optional<v1::IngestExamplesRequest> Pop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return std::nullopt;
    v1::IngestExamplesRequest m = std::move(q_.front());
    q_.pop_front();
    cv_.notify_all();
    return m;
  }
  // The consumer gives up (the stream broke): Push stops blocking and fails.
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::IngestExamplesRequest> q_;
  bool closed_ = false;
  bool stopped_ = false;
};

// Rows of the --embeddings file, read a block at a time as the records come in order.
class VectorRows {
 public:
  explicit VectorRows(const formats::NpyReader* npy) : npy_(npy) {}

  // The values of `row` (npy_->row_values() of them), valid until the next call.
  absl::StatusOr<const float*> Row(int64_t row) {
    const int64_t width = npy_->row_values();
    if (row < first_ || row >= first_ + count_) {
      // About 1 MiB of floats a read: few syscalls, little memory for any width.
      const int64_t block = std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(1, width));
      count_ = std::min(block, npy_->rows() - row);
      first_ = row;
      buffer_.resize(static_cast<size_t>(count_ * width));
      if (absl::Status s = npy_->ReadRows(first_, count_, buffer_.data()); !s.ok()) {
        count_ = 0;
        return s;
      }
    }
    return buffer_.data() + (row - first_) * width;
  }

 private:
  const formats::NpyReader* npy_;
  std::vector<float> buffer_;
  int64_t first_ = 0;
  int64_t count_ = 0;
};

// Records in `path` as --embeddings aligns them with rows: every record read, unreadable or
// skipped ones too, so that one bad line does not shift every later vector.
absl::StatusOr<int64_t> CountRecords(const std::string& path) {
  auto reader = formats::RecordReader::Open(path);
  if (!reader.ok()) return reader.status();
  formats::Record record;
  int64_t records = 0;
  absl::Status last_error;
  for (;;) {
    auto more = (*reader)->Next(&record);
    if (!more.ok()) {
      // Damage to the container repeats the same status forever: the file cannot be aligned
      // past it. A bad record is counted and passed.
      if (more.status() == last_error) return more.status();
      last_error = more.status();
      ++records;
      continue;
    }
    if (!*more) break;
    ++records;
  }
  return records + (*reader)->skipped();
}

// Checks `npy` against the dataset and the file before anything is sent: a wrong layout
// found after a million records would leave half a load behind.
absl::Status CheckVectors(const v1::Dataset& dataset, const formats::NpyReader& npy,
                          const std::string& file) {
  const bool pairs = dataset.kind() == v1::DATASET_KIND_PAIRS;
  const int64_t dim = dataset.embedding().dim();
  const std::string& name = dataset.name();
  if (dataset.embedding().source() != v1::EmbeddingConfig::SOURCE_CLIENT) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--embeddings: dataset '", name,
        "' embeds texts with the server's built-in embedder; client vectors need a dataset "
        "created with --dim"));
  }
  const std::vector<int64_t>& shape = npy.header().shape;
  const std::string expected =
      pairs ? absl::StrCat("(N, 2, ", dim, ") for the PAIRS dataset '", name,
                           "': [:, 0] chosen, [:, 1] rejected")
            : absl::StrCat("(N, ", dim, ") for the UNPAIRED dataset '", name, "'");
  const bool fits = pairs ? (shape.size() == 3 && shape[1] == 2 && shape[2] == dim)
                          : (shape.size() == 2 && shape[1] == dim);
  if (!fits) {
    return absl::InvalidArgumentError(absl::StrCat("--embeddings: ", npy.path(), " has shape ",
                                                   npy.header().Describe(), "; expected ",
                                                   expected));
  }
  auto records = CountRecords(file);
  if (!records.ok()) return records.status();
  if (*records != shape[0]) {
    return absl::InvalidArgumentError(
        absl::StrCat("--embeddings: ", npy.path(), " has shape ", npy.header().Describe(), ", ",
                     shape[0], " rows, but ", file, " has ", *records,
                     " records (row i holds the vectors of the file's record i, unreadable and "
                     "skipped records included)"));
  }
  return absl::OkStatus();
}

}  // namespace

int IngestCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  if (pos.size() != 2) return Usage("ingest DATASET FILE [--embeddings VECTORS.npy]");
  if (auto unknown = args.Unknown({"batch", "strict", "json", "embeddings"}); !unknown.empty()) {
    return Usage("ingest: unknown option --" + unknown);
  }
  const std::string& dataset = pos[0];
  const std::string& path = pos[1];
  int batch_size = 500;
  try {
    batch_size = std::stoi(args.GetOr("batch", "500"));
  } catch (...) {
    return Usage("--batch must be a number");
  }
  if (batch_size < 1 || batch_size > 10'000) return Usage("--batch must be in 1..10000");
  const bool strict = args.Has("strict");
  const std::string vectors_path = args.GetOr("embeddings", "");
  if (args.Has("embeddings") && vectors_path.empty()) {
    return Usage("--embeddings needs a .npy file");
  }

  auto fail_local = [](const absl::Status& s) {
    std::fprintf(stderr, "curation: ingest: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  auto reader = formats::RecordReader::Open(path);
  if (!reader.ok()) return fail_local(reader.status());
  std::unique_ptr<formats::NpyReader> npy;
  if (!vectors_path.empty()) {
    auto opened = formats::NpyReader::Open(vectors_path);
    if (!opened.ok()) return fail_local(opened.status());
    npy = *std::move(opened);
  }
  // Fail fast on a missing dataset rather than after reading the file.
  v1::Dataset info;
  {
    v1::GetDatasetRequest request;
    request.set_name(dataset);
    grpc::Status s = ctx.client->GetDataset(request, &info);
    if (!s.ok()) return Fail("ingest", s);
  }
  if (npy != nullptr) {
    if (absl::Status s = CheckVectors(info, *npy, path); !s.ok()) return fail_local(s);
  }
  const int64_t dim = info.embedding().dim();
  // A projected dataset fits its PCA on its first ingest message (EmbeddingConfig.projection),
  // which must carry at least 2 x P vectors; 4 x P is the PCA's own sample size
  // (selection/pca.h). 4 MiB messages of 4096-d pairs hold 127 pairs, too few for P = 256, so
  // the first message may then grow to 60 MiB (curation-server takes 64 MiB by default).
  int64_t first_records = 0, first_bytes = 0;
  if (const v1::Projection& projection = info.embedding().projection();
      projection.dim() > 0 && projection.fit_rows() == 0) {
    const int sides = info.kind() == v1::DATASET_KIND_UNPAIRED ? 1 : 2;
    // At most the server's default 10,000 records a message.
    first_records =
        std::min<int64_t>(10'000, (4 * static_cast<int64_t>(projection.dim()) + sides - 1) / sides);
    first_bytes = int64_t{60} << 20;
  }

  const auto started = std::chrono::steady_clock::now();
  auto call = ctx.client->NewContext(std::chrono::hours(7 * 24));
  v1::IngestExamplesResponse summary;
  std::unique_ptr<grpc::ClientWriter<v1::IngestExamplesRequest>> stream =
      ctx.client->curation().IngestStream(call.get(), &summary);

  // This thread sends; a reader thread reads, parses and batches the file meanwhile, so the
  // server is never waiting on gzip and JSON (nor they on the network).
  MessageQueue queue;
  std::vector<int64_t> line_of;  // file line of every record sent, by stream index
  std::vector<std::string> local_errors;
  int64_t local_rejected = 0;
  absl::Status read_failure;  // a vector file that could not be read: stop, report, exit 1
  std::thread producer([&] {
    ProgressBar bar("ingest", "records");
    VectorRows rows(npy.get());
    v1::IngestExamplesRequest batch;
    batch.set_dataset(dataset);
    int64_t batch_bytes = 0;
    bool ok = true;
    auto send = [&]() {
      if (batch.examples_size() == 0 || !ok) return;
      ok = queue.Push(std::move(batch));
      batch = v1::IngestExamplesRequest();  // only the first message names the dataset
      batch_bytes = 0;
    };
    auto local_error = [&](std::string message) {
      ++local_rejected;
      if (local_errors.size() < 20) local_errors.push_back(std::move(message));
    };
    int64_t read_ok = 0, read_failed = 0;  // records so far, for their row in --embeddings
    formats::Record record;
    absl::Status last_error;
    while (ok) {
      auto more = (*reader)->Next(&record);
      if (!more.ok()) {
        // Damage to the container (a truncated gzip, an empty array element) comes back the
        // same on every later call: nothing more can be read.
        if (more.status() == last_error) break;
        last_error = more.status();
        ++read_failed;
        local_error(std::string(more.status().message()));
        if (strict) break;
        continue;
      }
      if (!*more) break;
      const int64_t row = read_ok++ + read_failed + (*reader)->skipped();
      if (npy != nullptr) {
        const bool has_own = !record.chosen_embedding.empty() ||
                             !record.rejected_embedding.empty() || !record.embedding.empty();
        if (has_own) {
          local_error(absl::StrCat(path, ":", (*reader)->line(),
                                   ": the record carries its own vectors and --embeddings "
                                   "gives others; drop one of the two"));
          if (strict) break;
          continue;
        }
        auto values = rows.Row(row);
        if (!values.ok()) {
          read_failure = values.status();
          break;
        }
        if (record.is_pair) {
          record.chosen_embedding.assign(*values, *values + dim);
          record.rejected_embedding.assign(*values + dim, *values + 2 * dim);
        } else {
          record.embedding.assign(*values, *values + dim);
        }
      }
      line_of.push_back((*reader)->line());
      v1::Example example = ToExample(record);
      // Tag, length and the record: what it adds to the message.
      const int64_t bytes = 6 + static_cast<int64_t>(example.ByteSizeLong());
      const bool first = line_of.size() <= static_cast<size_t>(first_records);
      const int64_t byte_limit = first ? std::max(kBatchBytes, first_bytes) : kBatchBytes;
      const int64_t record_limit =
          first ? std::max<int64_t>(batch_size, first_records) : batch_size;
      if (batch.examples_size() > 0 && batch_bytes + bytes > byte_limit) send();
      *batch.add_examples() = std::move(example);
      batch_bytes += bytes;
      if (batch.examples_size() >= record_limit) send();
      bar.Update(static_cast<double>((*reader)->bytes_consumed()),
                 static_cast<double>((*reader)->total_bytes()),
                 static_cast<int64_t>(line_of.size()));
    }
    if (read_failure.ok() && !(strict && local_rejected > 0)) send();
    bar.Finish();
    queue.Close();
  });
  bool stream_broken = false;
  while (std::optional<v1::IngestExamplesRequest> message = queue.Pop()) {
    if (!stream->Write(*message)) {
      // The server ended the call; Finish below says why.
      stream_broken = true;
      queue.Stop();
      break;
    }
  }
  producer.join();
  if (!read_failure.ok() && !stream_broken) {
    // Nothing after the bad row was sent; what was sent is stored (a rerun skips it as
    // duplicates), but the load is incomplete, so do not let the call end as a success.
    call->TryCancel();
  }
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  if (!read_failure.ok()) return fail_local(read_failure);
  if (!status.ok()) return Fail("ingest", status);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  if (ctx.json) {
    std::printf("%s\n", ToJson(summary).c_str());
  } else {
    std::printf("ingested %s into %s: %lld accepted, %lld duplicates, %lld rejected", path.c_str(),
                dataset.c_str(), static_cast<long long>(summary.accepted()),
                static_cast<long long>(summary.duplicates()),
                static_cast<long long>(summary.rejected() + local_rejected));
    if ((*reader)->skipped() > 0) {
      std::printf(", %lld skipped", static_cast<long long>((*reader)->skipped()));
    }
    std::printf(" in %.1f s (%.0f records/s); the dataset now holds %lld\n", seconds,
                static_cast<double>(line_of.size()) / std::max(seconds, 1e-9),
                static_cast<long long>(summary.example_count()));
    for (const auto& [reason, count] : (*reader)->skipped_by_reason()) {
      std::printf("  skipped %lld: %s\n", static_cast<long long>(count), reason.c_str());
    }
  }
  std::fflush(stdout);  // the summary first, then the details on stderr
  for (const std::string& e : local_errors) std::fprintf(stderr, "  unreadable: %s\n", e.c_str());
  int shown = 0;
  for (const auto& e : summary.errors()) {
    if (++shown > 20) {
      std::fprintf(stderr, "  ... and %d more rejected\n", summary.errors_size() - 20);
      break;
    }
    const int64_t line = e.index() < static_cast<int64_t>(line_of.size()) ? line_of[e.index()] : 0;
    std::fprintf(stderr, "  rejected %s:%lld: %s: %s\n", path.c_str(), static_cast<long long>(line),
                 e.field().c_str(), e.reason().c_str());
  }
  return (strict && (local_rejected > 0 || summary.rejected() > 0)) ? 1 : 0;
}

}  // namespace curation::cli
