// IdentityServiceImpl: users (get, update, list, lifecycle).
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "services/identity/api/authz.h"
#include "services/identity/api/convert.h"
#include "services/identity/api/identity_service.h"
#include "services/identity/domain/validation.h"

namespace guestlist::identity {

absl::StatusOr<UserRecord> IdentityServiceImpl::LoadUserFor(
    const Principal& caller, const std::string& user_id) {
  RETURN_IF_ERROR(ValidateId("user_id", user_id));
  UserRecord user;
  absl::Status s = deps_.repository->Transact([&](IdentityTx& tx) {
    ASSIGN_OR_RETURN(user, tx.GetUser(user_id, false));
    return absl::OkStatus();
  });
  // Users of other workspaces do not exist for the caller.
  if (s.code() == absl::StatusCode::kNotFound ||
      (s.ok() && !SameWorkspace(caller, user.workspace_id))) {
    return absl::NotFoundError(
        absl::StrCat("user ", user_id, " does not exist"));
  }
  RETURN_IF_ERROR(s);
  return user;
}

grpc::Status IdentityServiceImpl::GetUser(grpc::ServerContext* ctx,
                                          const v1::GetUserRequest* req,
                                          v1::User* resp) {
  RequestScope scope(ctx, "GetUser");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    ASSIGN_OR_RETURN(UserRecord user, LoadUserFor(caller, req->user_id()));
    const bool allowed = caller.user_id() == user.id ||
                         IsAdminOf(caller, user.workspace_id) ||
                         (IsApiKey(caller) && HasScope(caller, "users.read"));
    if (!allowed) {
      if (!IsUser(caller)) {
        return absl::NotFoundError(
            absl::StrCat("user ", req->user_id(), " does not exist"));
      }
      membership::v1::BatchCheckRequest check;
      auto* c = check.add_checks();
      c->set_user_id(caller.user_id());
      c->set_permission("user.view_profile");
      c->set_resource(absl::StrCat("users/", user.id));
      absl::StatusOr<membership::v1::BatchCheckResponse> r =
          deps_.membership->BatchCheck(*ctx, check);
      if (!r.ok()) return r.status();
      if (r->results_size() != 1 || !r->results(0).allowed()) {
        return absl::NotFoundError(
            absl::StrCat("user ", req->user_id(), " does not exist"));
      }
    }
    *resp = ToProto(user);
    return absl::OkStatus();
  }());
}

grpc::Status IdentityServiceImpl::UpdateUser(grpc::ServerContext* ctx,
                                             const v1::UpdateUserRequest* req,
                                             v1::User* resp) {
  RequestScope scope(ctx, "UpdateUser");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    ASSIGN_OR_RETURN(UserRecord current, LoadUserFor(caller, req->user_id()));
    const bool admin = IsAdminOf(caller, current.workspace_id);
    const bool self = caller.user_id() == current.id;
    if (!admin && !self) {
      return absl::PermissionDeniedError(
          "only the user itself or an admin may update a user");
    }
    const v1::User& u = req->user();
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    if (paths.empty()) {
      if (!u.first_name().empty()) paths.push_back("first_name");
      if (!u.last_name().empty()) paths.push_back("last_name");
      if (!u.email().empty()) paths.push_back("email");
      if (!u.username().empty()) paths.push_back("username");
      if (u.has_metadata()) paths.push_back("metadata");
      if (u.has_access_expire_time()) paths.push_back("access_expire_time");
    }
    const absl::Time now = Now();
    UserRecord updated;
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(UserRecord user, tx.GetUser(current.id, true));
      ASSIGN_OR_RETURN(WorkspaceRecord ws,
                       tx.GetWorkspace(user.workspace_id, false));
      const std::string old_email = user.email;
      bool username_given = false;
      for (const std::string& raw : paths) {
        std::string path = raw;
        if (path == "firstName") path = "first_name";
        if (path == "lastName") path = "last_name";
        if (path == "accessExpireTime") path = "access_expire_time";
        const bool admin_only = path == "email" || path == "username" ||
                                path == "metadata" ||
                                path == "access_expire_time";
        if (path == "first_name") {
          user.first_name = u.first_name();
        } else if (path == "last_name") {
          user.last_name = u.last_name();
        } else if (admin_only && !admin) {
          return absl::PermissionDeniedError(
              absl::StrCat("user.", path,
                           ": only admins may change it; users may change "
                           "their own first_name and last_name"));
        } else if (path == "email") {
          if (u.email().empty()) {
            if (user.kind != v1::GUEST) {
              return absl::InvalidArgumentError(
                  "user.email: members and admins need an email");
            }
            user.email.clear();
          } else {
            RETURN_IF_ERROR(ValidateEmail("user.email", u.email()));
            if (user.kind == v1::GUEST) {
              RETURN_IF_ERROR(CheckEmailDomain(u.email(),
                                               ws.allowed_email_domains,
                                               ws.blocked_email_domains));
            }
            user.email = u.email();
          }
        } else if (path == "username") {
          RETURN_IF_ERROR(ValidateUsername("user.username", u.username()));
          user.username = u.username();
          username_given = true;
        } else if (path == "metadata") {
          ASSIGN_OR_RETURN(std::string json, MetadataToJson(u.metadata()));
          if (!json.empty()) {
            RETURN_IF_ERROR(ValidateMetadataJson("user.metadata", json));
          }
          user.metadata_json = json;
        } else if (path == "access_expire_time") {
          if (u.has_access_expire_time()) {
            const absl::Time t = FromTimestamp(u.access_expire_time());
            if (t <= now) {
              return absl::InvalidArgumentError(
                  "user.access_expire_time: must be in the future; clear it "
                  "for no expiry");
            }
            user.access_expire_time = t;
          } else {
            user.access_expire_time.reset();
          }
        } else {
          return absl::InvalidArgumentError(absl::StrCat(
              "update_mask: \"", raw,
              "\" cannot be updated here; use first_name, last_name, email, "
              "username, metadata or access_expire_time (kind and status "
              "change through the lifecycle methods)"));
        }
      }
      RETURN_IF_ERROR(ValidatePersonNames("user.first_name", user.first_name,
                                          "user.last_name", user.last_name,
                                          true));
      // The username follows the email when it was the email.
      if (!username_given && user.email != old_email &&
          absl::AsciiStrToLower(user.username) ==
              absl::AsciiStrToLower(old_email) &&
          !user.email.empty()) {
        user.username = absl::AsciiStrToLower(user.email);
      }
      ASSIGN_OR_RETURN(updated, tx.UpdateUser(user, now));
      return tx.Enqueue(SyncUsersMessage(updated));
    }));
    SyncNow(updated);
    Kick();
    *resp = ToProto(updated);
    return absl::OkStatus();
  }());
}

grpc::Status IdentityServiceImpl::ListUsers(grpc::ServerContext* ctx,
                                            const v1::ListUsersRequest* req,
                                            v1::ListUsersResponse* resp) {
  RequestScope scope(ctx, "ListUsers");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    RETURN_IF_ERROR(RequireAdmin(caller, req->workspace_id(), "users.read"));
    RETURN_IF_ERROR(ValidateText("query", req->query(), 254));
    if (!v1::UserKind_IsValid(req->kind())) {
      return absl::InvalidArgumentError(
          "kind: unknown value; use ADMIN, MEMBER or GUEST");
    }
    if (!v1::UserStatus_IsValid(req->status())) {
      return absl::InvalidArgumentError(
          "status: unknown value; use REQUESTED, INVITED, ACTIVE, SUSPENDED, "
          "EXPIRED or ARCHIVED");
    }
    ASSIGN_OR_RETURN(OrderBy order, ParseOrderBy(req->order_by()));
    ASSIGN_OR_RETURN(int limit, NormalizePageSize(req->page_size()));
    UserQuery q;
    q.workspace_id = req->workspace_id();
    q.kind = req->kind();
    q.status = req->status();
    q.prefix = std::string(absl::StripAsciiWhitespace(req->query()));
    q.order = order;
    q.limit = limit;
    const std::string fingerprint =
        absl::StrCat("users:", q.workspace_id, ":", q.kind, ":", q.status, ":",
                     absl::AsciiStrToLower(q.prefix), ":",
                     static_cast<int>(order.field), ":", order.descending);
    if (!req->page_token().empty()) {
      ASSIGN_OR_RETURN(q.after,
                       DecodePageToken(req->page_token(), fingerprint));
    }
    // Later pages reuse the first page's count (a snapshot, as AIP-158
    // allows), so deep pages cost no count over the whole workspace.
    if (q.after.has_value() && q.after->total >= 0) q.count_total = false;
    return deps_.repository->Transact([&](IdentityTx& tx) {
      RETURN_IF_ERROR(tx.GetWorkspace(q.workspace_id, false).status());
      ASSIGN_OR_RETURN(UserPage page, tx.ListUsers(q));
      if (!q.count_total) page.total = static_cast<int>(q.after->total);
      for (const auto& u : page.users) *resp->add_users() = ToProto(u);
      if (page.next.has_value()) {
        page.next->total = page.total;
        resp->set_next_page_token(EncodePageToken(*page.next, fingerprint));
      }
      resp->set_total_size(page.total);
      return absl::OkStatus();
    });
  }());
}

absl::StatusOr<v1::User> IdentityServiceImpl::ChangeStatus(
    const Principal& caller, const std::string& user_id,
    const std::function<absl::StatusOr<Transition>(const UserRecord&)>& rule,
    std::optional<std::optional<absl::Time>> new_expire) {
  ASSIGN_OR_RETURN(UserRecord current, LoadUserFor(caller, user_id));
  RETURN_IF_ERROR(RequireUserAdmin(caller, current.workspace_id));
  const absl::Time now = Now();
  UserRecord result;
  bool changed = false;
  RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
    ASSIGN_OR_RETURN(UserRecord user, tx.GetUser(user_id, true));
    // The sweeper may not have run yet: act on the effective status.
    user.status =
        EffectiveStatus(user, now) == v1::EXPIRED && user.status != v1::EXPIRED
            ? v1::EXPIRED
            : user.status;
    ASSIGN_OR_RETURN(Transition next, rule(user));
    if (!next.has_value()) {
      result = user;
      return absl::OkStatus();
    }
    const bool leaves_active = user.status == v1::ACTIVE && *next != v1::ACTIVE;
    if (leaves_active && user.kind == v1::ADMIN) {
      ASSIGN_OR_RETURN(int admins, tx.CountActiveAdmins(user.workspace_id));
      if (admins <= 1) {
        return absl::FailedPreconditionError(
            "this is the last active admin of the workspace; make another "
            "user an admin first");
      }
    }
    user.status = *next;
    if (new_expire.has_value()) user.access_expire_time = *new_expire;
    // A suspended user's sessions stay (every call is refused with
    // PERMISSION_DENIED naming the status, as callers expect); an archived
    // user's sessions end for good.
    if (*next == v1::ARCHIVED) {
      RETURN_IF_ERROR(tx.DeleteUserSessions(user.id));
      RETURN_IF_ERROR(tx.RevokePendingInvitations(user.id));
    }
    ASSIGN_OR_RETURN(result, tx.UpdateUser(user, now));
    changed = true;
    return tx.Enqueue(SyncUsersMessage(result));
  }));
  if (changed) {
    SyncNow(result);
    Kick();
  }
  return ToProto(result);
}

grpc::Status IdentityServiceImpl::SuspendUser(grpc::ServerContext* ctx,
                                              const v1::SuspendUserRequest* req,
                                              v1::User* resp) {
  RequestScope scope(ctx, "SuspendUser");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    ASSIGN_OR_RETURN(*resp, ChangeStatus(caller, req->user_id(),
                                         SuspendTransition, std::nullopt));
    return absl::OkStatus();
  }());
}

grpc::Status IdentityServiceImpl::ReactivateUser(
    grpc::ServerContext* ctx, const v1::ReactivateUserRequest* req,
    v1::User* resp) {
  RequestScope scope(ctx, "ReactivateUser");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    std::optional<absl::Time> expire;
    if (req->has_access_expire_time()) {
      expire = FromTimestamp(req->access_expire_time());
      if (*expire <= Now()) {
        return absl::InvalidArgumentError(
            "access_expire_time: must be in the future; leave it unset for "
            "no expiry");
      }
    }
    // For an EXPIRED user the expiry is replaced (cleared when unset); for
    // a SUSPENDED one only when given.
    ASSIGN_OR_RETURN(UserRecord current, LoadUserFor(caller, req->user_id()));
    std::optional<std::optional<absl::Time>> new_expire;
    if (req->has_access_expire_time() ||
        EffectiveStatus(current, Now()) == v1::EXPIRED) {
      new_expire = expire;
    }
    ASSIGN_OR_RETURN(*resp, ChangeStatus(caller, req->user_id(),
                                         ReactivateTransition, new_expire));
    return absl::OkStatus();
  }());
}

grpc::Status IdentityServiceImpl::ArchiveUser(grpc::ServerContext* ctx,
                                              const v1::ArchiveUserRequest* req,
                                              v1::User* resp) {
  RequestScope scope(ctx, "ArchiveUser");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    ASSIGN_OR_RETURN(*resp, ChangeStatus(caller, req->user_id(),
                                         ArchiveTransition, std::nullopt));
    return absl::OkStatus();
  }());
}

grpc::Status IdentityServiceImpl::ConvertGuestToMember(
    grpc::ServerContext* ctx, const v1::ConvertGuestToMemberRequest* req,
    v1::User* resp) {
  RequestScope scope(ctx, "ConvertGuestToMember");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    ASSIGN_OR_RETURN(UserRecord current, LoadUserFor(caller, req->user_id()));
    RETURN_IF_ERROR(RequireUserAdmin(caller, current.workspace_id));
    const absl::Time now = Now();
    UserRecord updated;
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(UserRecord user, tx.GetUser(current.id, true));
      RETURN_IF_ERROR(CheckConvertible(user));
      if (user.email.empty()) {
        return absl::FailedPreconditionError(
            "the guest has no email; members need one: set it with "
            "UpdateUser first");
      }
      user.kind = v1::MEMBER;
      user.access_expire_time.reset();
      ASSIGN_OR_RETURN(updated, tx.UpdateUser(user, now));
      // Membership must accept (it needs a free licence) before the change
      // commits; a refusal leaves everything as it was.
      membership::v1::SyncUsersRequest sync;
      *sync.add_users() = ToMembershipRecord(updated);
      return deps_.membership->SyncUsers(sync);
    }));
    *resp = ToProto(updated);
    return absl::OkStatus();
  }());
}

}  // namespace guestlist::identity
