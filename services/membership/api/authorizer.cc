#include "services/membership/api/authorizer.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "services/membership/domain/permissions.h"

namespace guestlist::membership {
namespace {

absl::Status GroupNotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("group ", id, " not found"));
}

}  // namespace

absl::Status RequireUuid(const std::string& value, const char* field) {
  if (IsUuid(value)) return absl::OkStatus();
  // Quote only the start: the value may be of any size.
  return absl::InvalidArgumentError(absl::StrCat(
      field, " must be a UUID, got \"",
      value.size() > 40 ? absl::StrCat(value.substr(0, 36), "...") : value,
      "\""));
}

absl::StatusOr<Caller> Authorizer::Resolve(const Principal& p, bool load_copy) {
  Caller c;
  if (p.is_operator() || p.is_internal()) {
    c.privileged = true;
    c.internal = p.is_internal();
    c.kind = Kind::kAdmin;
    return c;
  }
  c.workspace_id = p.workspace_id();
  if (p.user_id().empty()) {
    c.api_key = true;
    c.kind = Kind::kMember;
    return c;
  }
  c.user_id = p.user_id();
  c.kind = static_cast<Kind>(p.kind());
  if (load_copy) {
    // Membership's own copy is the freshest word on kind and status (a
    // suspension synced by identity bites here even if the token cache
    // has not expired yet).
    ASSIGN_OR_RETURN(std::optional<User> copy, repo_->GetUser(c.user_id));
    if (copy.has_value()) {
      if (auto inactive = InactiveReason(*copy, clock_->Now())) {
        return absl::PermissionDeniedError(*inactive);
      }
      c.kind = copy->kind;
      c.workspace_id = copy->workspace_id;
    }
  }
  return c;
}

absl::Status Authorizer::RequireWorkspace(const Caller& c,
                                          const std::string& ws) {
  RETURN_IF_ERROR(RequireUuid(ws, "workspace_id"));
  if (!c.privileged && c.workspace_id != ws) {
    return absl::PermissionDeniedError(
        "you can only access your own workspace");
  }
  ASSIGN_OR_RETURN(std::optional<Workspace> w, repo_->GetWorkspace(ws));
  if (!w.has_value()) {
    return absl::NotFoundError(absl::StrCat("workspace ", ws, " not found"));
  }
  return absl::OkStatus();
}

absl::Status Authorizer::RequireAdmin(const Caller& c, const std::string& ws) {
  RETURN_IF_ERROR(RequireWorkspace(c, ws));
  if (c.privileged || (!c.api_key && c.kind == Kind::kAdmin)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError("only workspace admins may do this");
}

absl::StatusOr<v1::Group> Authorizer::VisibleGroup(const Caller& c,
                                                   const std::string& group_id,
                                                   Role* role) {
  RETURN_IF_ERROR(RequireUuid(group_id, "group_id"));
  ASSIGN_OR_RETURN(std::optional<v1::Group> g, repo_->GetGroup(group_id));
  // Groups of other workspaces and groups the caller may not see are all
  // NOT_FOUND, so their existence does not leak.
  if (!g.has_value()) return GroupNotFound(group_id);
  if (c.privileged) {
    *role = Role::kNone;
    return *g;
  }
  if (g->workspace_id() != c.workspace_id) return GroupNotFound(group_id);
  ASSIGN_OR_RETURN(*role, repo_->GetRole(group_id, c.user_id));
  if (!CanSeeGroup(c.kind, static_cast<Visibility>(g->visibility()), *role)) {
    return GroupNotFound(group_id);
  }
  return *g;
}

absl::StatusOr<CheckFacts> Authorizer::LoadFacts(const std::string& subject,
                                                 const Resource& resource) {
  if (cache_ != nullptr) return cache_->LoadFacts(subject, resource);
  return repo_->LoadFacts(subject, resource);
}

absl::StatusOr<std::optional<User>> Authorizer::LookupUser(
    const std::string& id) {
  if (cache_ != nullptr) return cache_->LookupUser(id);
  return repo_->GetUser(id);
}

absl::StatusOr<v1::CheckResponse> Authorizer::Check(
    const Caller& c, const v1::CheckRequest& req) {
  ASSIGN_OR_RETURN(Permission permission, ParsePermission(req.permission()));
  ASSIGN_OR_RETURN(Resource resource, ParseResource(req.resource()));
  if (resource.type != ResourceTypeFor(permission)) {
    return absl::InvalidArgumentError(
        absl::StrCat("permission ", req.permission(), " does not apply to ",
                     req.resource()));
  }
  std::string subject = req.user_id();
  if (subject.empty()) {
    if (c.user_id.empty()) {
      return absl::InvalidArgumentError(
          "user_id is required when the caller is not a user");
    }
    subject = c.user_id;
  }
  RETURN_IF_ERROR(RequireUuid(subject, "user_id"));
  subject = absl::AsciiStrToLower(subject);  // one cache key per user
  ASSIGN_OR_RETURN(CheckFacts facts, LoadFacts(subject, resource));
  const absl::Time now = clock_->Now();
  Caller caller = c;
  if (!caller.privileged) {
    if (subject == caller.user_id) {
      // The caller's own copy decides, so a suspension synced by identity
      // bites on the next call even inside the token cache window.
      if (facts.subject) {
        if (auto inactive = InactiveReason(*facts.subject, now)) {
          return absl::PermissionDeniedError(*inactive);
        }
      }
    } else {
      if (!c.user_id.empty()) {
        // The asking user's own status, from the copy (as above).
        ASSIGN_OR_RETURN(std::optional<User> me, LookupUser(c.user_id));
        if (me) {
          if (auto inactive = InactiveReason(*me, now)) {
            return absl::PermissionDeniedError(*inactive);
          }
          caller.kind = me->kind;  // fresher than the token cache
          caller.workspace_id = me->workspace_id;
        }
      }
      const bool may_ask = caller.api_key || caller.kind == Kind::kAdmin;
      if (!may_ask) {
        return absl::PermissionDeniedError(
            "only admins may check another user's permissions");
      }
      if (facts.subject && facts.subject->workspace_id != caller.workspace_id) {
        return absl::PermissionDeniedError(
            "user_id belongs to another workspace");
      }
    }
  }
  Decision d = Decide(permission, facts, now);
  v1::CheckResponse resp;
  resp.set_allowed(d.allowed);
  resp.set_reason(d.reason);
  return resp;
}

}  // namespace guestlist::membership
