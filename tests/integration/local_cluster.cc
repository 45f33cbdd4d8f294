#include "tests/integration/local_cluster.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace curation::testing {

void Authorize(grpc::ClientContext* context, const std::string& token) {
  context->AddMetadata("authorization", "Bearer " + token);
}

LocalCluster::LocalCluster(const std::string& dir, int members,
                           std::vector<std::string> extra_flags)
    : dir_(dir), extra_flags_(std::move(extra_flags)) {
  std::filesystem::create_directories(dir_);
  etcd_ = EtcdProcess::Start(dir_ + "/etcd");
  if (etcd_ == nullptr) throw std::runtime_error("etcd did not start");
  admin_token_ = "cluster-test-admin-token-0123456789";
  admin_token_file_ = dir_ + "/admin-token";
  std::ofstream(admin_token_file_) << admin_token_;
  for (int i = 0; i < members; ++i) {
    ports_.push_back(FreePort());
    addresses_.push_back("127.0.0.1:" + std::to_string(ports_.back()));
    members_.emplace_back();
    Launch(i);
  }
}

LocalCluster::~LocalCluster() {
  for (auto& m : members_) {
    if (m) m->Signal(SIGTERM);
  }
  members_.clear();
  etcd_.reset();
}

void LocalCluster::Launch(int i) {
  std::vector<std::string> flags = {"--auth=true",
                                    "--admin-token-file=" + admin_token_file_,
                                    "--listen=" + addresses_[i],
                                    "--cluster-etcd=http://" + etcd_->endpoint(),
                                    "--member=" + name(i),
                                    "--advertise=" + addresses_[i],
                                    "--grace-period-seconds=2"};
  flags.insert(flags.end(), extra_flags_.begin(), extra_flags_.end());
  members_[i] = ServerProcess::Start(dir_ + "/" + name(i), flags);
}

void LocalCluster::Kill(int i) {
  members_[i]->Signal(SIGKILL);
  members_[i].reset();
}

void LocalCluster::Restart(int i) { Launch(i); }

std::unique_ptr<v1::CurationService::Stub> LocalCluster::Data(int i) const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  return v1::CurationService::NewStub(
      grpc::CreateCustomChannel(addresses_[i], grpc::InsecureChannelCredentials(), args));
}

std::unique_ptr<v1::AdminService::Stub> LocalCluster::Admin(int i) const {
  return v1::AdminService::NewStub(
      grpc::CreateChannel(addresses_[i], grpc::InsecureChannelCredentials()));
}

std::string LocalCluster::MakeTenant(int i, const std::string& tenant) {
  auto admin = Admin(i);
  {
    grpc::ClientContext context;
    Authorize(&context, admin_token_);
    v1::CreateTenantRequest request;
    request.mutable_tenant()->set_name(tenant);
    v1::Tenant reply;
    grpc::Status s = admin->CreateTenant(&context, request, &reply);
    if (!s.ok()) throw std::runtime_error("CreateTenant: " + s.error_message());
  }
  grpc::ClientContext context;
  Authorize(&context, admin_token_);
  v1::CreateTokenRequest request;
  request.set_tenant(tenant);
  request.set_role(v1::ROLE_WRITER);
  v1::CreateTokenResponse reply;
  grpc::Status s = admin->CreateToken(&context, request, &reply);
  if (!s.ok()) throw std::runtime_error("CreateToken: " + s.error_message());
  return reply.secret();
}

}  // namespace curation::testing
