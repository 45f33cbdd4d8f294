// curation-server: the long-running service. Opens (or creates) the RocksDB store in
// --data-dir, rebuilds every dataset's vector index from it, and serves curation.v1 plus the
// standard health and reflection services until SIGTERM or SIGINT.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cluster/etcd_identity_store.h"
#include "common/flag_names.h"
#include "console/console.h"
#include "embedding/embedder.h"
#include "index/codec_proto.h"
#include "server/admin_service.h"
#include "server/auth.h"
#include "server/catalog.h"
#include "server/cluster_node.h"
#include "server/curation_service.h"
#include "server/dataset_move.h"
#include "server/identity_store.h"
#include "server/identity_sync.h"
#include "server/job_runner.h"
#include "server/remote_partition.h"
#include "server/routing_service.h"
#include "server/scheduling.h"
#include "server/selection_ids.h"
#include "server/telemetry.h"
#include "server/tenants.h"
#include "store/store.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "HOST:PORT to serve gRPC on (port 0 picks one)");
ABSL_FLAG(std::string, data_dir, "curation-data", "RocksDB directory, created if missing");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound port here once serving (for scripts and tests)");
ABSL_FLAG(bool, sync_writes, true,
          "fsync the WAL before acknowledging a write (survives power loss, not only crashes)");
ABSL_FLAG(int64_t, max_message_bytes, 64 << 20, "Largest gRPC message accepted or sent");
ABSL_FLAG(int64_t, max_records_per_request, 10'000, "Most examples in one ingest message");
ABSL_FLAG(int64_t, max_text_bytes, 1 << 20, "Longest prompt or completion, in bytes");
ABSL_FLAG(std::string, default_vector_encoding, "float16",
          "How new datasets hold their vectors unless they say: float16 (2 bytes per value), sq8 "
          "(1) or float32 (4)");
ABSL_FLAG(int, grace_period_seconds, 20,
          "On SIGTERM, how long in-flight calls may run before they are cancelled");
ABSL_FLAG(bool, auth, true,
          "Require bearer tokens. --auth=false serves everyone as an admin of the 'default' "
          "tenant: for a laptop or a demo, never for a shared deployment");
ABSL_FLAG(std::string, admin_token_file, "",
          "File whose content (at least 16 characters) is accepted as an admin token");
ABSL_FLAG(std::string, backup_dir, "", "Where the admin CreateBackup RPC writes backups");
ABSL_FLAG(std::string, restore_from, "",
          "Before serving, restore the newest backup of this directory into --data-dir "
          "(which must be empty)");
ABSL_FLAG(uint32_t, restore_backup_id, 0,
          "With --restore-from: the id of the backup to restore (0: the newest)");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate chain; enables TLS with --tls-key");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(int, selection_threads, 0,
          "Job workers: selections, evaluations and recommendations that run at once (0: one "
          "per core). With more than one, a tenant runs at most all but one of them.");
ABSL_FLAG(std::string, max_job_memory, "",
          "Largest estimated peak memory of one job (e.g. 6G, 512M); larger jobs are refused "
          "with RESOURCE_EXHAUSTED. Default: a quarter of the machine's memory");
ABSL_FLAG(std::string, job_memory_budget, "",
          "Estimated memory of all running jobs together; jobs wait rather than run past it. "
          "Default: half the machine's memory (at least --max-job-memory)");
ABSL_FLAG(double, max_job_seconds, 3600,
          "A job that runs longer ends DEADLINE_EXCEEDED (0: no limit); tenants' "
          "max_job_seconds quotas can only lower it");
ABSL_FLAG(int, default_max_running_jobs, 2,
          "Running jobs per tenant when its max_concurrent_selections quota is 0");
ABSL_FLAG(int, default_max_queued_jobs, 16,
          "Queued jobs per tenant when its max_queued_jobs quota is 0");
ABSL_FLAG(int, job_threads, -1,
          "Cores the running jobs share (each gets its part, at least one); -1: all but one, "
          "so that calls are served while jobs run; 0: no limit");
ABSL_FLAG(double, operation_retention_hours, 168,
          "How long finished operations (and their results) are kept");
ABSL_FLAG(int, ingest_threads, 0,
          "Cores one ingest batch embeds on (0: half the cores, at least 1), so that a bulk "
          "load leaves cores to the other tenants' calls");
ABSL_FLAG(int, ingest_slots, 1,
          "Large ingest batches embedding at once; more wait, and free slots go round-robin to "
          "the tenants that wait");
ABSL_FLAG(int, ingest_nice, 10,
          "Nice value (0..19) of the threads that embed large ingest batches: on a busy machine "
          "other calls run first");
ABSL_FLAG(int64_t, ingest_queue_above_records, 64,
          "Ingest batches of more records than this wait for a slot (smaller ones never wait)");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT to serve Prometheus metrics on at /metrics (empty: no metrics)");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)");
ABSL_FLAG(std::string, cluster_etcd, "",
          "Comma-separated etcd endpoints (http://HOST:PORT): run as a member of the cluster they "
          "coordinate (empty: a single server, no etcd)");
ABSL_FLAG(std::string, member, "",
          "With --cluster-etcd: this member's name, unique and stable across restarts (a pod's "
          "name)");
ABSL_FLAG(std::string, advertise, "",
          "With --cluster-etcd: HOST:PORT where the other members reach this one's gRPC port");
ABSL_FLAG(int64_t, cluster_lease_seconds, 10,
          "With --cluster-etcd: the member's etcd lease; a member that cannot renew it for this "
          "long stops accepting writes, and others see it down");
ABSL_FLAG(int64_t, cluster_partition_retry_seconds, 60,
          "On a cluster: how long a selection over a partitioned dataset waits for a partition's "
          "member that is down or restarting before it fails UNAVAILABLE naming the member");
ABSL_FLAG(std::string, console_listen, "",
          "HOST:PORT to serve the web console and its JSON API on, plain HTTP (empty: no "
          "console; port 0 picks one, logged as 'serving the console')");

namespace {

// SIGTERM and SIGINT, which drain the server.
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Threads that libraries start before main() (OpenBLAS's pool, from its constructor) do not
// have the stop signals blocked, and the kernel may deliver SIGTERM to one of them: this
// handler records it there, and the stopper thread polls the record next to sigtimedwait.
std::atomic<int> g_caught_signal{0};
extern "C" void RecordStopSignal(int sig) { g_caught_signal.store(sig); }

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials() {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (cert.empty()) {
    if (!ca.empty()) return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert");
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options;
  auto cert_pem = ReadWholeFile(cert);
  auto key_pem = ReadWholeFile(key);
  if (!cert_pem.ok()) return cert_pem.status();
  if (!key_pem.ok()) return key_pem.status();
  options.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
  if (!ca.empty()) {
    auto ca_pem = ReadWholeFile(ca);
    if (!ca_pem.ok()) return ca_pem.status();
    options.pem_root_certs = *ca_pem;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

int Fatal(const std::string& what, const absl::Status& status) {
  curation::server::LogEvent("fatal", what, {{"error", status.ToString()}});
  return 1;
}

int Run() {
  using curation::server::AdminService;
  using curation::server::Authenticator;
  using curation::server::Catalog;
  using curation::server::CurationService;
  using curation::server::Limits;
  using curation::server::LogEvent;
  using curation::server::Metrics;
  using curation::server::TenantRegistry;
  using curation::store::Store;

  const auto started = std::chrono::steady_clock::now();
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (const std::string from = absl::GetFlag(FLAGS_restore_from); !from.empty()) {
    if (absl::Status s =
            Store::RestoreBackup(from, data_dir, absl::GetFlag(FLAGS_restore_backup_id));
        !s.ok()) {
      return Fatal("restoring " + from, s);
    }
    LogEvent("info", "restored the newest backup", {{"from", from}, {"data_dir", data_dir}});
  }
  auto store = Store::Open(data_dir, Store::Options{.sync = absl::GetFlag(FLAGS_sync_writes)});
  if (!store.ok()) return Fatal("opening " + data_dir, store.status());

  const bool auth_enabled = absl::GetFlag(FLAGS_auth);
  std::string admin_token;
  if (const std::string path = absl::GetFlag(FLAGS_admin_token_file); !path.empty()) {
    auto content = ReadWholeFile(path);
    if (!content.ok()) return Fatal("--admin-token-file", content.status());
    admin_token = std::string(absl::StripAsciiWhitespace(*content));
  }
  if (absl::Status s = curation::server::InitSelectionIds(**store); !s.ok()) {
    return Fatal("loading the selection id key", s);
  }
  // A cluster member joins before anything is served: its selection-id key, tenants and
  // tokens are the cluster's.
  std::unique_ptr<curation::server::ClusterNode> cluster;
  if (const std::string etcd = absl::GetFlag(FLAGS_cluster_etcd); !etcd.empty()) {
    if (!absl::GetFlag(FLAGS_tls_cert).empty()) {
      // Members forward calls to one another over plaintext channels; a TLS member would
      // refuse them. Until members carry a CA to trust, say so rather than fail per call.
      return Fatal("--cluster-etcd",
                   absl::InvalidArgumentError("cluster members do not speak TLS to one another "
                                              "yet; leave out --tls-cert"));
    }
    if (const int64_t retry = absl::GetFlag(FLAGS_cluster_partition_retry_seconds);
        retry < 1 || retry > 3600) {
      return Fatal("--cluster-partition-retry-seconds",
                   absl::InvalidArgumentError(absl::StrCat(retry, " is outside 1..3600")));
    }
    curation::server::ClusterNode::Options options;
    options.etcd_endpoints = absl::StrSplit(etcd, ',', absl::SkipWhitespace());
    options.member = absl::GetFlag(FLAGS_member);
    options.advertise = absl::GetFlag(FLAGS_advertise);
    options.lease_seconds = absl::GetFlag(FLAGS_cluster_lease_seconds);
    options.max_message_bytes = static_cast<int>(absl::GetFlag(FLAGS_max_message_bytes));
    auto joined = curation::server::ClusterNode::Join(options, store->get());
    if (!joined.ok()) return Fatal("joining the cluster at " + etcd, joined.status());
    cluster = std::move(*joined);
    LogEvent("info", "joined the cluster",
             {{"member", options.member}, {"advertise", options.advertise}, {"etcd", etcd}});
  }
  // Tenants and tokens: the server's own store, or a cluster's etcd (seeded once from the
  // first member's store, so a single server turned member keeps its tenants and tokens).
  std::unique_ptr<curation::server::IdentityStore> identity;
  if (cluster) {
    auto shared =
        curation::cluster::MakeEtcdIdentityStore(cluster->etcd(), cluster->name(), store->get());
    if (!shared.ok()) return Fatal("sharing tenants and tokens through etcd", shared.status());
    identity = std::move(*shared);
  } else {
    identity = curation::server::MakeLocalIdentityStore(store->get());
  }
  auto auth = Authenticator::Load(identity.get(), auth_enabled, admin_token);
  if (!auth.ok()) return Fatal("loading tokens", auth.status());
  auto tenants = TenantRegistry::Load(identity.get(), /*ensure_default=*/!auth_enabled);
  if (!tenants.ok()) return Fatal("loading tenants", tenants.status());
  // Other members' changes (tokens, revocations, quotas, usage) reach this one; no-op alone.
  auto identity_sync =
      curation::server::IdentitySync::Start(identity.get(), auth->get(), tenants->get());
  if (!identity_sync.ok()) return Fatal("following tenants and tokens", identity_sync.status());
  if (auth_enabled && admin_token.empty() && (*auth)->ListTokens("").empty()) {
    LogEvent("warn",
             "authentication is on but there is no admin token; pass --admin-token-file to "
             "create tenants");
  }
  auto embedder = curation::embedding::MakeBuiltinEmbedder();
  curation::server::IngestSharing sharing;
  sharing.threads_per_batch = absl::GetFlag(FLAGS_ingest_threads) > 0
                                  ? absl::GetFlag(FLAGS_ingest_threads)
                                  : static_cast<int>(std::thread::hardware_concurrency() / 2);
  sharing.slots = absl::GetFlag(FLAGS_ingest_slots);
  sharing.queue_above_records = absl::GetFlag(FLAGS_ingest_queue_above_records);
  sharing.nice = absl::GetFlag(FLAGS_ingest_nice);
  (*tenants)->set_ingest_sharing(sharing);  // clamps to at least 1 thread and 1 slot

  Limits limits;
  limits.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  limits.max_records_per_request = absl::GetFlag(FLAGS_max_records_per_request);
  limits.max_text_bytes = absl::GetFlag(FLAGS_max_text_bytes);
  if (auto encoding =
          curation::index::ParseEncoding(absl::GetFlag(FLAGS_default_vector_encoding))) {
    limits.default_encoding = curation::index::ToProto(*encoding);
  } else {
    return Fatal("bad flag", absl::InvalidArgumentError(
                                 "--default-vector-encoding must be sq8, float16 or float32"));
  }
  // Owned here so that it stops (with its scrape thread, which reads the store and the
  // catalog) before the store is closed.
  auto owned_metrics = std::make_unique<Metrics>(store->get(), tenants->get());
  Metrics& metrics = *owned_metrics;
  (*tenants)->set_rejection_hook([&metrics](const std::string& tenant, const std::string& limit) {
    metrics.RecordQuotaRejection(tenant, limit);
  });
  if (const std::string address = absl::GetFlag(FLAGS_metrics_listen); !address.empty()) {
    if (!metrics.Serve(address)) return 1;
    LogEvent("info", "serving metrics",
             {{"address", address}, {"port", std::to_string(metrics.port())}});
  }
  curation::server::SchedulingFlags scheduling;
  scheduling.workers = absl::GetFlag(FLAGS_selection_threads);
  scheduling.max_job_memory = absl::GetFlag(FLAGS_max_job_memory);
  scheduling.job_memory_budget = absl::GetFlag(FLAGS_job_memory_budget);
  scheduling.max_job_seconds = absl::GetFlag(FLAGS_max_job_seconds);
  scheduling.default_max_running = absl::GetFlag(FLAGS_default_max_running_jobs);
  scheduling.default_max_queued = absl::GetFlag(FLAGS_default_max_queued_jobs);
  scheduling.job_threads = absl::GetFlag(FLAGS_job_threads);
  auto scheduler = curation::server::MakeScheduler(scheduling, tenants->get(), &metrics);
  if (!scheduler.ok()) return Fatal("job scheduling flags", scheduler.status());
  LogEvent(
      "info", "job scheduler",
      {{"workers", std::to_string((*scheduler)->options().workers)},
       {"max_job_memory_bytes", std::to_string((*scheduler)->options().max_job_memory_bytes)},
       {"job_memory_budget_bytes", std::to_string((*scheduler)->options().memory_budget_bytes)},
       {"max_job_seconds", absl::StrCat((*scheduler)->options().max_job_seconds)},
       {"job_threads", std::to_string((*scheduler)->options().threads)}});
  curation::server::ServiceJobRunner runner(store->get(), tenants->get(), &metrics);
  if (cluster) {
    curation::server::ClusterNode* node = cluster.get();
    runner.SetPartitionOpener([node](const std::string& tenant, const std::string& dataset,
                                     const curation::v1::SelectRequest& resolved) {
      return curation::server::OpenRemotePartitions(
          *node, tenant, dataset, resolved,
          std::chrono::seconds(absl::GetFlag(FLAGS_cluster_partition_retry_seconds)));
    });
  }
  curation::jobs::Operations::Options operation_options;
  curation::server::TenantRegistry* registry = tenants->get();
  operation_options.account = [registry](const std::string& tenant, int64_t bytes, bool enforce) {
    return registry->AddStoredBytes(tenant, bytes, enforce);
  };
  operation_options.retention = std::chrono::seconds(std::max<int64_t>(
      1, static_cast<int64_t>(absl::GetFlag(FLAGS_operation_retention_hours) * 3600)));
  // Expired operations are looked for a few times per retention period, at most every 10 min.
  operation_options.sweep_every = std::clamp(operation_options.retention / 4,
                                             std::chrono::seconds(1), std::chrono::seconds(600));
  auto operations = std::make_unique<curation::jobs::Operations>(store->get(), scheduler->get(),
                                                                 &runner, operation_options);
  CurationService service(store->get(), auth->get(), tenants->get(), embedder.get(), limits,
                          &metrics, scheduler->get(), operations.get());
  AdminService admin(store->get(), auth->get(), tenants->get(), absl::GetFlag(FLAGS_backup_dir));
  // On a cluster, calls reach the local handlers through the router, which forwards what
  // another member holds.
  std::unique_ptr<curation::server::RoutingService> routing;
  std::unique_ptr<curation::server::MemberService> member_service;
  if (cluster) {
    curation::server::ClusterNode* node = cluster.get();
    service.SetClusterPlacement([node](const std::string& tenant, const std::string& name) {
      return node->ReservedInternalId(tenant, name);
    });
    routing = std::make_unique<curation::server::RoutingService>(
        &service, auth->get(), node->membership(), node->directory(), node->channels(), limits);
    curation::server::RoutingService* router = routing.get();
    service.SetPartitionedReader([router](grpc::ServerContext* context, const std::string& tenant,
                                          const std::string& dataset,
                                          const std::vector<std::string>& ids) {
      return router->ReadPartitioned(context, tenant, dataset, ids);
    });
    admin.SetCluster(node);
    member_service = std::make_unique<curation::server::MemberService>(node, auth->get());
  }

  auto credentials = ServerCredentials();
  if (!credentials.ok()) return Fatal("TLS", credentials.status());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), *credentials, &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(limits.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(limits.max_message_bytes));
  if (routing) {
    builder.RegisterService(routing.get());
    builder.RegisterService(member_service.get());
  } else {
    builder.RegisterService(&service);
  }
  builder.RegisterService(&admin);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(
      std::make_unique<curation::server::TelemetryInterceptorFactory>(&metrics, auth->get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    LogEvent("fatal", "cannot listen", {{"address", absl::GetFlag(FLAGS_listen)}});
    return 1;
  }
  // The console calls the service through the server itself, so every check of a gRPC call
  // (token, tenant, role, validation, limits) applies to it unchanged.
  std::unique_ptr<curation::console::Console> console;
  if (const std::string address = absl::GetFlag(FLAGS_console_listen); !address.empty()) {
    if (!absl::GetFlag(FLAGS_tls_client_ca).empty()) {
      // Its in-process channel presents no client certificate: the console would be a way
      // in without one.
      return Fatal("--console-listen",
                   absl::InvalidArgumentError("the console cannot require client "
                                              "certificates; leave out --tls-client-ca"));
    }
    grpc::ChannelArguments channel_args;
    channel_args.SetMaxReceiveMessageSize(static_cast<int>(limits.max_message_bytes));
    channel_args.SetMaxSendMessageSize(static_cast<int>(limits.max_message_bytes));
    auto started_console = curation::console::Console::Start(
        {.listen = address}, server->InProcessChannel(channel_args), auth->get());
    if (!started_console.ok()) return Fatal("--console-listen", started_console.status());
    console = std::move(*started_console);
    LogEvent("info", "serving the console",
             {{"address", address}, {"port", std::to_string(console->port())}});
  }
  // Serving health at once lets orchestrators tell "loading" (NOT_SERVING) from "down".
  server->GetHealthCheckService()->SetServingStatus(false);
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    // Written whole under a temporary name, so a reader never sees a partial port.
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::rename(tmp.c_str(), path.c_str());
  }
  LogEvent("info", "listening; loading datasets",
           {{"port", std::to_string(port)}, {"data_dir", data_dir}});

  auto catalog = Catalog::Load(store->get(), tenants->get());
  if (!catalog.ok()) return Fatal("loading datasets", catalog.status());
  runner.SetCatalog(catalog->get());
  if (cluster) {
    if (absl::Status s = cluster->Adopt(catalog->get(), operations.get(), tenants->get());
        !s.ok()) {
      return Fatal("recording the local datasets in the cluster", s);
    }
  }
  // Usage counts the loaded datasets now: the other members' quota checks may see it.
  (*identity_sync)->StartPublishing();
  service.SetReady(catalog->get());
  metrics.SetCatalog(catalog->get());
  // Operations that were queued or running when the server stopped run again.
  if (auto recovered = operations->Recover(); !recovered.ok()) {
    return Fatal("recovering operations", recovered.status());
  } else if (*recovered > 0) {
    LogEvent("info", "resubmitted unfinished operations", {{"count", std::to_string(*recovered)}});
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  const double ready_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  LogEvent("info", "serving",
           {{"port", std::to_string(port)},
            {"datasets", std::to_string((*catalog)->size())},
            {"auth", auth_enabled ? "on" : "OFF"},
            {"ready_seconds", absl::StrFormat("%.3f", ready_s)}});

  std::thread stopper([&] {
    const sigset_t stop = StopSignals();
    int sig = 0;
    while (sig == 0) {
      const timespec tick{0, 100'000'000};
      const int taken = sigtimedwait(&stop, nullptr, &tick);
      sig = taken > 0 ? taken : g_caught_signal.load();
    }
    LogEvent("info", "draining",
             {{"signal", std::to_string(sig)},
              {"grace_seconds", std::to_string(absl::GetFlag(FLAGS_grace_period_seconds))}});
    server->GetHealthCheckService()->SetServingStatus(false);
    // Jobs stop within about a second and stay stored as unfinished, to run again after the
    // restart; callers waiting on them get UNAVAILABLE now rather than at the grace's end.
    (*scheduler)->Shutdown();
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(absl::GetFlag(FLAGS_grace_period_seconds)));
  });
  server->Wait();
  stopper.join();
  console.reset();  // its requests' calls end now that the server is shut down
  server.reset();
  // Operations first: its destructor shuts the scheduler down and waits until every job
  // has ended and reported to it (a job still ending calls into the runner and into
  // Operations), whatever the order; then the scheduler joins its idle workers.
  operations.reset();
  scheduler->reset();
  owned_metrics.reset();  // no scrape may read the store or the catalog from here on
  // The identity's watches and usage publisher call etcd through the cluster's client: they
  // stop before it goes.
  identity_sync->reset();
  identity->Unsubscribe();
  cluster.reset();  // leaves the cluster: the others see this member down at once
  store->reset();   // flushes the WAL and closes RocksDB
  LogEvent("info", "stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Blocked before any thread starts, so every thread (gRPC's, RocksDB's, ours) inherits the
  // mask and the stopper thread takes them with sigwait. A handler instead ran on whichever
  // thread the kernel chose; under ThreadSanitizer, which defers a handler until the thread's
  // next intercepted call, a signal that landed on a library thread parked in a raw futex
  // wait was never handled, and the server ignored SIGTERM.
  const sigset_t stop = StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  struct sigaction record = {};
  record.sa_handler = RecordStopSignal;
  sigemptyset(&record.sa_mask);
  sigaction(SIGTERM, &record, nullptr);
  sigaction(SIGINT, &record, nullptr);
  curation::DashedFlagArgs args(argc, argv);  // --data-dir as well as --data_dir
  absl::SetProgramUsageMessage(
      "curation-server --listen HOST:PORT --data-dir DIR\n"
      "Serves the curation.v1 gRPC API over a RocksDB store.");
  absl::ParseCommandLine(args.argc(), args.argv());
  return Run();
}
