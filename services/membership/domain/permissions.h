// The authorization rules of guestlist: given the facts about a subject
// user and a resource (loaded by storage in one query), decide whether a
// permission is granted and why. Pure functions, no I/O.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/membership/domain/model.h"

namespace guestlist::membership {

enum class Permission {
  kGroupView,
  kGroupPublish,
  kGroupDrive,
  kGroupDirectory,
  kGroupInviteGuest,
  kGroupAdmin,
  kGroupCreate,
  kUserViewProfile,
  kUserChat,
  kOrgChart,
  kAppReport,
};

enum class ResourceType { kGroup, kUser, kApp, kWorkspace };

struct Resource {
  ResourceType type;
  std::string id;
};

// Returns the permission named `name` ("group.view"), or InvalidArgument
// listing the known names.
absl::StatusOr<Permission> ParsePermission(const std::string& name);
const char* PermissionName(Permission permission);

// Returns the resource of "groups/{id}", "users/{id}", "apps/{id}" or
// "workspaces/{id}", or InvalidArgument. Ids must be UUIDs.
absl::StatusOr<Resource> ParseResource(const std::string& name);

// The resource type each permission applies to, e.g. group.view -> group.
ResourceType ResourceTypeFor(Permission permission);

// Whether `s` looks like a UUID (8-4-4-4-12 hex digits).
bool IsUuid(const std::string& s);

// Everything a decision may depend on. Fields for other resource types
// than the requested one are ignored.
struct CheckFacts {
  // nullopt: membership has no such user.
  std::optional<User> subject;
  // The resource's workspace; nullopt: the resource does not exist.
  std::optional<std::string> resource_workspace_id;
  Workspace workspace;  // the resource's workspace settings
  // Group resources.
  Group group;
  Role subject_role = Role::kNone;  // subject's role in the group
  // User resources.
  std::optional<User> target;
  bool shares_group = false;  // subject and target share a group
  // App resources: whether the subject holds any privilege on the app.
  bool has_app_privilege = false;
};

struct Decision {
  bool allowed = false;
  std::string reason;
};

// Whether the user is denied everything right now: not ACTIVE, or past
// its access expiry at `now`. Returns the reason, or nullopt when usable.
std::optional<std::string> InactiveReason(const User& user, absl::Time now);

// Decides `permission` on the resource described by `facts` at `now`.
Decision Decide(Permission permission, const CheckFacts& facts, absl::Time now);

// Whether `subject` may see `group` at all (group.view without the
// workspace and status checks): the basis of "NOT_FOUND rather than
// PERMISSION_DENIED" for groups the caller may not know about.
bool CanSeeGroup(Kind subject_kind, Visibility visibility, Role role);

}  // namespace guestlist::membership
