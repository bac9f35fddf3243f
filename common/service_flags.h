// Flags every guestlist binary understands. Each can also be set through
// the environment (see config.h): e.g. --database_url of identity is
// GUESTLIST_IDENTITY_DATABASE_URL, --identity_addr is GUESTLIST_IDENTITY_ADDR.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

ABSL_DECLARE_FLAG(int, port);
ABSL_DECLARE_FLAG(std::string, listen_host);
ABSL_DECLARE_FLAG(std::string, database_url);
ABSL_DECLARE_FLAG(int, db_pool_size);
ABSL_DECLARE_FLAG(std::string, operator_token);
ABSL_DECLARE_FLAG(std::string, operator_token_file);
ABSL_DECLARE_FLAG(std::string, internal_token);
ABSL_DECLARE_FLAG(std::string, identity_addr);
ABSL_DECLARE_FLAG(std::string, membership_addr);
ABSL_DECLARE_FLAG(std::string, notification_addr);
ABSL_DECLARE_FLAG(std::string, public_url);
ABSL_DECLARE_FLAG(absl::Duration, grace_period);
ABSL_DECLARE_FLAG(absl::Duration, peer_timeout);
ABSL_DECLARE_FLAG(int, max_threads);
ABSL_DECLARE_FLAG(std::string, tls_cert_file);
ABSL_DECLARE_FLAG(std::string, tls_key_file);
ABSL_DECLARE_FLAG(std::string, tls_ca_file);
ABSL_DECLARE_FLAG(bool, tls_require_client_cert);

namespace guestlist {

// The port to listen on: --port if set (0 = any free port), else the port
// of this service's own peer address (--identity_addr for identity, ...).
int ListenPort(const std::string& service);

// "host:port" to listen on.
std::string ListenAddress(const std::string& service);

// The operator token: --operator_token, else the contents of
// --operator_token_file. Empty when neither is set.
std::string OperatorToken();

// The internal service credential: --internal_token, else derived from the
// operator token (so one secret configures a local run). Empty if neither.
std::string InternalToken();

// Server credentials from --tls_cert_file/--tls_key_file (and
// --tls_ca_file + --tls_require_client_cert for mutual TLS); insecure when
// no certificate is configured. Errors name the unreadable file.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials();

// A channel to a peer at `address` using the same TLS settings.
absl::StatusOr<std::shared_ptr<grpc::Channel>> PeerChannel(
    const std::string& address);

// Reads a whole file; NotFound naming it when unreadable.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace guestlist
