#include "services/membership/domain/permissions.h"

#include <array>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace guestlist::membership {
namespace {

constexpr std::array<std::pair<Permission, const char*>, 11> kPermissions = {{
    {Permission::kGroupView, "group.view"},
    {Permission::kGroupPublish, "group.publish"},
    {Permission::kGroupDrive, "group.drive"},
    {Permission::kGroupDirectory, "group.directory"},
    {Permission::kGroupInviteGuest, "group.invite_guest"},
    {Permission::kGroupAdmin, "group.admin"},
    {Permission::kGroupCreate, "group.create"},
    {Permission::kUserViewProfile, "user.view_profile"},
    {Permission::kUserChat, "user.chat"},
    {Permission::kOrgChart, "org.chart"},
    {Permission::kAppReport, "app.report"},
}};

Decision Allow(std::string reason) { return {true, std::move(reason)}; }
Decision Deny(std::string reason) { return {false, std::move(reason)}; }

bool IsGuest(const User& u) { return u.kind == Kind::kGuest; }
bool IsAdmin(const User& u) { return u.kind == Kind::kAdmin; }

// group.view for a subject already known to be active and in the workspace.
Decision ViewGroup(const User& subject, const CheckFacts& f) {
  if (CanSeeGroup(subject.kind, f.group.visibility, f.subject_role)) {
    if (IsAdmin(subject)) return Allow("admins see every group");
    if (f.subject_role != Role::kNone) return Allow("member of the group");
    return Allow("group is visible to members of the workspace");
  }
  if (IsGuest(subject)) return Deny("guests see only groups they belong to");
  return Deny("secret group: only its members see it");
}

Decision DecideGroup(Permission p, const User& s, const CheckFacts& f) {
  Decision view = ViewGroup(s, f);
  if (!view.allowed) return view;
  const bool in_group = f.subject_role != Role::kNone;
  const bool group_admin = f.subject_role == Role::kGroupAdmin && !IsGuest(s);
  switch (p) {
    case Permission::kGroupView:
      return view;
    case Permission::kGroupPublish:
      if (IsAdmin(s)) return Allow("admins may publish in every group");
      if (group_admin) return Allow("group admin");
      if (!in_group) return Deny("not a member of the group");
      if (!f.group.members_can_publish) {
        return Deny("only group admins may publish in this group");
      }
      return Allow("members may publish in this group");
    case Permission::kGroupDrive:
    case Permission::kGroupDirectory:
      if (IsAdmin(s)) return Allow("admins see every group");
      if (in_group) return Allow("member of the group");
      if (f.group.visibility == Visibility::kOpen) {
        return Allow("open group");
      }
      return Deny("not a member of the group");
    case Permission::kGroupInviteGuest:
      if (IsGuest(s)) return Deny("guests cannot invite");
      if (IsAdmin(s)) return Allow("admins may invite guests");
      if (group_admin) return Allow("group admin");
      if (!f.workspace.members_can_invite_guests) {
        return Deny("the workspace does not let members invite guests");
      }
      if (f.group.visibility == Visibility::kOpen) {
        return Allow("members may invite guests to open groups");
      }
      if (!in_group) return Deny("not a member of the group");
      if (f.group.members_can_invite) {
        return Allow("the group lets members invite guests");
      }
      return Deny(
          "only admins and group admins may invite guests to this group");
    case Permission::kGroupAdmin:
      if (IsGuest(s)) return Deny("guests cannot administer groups");
      if (IsAdmin(s)) return Allow("admins administer every group");
      if (group_admin) return Allow("group admin");
      return Deny("not a group admin of the group");
    default:
      return Deny("permission does not apply to groups");
  }
}

Decision DecideUser(Permission p, const User& s, const CheckFacts& f) {
  if (!f.target.has_value()) return Deny("user not found");
  const User& t = *f.target;
  if (p == Permission::kUserChat && t.id != s.id) {
    if (t.status != Status::kActive) {
      return Deny(absl::StrCat("user is ", StatusName(t.status)));
    }
  }
  if (t.id == s.id) return Allow("own profile");
  if (!IsGuest(s)) return Allow("members see everyone in the workspace");
  if (f.shares_group) return Allow("shares a group with the user");
  return Deny("guests see only users they share a group with");
}

}  // namespace

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kAdmin:
      return "admin";
    case Kind::kMember:
      return "member";
    case Kind::kGuest:
      return "guest";
    default:
      return "unspecified";
  }
}

const char* StatusName(Status status) {
  switch (status) {
    case Status::kRequested:
      return "requested";
    case Status::kInvited:
      return "invited";
    case Status::kActive:
      return "active";
    case Status::kSuspended:
      return "suspended";
    case Status::kExpired:
      return "expired";
    case Status::kArchived:
      return "archived";
    default:
      return "unspecified";
  }
}

absl::StatusOr<Permission> ParsePermission(const std::string& name) {
  for (const auto& [p, n] : kPermissions) {
    if (name == n) return p;
  }
  std::string known;
  for (const auto& [p, n] : kPermissions) {
    absl::StrAppend(&known, known.empty() ? "" : ", ", n);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown permission \"", name, "\"; use one of ", known));
}

const char* PermissionName(Permission permission) {
  for (const auto& [p, n] : kPermissions) {
    if (p == permission) return n;
  }
  return "";
}

bool IsUuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<Resource> ParseResource(const std::string& name) {
  static constexpr std::pair<const char*, ResourceType> kPrefixes[] = {
      {"groups/", ResourceType::kGroup},
      {"users/", ResourceType::kUser},
      {"apps/", ResourceType::kApp},
      {"workspaces/", ResourceType::kWorkspace},
  };
  for (const auto& [prefix, type] : kPrefixes) {
    if (absl::StartsWith(name, prefix)) {
      std::string id = name.substr(strlen(prefix));
      if (!IsUuid(id)) break;
      return Resource{type, absl::AsciiStrToLower(id)};
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "malformed resource \"", name,
      "\"; use groups/{id}, users/{id}, apps/{id} or workspaces/{id} with a "
      "UUID id"));
}

ResourceType ResourceTypeFor(Permission permission) {
  switch (permission) {
    case Permission::kGroupCreate:
    case Permission::kOrgChart:
      return ResourceType::kWorkspace;
    case Permission::kUserViewProfile:
    case Permission::kUserChat:
      return ResourceType::kUser;
    case Permission::kAppReport:
      return ResourceType::kApp;
    default:
      return ResourceType::kGroup;
  }
}

std::optional<std::string> InactiveReason(const User& user, absl::Time now) {
  if (user.status != Status::kActive) {
    return absl::StrCat("user is ", StatusName(user.status));
  }
  if (user.access_expire_time <= now)
    return std::string("user's access expired");
  return std::nullopt;
}

bool CanSeeGroup(Kind subject_kind, Visibility visibility, Role role) {
  if (subject_kind == Kind::kAdmin) return true;
  if (role != Role::kNone) return true;
  if (subject_kind == Kind::kGuest) return false;
  return visibility == Visibility::kOpen || visibility == Visibility::kPrivate;
}

Decision Decide(Permission p, const CheckFacts& f, absl::Time now) {
  if (!f.subject.has_value()) return Deny("unknown user");
  const User& s = *f.subject;
  if (auto inactive = InactiveReason(s, now)) return Deny(*inactive);
  const ResourceType type = ResourceTypeFor(p);
  if (!f.resource_workspace_id.has_value()) {
    switch (type) {
      case ResourceType::kGroup:
        return Deny("group not found");
      case ResourceType::kUser:
        return Deny("user not found");
      case ResourceType::kApp:
        return Deny("app not found");
      case ResourceType::kWorkspace:
        return Deny("workspace not found");
    }
  }
  if (*f.resource_workspace_id != s.workspace_id) {
    return Deny("the resource belongs to another workspace");
  }
  switch (type) {
    case ResourceType::kGroup:
      return DecideGroup(p, s, f);
    case ResourceType::kUser:
      return DecideUser(p, s, f);
    case ResourceType::kApp:
      if (IsAdmin(s)) return Allow("admins receive every app's reports");
      if (f.has_app_privilege) return Allow("holds a privilege on the app");
      return Deny("no privilege on the app");
    case ResourceType::kWorkspace:
      if (p == Permission::kGroupCreate) {
        if (IsGuest(s)) return Deny("guests cannot create groups");
        return Allow("members may create groups");
      }
      return Allow("every active user sees the org chart");
  }
  return Deny("unsupported permission");
}

}  // namespace guestlist::membership
