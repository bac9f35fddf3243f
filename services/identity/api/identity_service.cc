// IdentityServiceImpl: shared helpers, authentication, workspaces, sessions,
// API keys, internal methods. Users are in users.cc, invitations and access
// requests in invitations.cc.
#include "services/identity/api/identity_service.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/grpc_status.h"
#include "common/idempotency.h"
#include "common/logging.h"
#include "common/pg.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "services/identity/api/authz.h"
#include "services/identity/api/convert.h"
#include "services/identity/domain/validation.h"

namespace guestlist::identity {

IdentityServiceImpl::IdentityServiceImpl(IdentityOptions options,
                                         IdentityDeps deps)
    : options_(std::move(options)),
      deps_(std::move(deps)),
      operator_token_hash_(options_.operator_token.empty()
                               ? ""
                               : Sha256Hex(options_.operator_token)) {}

absl::Time IdentityServiceImpl::Now() const {
  // Microseconds, as PostgreSQL stores them, so answers match later reads.
  return absl::FromUnixMicros(absl::ToUnixMicros(deps_.clock->Now()));
}

void IdentityServiceImpl::Kick() {
  if (deps_.kick_outbox) deps_.kick_outbox();
}

void IdentityServiceImpl::SyncNow(const UserRecord& user) {
  membership::v1::SyncUsersRequest sync;
  *sync.add_users() = ToMembershipRecord(user);
  const absl::Status s = deps_.membership->SyncUsers(sync);
  if (!s.ok()) {
    LogWarning("direct sync to membership failed; the outbox retries",
               {{"user_id", user.id}, {"error", s.ToString()}});
  }
}

std::string IdentityServiceImpl::ClientAddress(
    const grpc::ServerContext& ctx) const {
  const auto& md = ctx.client_metadata();
  auto it = md.find("x-forwarded-for");
  if (it != md.end()) {
    std::string first(it->second.data(), it->second.size());
    first = std::string(absl::StripAsciiWhitespace(
        std::vector<std::string>(absl::StrSplit(first, ',')).front()));
    if (!first.empty() && first.size() <= 64) return first;
  }
  const std::string full = ctx.peer();
  absl::string_view peer = full;
  if (absl::ConsumePrefix(&peer, "ipv4:") ||
      absl::ConsumePrefix(&peer, "ipv6:")) {
    return std::string(peer.substr(0, peer.rfind(':')));
  }
  return full;
}

absl::Status IdentityServiceImpl::CheckRate(const std::string& bucket,
                                            const RateLimit& limit, bool hit,
                                            const std::string& what) {
  RateCounter counter;
  const absl::Time now = Now();
  RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
    ASSIGN_OR_RETURN(counter,
                     hit ? tx.HitRateLimit(bucket, limit.window, now)
                         : tx.PeekRateLimit(bucket, limit.window, now));
    return absl::OkStatus();
  }));
  // A peek asks whether one more attempt would still be allowed.
  return RateLimitDecision(limit, hit ? counter.hits : counter.hits + 1,
                           counter.window_start, now, what);
}

absl::Status IdentityServiceImpl::Idempotent(
    const std::string& scope, const std::string& key,
    const google::protobuf::Message& request,
    google::protobuf::Message* response,
    const std::function<absl::Status(const SaveResponse& save)>& body) {
  if (key.empty()) {
    return body([](IdentityTx&, const google::protobuf::Message&) {
      return absl::OkStatus();
    });
  }
  RETURN_IF_ERROR(ValidateIdempotencyKey(key));
  std::string serialized;
  {
    // The key itself is not part of what must match.
    std::unique_ptr<google::protobuf::Message> copy(request.New());
    copy->CopyFrom(request);
    const auto* field =
        copy->GetDescriptor()->FindFieldByName("idempotency_key");
    if (field != nullptr) copy->GetReflection()->ClearField(copy.get(), field);
    google::protobuf::io::StringOutputStream sos(&serialized);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    copy->SerializeToCodedStream(&cos);
  }
  const std::string request_hash = RequestHash(serialized);
  auto lookup = [&]() -> absl::StatusOr<bool> {
    // One statement: no transaction around it.
    ASSIGN_OR_RETURN(
        std::optional<std::string> stored,
        deps_.repository->LookupIdempotent(scope, key, request_hash));
    if (!stored.has_value()) return false;
    if (!response->ParseFromString(*stored)) {
      return absl::DataLossError("stored response is corrupt");
    }
    return true;
  };
  ASSIGN_OR_RETURN(bool replayed, lookup());
  if (replayed) return absl::OkStatus();
  // Stored encrypted (it may hold an invitation link or an API key).
  absl::Status done =
      body([&](IdentityTx& tx, const google::protobuf::Message& finished) {
        return tx.SaveIdempotent(scope, key, request_hash,
                                 finished.SerializeAsString());
      });
  if (!done.ok()) {
    // A concurrent call with the same key may have committed first (this
    // one then failed on its key or on the rows it made): answer with
    // what the winner stored.
    absl::StatusOr<bool> won = lookup();
    if (won.ok() && *won) return absl::OkStatus();
  }
  return done;
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

absl::StatusOr<Principal> IdentityServiceImpl::AuthenticateToken(
    const std::string& token) {
  const auto invalid = absl::UnauthenticatedError("invalid or expired token");
  if (token.empty() || token.size() > kMaxTokenBytes) return invalid;
  const std::string hash = Sha256Hex(token);
  if (!operator_token_hash_.empty() &&
      ConstantTimeEquals(hash, operator_token_hash_)) {
    return OperatorPrincipal();
  }
  const absl::Time now = Now();
  Principal principal;
  // Each branch is one statement: no transaction around it.
  absl::Status status = deps_.repository->Autocommit([&](IdentityTx& tx) {
    if (absl::StartsWith(token, "gls_")) {
      ASSIGN_OR_RETURN(auto found, tx.FindSessionUser(hash));
      if (!found.has_value() || found->first.expire_time <= now) {
        return invalid;
      }
      const UserRecord& user = found->second;
      const UserStatus status = EffectiveStatus(user, now);
      RETURN_IF_ERROR(CheckCanAct(status));
      principal.set_user_id(user.id);
      principal.set_workspace_id(user.workspace_id);
      principal.set_kind(user.kind);
      principal.set_status(status);
      principal.set_username(user.username);
      return absl::OkStatus();
    }
    if (absl::StartsWith(token, "glk_")) {
      ASSIGN_OR_RETURN(std::optional<ApiKeyRecord> key,
                       tx.FindApiKeyByHash(hash));
      if (!key.has_value()) return invalid;
      principal.set_workspace_id(key->workspace_id);
      principal.set_api_key_id(key->id);
      for (const auto& s : key->scopes) principal.add_scopes(s);
      principal.set_username(absl::StrCat("apikey:", key->display_name));
      return absl::OkStatus();
    }
    return invalid;
  });
  if (!status.ok()) return status;
  return principal;
}

absl::StatusOr<Principal> IdentityServiceImpl::Caller(
    const grpc::ServerContext& ctx) {
  if (HasInternalCredential(ctx, options_.internal_token)) {
    return InternalPrincipal();
  }
  ASSIGN_OR_RETURN(std::optional<std::string> token, BearerToken(ctx));
  if (!token.has_value()) {
    return absl::UnauthenticatedError(
        "this call needs `authorization: Bearer <token>`; sign in with Login");
  }
  return AuthenticateToken(*token);
}

grpc::Status IdentityServiceImpl::Authenticate(
    grpc::ServerContext* ctx, const v1::AuthenticateRequest* req,
    v1::Principal* resp) {
  RequestScope scope(ctx, "Authenticate");
  absl::StatusOr<Principal> p = AuthenticateToken(req->token());
  if (p.ok()) *resp = *p;
  return scope.Done(p.status());
}

// ---------------------------------------------------------------------------
// Workspaces
// ---------------------------------------------------------------------------

namespace {

absl::Status ValidateSettings(const v1::WorkspaceSettings& s,
                              const std::string& prefix) {
  if (s.has_invitation_ttl()) {
    const absl::Duration ttl = absl::Seconds(s.invitation_ttl().seconds()) +
                               absl::Nanoseconds(s.invitation_ttl().nanos());
    if (ttl <= absl::ZeroDuration() || ttl > kMaxInvitationTtl) {
      return absl::InvalidArgumentError(absl::StrCat(
          prefix,
          "invitation_ttl: must be more than 0 and at most 30 days "
          "(2592000s)"));
    }
  }
  for (const auto& d : s.allowed_email_domains()) {
    RETURN_IF_ERROR(
        ValidateDomain(absl::StrCat(prefix, "allowed_email_domains"), d));
  }
  for (const auto& d : s.blocked_email_domains()) {
    RETURN_IF_ERROR(
        ValidateDomain(absl::StrCat(prefix, "blocked_email_domains"), d));
  }
  if (s.allowed_email_domains_size() > 1000 ||
      s.blocked_email_domains_size() > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix,
        "allowed_email_domains / blocked_email_domains: at most 1000 "
        "domains each"));
  }
  return absl::OkStatus();
}

std::vector<std::string> LowerAll(
    const google::protobuf::RepeatedPtrField<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& s : in) out.push_back(absl::AsciiStrToLower(s));
  return out;
}

void ApplySettings(const v1::WorkspaceSettings& s, WorkspaceRecord* w) {
  if (s.has_members_can_invite_guests()) {
    w->members_can_invite_guests = s.members_can_invite_guests();
  }
  if (s.has_invitation_ttl()) {
    w->invitation_ttl = absl::Seconds(s.invitation_ttl().seconds());
  }
  w->allowed_email_domains = LowerAll(s.allowed_email_domains());
  w->blocked_email_domains = LowerAll(s.blocked_email_domains());
  if (s.has_request_access_enabled()) {
    w->request_access_enabled = s.request_access_enabled();
  }
  if (s.has_license_count()) w->license_count = s.license_count();
}

}  // namespace

grpc::Status IdentityServiceImpl::CreateWorkspace(
    grpc::ServerContext* ctx, const v1::CreateWorkspaceRequest* req,
    v1::Workspace* resp) {
  RequestScope scope(ctx, "CreateWorkspace");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    if (!caller.is_operator()) {
      return absl::PermissionDeniedError(
          "only the operator may create workspaces; use the operator token");
    }
    const v1::Workspace& w = req->workspace();
    RETURN_IF_ERROR(ValidateWorkspaceName("workspace.name", w.name()));
    if (w.display_name().empty()) {
      return absl::InvalidArgumentError(
          "workspace.display_name: is required; give the name shown in "
          "emails, e.g. \"Acme Corp\"");
    }
    RETURN_IF_ERROR(ValidateText("workspace.display_name", w.display_name(),
                                 kMaxDisplayNameChars));
    if (w.license_count() < 0) {
      return absl::InvalidArgumentError(
          "workspace.license_count: must not be negative");
    }
    if (w.settings().has_license_count() &&
        w.settings().license_count() != w.license_count()) {
      return absl::InvalidArgumentError(
          "workspace.settings.license_count: must equal "
          "workspace.license_count when both are given");
    }
    RETURN_IF_ERROR(ValidateSettings(w.settings(), "workspace.settings."));
    RETURN_IF_ERROR(ValidateEmail("admin_email", req->admin_email()));
    const std::string username = absl::AsciiStrToLower(req->admin_email());
    RETURN_IF_ERROR(
        ValidatePassword("admin_password", req->admin_password(), username));
    return Idempotent(
        "CreateWorkspace:operator", req->idempotency_key(), *req, resp,
        [&](const SaveResponse& save) -> absl::Status {
          const absl::Time now = Now();
          WorkspaceRecord ws;
          ws.id = NewUuid(*deps_.random);
          ws.name = w.name();
          ws.display_name = w.display_name();
          ws.license_count = w.license_count();
          ApplySettings(w.settings(), &ws);
          ws.create_time = ws.update_time = now;
          ASSIGN_OR_RETURN(std::string hash,
                           deps_.hasher->Hash(req->admin_password()));
          UserRecord admin;
          admin.id = NewUuid(*deps_.random);
          admin.workspace_id = ws.id;
          admin.username = username;
          admin.email = req->admin_email();
          admin.kind = v1::ADMIN;
          admin.status = v1::ACTIVE;
          admin.password_hash = hash;
          admin.create_time = admin.update_time = now;
          RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
            RETURN_IF_ERROR(tx.InsertWorkspace(ws));
            RETURN_IF_ERROR(tx.InsertUser(admin));
            membership::v1::SyncWorkspaceRequest sync;
            *sync.mutable_workspace() = ToMembershipRecord(ws);
            RETURN_IF_ERROR(tx.Enqueue(
                {kTopicSyncWorkspace, sync.SerializeAsString(), ""}));
            RETURN_IF_ERROR(tx.Enqueue(SyncUsersMessage(admin)));
            *resp = ToProto(ws);
            return save(tx, *resp);
          }));
          // Push the syncs now so the caller's next call (CreateGroup) finds
          // the workspace in membership; if membership is down the queued
          // outbox rows deliver them when it is back.
          membership::v1::SyncWorkspaceRequest sync_ws;
          *sync_ws.mutable_workspace() = ToMembershipRecord(ws);
          if (absl::Status s = deps_.membership->SyncWorkspace(sync_ws);
              s.ok()) {
            SyncNow(admin);
          } else {
            LogWarning(
                "direct workspace sync to membership failed; the outbox "
                "retries",
                {{"workspace_id", ws.id}, {"error", s.ToString()}});
          }
          Kick();
          return absl::OkStatus();
        });
  }());
}

grpc::Status IdentityServiceImpl::GetWorkspace(
    grpc::ServerContext* ctx, const v1::GetWorkspaceRequest* req,
    v1::Workspace* resp) {
  RequestScope scope(ctx, "GetWorkspace");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    RETURN_IF_ERROR(RequireInWorkspace(caller, req->workspace_id()));
    return deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(WorkspaceRecord ws,
                       tx.GetWorkspace(req->workspace_id(), false));
      *resp = ToProto(ws);
      return absl::OkStatus();
    });
  }());
}

grpc::Status IdentityServiceImpl::UpdateWorkspace(
    grpc::ServerContext* ctx, const v1::UpdateWorkspaceRequest* req,
    v1::Workspace* resp) {
  RequestScope scope(ctx, "UpdateWorkspace");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    RETURN_IF_ERROR(RequireAdmin(caller, req->workspace_id()));
    const v1::Workspace& w = req->workspace();
    std::vector<std::string> paths(req->update_mask().paths().begin(),
                                   req->update_mask().paths().end());
    if (paths.empty()) {
      if (!w.display_name().empty()) paths.push_back("display_name");
      if (w.license_count() != 0) paths.push_back("license_count");
      if (w.has_settings()) paths.push_back("settings");
    }
    const absl::Time now = Now();
    bool license_changed = false;
    WorkspaceRecord updated;
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(WorkspaceRecord ws,
                       tx.GetWorkspace(req->workspace_id(), true));
      const int old_licenses = ws.license_count;
      for (const std::string& path : paths) {
        if (path == "display_name") {
          if (w.display_name().empty()) {
            return absl::InvalidArgumentError(
                "workspace.display_name: must not be empty");
          }
          RETURN_IF_ERROR(ValidateText("workspace.display_name",
                                       w.display_name(), kMaxDisplayNameChars));
          ws.display_name = w.display_name();
        } else if (path == "license_count") {
          if (w.license_count() < 0) {
            return absl::InvalidArgumentError(
                "workspace.license_count: must not be negative");
          }
          ws.license_count = w.license_count();
        } else if (path == "settings") {
          RETURN_IF_ERROR(
              ValidateSettings(w.settings(), "workspace.settings."));
          WorkspaceRecord fresh;
          fresh.license_count = ws.license_count;
          ApplySettings(w.settings(), &fresh);
          fresh.id = ws.id;
          fresh.name = ws.name;
          fresh.display_name = ws.display_name;
          fresh.version = ws.version;
          ws = fresh;
        } else if (path == "settings.members_can_invite_guests") {
          ws.members_can_invite_guests =
              w.settings().members_can_invite_guests();
        } else if (path == "settings.invitation_ttl") {
          RETURN_IF_ERROR(
              ValidateSettings(w.settings(), "workspace.settings."));
          ws.invitation_ttl =
              w.settings().has_invitation_ttl()
                  ? absl::Seconds(w.settings().invitation_ttl().seconds())
                  : kDefaultInvitationTtl;
        } else if (path == "settings.allowed_email_domains") {
          RETURN_IF_ERROR(
              ValidateSettings(w.settings(), "workspace.settings."));
          ws.allowed_email_domains =
              LowerAll(w.settings().allowed_email_domains());
        } else if (path == "settings.blocked_email_domains") {
          RETURN_IF_ERROR(
              ValidateSettings(w.settings(), "workspace.settings."));
          ws.blocked_email_domains =
              LowerAll(w.settings().blocked_email_domains());
        } else if (path == "settings.request_access_enabled") {
          ws.request_access_enabled = w.settings().request_access_enabled();
        } else if (path == "settings.license_count") {
          if (w.settings().license_count() < 0) {
            return absl::InvalidArgumentError(
                "workspace.settings.license_count: must not be negative");
          }
          ws.license_count = w.settings().license_count();
        } else {
          return absl::InvalidArgumentError(absl::StrCat(
              "update_mask: \"", path,
              "\" cannot be updated; use display_name, license_count, "
              "settings or settings.<field>"));
        }
      }
      license_changed = ws.license_count != old_licenses;
      ASSIGN_OR_RETURN(updated, tx.UpdateWorkspace(ws, now));
      membership::v1::SyncWorkspaceRequest sync;
      *sync.mutable_workspace() = ToMembershipRecord(updated);
      if (license_changed) {
        // Membership must accept a new licence count (it may be below the
        // licences in use): ask before committing.
        RETURN_IF_ERROR(deps_.membership->SyncWorkspace(sync));
        return absl::OkStatus();
      }
      return tx.Enqueue({kTopicSyncWorkspace, sync.SerializeAsString(), ""});
    }));
    Kick();
    *resp = ToProto(updated);
    return absl::OkStatus();
  }());
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

grpc::Status IdentityServiceImpl::Login(grpc::ServerContext* ctx,
                                        const v1::LoginRequest* req,
                                        v1::Session* resp) {
  RequestScope scope(ctx, "Login");
  return scope.Done([&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    if (req->username().empty()) {
      return absl::InvalidArgumentError("username: is required");
    }
    RETURN_IF_ERROR(ValidateUsername("username", req->username()));
    if (req->password().empty()) {
      return absl::InvalidArgumentError("password: is required");
    }
    if (req->password().size() > kMaxPasswordBytes) {
      return absl::InvalidArgumentError("password: is too long");
    }
    const std::string account_bucket =
        absl::StrCat("login:acct:", req->workspace_id(), ":",
                     absl::AsciiStrToLower(req->username()));
    const std::string address_bucket =
        absl::StrCat("login:addr:", ClientAddress(*ctx));
    RETURN_IF_ERROR(CheckRate(account_bucket, options_.login_per_account, false,
                              "failed sign-ins for this account"));
    RETURN_IF_ERROR(CheckRate(address_bucket, options_.login_per_address, false,
                              "failed sign-ins from this address"));
    std::optional<UserRecord> user;
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      RETURN_IF_ERROR(tx.GetWorkspace(req->workspace_id(), false).status());
      ASSIGN_OR_RETURN(user, tx.FindUserByUsername(req->workspace_id(),
                                                   req->username(), false));
      return absl::OkStatus();
    }));
    bool ok;
    if (user.has_value() && !user->password_hash.empty()) {
      ok = deps_.hasher->Verify(req->password(), user->password_hash);
    } else {
      // Same work as a real check, so timing does not reveal the username.
      deps_.hasher->Verify(req->password(), deps_.hasher->DummyHash());
      ok = false;
    }
    if (!ok) {
      (void)CheckRate(account_bucket, options_.login_per_account, true, "");
      (void)CheckRate(address_bucket, options_.login_per_address, true, "");
      return absl::UnauthenticatedError(
          "wrong username or password; check both and try again");
    }
    const absl::Time now = Now();
    RETURN_IF_ERROR(CheckCanAct(EffectiveStatus(*user, now)));
    const std::string token = NewToken(*deps_.random, 32, "gls_");
    SessionRecord session{NewUuid(*deps_.random),
                          Sha256Hex(token),
                          user->id,
                          user->workspace_id,
                          now,
                          now + options_.session_ttl};
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      RETURN_IF_ERROR(tx.ResetRateLimit(account_bucket));
      return tx.InsertSession(session);
    }));
    resp->set_token(token);
    *resp->mutable_user() = ToProto(*user);
    *resp->mutable_expire_time() = ToTimestamp(session.expire_time);
    return absl::OkStatus();
  }());
}

grpc::Status IdentityServiceImpl::Logout(grpc::ServerContext* ctx,
                                         const v1::LogoutRequest* /*req*/,
                                         google::protobuf::Empty* /*resp*/) {
  RequestScope scope(ctx, "Logout");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<std::string> token, BearerToken(*ctx));
    if (!token.has_value()) {
      return absl::UnauthenticatedError(
          "this call needs `authorization: Bearer <session token>`");
    }
    if (!absl::StartsWith(*token, "gls_")) {
      ASSIGN_OR_RETURN(Principal p, AuthenticateToken(*token));
      (void)p;
      return absl::FailedPreconditionError(
          "the credential is not a session (an API key or service token); "
          "only sessions can be ended with Logout");
    }
    bool found = false;
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(std::optional<SessionRecord> s,
                       tx.FindSession(Sha256Hex(*token)));
      const absl::Time now = Now();
      found = s.has_value() && s->expire_time > now;
      if (!s.has_value()) return absl::OkStatus();
      if (found) {
        // Like every other call: a suspended, expired or archived user's
        // session no longer acts (its sessions are dead anyway).
        ASSIGN_OR_RETURN(UserRecord user, tx.GetUser(s->user_id, false));
        RETURN_IF_ERROR(CheckCanAct(EffectiveStatus(user, now)));
      }
      return tx.DeleteSession(Sha256Hex(*token));
    }));
    if (!found) return absl::UnauthenticatedError("invalid or expired token");
    return absl::OkStatus();
  }());
}

// ---------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------

grpc::Status IdentityServiceImpl::CreateApiKey(
    grpc::ServerContext* ctx, const v1::CreateApiKeyRequest* req,
    v1::ApiKey* resp) {
  RequestScope scope(ctx, "CreateApiKey");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    RETURN_IF_ERROR(RequireUserAdmin(caller, req->workspace_id()));
    const v1::ApiKey& k = req->api_key();
    if (k.display_name().empty()) {
      return absl::InvalidArgumentError(
          "api_key.display_name: is required; name the backend that will use "
          "the key");
    }
    RETURN_IF_ERROR(ValidateText("api_key.display_name", k.display_name(),
                                 kMaxDisplayNameChars));
    std::vector<std::string> scopes(k.scopes().begin(), k.scopes().end());
    RETURN_IF_ERROR(ValidateScopes("api_key.scopes", scopes));
    return Idempotent(
        absl::StrCat("CreateApiKey:", CallerId(caller), ":",
                     req->workspace_id()),
        req->idempotency_key(), *req, resp,
        [&](const SaveResponse& save) -> absl::Status {
          const std::string secret = NewToken(*deps_.random, 32, "glk_");
          ApiKeyRecord key;
          key.id = NewUuid(*deps_.random);
          key.workspace_id = req->workspace_id();
          key.display_name = k.display_name();
          key.scopes = scopes;
          key.key_hash = Sha256Hex(secret);
          key.prefix = secret.substr(0, 12);
          key.creator_id = caller.user_id();
          key.create_time = Now();
          RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
            RETURN_IF_ERROR(tx.GetWorkspace(key.workspace_id, false).status());
            RETURN_IF_ERROR(tx.InsertApiKey(key));
            *resp = ToProto(key);
            resp->set_key(secret);
            return save(tx, *resp);
          }));
          return absl::OkStatus();
        });
  }());
}

grpc::Status IdentityServiceImpl::ListApiKeys(grpc::ServerContext* ctx,
                                              const v1::ListApiKeysRequest* req,
                                              v1::ListApiKeysResponse* resp) {
  RequestScope scope(ctx, "ListApiKeys");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    RETURN_IF_ERROR(RequireUserAdmin(caller, req->workspace_id()));
    ASSIGN_OR_RETURN(int limit, NormalizePageSize(req->page_size()));
    const std::string fingerprint = absl::StrCat("keys:", req->workspace_id());
    ListOptions options;
    options.limit = limit;
    if (!req->page_token().empty()) {
      ASSIGN_OR_RETURN(options.after,
                       DecodePageToken(req->page_token(), fingerprint));
    }
    return deps_.repository->Transact([&](IdentityTx& tx) {
      RETURN_IF_ERROR(tx.GetWorkspace(req->workspace_id(), false).status());
      ASSIGN_OR_RETURN(std::vector<ApiKeyRecord> keys,
                       tx.ListApiKeys(req->workspace_id(), options));
      const int n = std::min<int>(keys.size(), limit);
      for (int i = 0; i < n; ++i) *resp->add_api_keys() = ToProto(keys[i]);
      if (static_cast<int>(keys.size()) > limit) {
        resp->set_next_page_token(EncodePageToken(
            {pg::Time(keys[n - 1].create_time).value_or(""), keys[n - 1].id},
            fingerprint));
      }
      return absl::OkStatus();
    });
  }());
}

grpc::Status IdentityServiceImpl::DeleteApiKey(
    grpc::ServerContext* ctx, const v1::DeleteApiKeyRequest* req,
    google::protobuf::Empty* /*resp*/) {
  RequestScope scope(ctx, "DeleteApiKey");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("api_key_id", req->api_key_id()));
    return deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(std::optional<ApiKeyRecord> key,
                       tx.GetApiKey(req->api_key_id()));
      if (!key.has_value() || !SameWorkspace(caller, key->workspace_id)) {
        return absl::NotFoundError(
            absl::StrCat("API key ", req->api_key_id(), " does not exist"));
      }
      RETURN_IF_ERROR(RequireUserAdmin(caller, key->workspace_id));
      return tx.DeleteApiKey(key->id);
    });
  }());
}

// ---------------------------------------------------------------------------
// Internal
// ---------------------------------------------------------------------------

grpc::Status IdentityServiceImpl::ListAdmins(grpc::ServerContext* ctx,
                                             const v1::ListAdminsRequest* req,
                                             v1::ListAdminsResponse* resp) {
  RequestScope scope(ctx, "ListAdmins");
  return scope.Done([&]() -> absl::Status {
    if (!HasInternalCredential(*ctx, options_.internal_token)) {
      return absl::PermissionDeniedError(
          "ListAdmins is internal: only guestlist services may call it");
    }
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    return deps_.repository->Transact([&](IdentityTx& tx) {
      RETURN_IF_ERROR(tx.GetWorkspace(req->workspace_id(), false).status());
      ASSIGN_OR_RETURN(std::vector<UserRecord> admins,
                       tx.ListAdmins(req->workspace_id()));
      for (const auto& u : admins) *resp->add_users() = ToProto(u);
      return absl::OkStatus();
    });
  }());
}

grpc::Status IdentityServiceImpl::BatchGetUsers(
    grpc::ServerContext* ctx, const v1::BatchGetUsersRequest* req,
    v1::BatchGetUsersResponse* resp) {
  RequestScope scope(ctx, "BatchGetUsers");
  return scope.Done([&]() -> absl::Status {
    if (!HasInternalCredential(*ctx, options_.internal_token)) {
      return absl::PermissionDeniedError(
          "BatchGetUsers is internal: only guestlist services may call it");
    }
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    if (req->user_ids_size() > 1000) {
      return absl::InvalidArgumentError(
          "user_ids: at most 1000 ids per call; split the request");
    }
    std::vector<std::string> ids;
    for (const auto& id : req->user_ids()) {
      if (IsUuid(id)) ids.push_back(id);  // others cannot exist
    }
    return deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(std::vector<UserRecord> users,
                       tx.GetUsers(req->workspace_id(), ids));
      absl::flat_hash_map<std::string, const UserRecord*> by_id;
      for (const auto& u : users) by_id[u.id] = &u;
      for (const auto& id : ids) {
        auto it = by_id.find(id);
        if (it != by_id.end()) *resp->add_users() = ToProto(*it->second);
      }
      return absl::OkStatus();
    });
  }());
}

// ---------------------------------------------------------------------------
// Bulk import: delegated.
// ---------------------------------------------------------------------------

grpc::Status IdentityServiceImpl::GetImportTemplate(
    grpc::ServerContext* ctx, const v1::GetImportTemplateRequest* req,
    google::api::HttpBody* resp) {
  return deps_.imports->GetImportTemplate(ctx, req, resp);
}
grpc::Status IdentityServiceImpl::ImportUsers(
    grpc::ServerContext* ctx,
    grpc::ServerReader<v1::ImportUsersRequest>* reader,
    v1::ImportReport* resp) {
  return deps_.imports->ImportUsers(ctx, reader, resp);
}
grpc::Status IdentityServiceImpl::GetImport(grpc::ServerContext* ctx,
                                            const v1::GetImportRequest* req,
                                            v1::ImportReport* resp) {
  return deps_.imports->GetImport(ctx, req, resp);
}
grpc::Status IdentityServiceImpl::GetImportErrors(
    grpc::ServerContext* ctx, const v1::GetImportErrorsRequest* req,
    google::api::HttpBody* resp) {
  return deps_.imports->GetImportErrors(ctx, req, resp);
}
grpc::Status IdentityServiceImpl::ExportUsers(grpc::ServerContext* ctx,
                                              const v1::ExportUsersRequest* req,
                                              google::api::HttpBody* resp) {
  return deps_.imports->ExportUsers(ctx, req, resp);
}

// ---------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------

OutboxMessage IdentityServiceImpl::SyncUsersMessage(
    const UserRecord& user) const {
  membership::v1::SyncUsersRequest sync;
  *sync.add_users() = ToMembershipRecord(user);
  return {kTopicSyncUsers, sync.SerializeAsString(),
          absl::StrCat("user:", user.id, ":", user.version)};
}

std::string IdentityServiceImpl::InvitationUrl(const std::string& token) const {
  std::string base = options_.public_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return absl::StrCat(base, "/invite#token=", token);
}

}  // namespace guestlist::identity
