// `curation ingest DATASET FILE`: streams a file's records to the server in batches.
#include <chrono>
#include <cstdio>
#include <vector>

#include "client/cli/commands.h"
#include "client/cli/progress.h"
#include "formats/record_reader.h"

namespace curation::cli {
namespace {

v1::Example ToExample(formats::Record& r) {
  v1::Example e;
  e.set_id(r.id);
  for (auto& [k, v] : r.metadata) (*e.mutable_metadata())[k] = v;
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
// sent 500 records of megabyte texts as one message the server had to refuse.
constexpr int64_t kBatchBytes = 4 << 20;

}  // namespace

int IngestCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  if (pos.size() != 2) return Usage("ingest DATASET FILE");
  if (auto unknown = args.Unknown({"batch", "strict", "json"}); !unknown.empty()) {
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

  auto reader = formats::RecordReader::Open(path);
  if (!reader.ok()) {
    std::fprintf(stderr, "curation: ingest: %s\n", std::string(reader.status().message()).c_str());
    return 1;
  }
  // Fail fast on a missing dataset rather than after reading the file.
  {
    v1::GetDatasetRequest request;
    request.set_name(dataset);
    v1::Dataset reply;
    grpc::Status s = ctx.client->GetDataset(request, &reply);
    if (!s.ok()) return Fail("ingest", s);
  }

  const auto started = std::chrono::steady_clock::now();
  auto call = ctx.client->NewContext(std::chrono::hours(7 * 24));
  v1::IngestExamplesResponse summary;
  std::unique_ptr<grpc::ClientWriter<v1::IngestExamplesRequest>> stream =
      ctx.client->curation().IngestStream(call.get(), &summary);
  std::vector<int64_t> line_of;  // file line of every record sent, by stream index
  std::vector<std::string> local_errors;
  int64_t local_rejected = 0;
  ProgressBar bar("ingest", "records");
  v1::IngestExamplesRequest batch;
  batch.set_dataset(dataset);
  bool stream_broken = false;
  int64_t batch_bytes = 0;
  auto send = [&]() {
    if (batch.examples_size() == 0 || stream_broken) return;
    if (!stream->Write(batch)) stream_broken = true;
    batch_bytes = 0;
    batch.clear_examples();
    batch.clear_dataset();  // only the first message needs it
  };
  formats::Record record;
  while (!stream_broken) {
    auto more = (*reader)->Next(&record);
    if (!more.ok()) {
      ++local_rejected;
      if (local_errors.size() < 20) local_errors.emplace_back(more.status().message());
      if (strict) break;
      continue;
    }
    if (!*more) break;
    line_of.push_back((*reader)->line());
    v1::Example example = ToExample(record);
    // Tag, length and the record: what it adds to the message.
    const int64_t bytes = 6 + static_cast<int64_t>(example.ByteSizeLong());
    if (batch.examples_size() > 0 && batch_bytes + bytes > kBatchBytes) send();
    *batch.add_examples() = std::move(example);
    batch_bytes += bytes;
    if (batch.examples_size() >= batch_size) send();
    bar.Update(static_cast<double>((*reader)->bytes_consumed()),
               static_cast<double>((*reader)->total_bytes()), static_cast<int64_t>(line_of.size()));
  }
  if (!(strict && local_rejected > 0)) send();
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  bar.Finish();
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
