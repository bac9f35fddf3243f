#include "services/identity/domain/rules.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace guestlist::identity {

UserStatus EffectiveStatus(const UserRecord& user, absl::Time now) {
  if ((user.status == v1::ACTIVE || user.status == v1::INVITED) &&
      user.access_expire_time.has_value() && *user.access_expire_time <= now) {
    return v1::EXPIRED;
  }
  return user.status;
}

absl::Status CheckCanAct(UserStatus status) {
  if (status == v1::ACTIVE) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "the user is ", StatusName(status),
      "; an admin must reactivate it before it can sign in or act"));
}

InvitationState EffectiveState(const InvitationRecord& invitation,
                               absl::Time now) {
  if (invitation.state == v1::Invitation::PENDING &&
      invitation.expire_time <= now) {
    return v1::Invitation::EXPIRED;
  }
  return invitation.state;
}

absl::StatusOr<Transition> SuspendTransition(const UserRecord& user) {
  switch (user.status) {
    case v1::SUSPENDED:
      return Transition();
    case v1::ARCHIVED:
      return absl::FailedPreconditionError(
          "the user is ARCHIVED; archived users cannot be suspended");
    default:
      return Transition(v1::SUSPENDED);
  }
}

absl::StatusOr<Transition> ReactivateTransition(const UserRecord& user) {
  switch (user.status) {
    case v1::SUSPENDED:
    case v1::EXPIRED:
      return Transition(user.password_hash.empty() ? v1::INVITED : v1::ACTIVE);
    case v1::ACTIVE:
    case v1::INVITED:
      return Transition();
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("the user is ", StatusName(user.status),
                       "; only SUSPENDED or EXPIRED users can be reactivated"));
  }
}

absl::StatusOr<Transition> ArchiveTransition(const UserRecord& user) {
  if (user.status == v1::ARCHIVED) return Transition();
  return Transition(v1::ARCHIVED);
}

absl::Status CheckConvertible(const UserRecord& user) {
  if (user.kind != v1::GUEST) {
    return absl::FailedPreconditionError(
        absl::StrCat("the user is a ", KindName(user.kind),
                     ", not a GUEST; only guests can be converted to members"));
  }
  if (user.status == v1::ARCHIVED) {
    return absl::FailedPreconditionError(
        "the user is ARCHIVED; archived users cannot be converted");
  }
  return absl::OkStatus();
}

bool IsValidKind(UserKind kind) {
  return kind == v1::ADMIN || kind == v1::MEMBER || kind == v1::GUEST;
}

std::string StatusName(UserStatus status) {
  return v1::UserStatus_Name(status);
}
std::string KindName(UserKind kind) { return v1::UserKind_Name(kind); }

UserStatus ParseStatus(const std::string& name) {
  UserStatus s = v1::USER_STATUS_UNSPECIFIED;
  v1::UserStatus_Parse(name, &s);
  return s;
}

UserKind ParseKind(const std::string& name) {
  UserKind k = v1::USER_KIND_UNSPECIFIED;
  v1::UserKind_Parse(name, &k);
  return k;
}

std::string InvitationStateName(InvitationState state) {
  return v1::Invitation::State_Name(state);
}

InvitationState ParseInvitationState(const std::string& name) {
  InvitationState s = v1::Invitation::STATE_UNSPECIFIED;
  v1::Invitation::State_Parse(name, &s);
  return s;
}

std::string AccessRequestStateName(AccessRequestState state) {
  return v1::AccessRequest::State_Name(state);
}

AccessRequestState ParseAccessRequestState(const std::string& name) {
  AccessRequestState s = v1::AccessRequest::STATE_UNSPECIFIED;
  v1::AccessRequest::State_Parse(name, &s);
  return s;
}

absl::Status RateLimitDecision(const RateLimit& limit, int hits,
                               absl::Time window_start, absl::Time now,
                               const std::string& what) {
  if (hits <= limit.max_hits) return absl::OkStatus();
  const absl::Duration wait =
      std::max(absl::Seconds(1), window_start + limit.window - now);
  return absl::ResourceExhaustedError(absl::StrCat(
      "too many ", what, "; retry in ",
      absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1))), " seconds"));
}

std::string DisplayName(const UserRecord& user) {
  std::string name = std::string(absl::StripAsciiWhitespace(
      absl::StrCat(user.first_name, " ", user.last_name)));
  return name.empty() ? user.username : name;
}

}  // namespace guestlist::identity
