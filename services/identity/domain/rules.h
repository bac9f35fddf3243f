// Identity's lifecycle rules, pure: effective statuses under temporary
// access, which status a principal may act with, user state transitions and
// invitation states.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/identity/domain/model.h"

namespace guestlist::identity {

// The user's status at `now`: ACTIVE / INVITED past access_expire_time
// count as EXPIRED even before the sweeper marks them.
UserStatus EffectiveStatus(const UserRecord& user, absl::Time now);

// OK when a user with `status` may authenticate; PERMISSION_DENIED naming
// the status otherwise.
absl::Status CheckCanAct(UserStatus status);

// An invitation's state at `now` (PENDING past expire_time is EXPIRED).
InvitationState EffectiveState(const InvitationRecord& invitation,
                               absl::Time now);

// Result of a lifecycle request: the new status, or nullopt when the user
// is already there (the call returns it unchanged).
using Transition = std::optional<UserStatus>;

// Errors: FAILED_PRECONDITION naming the current status.
absl::StatusOr<Transition> SuspendTransition(const UserRecord& user);
absl::StatusOr<Transition> ReactivateTransition(const UserRecord& user);
absl::StatusOr<Transition> ArchiveTransition(const UserRecord& user);
absl::Status CheckConvertible(const UserRecord& user);

// Whether `kind` is a kind a user may be created with (not unspecified).
bool IsValidKind(UserKind kind);

// Name of a status / kind as stored and shown ("ACTIVE").
std::string StatusName(UserStatus status);
std::string KindName(UserKind kind);
UserStatus ParseStatus(const std::string& name);
UserKind ParseKind(const std::string& name);
std::string InvitationStateName(InvitationState state);
InvitationState ParseInvitationState(const std::string& name);
std::string AccessRequestStateName(AccessRequestState state);
AccessRequestState ParseAccessRequestState(const std::string& name);

// Fixed-window rate limit decision.
struct RateLimit {
  int max_hits = 10;
  absl::Duration window = absl::Minutes(15);
};

// RESOURCE_EXHAUSTED saying when to retry if `hits` exceeds the limit in the
// window that started at `window_start`.
absl::Status RateLimitDecision(const RateLimit& limit, int hits,
                               absl::Time window_start, absl::Time now,
                               const std::string& what);

// The display name of a user: "First Last", else the username.
std::string DisplayName(const UserRecord& user);

}  // namespace guestlist::identity
