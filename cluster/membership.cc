#include "cluster/membership.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace curation::cluster {
int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

absl::Status FromJson(const std::string& json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // a newer release's fields
  auto status = google::protobuf::util::JsonStringToMessage(json, message, options);
  if (!status.ok()) {
    return absl::DataLossError(absl::StrCat("malformed cluster record: ", status.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Membership>> Membership::Join(EtcdClient* etcd, Options options) {
  if (options.lease_seconds < 2) options.lease_seconds = 2;
  std::unique_ptr<Membership> m(new Membership(etcd, std::move(options)));
  RETURN_IF_ERROR(m->Register(std::chrono::steady_clock::now() +
                              std::chrono::seconds(2 * m->options_.lease_seconds)));
  RETURN_IF_ERROR(m->Resync());
  m->keepalive_ = std::thread([p = m.get()] { p->KeepAliveLoop(); });
  return m;
}

Membership::~Membership() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
  watch_.reset();
  // Leaving on purpose: the name is free for a successor at once, not a lease later.
  if (lease_ != 0) (void)etcd_->RevokeLease(lease_);
}

std::string Membership::Record(const MemberLoad& load) const {
  storage::MemberRecord record;
  record.set_name(options_.name);
  record.set_address(options_.address);
  record.set_datasets(load.datasets);
  record.set_stored_bytes(load.stored_bytes);
  record.set_start_unix_ms(start_unix_ms_);
  return ToJson(record);
}

absl::Status Membership::Register(std::chrono::steady_clock::time_point give_up) {
  const std::string key = kMembersPrefix + options_.name;
  const MemberLoad load = options_.load ? options_.load() : MemberLoad{};
  ASSIGN_OR_RETURN(const int64_t lease, etcd_->GrantLease(options_.lease_seconds));
  auto renewed = std::chrono::steady_clock::now();
  while (true) {
    std::optional<KeyValue> holder;
    auto wrote = etcd_->PutIf(key, Record(load), 0, lease, &holder);
    if (!wrote.ok()) {
      (void)etcd_->RevokeLease(lease);
      return wrote.status();
    }
    if (*wrote) break;
    if (std::chrono::steady_clock::now() >= give_up) {
      (void)etcd_->RevokeLease(lease);
      storage::MemberRecord other;
      if (holder) (void)FromJson(holder->value, &other);
      return absl::AlreadyExistsError(
          absl::StrCat("member name ", options_.name, " is held by a live process at ",
                       other.address(), "; names must be unique in the cluster"));
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_; })) {
        lock.unlock();
        (void)etcd_->RevokeLease(lease);
        return absl::CancelledError("stopping");
      }
    }
    // Our own lease must outlive the wait for the holder's to expire, which may take longer.
    const auto asked = std::chrono::steady_clock::now();
    if (absl::StatusOr<int64_t> ttl = etcd_->KeepAlive(lease); !ttl.ok()) {
      (void)etcd_->RevokeLease(lease);
      return ttl.status();
    }
    renewed = asked;
  }
  std::lock_guard<std::mutex> lock(mu_);
  lease_ = lease;
  lease_valid_until_ = renewed + std::chrono::seconds(options_.lease_seconds);
  why_not_writable_.clear();
  published_ = load;
  return absl::OkStatus();
}

bool Membership::writable() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lease_ != 0 && std::chrono::steady_clock::now() < lease_valid_until_;
}

absl::Status Membership::CheckWritable() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (lease_ != 0 && std::chrono::steady_clock::now() < lease_valid_until_) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat(
      "member ", options_.name, " holds no live etcd lease (",
      why_not_writable_.empty() ? "etcd has not answered for a lease period" : why_not_writable_,
      "); it accepts writes again once it has registered"));
}

void Membership::KeepAliveLoop() {
  const auto period = std::chrono::milliseconds(options_.lease_seconds * 1000 / 3);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_cv_.wait_for(lock, period, [&] { return stopping_; })) return;
    }
    int64_t lease;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lease = lease_;
    }
    if (lease == 0) {
      // Lost it: register again (one attempt per tick; a holder of our name is waited out).
      absl::Status s = Register(std::chrono::steady_clock::now());
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        why_not_writable_ = std::string(s.message());
      }
      continue;
    }
    const auto asked = std::chrono::steady_clock::now();
    auto ttl = etcd_->KeepAlive(lease);
    if (ttl.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      lease_valid_until_ = asked + std::chrono::seconds(*ttl);
    } else if (absl::IsNotFound(ttl.status())) {
      std::lock_guard<std::mutex> lock(mu_);
      lease_ = 0;
      why_not_writable_ = "its lease expired";
      continue;
    }
    // etcd unreachable: the lease lapses by itself once lease_valid_until_ passes.
    PublishLoad();
  }
}

void Membership::PublishLoad() {
  if (!options_.load) return;
  const MemberLoad load = options_.load();
  int64_t lease;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lease = lease_;
    if (lease == 0) return;
    if (published_ && published_->datasets == load.datasets &&
        published_->stored_bytes == load.stored_bytes) {
      return;
    }
  }
  if (etcd_->Put(kMembersPrefix + options_.name, Record(load), lease).ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    published_ = load;
  }
}

void Membership::ApplyEvents(const std::vector<WatchEvent>& events) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const WatchEvent& e : events) {
    const std::string name = e.kv.key.substr(std::string(kMembersPrefix).size());
    if (e.type == WatchEvent::Type::kDelete) {
      members_.erase(name);
      continue;
    }
    storage::MemberRecord record;
    if (FromJson(e.kv.value, &record).ok()) members_[name] = record;
  }
}

absl::StatusOr<int64_t> Membership::ReadAll() {
  int64_t revision = 0;
  ASSIGN_OR_RETURN(std::vector<KeyValue> kvs, etcd_->GetPrefix(kMembersPrefix, &revision));
  std::lock_guard<std::mutex> lock(mu_);
  members_.clear();
  for (const KeyValue& kv : kvs) {
    storage::MemberRecord record;
    if (FromJson(kv.value, &record).ok()) {
      members_[kv.key.substr(std::string(kMembersPrefix).size())] = record;
    }
  }
  return revision;
}

absl::Status Membership::Resync() {
  ASSIGN_OR_RETURN(const int64_t revision, ReadAll());
  watch_ = etcd_->WatchPrefix(
      kMembersPrefix, revision + 1, [this](const std::vector<WatchEvent>& e) { ApplyEvents(e); },
      [this](const absl::Status& s) {
        // Compacted past our revision: the watch goes on from now; re-read what it missed.
        if (absl::IsOutOfRange(s)) (void)ReadAll();
      });
  return absl::OkStatus();
}

std::map<std::string, storage::MemberRecord> Membership::Members() const {
  std::lock_guard<std::mutex> lock(mu_);
  return members_;
}

std::optional<storage::MemberRecord> Membership::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = members_.find(name);
  if (it == members_.end()) return std::nullopt;
  return it->second;
}

}  // namespace curation::cluster
