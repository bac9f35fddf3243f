#include "services/membership/api/service.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "services/membership/domain/permissions.h"

namespace guestlist::membership {
namespace {

// Names are shown in lists and must fit PostgreSQL's index entries (about
// 2,700 bytes); descriptions are free text of a reasonable size.
constexpr size_t kMaxNameBytes = 200;
constexpr size_t kMaxDescriptionBytes = 4000;

absl::Status RequireMaxLength(const std::string& value, const char* field,
                              size_t max_bytes) {
  if (value.size() <= max_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is ", value.size(),
                   " bytes; shorten it to at most ", max_bytes));
}

// Users per internal batch call (ApplyGrants, SyncUsers, DeleteUsers,
// GetUserAccess). An import's grants cost a fixed ~20 ms per call (lookups,
// triggers, commit, the round trip): 5,000-user calls spend a fifth of that
// per user that 1,000-user calls did. A 5,000-user request is ~1.5 MB.
constexpr int kMaxBatch = 5000;
constexpr int kMaxChecks = 100;

// [a-z0-9]+(-[a-z0-9]+)*, at most 63 characters.
bool ValidSlug(const std::string& slug) {
  if (slug.empty() || slug.size() > 63) return false;
  if (slug.front() == '-' || slug.back() == '-') return false;
  char prev = 0;
  for (char c : slug) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    (c == '-' && prev != '-');
    if (!ok) return false;
    prev = c;
  }
  return true;
}

v1::LicenseUsage ToProto(const LicenseUsage& u) {
  v1::LicenseUsage p;
  p.set_license_count(u.license_count);
  p.set_used_by_members(u.used_by_members);
  p.set_used_by_multi_group_guests(u.used_by_multi_group_guests);
  p.set_single_group_guests(u.single_group_guests);
  p.set_available(u.available());
  return p;
}

// Runs a handler body inside a RequestScope (request id + access log).
template <typename Fn>
grpc::Status Serve(grpc::ServerContextBase* ctx, const char* method, Fn body) {
  RequestScope scope(ctx, method);
  return scope.Done(body());
}

absl::Status ValidateRecord(const v1::UserRecord& u) {
  RETURN_IF_ERROR(RequireUuid(u.id(), "user.id"));
  RETURN_IF_ERROR(RequireUuid(u.workspace_id(), "user.workspace_id"));
  if (u.kind() == v1::DirectoryUser::KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("user ", u.id(), " has no kind"));
  }
  if (u.status() == v1::DirectoryUser::STATUS_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("user ", u.id(), " has no status"));
  }
  return absl::OkStatus();
}

// Checks that need the database wait on these threads (as many as a
// synchronous server would have had busy); more than kMaxQueuedChecks
// waiting are refused with RESOURCE_EXHAUSTED.
constexpr int kCheckThreads = 16;
constexpr size_t kMaxQueuedChecks = 10000;

}  // namespace

MembershipServiceImpl::MembershipServiceImpl(Authenticator* auth,
                                             pg::Pool* pool, const Clock* clock,
                                             CheckCache* cache)
    : auth_(auth),
      cache_(cache),
      blocking_(kCheckThreads, kMaxQueuedChecks),
      pool_(pool),
      clock_(clock),
      store_(pool, clock),
      authz_(&store_, clock, cache),
      idempotency_("membership", "") {}

template <typename Fn>
grpc::Status MembershipServiceImpl::ServeWrite(grpc::ServerContext* ctx,
                                               const char* method, Fn body) {
  RequestScope scope(ctx, method);
  absl::Status status = body();
  if (status.ok() && cache_ != nullptr) cache_->AwaitChanges();
  return scope.Done(status);
}

// ---------------------------------------------------------------------------
// Caller and access helpers
// ---------------------------------------------------------------------------

absl::StatusOr<MembershipServiceImpl::Caller> MembershipServiceImpl::Resolve(
    const grpc::ServerContextBase& ctx, bool load_copy) {
  ASSIGN_OR_RETURN(Principal p, auth_->Authenticate(ctx));
  return authz_.Resolve(p, load_copy);
}

absl::Status MembershipServiceImpl::RequireInternal(
    const grpc::ServerContext& ctx) {
  ASSIGN_OR_RETURN(Principal p, auth_->Authenticate(ctx));
  if (p.is_internal()) return absl::OkStatus();
  return absl::PermissionDeniedError(
      "this method is internal: only guestlist services may call it");
}

template <typename Req, typename Resp, typename Fn>
absl::Status MembershipServiceImpl::Idempotent(const std::string& scope,
                                               const std::string& key,
                                               const Req& req, Resp* resp,
                                               Fn create) {
  if (key.empty()) return create();
  std::string serialized;
  req.SerializeToString(&serialized);
  const std::string hash = RequestHash(serialized);
  ASSIGN_OR_RETURN(std::optional<std::string> stored,
                   idempotency_.Lookup(*pool_, scope, key, hash));
  if (stored.has_value()) {
    if (!resp->ParseFromString(*stored)) {
      return absl::InternalError("stored idempotent response is corrupt");
    }
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(create());
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  absl::Status saved =
      idempotency_.Save(tx, scope, key, hash, resp->SerializeAsString());
  if (saved.code() == absl::StatusCode::kAlreadyExists) return absl::OkStatus();
  RETURN_IF_ERROR(saved);
  return tx.Commit();
}

// ---------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------

absl::Status MembershipServiceImpl::DoCreateApp(const grpc::ServerContext& ctx,
                                                const v1::CreateAppRequest& req,
                                                v1::App* resp) {
  ASSIGN_OR_RETURN(Caller c, Resolve(ctx));
  RETURN_IF_ERROR(authz_.RequireAdmin(c, req.workspace_id()));
  if (!ValidSlug(req.app().slug())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "app.slug \"", req.app().slug().substr(0, 64),
        "\" must be lowercase letters, digits and single hyphens (e.g. "
        "sales-report), at most 63 characters"));
  }
  if (req.app().name().empty()) {
    return absl::InvalidArgumentError("app.name is required");
  }
  RETURN_IF_ERROR(
      RequireMaxLength(req.app().name(), "app.name", kMaxNameBytes));
  return Idempotent(absl::StrCat("CreateApp/", req.workspace_id()),
                    req.idempotency_key(), req, resp, [&]() -> absl::Status {
                      ASSIGN_OR_RETURN(
                          *resp,
                          store_.CreateApp(req.workspace_id(), req.app().slug(),
                                           req.app().name()));
                      return absl::OkStatus();
                    });
}

grpc::Status MembershipServiceImpl::CreateApp(grpc::ServerContext* ctx,
                                              const v1::CreateAppRequest* req,
                                              v1::App* resp) {
  return ServeWrite(ctx, "CreateApp",
                    [&] { return DoCreateApp(*ctx, *req, resp); });
}

grpc::Status MembershipServiceImpl::ListApps(grpc::ServerContext* ctx,
                                             const v1::ListAppsRequest* req,
                                             v1::ListAppsResponse* resp) {
  return Serve(ctx, "ListApps", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    RETURN_IF_ERROR(authz_.RequireWorkspace(c, req->workspace_id()));
    ASSIGN_OR_RETURN(
        *resp, store_.ListApps(req->workspace_id(), Viewer{c.kind, c.user_id},
                               req->page_size(), req->page_token()));
    return absl::OkStatus();
  });
}

grpc::Status MembershipServiceImpl::DeleteApp(grpc::ServerContext* ctx,
                                              const v1::DeleteAppRequest* req,
                                              google::protobuf::Empty*) {
  return ServeWrite(ctx, "DeleteApp", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    RETURN_IF_ERROR(RequireUuid(req->app_id(), "app_id"));
    ASSIGN_OR_RETURN(std::optional<v1::App> app, store_.GetApp(req->app_id()));
    if (!app || (!c.privileged && app->workspace_id() != c.workspace_id)) {
      return absl::NotFoundError(
          absl::StrCat("app ", req->app_id(), " not found"));
    }
    RETURN_IF_ERROR(authz_.RequireAdmin(c, app->workspace_id()));
    return store_.DeleteApp(req->app_id());
  });
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

absl::Status MembershipServiceImpl::DoCreateGroup(
    const grpc::ServerContext& ctx, const v1::CreateGroupRequest& req,
    v1::Group* resp) {
  ASSIGN_OR_RETURN(Caller c, Resolve(ctx));
  RETURN_IF_ERROR(authz_.RequireWorkspace(c, req.workspace_id()));
  if (c.kind == Kind::kGuest) {
    return absl::PermissionDeniedError("guests cannot create groups");
  }
  if (c.api_key) {
    return absl::PermissionDeniedError("API keys cannot create groups");
  }
  if (req.group().name().empty()) {
    return absl::InvalidArgumentError("group.name is required");
  }
  RETURN_IF_ERROR(
      RequireMaxLength(req.group().name(), "group.name", kMaxNameBytes));
  RETURN_IF_ERROR(RequireMaxLength(req.group().description(),
                                   "group.description", kMaxDescriptionBytes));
  if (req.group().visibility() == v1::Group::VISIBILITY_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "group.visibility is required: OPEN, PRIVATE or SECRET");
  }
  // A member creator manages the group it made.
  const std::string creator = c.kind == Kind::kMember ? c.user_id : "";
  return Idempotent(
      absl::StrCat("CreateGroup/", req.workspace_id(), "/", c.user_id),
      req.idempotency_key(), req, resp, [&]() -> absl::Status {
        ASSIGN_OR_RETURN(*resp, store_.CreateGroup(req.workspace_id(),
                                                   req.group(), creator));
        return absl::OkStatus();
      });
}

grpc::Status MembershipServiceImpl::CreateGroup(
    grpc::ServerContext* ctx, const v1::CreateGroupRequest* req,
    v1::Group* resp) {
  return ServeWrite(ctx, "CreateGroup",
                    [&] { return DoCreateGroup(*ctx, *req, resp); });
}

grpc::Status MembershipServiceImpl::ListGroups(grpc::ServerContext* ctx,
                                               const v1::ListGroupsRequest* req,
                                               v1::ListGroupsResponse* resp) {
  return Serve(ctx, "ListGroups", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    RETURN_IF_ERROR(authz_.RequireWorkspace(c, req->workspace_id()));
    ASSIGN_OR_RETURN(
        *resp, store_.ListGroups(req->workspace_id(), Viewer{c.kind, c.user_id},
                                 req->page_size(), req->page_token()));
    return absl::OkStatus();
  });
}

grpc::Status MembershipServiceImpl::GetGroup(grpc::ServerContext* ctx,
                                             const v1::GetGroupRequest* req,
                                             v1::Group* resp) {
  return Serve(ctx, "GetGroup", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    Role role;
    ASSIGN_OR_RETURN(*resp, authz_.VisibleGroup(c, req->group_id(), &role));
    return absl::OkStatus();
  });
}

absl::Status MembershipServiceImpl::DoUpdateGroup(
    const grpc::ServerContext& ctx, const v1::UpdateGroupRequest& req,
    v1::Group* resp) {
  ASSIGN_OR_RETURN(Caller c, Resolve(ctx));
  Role role;
  ASSIGN_OR_RETURN(v1::Group current,
                   authz_.VisibleGroup(c, req.group_id(), &role));
  const bool group_admin = role == Role::kGroupAdmin && c.kind != Kind::kGuest;
  if (!(c.privileged || (!c.api_key && c.kind == Kind::kAdmin) ||
        group_admin)) {
    return absl::PermissionDeniedError(
        "only admins and the group's group admins may change it");
  }
  std::vector<std::string> paths;
  const v1::Group& g = req.group();
  if (req.update_mask().paths_size() > 0) {
    for (const std::string& p : req.update_mask().paths()) {
      std::string path = p;
      if (path == "membersCanInvite") path = "members_can_invite";
      if (path == "membersCanPublish") path = "members_can_publish";
      if (path != "name" && path != "description" && path != "visibility" &&
          path != "members_can_invite" && path != "members_can_publish") {
        return absl::InvalidArgumentError(absl::StrCat(
            "update_mask path \"", p,
            "\" is not updatable; use name, description, visibility, "
            "members_can_invite or members_can_publish"));
      }
      paths.push_back(path);
    }
  } else {
    if (!g.name().empty()) paths.push_back("name");
    if (!g.description().empty()) paths.push_back("description");
    if (g.visibility() != v1::Group::VISIBILITY_UNSPECIFIED) {
      paths.push_back("visibility");
    }
    if (g.has_members_can_invite()) paths.push_back("members_can_invite");
    if (g.has_members_can_publish()) paths.push_back("members_can_publish");
  }
  for (const std::string& p : paths) {
    if (p == "name" && g.name().empty()) {
      return absl::InvalidArgumentError("group.name cannot be empty");
    }
    if (p == "name") {
      RETURN_IF_ERROR(RequireMaxLength(g.name(), "group.name", kMaxNameBytes));
    }
    if (p == "description") {
      RETURN_IF_ERROR(RequireMaxLength(g.description(), "group.description",
                                       kMaxDescriptionBytes));
    }
    if (p == "visibility" &&
        g.visibility() == v1::Group::VISIBILITY_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          "group.visibility must be OPEN, PRIVATE or SECRET");
    }
  }
  ASSIGN_OR_RETURN(*resp, store_.UpdateGroup(req.group_id(), g, paths));
  return absl::OkStatus();
}

grpc::Status MembershipServiceImpl::UpdateGroup(
    grpc::ServerContext* ctx, const v1::UpdateGroupRequest* req,
    v1::Group* resp) {
  return ServeWrite(ctx, "UpdateGroup",
                    [&] { return DoUpdateGroup(*ctx, *req, resp); });
}

grpc::Status MembershipServiceImpl::DeleteGroup(
    grpc::ServerContext* ctx, const v1::DeleteGroupRequest* req,
    google::protobuf::Empty*) {
  return ServeWrite(ctx, "DeleteGroup", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    Role role;
    ASSIGN_OR_RETURN(v1::Group g,
                     authz_.VisibleGroup(c, req->group_id(), &role));
    const bool group_admin =
        role == Role::kGroupAdmin && c.kind != Kind::kGuest;
    if (!(c.privileged || (!c.api_key && c.kind == Kind::kAdmin) ||
          group_admin)) {
      return absl::PermissionDeniedError(
          "only admins and the group's group admins may delete it");
    }
    return store_.DeleteGroup(req->group_id());
  });
}

// ---------------------------------------------------------------------------
// Memberships
// ---------------------------------------------------------------------------

absl::Status MembershipServiceImpl::DoAddGroupMember(
    const grpc::ServerContext& ctx, const v1::AddGroupMemberRequest& req,
    v1::GroupMember* resp) {
  ASSIGN_OR_RETURN(Caller c, Resolve(ctx));
  Role caller_role;
  ASSIGN_OR_RETURN(v1::Group g,
                   authz_.VisibleGroup(c, req.group_id(), &caller_role));
  RETURN_IF_ERROR(RequireUuid(req.user_id(), "user_id"));
  ASSIGN_OR_RETURN(std::optional<User> target, store_.GetUser(req.user_id()));
  if (!target || target->workspace_id != g.workspace_id()) {
    return absl::NotFoundError(
        absl::StrCat("user ", req.user_id(), " not found in the workspace"));
  }
  const Role role = req.role() == v1::GroupMember::GROUP_ADMIN
                        ? Role::kGroupAdmin
                        : Role::kMember;
  if (target->kind == Kind::kGuest && role == Role::kGroupAdmin) {
    return absl::InvalidArgumentError(
        "a guest cannot be a GROUP_ADMIN; add it as MEMBER");
  }
  const bool manager =
      c.privileged || (!c.api_key && c.kind == Kind::kAdmin) ||
      (caller_role == Role::kGroupAdmin && c.kind != Kind::kGuest);
  if (!manager) {
    if (c.kind == Kind::kGuest) {
      return absl::PermissionDeniedError("guests cannot add group members");
    }
    if (c.api_key) {
      return absl::PermissionDeniedError("API keys cannot add group members");
    }
    if (role == Role::kGroupAdmin) {
      return absl::PermissionDeniedError(
          "only admins and group admins may make someone a GROUP_ADMIN");
    }
    // A member adding someone: guests by group.invite_guest, members when
    // the group is open or the caller belongs to it.
    CheckFacts facts;
    facts.subject = User{c.user_id, c.workspace_id, c.kind, Status::kActive,
                         absl::InfiniteFuture()};
    facts.resource_workspace_id = g.workspace_id();
    ASSIGN_OR_RETURN(std::optional<Workspace> ws,
                     store_.GetWorkspace(g.workspace_id()));
    if (ws) facts.workspace = *ws;
    facts.group =
        Group{g.id(), g.workspace_id(), static_cast<Visibility>(g.visibility()),
              g.members_can_invite(), g.members_can_publish()};
    facts.subject_role = caller_role;
    if (target->kind == Kind::kGuest) {
      Decision d = Decide(Permission::kGroupInviteGuest, facts, clock_->Now());
      if (!d.allowed) {
        return absl::PermissionDeniedError(
            absl::StrCat("you may not add guests to this group: ", d.reason));
      }
    } else if (g.visibility() != v1::Group::OPEN &&
               caller_role == Role::kNone) {
      return absl::PermissionDeniedError(
          "only members of this group may add people to it");
    }
  }
  return Idempotent(
      absl::StrCat("AddGroupMember/", req.group_id()), req.idempotency_key(),
      req, resp, [&]() -> absl::Status {
        ASSIGN_OR_RETURN(*resp,
                         store_.AddGroupMember(g.workspace_id(), req.group_id(),
                                               req.user_id(), role));
        return absl::OkStatus();
      });
}

grpc::Status MembershipServiceImpl::AddGroupMember(
    grpc::ServerContext* ctx, const v1::AddGroupMemberRequest* req,
    v1::GroupMember* resp) {
  return ServeWrite(ctx, "AddGroupMember",
                    [&] { return DoAddGroupMember(*ctx, *req, resp); });
}

grpc::Status MembershipServiceImpl::ListGroupMembers(
    grpc::ServerContext* ctx, const v1::ListGroupMembersRequest* req,
    v1::ListGroupMembersResponse* resp) {
  return Serve(ctx, "ListGroupMembers", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    Role role;
    ASSIGN_OR_RETURN(v1::Group g,
                     authz_.VisibleGroup(c, req->group_id(), &role));
    ASSIGN_OR_RETURN(*resp,
                     store_.ListGroupMembers(req->group_id(), req->page_size(),
                                             req->page_token()));
    return absl::OkStatus();
  });
}

grpc::Status MembershipServiceImpl::RemoveGroupMember(
    grpc::ServerContext* ctx, const v1::RemoveGroupMemberRequest* req,
    google::protobuf::Empty*) {
  return ServeWrite(ctx, "RemoveGroupMember", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    Role role;
    ASSIGN_OR_RETURN(v1::Group g,
                     authz_.VisibleGroup(c, req->group_id(), &role));
    RETURN_IF_ERROR(RequireUuid(req->user_id(), "user_id"));
    const bool allowed =
        c.privileged || (!c.api_key && c.kind == Kind::kAdmin) ||
        (role == Role::kGroupAdmin && c.kind != Kind::kGuest) ||
        (!c.user_id.empty() && c.user_id == req->user_id());
    if (!allowed) {
      return absl::PermissionDeniedError(
          "only admins, the group's group admins and the user itself may "
          "remove a membership");
    }
    return store_.RemoveGroupMember(req->group_id(), req->user_id());
  });
}

// ---------------------------------------------------------------------------
// App privileges and listings
// ---------------------------------------------------------------------------

grpc::Status MembershipServiceImpl::SetAppPrivilege(
    grpc::ServerContext* ctx, const v1::SetAppPrivilegeRequest* req,
    v1::UserAppPrivilege* resp) {
  return ServeWrite(ctx, "SetAppPrivilege", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    RETURN_IF_ERROR(RequireUuid(req->app_id(), "app_id"));
    RETURN_IF_ERROR(RequireUuid(req->user_id(), "user_id"));
    if (req->privilege() == v1::AppPrivilegeGrant::PRIVILEGE_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          "privilege is required: GUEST, VIEWER or EDITOR");
    }
    ASSIGN_OR_RETURN(std::optional<v1::App> app, store_.GetApp(req->app_id()));
    if (!app || (!c.privileged && app->workspace_id() != c.workspace_id)) {
      return absl::NotFoundError(
          absl::StrCat("app ", req->app_id(), " not found"));
    }
    RETURN_IF_ERROR(authz_.RequireAdmin(c, app->workspace_id()));
    ASSIGN_OR_RETURN(*resp,
                     store_.SetAppPrivilege(app->workspace_id(), req->app_id(),
                                            req->user_id(), req->privilege()));
    return absl::OkStatus();
  });
}

grpc::Status MembershipServiceImpl::RemoveAppPrivilege(
    grpc::ServerContext* ctx, const v1::RemoveAppPrivilegeRequest* req,
    google::protobuf::Empty*) {
  return ServeWrite(ctx, "RemoveAppPrivilege", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    RETURN_IF_ERROR(RequireUuid(req->app_id(), "app_id"));
    RETURN_IF_ERROR(RequireUuid(req->user_id(), "user_id"));
    ASSIGN_OR_RETURN(std::optional<v1::App> app, store_.GetApp(req->app_id()));
    if (!app || (!c.privileged && app->workspace_id() != c.workspace_id)) {
      return absl::NotFoundError(
          absl::StrCat("app ", req->app_id(), " not found"));
    }
    RETURN_IF_ERROR(authz_.RequireAdmin(c, app->workspace_id()));
    return store_.RemoveAppPrivilege(req->app_id(), req->user_id());
  });
}

grpc::Status MembershipServiceImpl::ListAppAccess(
    grpc::ServerContext* ctx, const v1::ListAppAccessRequest* req,
    v1::ListAppAccessResponse* resp) {
  return Serve(ctx, "ListAppAccess", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    RETURN_IF_ERROR(authz_.RequireAdmin(c, req->workspace_id()));
    ASSIGN_OR_RETURN(*resp, store_.ListAppAccess(*req));
    return absl::OkStatus();
  });
}

grpc::Status MembershipServiceImpl::GetLicenseUsage(
    grpc::ServerContext* ctx, const v1::GetLicenseUsageRequest* req,
    v1::LicenseUsage* resp) {
  return Serve(ctx, "GetLicenseUsage", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    RETURN_IF_ERROR(authz_.RequireAdmin(c, req->workspace_id()));
    ASSIGN_OR_RETURN(LicenseUsage u,
                     store_.GetLicenseUsage(req->workspace_id()));
    *resp = ToProto(u);
    return absl::OkStatus();
  });
}

grpc::Status MembershipServiceImpl::ListDirectory(
    grpc::ServerContext* ctx, const v1::ListDirectoryRequest* req,
    v1::ListDirectoryResponse* resp) {
  return Serve(ctx, "ListDirectory", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller c, Resolve(*ctx));
    RETURN_IF_ERROR(authz_.RequireWorkspace(c, req->workspace_id()));
    ASSIGN_OR_RETURN(*resp,
                     store_.ListDirectory(*req, Viewer{c.kind, c.user_id}));
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------
// Check
// ---------------------------------------------------------------------------

std::optional<absl::StatusOr<MembershipServiceImpl::Caller>>
MembershipServiceImpl::CallerFromMemory(
    const grpc::ServerContextBase& ctx,
    absl::Span<const v1::CheckRequest* const> checks) {
  if (cache_ == nullptr || !auth_->AnswersFromMemory(ctx)) return std::nullopt;
  absl::StatusOr<Caller> c = Resolve(ctx, /*load_copy=*/false);
  if (!c.ok()) return c;  // refused from memory
  // Authorizer::Check also reads a user caller's own entry.
  if (!c->user_id.empty() && !cache_->Covers(c->user_id)) return std::nullopt;
  for (const v1::CheckRequest* check : checks) {
    absl::StatusOr<Resource> resource = ParseResource(check->resource());
    if (!resource.ok()) continue;  // refused before any lookup
    const std::string& subject =
        check->user_id().empty() ? c->user_id : check->user_id();
    if (!cache_->Covers(absl::AsciiStrToLower(subject), &*resource)) {
      return std::nullopt;
    }
  }
  return c;
}

template <typename Fn>
grpc::ServerUnaryReactor* MembershipServiceImpl::React(
    grpc::CallbackServerContext* ctx, const char* method,
    std::optional<absl::StatusOr<Caller>> caller, Fn body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto serve = [this, ctx, method,
                body](std::optional<absl::StatusOr<Caller>> known) {
    return Serve(ctx, method, [&]() -> absl::Status {
      absl::StatusOr<Caller> c = known.has_value()
                                     ? *std::move(known)
                                     : Resolve(*ctx, /*load_copy=*/false);
      RETURN_IF_ERROR(c.status());
      return body(*c);
    });
  };
  if (caller.has_value()) {
    reactor->Finish(serve(std::move(caller)));
  } else if (!blocking_.Schedule(
                 [reactor, serve] { reactor->Finish(serve(std::nullopt)); })) {
    reactor->Finish(Serve(ctx, method, [] {
      return absl::ResourceExhaustedError(
          "membership has too many checks waiting for the database; retry "
          "with backoff");
    }));
  }
  return reactor;
}

grpc::ServerUnaryReactor* MembershipServiceImpl::Check(
    grpc::CallbackServerContext* ctx, const v1::CheckRequest* req,
    v1::CheckResponse* resp) {
  const v1::CheckRequest* checks[] = {req};
  return React(ctx, "Check", CallerFromMemory(*ctx, checks),
               [this, req, resp](const Caller& c) -> absl::Status {
                 ASSIGN_OR_RETURN(*resp, authz_.Check(c, *req));
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* MembershipServiceImpl::BatchCheck(
    grpc::CallbackServerContext* ctx, const v1::BatchCheckRequest* req,
    v1::BatchCheckResponse* resp) {
  // Too many checks are refused without looking any up.
  const bool too_many = req->checks_size() > kMaxChecks;
  absl::Span<const v1::CheckRequest* const> checks;
  if (!too_many) {
    checks = {req->checks().data(), static_cast<size_t>(req->checks_size())};
  }
  return React(
      ctx, "BatchCheck", CallerFromMemory(*ctx, checks),
      [this, req, resp, too_many](const Caller& c) -> absl::Status {
        if (too_many) {
          return absl::InvalidArgumentError(
              absl::StrCat("at most ", kMaxChecks,
                           " checks per BatchCheck; got ", req->checks_size()));
        }
        for (const v1::CheckRequest& check : req->checks()) {
          ASSIGN_OR_RETURN(*resp->add_results(), authz_.Check(c, check));
        }
        return absl::OkStatus();
      });
}

// ---------------------------------------------------------------------------
// Internal
// ---------------------------------------------------------------------------

grpc::Status MembershipServiceImpl::SyncUsers(grpc::ServerContext* ctx,
                                              const v1::SyncUsersRequest* req,
                                              v1::SyncUsersResponse*) {
  return ServeWrite(ctx, "SyncUsers", [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireInternal(*ctx));
    if (req->users_size() > kMaxBatch) {
      return absl::InvalidArgumentError(
          absl::StrCat("at most ", kMaxBatch, " users per call"));
    }
    for (const v1::UserRecord& u : req->users()) {
      RETURN_IF_ERROR(ValidateRecord(u));
    }
    return store_.SyncUsers({req->users().begin(), req->users().end()});
  });
}

grpc::Status MembershipServiceImpl::SyncWorkspace(
    grpc::ServerContext* ctx, const v1::SyncWorkspaceRequest* req,
    v1::SyncWorkspaceResponse* resp) {
  return ServeWrite(ctx, "SyncWorkspace", [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireInternal(*ctx));
    RETURN_IF_ERROR(
        RequireUuid(req->workspace().workspace_id(), "workspace.workspace_id"));
    if (req->workspace().license_count() < 0) {
      return absl::InvalidArgumentError("license_count cannot be negative");
    }
    ASSIGN_OR_RETURN(LicenseUsage u, store_.SyncWorkspace(req->workspace()));
    *resp->mutable_usage() = ToProto(u);
    return absl::OkStatus();
  });
}

absl::Status MembershipServiceImpl::DoApplyGrants(
    const v1::ApplyGrantsRequest& req, v1::ApplyGrantsResponse* resp) {
  RETURN_IF_ERROR(RequireUuid(req.workspace_id(), "workspace_id"));
  if (req.users_size() > kMaxBatch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "at most ", kMaxBatch, " users per ApplyGrants; split the batch"));
  }
  v1::ApplyGrantsRequest normalized = req;
  for (v1::UserGrants& g : *normalized.mutable_users()) {
    v1::UserRecord* u = g.mutable_user();
    if (u->workspace_id().empty()) u->set_workspace_id(req.workspace_id());
    RETURN_IF_ERROR(ValidateRecord(*u));
    if (u->workspace_id() != req.workspace_id()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "user ", u->id(), " has workspace_id ", u->workspace_id(),
          " but the request is for ", req.workspace_id()));
    }
    for (const auto& id : g.group_ids())
      RETURN_IF_ERROR(RequireUuid(id, "group_ids"));
    for (const auto& id : g.remove_group_ids()) {
      RETURN_IF_ERROR(RequireUuid(id, "remove_group_ids"));
    }
    for (const auto& p : g.app_privileges()) {
      RETURN_IF_ERROR(RequireUuid(p.app_id(), "app_privileges.app_id"));
      if (p.privilege() == v1::AppPrivilegeGrant::PRIVILEGE_UNSPECIFIED) {
        return absl::InvalidArgumentError(
            absl::StrCat("user ", u->id(), ": privilege for app ", p.app_id(),
                         " is unspecified"));
      }
    }
    for (const auto& id : g.remove_app_ids()) {
      RETURN_IF_ERROR(RequireUuid(id, "remove_app_ids"));
    }
  }
  if (!req.idempotency_key().empty() && !req.dry_run()) {
    return Idempotent(absl::StrCat("ApplyGrants/", req.workspace_id()),
                      req.idempotency_key(), req, resp, [&]() -> absl::Status {
                        ASSIGN_OR_RETURN(*resp, store_.ApplyGrants(normalized));
                        return absl::OkStatus();
                      });
  }
  ASSIGN_OR_RETURN(*resp, store_.ApplyGrants(normalized));
  return absl::OkStatus();
}

grpc::Status MembershipServiceImpl::ApplyGrants(
    grpc::ServerContext* ctx, const v1::ApplyGrantsRequest* req,
    v1::ApplyGrantsResponse* resp) {
  return ServeWrite(ctx, "ApplyGrants", [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireInternal(*ctx));
    return DoApplyGrants(*req, resp);
  });
}

grpc::Status MembershipServiceImpl::DeleteUsers(
    grpc::ServerContext* ctx, const v1::DeleteUsersRequest* req,
    v1::DeleteUsersResponse*) {
  return ServeWrite(ctx, "DeleteUsers", [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireInternal(*ctx));
    RETURN_IF_ERROR(RequireUuid(req->workspace_id(), "workspace_id"));
    if (req->user_ids_size() > kMaxBatch) {
      return absl::InvalidArgumentError(
          absl::StrCat("at most ", kMaxBatch, " user_ids per call"));
    }
    std::vector<std::string> ids;
    for (const auto& id : req->user_ids()) {
      RETURN_IF_ERROR(RequireUuid(id, "user_ids"));
      ids.push_back(id);
    }
    return store_.DeleteUsers(req->workspace_id(), ids);
  });
}

grpc::Status MembershipServiceImpl::GetUserAccess(
    grpc::ServerContext* ctx, const v1::GetUserAccessRequest* req,
    v1::GetUserAccessResponse* resp) {
  return Serve(ctx, "GetUserAccess", [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireInternal(*ctx));
    RETURN_IF_ERROR(RequireUuid(req->workspace_id(), "workspace_id"));
    if (req->user_ids_size() > kMaxBatch) {
      return absl::InvalidArgumentError(
          absl::StrCat("at most ", kMaxBatch, " user_ids per call"));
    }
    for (const auto& id : req->user_ids()) {
      RETURN_IF_ERROR(RequireUuid(id, "user_ids"));
    }
    ASSIGN_OR_RETURN(std::optional<Workspace> w,
                     store_.GetWorkspace(req->workspace_id()));
    if (!w) {
      return absl::NotFoundError(
          absl::StrCat("workspace ", req->workspace_id(), " not found"));
    }
    ASSIGN_OR_RETURN(*resp, store_.GetUserAccess(*req));
    return absl::OkStatus();
  });
}

grpc::Status MembershipServiceImpl::ListAppRecipients(
    grpc::ServerContext* ctx, const v1::ListAppRecipientsRequest* req,
    v1::ListAppRecipientsResponse* resp) {
  return Serve(ctx, "ListAppRecipients", [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireInternal(*ctx));
    RETURN_IF_ERROR(RequireUuid(req->app_id(), "app_id"));
    ASSIGN_OR_RETURN(*resp, store_.ListAppRecipients(*req));
    return absl::OkStatus();
  });
}

}  // namespace guestlist::membership
