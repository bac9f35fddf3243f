// Who is calling: bearer tokens from metadata, the internal service
// credential, and an Authenticator that asks identity (with a cache no
// older than a second, so a suspension bites on the next call).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"

namespace guestlist {

using Principal = ::guestlist::identity::v1::Principal;

// Metadata key of the internal service credential. The gateway never
// forwards it, so it cannot be presented from outside.
inline constexpr char kInternalTokenKey[] = "x-guestlist-internal-token";
inline constexpr size_t kMaxTokenBytes = 4096;

// Returns the bearer token of `authorization`, nullopt if absent, or
// Unauthenticated when malformed or longer than kMaxTokenBytes.
absl::StatusOr<std::optional<std::string>> BearerToken(
    const grpc::ServerContextBase& context);

// Whether the call carries the internal credential `internal_token`.
bool HasInternalCredential(const grpc::ServerContextBase& context,
                           const std::string& internal_token);

// Copies the caller's authorization and request id onto an outgoing call,
// and its deadline (capped by `default_timeout` when it has none).
void ForwardCaller(const grpc::ServerContextBase& from, grpc::ClientContext* to,
                   absl::Duration default_timeout);

// Marks an outgoing call as made by the service itself. Its deadline is
// `timeout` from now, capped by the deadline of the call being served.
void AttachInternalCredential(grpc::ClientContext* to,
                              const std::string& internal_token,
                              absl::Duration timeout);

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Returns the caller. Unauthenticated for a missing, unknown, expired or
  // revoked token; PermissionDenied for a suspended, expired or archived
  // user.
  virtual absl::StatusOr<Principal> Authenticate(
      const grpc::ServerContextBase& context) = 0;
  // Whether Authenticate would answer `context` without waiting on I/O (a
  // local credential or a cached token), so a callback handler may run it
  // on gRPC's own thread. False unless an implementation knows better.
  virtual bool AnswersFromMemory(const grpc::ServerContextBase& context) {
    return false;
  }
};

// Used by membership and notification: the operator and internal
// credentials are checked locally, everything else by identity.
class RemoteAuthenticator final : public Authenticator {
 public:
  RemoteAuthenticator(
      std::shared_ptr<identity::v1::IdentityService::StubInterface> identity,
      std::string operator_token, std::string internal_token,
      const Clock* clock, absl::Duration cache_ttl = absl::Milliseconds(500));

  absl::StatusOr<Principal> Authenticate(
      const grpc::ServerContextBase& context) override;
  bool AnswersFromMemory(const grpc::ServerContextBase& context) override;

 private:
  struct Entry {
    absl::StatusOr<Principal> principal;
    absl::Time expires;
  };

  std::shared_ptr<identity::v1::IdentityService::StubInterface> identity_;
  const std::string operator_token_hash_;
  const std::string internal_token_;
  const Clock* clock_;
  const absl::Duration cache_ttl_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> cache_ ABSL_GUARDED_BY(mu_);
};

// Principal of the operator token and of the internal credential.
Principal OperatorPrincipal();
Principal InternalPrincipal();

}  // namespace guestlist
