// Plain domain types of membership: what the rules in permissions.h and
// licenses.h reason about. No proto, no I/O; the enum values equal the
// proto enum numbers so conversion is a cast.
#pragma once

#include <optional>
#include <string>

#include "absl/time/time.h"

namespace guestlist::membership {

enum class Kind { kUnspecified = 0, kAdmin = 1, kMember = 2, kGuest = 3 };

enum class Status {
  kUnspecified = 0,
  kRequested = 1,
  kInvited = 2,
  kActive = 3,
  kSuspended = 4,
  kExpired = 5,
  kArchived = 6,
};

enum class Visibility {
  kUnspecified = 0,
  kOpen = 1,
  kPrivate = 2,
  kSecret = 3
};

enum class Role { kNone = 0, kMember = 1, kGroupAdmin = 2 };

// A user as membership knows it (its copy of identity's record).
struct User {
  std::string id;
  std::string workspace_id;
  Kind kind = Kind::kUnspecified;
  Status status = Status::kUnspecified;
  // InfiniteFuture: no expiry.
  absl::Time access_expire_time = absl::InfiniteFuture();
};

struct Workspace {
  std::string id;
  int license_count = 0;
  bool members_can_invite_guests = true;
};

struct Group {
  std::string id;
  std::string workspace_id;
  Visibility visibility = Visibility::kUnspecified;
  bool members_can_invite = false;
  bool members_can_publish = true;
};

// Lower-case names used in Status messages and reasons.
const char* KindName(Kind kind);
const char* StatusName(Status status);

}  // namespace guestlist::membership
