// TLS and mutual TLS with certificates made here by openssl.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/integration/server_process.h"

namespace curation::testing {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
void MakeCertificates(const std::string& dir) {
  const std::string script = R"(set -e
cd ")" + dir + R"("
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key -out client.csr 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem 2>/dev/null
)";
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
}

grpc::Status Ping(const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds) {
  auto stub = v1::CurationService::NewStub(grpc::CreateChannel(address, creds));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListDatasetsRequest request;
  v1::ListDatasetsResponse reply;
  return stub->ListDatasets(&context, request, &reply);
}

TEST(TlsTest, ServerTlsAndMutualTls) {
  const std::string dir = MakeTempDir("tls");
  MakeCertificates(dir);
  grpc::SslCredentialsOptions with_client_cert;
  with_client_cert.pem_root_certs = Read(dir + "/ca.pem");
  with_client_cert.pem_cert_chain = Read(dir + "/client.pem");
  with_client_cert.pem_private_key = Read(dir + "/client.key");
  grpc::SslCredentialsOptions ca_only;
  ca_only.pem_root_certs = Read(dir + "/ca.pem");

  {
    auto server = ServerProcess::Start(
        dir + "/db1", {"--tls-cert", dir + "/server.pem", "--tls-key", dir + "/server.key"},
        grpc::SslCredentials(ca_only));
    EXPECT_TRUE(Ping(server->address(), grpc::SslCredentials(ca_only)).ok());
    EXPECT_EQ(Ping(server->address(), grpc::InsecureChannelCredentials()).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    CommandResult r = RunCli(server->address(), {"--tls-ca", dir + "/ca.pem", "datasets", "list"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    r = RunCli(server->address(), {"datasets", "list"});
    EXPECT_EQ(r.exit_code, 1);
  }
  auto server = ServerProcess::Start(dir + "/db2",
                                     {"--tls-cert", dir + "/server.pem", "--tls-key",
                                      dir + "/server.key", "--tls-client-ca", dir + "/ca.pem"},
                                     grpc::SslCredentials(with_client_cert));
  EXPECT_TRUE(Ping(server->address(), grpc::SslCredentials(with_client_cert)).ok());
  // Without a client certificate the handshake fails.
  EXPECT_EQ(Ping(server->address(), grpc::SslCredentials(ca_only)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  CommandResult r =
      RunCli(server->address(), {"--tls-ca", dir + "/ca.pem", "--tls-cert", dir + "/client.pem",
                                 "--tls-key", dir + "/client.key", "datasets", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace curation::testing
