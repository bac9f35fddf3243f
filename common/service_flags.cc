#include "common/service_flags.h"

#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/random.h"

ABSL_FLAG(int, port, -1,
          "port to listen on; -1 = the port of this service's own *_addr "
          "flag, 0 = any free port");
ABSL_FLAG(std::string, listen_host, "0.0.0.0", "interface to listen on");
ABSL_FLAG(std::string, database_url, "",
          "libpq connection string or postgresql:// URL of this service's "
          "database");
ABSL_FLAG(int, db_pool_size, 16, "maximum open database connections");
ABSL_FLAG(std::string, operator_token, "",
          "bearer token with operator rights (create workspaces)");
ABSL_FLAG(std::string, operator_token_file, "",
          "file holding the operator token (used when --operator_token is "
          "empty)");
ABSL_FLAG(std::string, internal_token, "",
          "credential the services use between themselves for background "
          "work; derived from the operator token when empty");
ABSL_FLAG(std::string, identity_addr, "127.0.0.1:50051",
          "address of the identity service");
ABSL_FLAG(std::string, membership_addr, "127.0.0.1:50052",
          "address of the membership service");
ABSL_FLAG(std::string, notification_addr, "127.0.0.1:50053",
          "address of the notification service");
ABSL_FLAG(std::string, public_url, "http://127.0.0.1:8080",
          "base URL of links in emails (invitation, unsubscribe)");
ABSL_FLAG(absl::Duration, grace_period, absl::Seconds(10),
          "how long in-flight calls may run after SIGTERM");
ABSL_FLAG(absl::Duration, peer_timeout, absl::Seconds(5),
          "deadline of calls to other services when the caller set none");
ABSL_FLAG(int, max_threads, 256,
          "maximum concurrent RPCs; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain; enables TLS on the server and peers");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for --tls_cert_file");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA bundle to verify peers (and clients with mutual TLS)");
ABSL_FLAG(bool, tls_require_client_cert, false,
          "mutual TLS: require and verify a client certificate");

namespace guestlist {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

int ListenPort(const std::string& service) {
  const int port = absl::GetFlag(FLAGS_port);
  if (port >= 0) return port;
  std::string addr;
  if (service == "identity") addr = absl::GetFlag(FLAGS_identity_addr);
  if (service == "membership") addr = absl::GetFlag(FLAGS_membership_addr);
  if (service == "notification") addr = absl::GetFlag(FLAGS_notification_addr);
  const size_t colon = addr.rfind(':');
  int parsed = 0;
  if (colon != std::string::npos &&
      absl::SimpleAtoi(addr.substr(colon + 1), &parsed)) {
    return parsed;
  }
  return 0;
}

std::string ListenAddress(const std::string& service) {
  return absl::StrCat(absl::GetFlag(FLAGS_listen_host), ":",
                      ListenPort(service));
}

std::string OperatorToken() {
  std::string token = absl::GetFlag(FLAGS_operator_token);
  if (token.empty() && !absl::GetFlag(FLAGS_operator_token_file).empty()) {
    absl::StatusOr<std::string> file =
        ReadFile(absl::GetFlag(FLAGS_operator_token_file));
    if (file.ok()) token = std::string(absl::StripAsciiWhitespace(*file));
  }
  return token;
}

std::string InternalToken() {
  std::string token = absl::GetFlag(FLAGS_internal_token);
  if (!token.empty()) return token;
  const std::string op = OperatorToken();
  if (op.empty()) return "";
  return HmacSha256Hex(op, "guestlist internal service credential v1");
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials() {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert_file);
  if (cert.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      absl::GetFlag(FLAGS_tls_require_client_cert)
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  auto cert_pem = ReadFile(cert);
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = ReadFile(absl::GetFlag(FLAGS_tls_key_file));
  if (!key_pem.ok()) return key_pem.status();
  pair.cert_chain = *cert_pem;
  pair.private_key = *key_pem;
  options.pem_key_cert_pairs.push_back(pair);
  if (!absl::GetFlag(FLAGS_tls_ca_file).empty()) {
    auto ca = ReadFile(absl::GetFlag(FLAGS_tls_ca_file));
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> PeerChannel(
    const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  if (absl::GetFlag(FLAGS_tls_cert_file).empty() &&
      absl::GetFlag(FLAGS_tls_ca_file).empty()) {
    return grpc::CreateCustomChannel(address,
                                     grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions options;
  if (!absl::GetFlag(FLAGS_tls_ca_file).empty()) {
    auto ca = ReadFile(absl::GetFlag(FLAGS_tls_ca_file));
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  if (absl::GetFlag(FLAGS_tls_require_client_cert)) {
    auto cert = ReadFile(absl::GetFlag(FLAGS_tls_cert_file));
    if (!cert.ok()) return cert.status();
    auto key = ReadFile(absl::GetFlag(FLAGS_tls_key_file));
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *cert;
    options.pem_private_key = *key;
  }
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(options),
                                   args);
}

}  // namespace guestlist
