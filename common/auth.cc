#include "common/auth.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/random.h"

namespace guestlist {
namespace {

constexpr size_t kMaxCacheEntries = 100000;

std::string Metadata(const grpc::ServerContextBase& context, const char* key) {
  const auto& md = context.client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

absl::StatusOr<std::optional<std::string>> BearerToken(
    const grpc::ServerContextBase& context) {
  const std::string header = Metadata(context, "authorization");
  if (header.empty()) return std::optional<std::string>();
  if (header.size() > kMaxTokenBytes + 7) {
    return absl::UnauthenticatedError(
        "authorization header is too long; send `Bearer <token>`");
  }
  if (!absl::StartsWithIgnoreCase(header, "bearer ")) {
    return absl::UnauthenticatedError("authorization must be `Bearer <token>`");
  }
  std::string token(absl::StripAsciiWhitespace(header.substr(7)));
  if (token.empty()) {
    return absl::UnauthenticatedError("authorization has an empty token");
  }
  return std::optional<std::string>(std::move(token));
}

bool HasInternalCredential(const grpc::ServerContextBase& context,
                           const std::string& internal_token) {
  if (internal_token.empty()) return false;
  const std::string presented = Metadata(context, kInternalTokenKey);
  return !presented.empty() && ConstantTimeEquals(presented, internal_token);
}

void ForwardCaller(const grpc::ServerContextBase& from, grpc::ClientContext* to,
                   absl::Duration default_timeout) {
  const std::string auth = Metadata(from, "authorization");
  if (!auth.empty()) to->AddMetadata("authorization", auth);
  const std::string request_id = Metadata(from, "x-request-id");
  if (!request_id.empty()) to->AddMetadata("x-request-id", request_id);
  const auto cap = absl::ToChronoTime(absl::Now() + default_timeout);
  const auto deadline = from.deadline();
  to->set_deadline(deadline < cap ? deadline : cap);
}

void AttachInternalCredential(grpc::ClientContext* to,
                              const std::string& internal_token,
                              absl::Duration timeout) {
  to->AddMetadata(kInternalTokenKey, internal_token);
  // Inside a call, the caller's deadline caps ours and its request id
  // follows the work.
  const absl::Time deadline =
      std::min(absl::Now() + timeout, CurrentCallDeadline());
  to->set_deadline(absl::ToChronoTime(deadline));
  if (!CurrentRequestId().empty()) {
    to->AddMetadata("x-request-id", CurrentRequestId());
  }
}

Principal OperatorPrincipal() {
  Principal p;
  p.set_is_operator(true);
  p.set_username("operator");
  return p;
}

Principal InternalPrincipal() {
  Principal p;
  p.set_is_internal(true);
  p.set_username("internal");
  return p;
}

RemoteAuthenticator::RemoteAuthenticator(
    std::shared_ptr<identity::v1::IdentityService::StubInterface> identity,
    std::string operator_token, std::string internal_token, const Clock* clock,
    absl::Duration cache_ttl)
    : identity_(std::move(identity)),
      operator_token_hash_(operator_token.empty() ? ""
                                                  : Sha256Hex(operator_token)),
      internal_token_(std::move(internal_token)),
      clock_(clock),
      cache_ttl_(cache_ttl) {}

bool RemoteAuthenticator::AnswersFromMemory(
    const grpc::ServerContextBase& context) {
  if (HasInternalCredential(context, internal_token_)) return true;
  absl::StatusOr<std::optional<std::string>> token = BearerToken(context);
  // A malformed or missing token is refused without I/O.
  if (!token.ok() || !token->has_value()) return true;
  const std::string hash = Sha256Hex(**token);
  if (!operator_token_hash_.empty() &&
      ConstantTimeEquals(hash, operator_token_hash_)) {
    return true;
  }
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(hash);
  return it != cache_.end() && it->second.expires > clock_->Now();
}

absl::StatusOr<Principal> RemoteAuthenticator::Authenticate(
    const grpc::ServerContextBase& context) {
  if (HasInternalCredential(context, internal_token_)) {
    return InternalPrincipal();
  }
  absl::StatusOr<std::optional<std::string>> token = BearerToken(context);
  if (!token.ok()) return token.status();
  if (!token->has_value()) {
    return absl::UnauthenticatedError(
        "this call needs `authorization: Bearer <token>`");
  }
  const std::string hash = Sha256Hex(**token);
  if (!operator_token_hash_.empty() &&
      ConstantTimeEquals(hash, operator_token_hash_)) {
    return OperatorPrincipal();
  }
  const absl::Time now = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(hash);
    if (it != cache_.end() && it->second.expires > now) {
      return it->second.principal;
    }
  }
  grpc::ClientContext ctx;
  ForwardCaller(context, &ctx, absl::Seconds(2));
  identity::v1::AuthenticateRequest request;
  request.set_token(**token);
  Principal principal;
  grpc::Status status = identity_->Authenticate(&ctx, request, &principal);
  absl::StatusOr<Principal> result =
      status.ok() ? absl::StatusOr<Principal>(principal)
                  : absl::StatusOr<Principal>(FromGrpcStatus(status));
  // Only definite answers are cached; an unreachable identity is not.
  const bool cacheable =
      status.ok() || status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
      status.error_code() == grpc::StatusCode::PERMISSION_DENIED;
  if (cacheable) {
    absl::MutexLock lock(&mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_[hash] = Entry{result, now + cache_ttl_};
  }
  if (!result.ok() && status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(
        "cannot authenticate: the identity service is unavailable");
  }
  return result;
}

}  // namespace guestlist
