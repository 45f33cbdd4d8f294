// `curation datasets ...` and `curation examples get`, plus the helpers every command uses.
#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <cstdio>

#include "absl/status/status.h"
#include "client/cli/commands.h"

namespace curation::cli {

int Fail(const std::string& what, const grpc::Status& status) {
  // gRPC and absl share the canonical codes, and absl can name them.
  const std::string code =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  std::fprintf(stderr, "curation: %s: %s: %s\n", what.c_str(), code.c_str(),
               status.error_message().c_str());
  return 1;
}

int Usage(const std::string& message) {
  std::fprintf(stderr, "curation: %s (see curation --help)\n", message.c_str());
  return 2;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

namespace {

void PrintDataset(const v1::Dataset& d) {
  const bool pairs = d.kind() == v1::DATASET_KIND_PAIRS;
  std::printf("%s: %lld %s, %lld vectors indexed, %lld selections, %.1f MB\n", d.name().c_str(),
              static_cast<long long>(d.example_count()), pairs ? "pairs" : "examples",
              static_cast<long long>(d.indexed_vectors()),
              static_cast<long long>(d.selection_count()), d.stored_bytes() / 1e6);
  if (d.partition_members_size() > 0) {
    std::printf("  %d partitions, on cluster members", d.partition_members_size());
    for (const std::string& m : d.partition_members()) std::printf(" %s", m.c_str());
    std::printf(" (partition 0 first)\n");
  } else if (!d.member().empty()) {
    std::printf("  on cluster member %s\n", d.member().c_str());
  }
  if (!pairs) {
    std::printf("  labels: %lld desirable, %lld undesirable\n",
                static_cast<long long>(d.desirable_count()),
                static_cast<long long>(d.undesirable_count()));
  }
  const v1::EmbeddingConfig& e = d.embedding();
  std::string encoding = v1::EmbeddingConfig::Encoding_Name(e.encoding());
  encoding = encoding.substr(encoding.find('_') + 1);  // "SQ8", "FLOAT16", ...
  if (e.source() == v1::EmbeddingConfig::SOURCE_CLIENT) {
    std::printf("  embeddings: client-supplied, %d dimensions, held as %s\n", e.dim(),
                encoding.c_str());
  } else {
    std::printf("  embeddings: built-in %s, %d dimensions, held as %s\n", e.embedder().c_str(),
                e.dim(), encoding.c_str());
  }
  if (e.projection().dim() > 0) {
    if (e.projection().fit_rows() > 0) {
      std::printf(
          "  projection: PCA to %d dimensions, fitted on %lld vectors, keeps %.1f%% of "
          "their variance%s\n",
          e.projection().dim(), static_cast<long long>(e.projection().fit_rows()),
          100 * e.projection().retained_variance(),
          e.projection().keep_original() ? "; original vectors kept" : "");
    } else {
      std::printf("  projection: PCA to %d dimensions, fitted by the first ingest%s\n",
                  e.projection().dim(),
                  e.projection().keep_original() ? "; original vectors kept" : "");
    }
  }
}

}  // namespace

int DatasetsCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  if (pos.empty()) return Usage("datasets: create, list, get or delete?");
  const std::string& verb = pos[0];
  if (verb == "create") {
    if (pos.size() != 2) return Usage("datasets create NAME");
    if (auto unknown = args.Unknown({"kind", "dim", "description", "encoding", "project",
                                     "keep-original", "member", "partitions", "json"});
        !unknown.empty()) {
      return Usage("datasets create: unknown option --" + unknown);
    }
    v1::CreateDatasetRequest request;
    v1::Dataset* d = request.mutable_dataset();
    d->set_name(pos[1]);
    d->set_description(args.GetOr("description", ""));
    request.set_member(args.GetOr("member", ""));
    if (auto partitions = args.Get("partitions")) {
      try {
        request.set_partitions(std::stoi(*partitions));
      } catch (...) {
        return Usage("--partitions must be a number");
      }
    }
    const std::string kind = args.GetOr("kind", "pairs");
    if (kind == "pairs") {
      d->set_kind(v1::DATASET_KIND_PAIRS);
    } else if (kind == "unpaired") {
      d->set_kind(v1::DATASET_KIND_UNPAIRED);
    } else {
      return Usage("--kind must be pairs or unpaired");
    }
    if (auto dim = args.Get("dim")) {
      d->mutable_embedding()->set_source(v1::EmbeddingConfig::SOURCE_CLIENT);
      try {
        d->mutable_embedding()->set_dim(std::stoi(*dim));
      } catch (...) {
        return Usage("--dim must be a number");
      }
    } else {
      d->mutable_embedding()->set_source(v1::EmbeddingConfig::SOURCE_BUILTIN);
    }
    if (auto encoding = args.Get("encoding")) {
      if (*encoding == "float32") {
        d->mutable_embedding()->set_encoding(v1::EmbeddingConfig::ENCODING_FLOAT32);
      } else if (*encoding == "float16") {
        d->mutable_embedding()->set_encoding(v1::EmbeddingConfig::ENCODING_FLOAT16);
      } else if (*encoding == "sq8") {
        d->mutable_embedding()->set_encoding(v1::EmbeddingConfig::ENCODING_SQ8);
      } else {
        return Usage("--encoding must be sq8, float16 or float32");
      }
    }
    if (auto project = args.Get("project")) {
      try {
        d->mutable_embedding()->mutable_projection()->set_dim(std::stoi(*project));
      } catch (...) {
        return Usage("--project must be a number");
      }
    }
    d->mutable_embedding()->mutable_projection()->set_keep_original(args.Has("keep-original"));
    v1::Dataset reply;
    grpc::Status s = ctx.client->CreateDataset(request, &reply);
    if (!s.ok()) return Fail("datasets create", s);
    if (ctx.json) {
      std::printf("%s\n", ToJson(reply).c_str());
    } else {
      std::printf("created ");
      PrintDataset(reply);
    }
    return 0;
  }
  if (verb == "list") {
    v1::ListDatasetsRequest request;
    request.set_page_size(500);
    int count = 0;
    do {
      v1::ListDatasetsResponse reply;
      grpc::Status s = ctx.client->ListDatasets(request, &reply);
      if (!s.ok()) return Fail("datasets list", s);
      for (const auto& d : reply.datasets()) {
        ++count;
        if (ctx.json) {
          std::printf("%s\n", ToJson(d).c_str());
        } else {
          PrintDataset(d);
        }
      }
      request.set_page_token(reply.next_page_token());
    } while (!request.page_token().empty());
    if (!ctx.json && count == 0) std::printf("no datasets\n");
    return 0;
  }
  if (verb == "get") {
    if (pos.size() != 2) return Usage("datasets get NAME");
    v1::GetDatasetRequest request;
    request.set_name(pos[1]);
    v1::Dataset reply;
    grpc::Status s = ctx.client->GetDataset(request, &reply);
    if (!s.ok()) return Fail("datasets get", s);
    if (ctx.json) {
      std::printf("%s\n", ToJson(reply).c_str());
    } else {
      PrintDataset(reply);
    }
    return 0;
  }
  if (verb == "delete") {
    if (pos.size() != 2) return Usage("datasets delete NAME");
    v1::DeleteDatasetRequest request;
    request.set_name(pos[1]);
    v1::DeleteDatasetResponse reply;
    grpc::Status s = ctx.client->DeleteDataset(request, &reply);
    if (!s.ok()) return Fail("datasets delete", s);
    std::printf("deleted %s (%lld examples, %lld selections)\n", pos[1].c_str(),
                static_cast<long long>(reply.deleted_examples()),
                static_cast<long long>(reply.deleted_selections()));
    return 0;
  }
  return Usage("datasets: unknown verb '" + verb + "'");
}

int HealthCommand(Context& ctx, const Args& args) {
  auto serving = ctx.client->Serving();
  if (!serving.ok()) {
    std::fprintf(stderr, "curation: health: %s\n", std::string(serving.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", *serving ? "SERVING" : "NOT_SERVING");
  return *serving ? 0 : 1;
}

int ExamplesCommand(Context& ctx, const Args& args) {
  const auto& pos = args.positional();
  if (pos.size() < 3 || pos[0] != "get") return Usage("examples get DATASET ID...");
  v1::GetExamplesRequest request;
  request.set_dataset(pos[1]);
  for (size_t i = 2; i < pos.size(); ++i) request.add_ids(pos[i]);
  request.set_include_embeddings(args.Has("embeddings"));
  v1::GetExamplesResponse reply;
  grpc::Status s = ctx.client->GetExamples(request, &reply);
  if (!s.ok()) return Fail("examples get", s);
  for (const auto& e : reply.examples()) std::printf("%s\n", ToJson(e).c_str());
  return 0;
}

}  // namespace curation::cli
