// IdentityServiceImpl: invitations and access requests.
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/server.h"
#include "common/status_macros.h"
#include "services/identity/api/authz.h"
#include "services/identity/api/convert.h"
#include "services/identity/api/identity_service.h"
#include "services/identity/domain/validation.h"

namespace guestlist::identity {
namespace {

absl::Status StatusFromCode(int code, const std::string& message) {
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

absl::Status ValidateGrants(
    const google::protobuf::RepeatedPtrField<std::string>& group_ids,
    const google::protobuf::RepeatedPtrField<v1::AppPrivilegeGrant>& apps) {
  if (group_ids.size() > 100) {
    return absl::InvalidArgumentError("group_ids: at most 100 groups");
  }
  for (int i = 0; i < group_ids.size(); ++i) {
    RETURN_IF_ERROR(
        ValidateId(absl::StrCat("group_ids[", i, "]"), group_ids[i]));
  }
  if (apps.size() > 100) {
    return absl::InvalidArgumentError("app_privileges: at most 100 apps");
  }
  for (int i = 0; i < apps.size(); ++i) {
    RETURN_IF_ERROR(ValidateId(absl::StrCat("app_privileges[", i, "].app_id"),
                               apps[i].app_id()));
    if (apps[i].privilege() == v1::AppPrivilegeGrant::PRIVILEGE_UNSPECIFIED ||
        !v1::AppPrivilegeGrant::Privilege_IsValid(apps[i].privilege())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "app_privileges[", i,
          "].privilege: is required; use GUEST, VIEWER or EDITOR"));
    }
  }
  return absl::OkStatus();
}

// A UUID-shaped id derived from `seed` under `secret` (stable, unguessable).
std::string DerivedUuid(const std::string& secret, const std::string& seed) {
  const std::string h = HmacSha256Hex(secret, seed);
  return absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-4",
                      h.substr(13, 3), "-8", h.substr(17, 3), "-",
                      h.substr(20, 12));
}

// Admins, the member who sent it, and API keys with invitations.write.
bool MayManageInvitation(const Principal& caller, const InvitationRecord& inv) {
  return IsAdminOf(caller, inv.workspace_id) ||
         (IsUser(caller) && caller.user_id() == inv.inviter_id) ||
         (IsApiKey(caller) && caller.workspace_id() == inv.workspace_id &&
          HasScope(caller, "invitations.write"));
}

std::string UtcDate(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d", t, absl::UTCTimeZone());
}

}  // namespace

absl::Status IdentityServiceImpl::ValidateInviteSpec(const InviteSpec& s) {
  RETURN_IF_ERROR(ValidateId("workspace_id", s.workspace_id));
  if (s.email.empty() && s.username.empty()) {
    return absl::InvalidArgumentError(
        "email: give an email or a username (at least one is required)");
  }
  if (!s.email.empty()) RETURN_IF_ERROR(ValidateEmail("email", s.email));
  if (!s.username.empty()) {
    RETURN_IF_ERROR(ValidateUsername("username", s.username));
  }
  if (!IsValidKind(s.kind)) {
    return absl::InvalidArgumentError(
        "kind: unknown value; use GUEST, MEMBER or ADMIN");
  }
  if (s.kind != v1::GUEST && s.email.empty()) {
    return absl::InvalidArgumentError(
        "email: members and admins need an email; only guests may be invited "
        "without one");
  }
  RETURN_IF_ERROR(ValidatePersonNames("first_name", s.first_name, "last_name",
                                      s.last_name, true));
  if (!s.metadata_json.empty()) {
    RETURN_IF_ERROR(ValidateMetadataJson("metadata", s.metadata_json));
  }
  if (s.access_expire_time.has_value() && *s.access_expire_time <= Now()) {
    return absl::InvalidArgumentError(
        "access_expire_time: is in the past; give a future time or leave it "
        "unset for no expiry");
  }
  return absl::OkStatus();
}

OutboxMessage IdentityServiceImpl::InvitationEmail(
    const WorkspaceRecord& ws, const UserRecord& user,
    const InvitationRecord& inv, const std::string& inviter_name,
    const std::string& token) const {
  notification::v1::SendEmailRequest email;
  email.set_workspace_id(ws.id);
  email.set_template_("invitation");
  email.set_to(user.email);
  email.set_to_name(DisplayName(user));
  auto& vars = *email.mutable_variables();
  vars["workspace_name"] = ws.display_name;
  vars["inviter_name"] = inviter_name;
  vars["invitation_url"] = InvitationUrl(token);
  vars["first_name"] = user.first_name;
  vars["expire_time"] = FormatRfc3339(inv.expire_time);
  email.set_category("invitation");
  const std::string key =
      absl::StrCat("invitation:", inv.id, ":", inv.token_generation);
  email.set_idempotency_key(key);
  email.set_recipient_user_id(user.id);
  return {kTopicSendEmail, email.SerializeAsString(), key};
}

// Members may invite guests only, where the workspace and each group allow.
absl::Status IdentityServiceImpl::CheckMemberMayInvite(
    const grpc::ServerContext& ctx, const Principal& caller,
    const WorkspaceRecord& ws, const InviteSpec& spec) {
  if (!IsUser(caller) || caller.kind() != v1::MEMBER) return absl::OkStatus();
  if (spec.kind != v1::GUEST) {
    return absl::PermissionDeniedError(
        "members may invite guests only; ask an admin to invite members or "
        "admins");
  }
  if (!ws.members_can_invite_guests) {
    return absl::PermissionDeniedError(
        "this workspace does not let members invite guests; ask an admin");
  }
  if (!spec.group_ids.empty()) {
    membership::v1::BatchCheckRequest check;
    for (const auto& g : spec.group_ids) {
      auto* c = check.add_checks();
      c->set_user_id(caller.user_id());
      c->set_permission("group.invite_guest");
      c->set_resource(absl::StrCat("groups/", g));
    }
    ASSIGN_OR_RETURN(membership::v1::BatchCheckResponse r,
                     deps_.membership->BatchCheck(ctx, check));
    for (int i = 0; i < static_cast<int>(spec.group_ids.size()); ++i) {
      if (i >= r.results_size() || !r.results(i).allowed()) {
        return absl::PermissionDeniedError(absl::StrCat(
            "you may not invite guests into group ", spec.group_ids[i],
            i < r.results_size() && !r.results(i).reason().empty()
                ? absl::StrCat(": ", r.results(i).reason())
                : ""));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Invitation> IdentityServiceImpl::Invite(
    const grpc::ServerContext& ctx, const Principal& caller, InviteSpec spec,
    const std::function<absl::Status(IdentityTx&, const v1::Invitation&)>&
        on_commit) {
  RETURN_IF_ERROR(ValidateInviteSpec(spec));
  RETURN_IF_ERROR(RequireInWorkspace(caller, spec.workspace_id));
  if (IsUser(caller) && caller.kind() == v1::GUEST) {
    return absl::PermissionDeniedError("guests cannot invite users");
  }
  if (IsApiKey(caller) && !HasScope(caller, "invitations.write")) {
    return absl::PermissionDeniedError(
        "this API key lacks the scope invitations.write; create a key with it");
  }
  WorkspaceRecord ws;
  std::string inviter_name = "An administrator";
  const std::string new_user_id = NewUuid(*deps_.random);
  int64_t intent_id = 0;
  // The "invite in progress" row (see below): if this process dies before
  // its commit, the relay removes membership's grants of the new user.
  membership::v1::DeleteUsersRequest reconcile;
  reconcile.set_workspace_id(absl::AsciiStrToLower(spec.workspace_id));
  reconcile.add_user_ids(new_user_id);
  const OutboxMessage intent{kTopicReconcileInvite,
                             reconcile.SerializeAsString(), ""};
  constexpr absl::Duration kIntentDelay = absl::Seconds(1);
  auto write_intent = [&](IdentityTx& tx) -> absl::Status {
    ASSIGN_OR_RETURN(intent_id, tx.EnqueueDelayed(intent, kIntentDelay));
    return absl::OkStatus();
  };
  // One statement reads what the invite depends on and, for a new user
  // (when no peer must be asked first), commits the intent row with it.
  const bool member_caller = IsUser(caller) && caller.kind() == v1::MEMBER;
  const bool new_user = !spec.existing_user.has_value();
  const std::string username = !new_user ? ""
                               : spec.username.empty()
                                   ? absl::AsciiStrToLower(spec.email)
                                   : spec.username;
  absl::Status checked = deps_.repository->Autocommit([&](IdentityTx& tx) {
    ASSIGN_OR_RETURN(
        InvitePrelude prelude,
        tx.LoadInvitePrelude(
            spec.workspace_id, IsUser(caller) ? caller.user_id() : "", username,
            new_user && !member_caller ? &intent : nullptr, kIntentDelay));
    intent_id = prelude.intent_id;
    if (!prelude.workspace.has_value()) {
      return absl::NotFoundError(
          absl::StrCat("workspace ", spec.workspace_id, " does not exist"));
    }
    ws = *std::move(prelude.workspace);
    if (IsUser(caller)) {
      if (!prelude.inviter.has_value()) {
        return absl::NotFoundError(
            absl::StrCat("user ", caller.user_id(), " does not exist"));
      }
      inviter_name = DisplayName(*prelude.inviter);
    }
    if (prelude.existing.has_value()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "username: \"", username, "\" already exists in this workspace (",
          StatusName(prelude.existing->status),
          "); resend its invitation or reactivate it instead"));
    }
    if (spec.kind == v1::GUEST && !spec.email.empty()) {
      RETURN_IF_ERROR(CheckEmailDomain(spec.email, ws.allowed_email_domains,
                                       ws.blocked_email_domains));
    }
    RETURN_IF_ERROR(CheckMemberMayInvite(ctx, caller, ws, spec));
    if (new_user && intent_id == 0) RETURN_IF_ERROR(write_intent(tx));
    return absl::OkStatus();
  });
  if (!checked.ok()) {
    // Nothing was granted: the intent row has nothing to undo.
    if (intent_id != 0) {
      (void)deps_.repository->Autocommit(
          [&](IdentityTx& tx) { return tx.DeleteOutboxRow(intent_id); });
    }
    return checked;
  }

  const absl::Time now = Now();
  UserRecord user;
  if (spec.existing_user.has_value()) {
    user = *spec.existing_user;
    user.kind = v1::GUEST;
    user.status = v1::INVITED;
    user.access_expire_time = spec.access_expire_time;
  } else {
    user.id = new_user_id;
    user.workspace_id = ws.id;
    user.username = spec.username.empty() ? absl::AsciiStrToLower(spec.email)
                                          : spec.username;
    user.email = spec.email;
    user.first_name = spec.first_name;
    user.last_name = spec.last_name;
    user.kind = spec.kind;
    user.status = v1::INVITED;
    user.metadata_json = spec.metadata_json;
    user.access_expire_time = spec.access_expire_time;
    user.create_time = user.update_time = now;
    user.version = 1;
  }
  const std::string token = NewToken(*deps_.random, 32, "gli_");
  InvitationRecord inv;
  inv.id = NewUuid(*deps_.random);
  inv.workspace_id = ws.id;
  inv.user_id = user.id;
  inv.inviter_id = caller.user_id();
  inv.token_hash = Sha256Hex(token);
  inv.token_generation = 1;
  inv.state = v1::Invitation::PENDING;
  inv.expire_time = now + ws.invitation_ttl;
  inv.create_time = now;

  // Membership grants, then identity's rows, in one identity transaction
  // that holds a committed "invite in progress" intent row locked: if this
  // process dies or loses membership's answer, the relay finds the intent
  // unlocked, sees no such user here and removes membership's grants, so no
  // half-made guest survives a crash.
  membership::v1::ApplyGrantsRequest grants;
  grants.set_workspace_id(ws.id);
  // No idempotency key: nothing repeats this call (a retried invite has a
  // new invitation id, so a key could never match), and a repeat would be
  // harmless anyway (same user version, groups already held). The key's
  // lookup and save were two of membership's three transactions per invite.
  auto* g = grants.add_users();
  UserRecord predicted = user;
  if (spec.existing_user.has_value()) predicted.version = user.version + 1;
  *g->mutable_user() = ToMembershipRecord(predicted);
  for (const auto& id : spec.group_ids) g->add_group_ids(id);
  for (const auto& p : spec.app_privileges) {
    auto* a = g->add_app_privileges();
    a->set_app_id(p.app_id());
    a->set_privilege(static_cast<membership::v1::AppPrivilegeGrant::Privilege>(
        p.privilege()));
  }
  const bool send = spec.send_email && !user.email.empty();
  UserRecord saved;
  v1::Invitation out;
  bool intent_gone = false;
  auto commit = [&](IdentityTx& tx) -> absl::Status {
    if (intent_id != 0) {
      // Deleted now, locked until the end of this transaction: a rollback
      // (or a crash) leaves it to the relay.
      absl::Status taken = tx.TakeOutboxRow(intent_id);
      intent_gone = absl::IsAborted(taken);
      RETURN_IF_ERROR(taken);
    }
    // Membership may refuse (licences, unknown groups): then nothing of
    // the invitation exists anywhere.
    ASSIGN_OR_RETURN(membership::v1::ApplyGrantsResponse applied,
                     deps_.membership->ApplyGrants(grants));
    if (applied.results_size() > 0 && !applied.results(0).ok()) {
      return StatusFromCode(applied.results(0).error_code(),
                            applied.results(0).error_message());
    }
    if (spec.existing_user.has_value()) {
      ASSIGN_OR_RETURN(saved, tx.UpdateUser(user, now));
      RETURN_IF_ERROR(tx.SetAccessRequestState(
          spec.access_request_id, v1::AccessRequest::APPROVED, now));
      RETURN_IF_ERROR(tx.InsertInvitation(inv));
      if (send) {
        RETURN_IF_ERROR(
            tx.Enqueue(InvitationEmail(ws, saved, inv, inviter_name, token)));
      }
    } else {
      saved = user;
      // The user, the invitation and the email's outbox row: one statement.
      std::optional<OutboxMessage> email;
      if (send) email = InvitationEmail(ws, saved, inv, inviter_name, token);
      RETURN_IF_ERROR(tx.InsertInvitedUser(
          user, inv, email.has_value() ? &*email : nullptr));
    }
    out = ToProto(inv, saved, now);
    out.set_invitation_url(InvitationUrl(token));
    return on_commit(tx, out);
  };
  absl::Status committed = deps_.repository->Transact(commit);
  if (intent_gone) {
    // The call queued for longer than the intent's delay and the relay
    // reconciled it before anything was granted: write a new one, retry.
    RETURN_IF_ERROR(deps_.repository->Autocommit(write_intent));
    intent_gone = false;
    committed = deps_.repository->Transact(commit);
  }
  if (!committed.ok()) {
    // Compensate: membership must not keep a user identity does not have.
    membership::v1::DeleteUsersRequest del;
    del.set_workspace_id(ws.id);
    del.add_user_ids(user.id);
    absl::Status undo = deps_.membership->DeleteUsers(del);
    if (spec.existing_user.has_value()) {
      // Put back membership's copy of the REQUESTED user.
      UserRecord back = *spec.existing_user;
      (void)deps_.repository->Transact(
          [&](IdentityTx& tx) { return tx.Enqueue(SyncUsersMessage(back)); });
    }
    if (!undo.ok()) {
      LogError("could not undo membership grants of a failed invitation",
               {{"user_id", user.id}, {"error", std::string(undo.message())}});
    }
    return committed;
  }
  if (send) Kick();
  return out;
}

grpc::Status IdentityServiceImpl::InviteUser(grpc::ServerContext* ctx,
                                             const v1::InviteUserRequest* req,
                                             v1::Invitation* resp) {
  RequestScope scope(ctx, "InviteUser");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateGrants(req->group_ids(), req->app_privileges()));
    InviteSpec spec;
    spec.workspace_id = req->workspace_id();
    spec.email = req->email();
    spec.username = req->username();
    spec.first_name = req->first_name();
    spec.last_name = req->last_name();
    spec.kind =
        req->kind() == v1::USER_KIND_UNSPECIFIED ? v1::GUEST : req->kind();
    spec.group_ids.assign(req->group_ids().begin(), req->group_ids().end());
    spec.app_privileges.assign(req->app_privileges().begin(),
                               req->app_privileges().end());
    if (req->has_access_expire_time()) {
      spec.access_expire_time = FromTimestamp(req->access_expire_time());
    }
    spec.send_email = req->has_send_email() ? req->send_email() : true;
    ASSIGN_OR_RETURN(spec.metadata_json, MetadataToJson(req->metadata()));
    // Validate before the idempotency lookup would hide a bad field.
    RETURN_IF_ERROR(ValidateInviteSpec(spec));
    return Idempotent(
        absl::StrCat("InviteUser:", CallerId(caller), ":", req->workspace_id()),
        req->idempotency_key(), *req, resp,
        [&](const SaveResponse& save) -> absl::Status {
          ASSIGN_OR_RETURN(*resp, Invite(*ctx, caller, spec, save));
          return absl::OkStatus();
        });
  }());
}

grpc::Status IdentityServiceImpl::ListInvitations(
    grpc::ServerContext* ctx, const v1::ListInvitationsRequest* req,
    v1::ListInvitationsResponse* resp) {
  RequestScope scope(ctx, "ListInvitations");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    RETURN_IF_ERROR(RequireInWorkspace(caller, req->workspace_id()));
    std::string inviter;
    if (!IsAdminOf(caller, req->workspace_id())) {
      if (IsUser(caller) && caller.kind() == v1::MEMBER) {
        inviter = caller.user_id();  // members see what they sent
      } else if (!(IsApiKey(caller) && HasScope(caller, "invitations.write"))) {
        return absl::PermissionDeniedError(
            "only admins and members may list invitations");
      }
    }
    if (!v1::Invitation::State_IsValid(req->state())) {
      return absl::InvalidArgumentError(
          "state: unknown value; use PENDING, ACCEPTED, EXPIRED or REVOKED");
    }
    ASSIGN_OR_RETURN(int limit, NormalizePageSize(req->page_size()));
    const std::string fingerprint = absl::StrCat(
        "inv:", req->workspace_id(), ":", req->state(), ":", inviter);
    ListOptions options;
    options.limit = limit;
    if (!req->page_token().empty()) {
      ASSIGN_OR_RETURN(options.after,
                       DecodePageToken(req->page_token(), fingerprint));
    }
    const absl::Time now = Now();
    return deps_.repository->Transact([&](IdentityTx& tx) {
      RETURN_IF_ERROR(tx.GetWorkspace(req->workspace_id(), false).status());
      ASSIGN_OR_RETURN(InvitationPage page,
                       tx.ListInvitations(req->workspace_id(), req->state(),
                                          inviter, options, now));
      std::vector<std::string> ids;
      for (const auto& inv : page.invitations) ids.push_back(inv.user_id);
      ASSIGN_OR_RETURN(std::vector<UserRecord> users,
                       tx.GetUsers(req->workspace_id(), ids));
      absl::flat_hash_map<std::string, const UserRecord*> by_id;
      for (const auto& u : users) by_id[u.id] = &u;
      for (const auto& inv : page.invitations) {
        auto it = by_id.find(inv.user_id);
        if (it == by_id.end()) continue;
        *resp->add_invitations() = ToProto(inv, *it->second, now);
      }
      if (page.next.has_value()) {
        resp->set_next_page_token(EncodePageToken(*page.next, fingerprint));
      }
      resp->set_total_size(page.total);
      return absl::OkStatus();
    });
  }());
}

grpc::Status IdentityServiceImpl::ResendInvitation(
    grpc::ServerContext* ctx, const v1::ResendInvitationRequest* req,
    v1::Invitation* resp) {
  RequestScope scope(ctx, "ResendInvitation");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("invitation_id", req->invitation_id()));
    return Idempotent(
        absl::StrCat("ResendInvitation:", CallerId(caller)),
        req->idempotency_key(), *req, resp,
        [&](const SaveResponse& save) -> absl::Status {
          const absl::Time now = Now();
          const std::string token = NewToken(*deps_.random, 32, "gli_");
          InvitationRecord inv;
          UserRecord user;
          bool send = false;
          RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
            absl::StatusOr<InvitationRecord> found =
                tx.GetInvitation(req->invitation_id(), true);
            if (!found.ok() || !SameWorkspace(caller, found->workspace_id)) {
              return absl::NotFoundError(absl::StrCat(
                  "invitation ", req->invitation_id(), " does not exist"));
            }
            inv = *found;
            if (!MayManageInvitation(caller, inv)) {
              return absl::PermissionDeniedError(
                  "only admins and the member who sent it may resend an "
                  "invitation");
            }
            const InvitationState state = EffectiveState(inv, now);
            if (state == v1::Invitation::ACCEPTED ||
                state == v1::Invitation::REVOKED) {
              return absl::FailedPreconditionError(
                  absl::StrCat("the invitation is ", InvitationStateName(state),
                               "; invite the user again instead"));
            }
            ASSIGN_OR_RETURN(WorkspaceRecord ws,
                             tx.GetWorkspace(inv.workspace_id, false));
            ASSIGN_OR_RETURN(user, tx.GetUser(inv.user_id, false));
            inv.token_hash = Sha256Hex(token);
            inv.token_generation += 1;
            inv.state = v1::Invitation::PENDING;
            inv.expire_time = now + ws.invitation_ttl;
            RETURN_IF_ERROR(tx.UpdateInvitation(inv));
            send = (req->has_send_email() ? req->send_email() : true) &&
                   !user.email.empty();
            if (send) {
              std::string inviter_name = "An administrator";
              if (IsUser(caller)) {
                ASSIGN_OR_RETURN(UserRecord me,
                                 tx.GetUser(caller.user_id(), false));
                inviter_name = DisplayName(me);
              }
              RETURN_IF_ERROR(tx.Enqueue(
                  InvitationEmail(ws, user, inv, inviter_name, token)));
            }
            *resp = ToProto(inv, user, now);
            resp->set_invitation_url(InvitationUrl(token));
            return save(tx, *resp);
          }));
          if (send) Kick();
          return absl::OkStatus();
        });
  }());
}

grpc::Status IdentityServiceImpl::RevokeInvitation(
    grpc::ServerContext* ctx, const v1::RevokeInvitationRequest* req,
    v1::Invitation* resp) {
  RequestScope scope(ctx, "RevokeInvitation");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("invitation_id", req->invitation_id()));
    const absl::Time now = Now();
    return deps_.repository->Transact([&](IdentityTx& tx) {
      absl::StatusOr<InvitationRecord> found =
          tx.GetInvitation(req->invitation_id(), true);
      if (!found.ok() || !SameWorkspace(caller, found->workspace_id)) {
        return absl::NotFoundError(absl::StrCat(
            "invitation ", req->invitation_id(), " does not exist"));
      }
      InvitationRecord inv = *found;
      if (!MayManageInvitation(caller, inv)) {
        return absl::PermissionDeniedError(
            "only admins and the member who sent it may revoke an invitation");
      }
      if (inv.state == v1::Invitation::ACCEPTED) {
        return absl::FailedPreconditionError(
            "the invitation was already ACCEPTED; archive or suspend the user "
            "instead");
      }
      if (inv.state != v1::Invitation::REVOKED) {
        inv.state = v1::Invitation::REVOKED;
        RETURN_IF_ERROR(tx.UpdateInvitation(inv));
      }
      ASSIGN_OR_RETURN(UserRecord user, tx.GetUser(inv.user_id, false));
      *resp = ToProto(inv, user, now);
      return absl::OkStatus();
    });
  }());
}

namespace {

// One answer for every link that cannot be used (unknown, replaced, used,
// revoked, expired), so the refusal tells an attacker nothing.
absl::Status UnusableInvitationError() {
  return absl::NotFoundError(
      "this invitation link is not valid: it was already used, revoked, "
      "replaced by a newer link or has expired; ask for a new invitation "
      "(or sign in if you already accepted it)");
}

}  // namespace

grpc::Status IdentityServiceImpl::GetInvitation(
    grpc::ServerContext* ctx, const v1::GetInvitationRequest* req,
    v1::InvitationInfo* resp) {
  RequestScope scope(ctx, "GetInvitation");
  return scope.Done([&]() -> absl::Status {
    if (req->token().empty()) {
      return absl::InvalidArgumentError(
          "token: is required; copy it from the invitation link after "
          "#token=");
    }
    RETURN_IF_ERROR(CheckRate(absl::StrCat("token:addr:", ClientAddress(*ctx)),
                              options_.token_per_address, true,
                              "invitation lookups from this address"));
    const absl::Time now = Now();
    return deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(std::optional<InvitationRecord> inv,
                       tx.FindInvitationByToken(Sha256Hex(req->token())));
      if (!inv.has_value()) {
        return UnusableInvitationError();
      }
      ASSIGN_OR_RETURN(WorkspaceRecord ws,
                       tx.GetWorkspace(inv->workspace_id, false));
      ASSIGN_OR_RETURN(UserRecord user, tx.GetUser(inv->user_id, false));
      std::string inviter_name;
      if (!inv->inviter_id.empty()) {
        absl::StatusOr<UserRecord> inviter = tx.GetUser(inv->inviter_id, false);
        if (inviter.ok()) inviter_name = DisplayName(*inviter);
      }
      // Used, revoked and expired links look exactly like unknown ones.
      if (EffectiveState(*inv, now) != v1::Invitation::PENDING) {
        return UnusableInvitationError();
      }
      resp->set_workspace_display_name(ws.display_name);
      resp->set_email(user.email);
      resp->set_inviter_name(inviter_name);
      *resp->mutable_expire_time() = ToTimestamp(inv->expire_time);
      resp->set_state(EffectiveState(*inv, now));
      resp->set_username(user.username);
      resp->set_kind(user.kind);
      return absl::OkStatus();
    });
  }());
}

grpc::Status IdentityServiceImpl::AcceptInvitation(
    grpc::ServerContext* ctx, const v1::AcceptInvitationRequest* req,
    v1::Session* resp) {
  RequestScope scope(ctx, "AcceptInvitation");
  return scope.Done([&]() -> absl::Status {
    if (req->token().empty()) {
      return absl::InvalidArgumentError(
          "token: is required; copy it from the invitation link after "
          "#token=");
    }
    RETURN_IF_ERROR(ValidatePersonNames("first_name", req->first_name(),
                                        "last_name", req->last_name(), false));
    RETURN_IF_ERROR(CheckRate(absl::StrCat("token:addr:", ClientAddress(*ctx)),
                              options_.token_per_address, true,
                              "invitation attempts from this address"));
    const std::string token_hash = Sha256Hex(req->token());
    const absl::Time now = Now();
    UserRecord user;
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      ASSIGN_OR_RETURN(std::optional<InvitationRecord> inv,
                       tx.FindInvitationByToken(token_hash));
      if (!inv.has_value()) {
        return UnusableInvitationError();
      }
      const InvitationState state = EffectiveState(*inv, now);
      if (state != v1::Invitation::PENDING) return UnusableInvitationError();
      ASSIGN_OR_RETURN(user, tx.GetUser(inv->user_id, false));
      return absl::OkStatus();
    }));
    RETURN_IF_ERROR(
        ValidatePassword("password", req->password(), user.username));
    ASSIGN_OR_RETURN(std::string hash, deps_.hasher->Hash(req->password()));
    const std::string session_token = NewToken(*deps_.random, 32, "gls_");
    SessionRecord session;
    UserRecord activated;
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      // Single use: only one of concurrent accepts flips PENDING.
      ASSIGN_OR_RETURN(std::optional<InvitationRecord> inv,
                       tx.ConsumeInvitation(token_hash, now));
      if (!inv.has_value()) {
        return UnusableInvitationError();
      }
      ASSIGN_OR_RETURN(UserRecord u, tx.GetUser(inv->user_id, true));
      if (u.status != v1::INVITED) {
        return absl::FailedPreconditionError(
            absl::StrCat("the invited user is ", StatusName(u.status),
                         "; ask an admin to reactivate it"));
      }
      u.password_hash = hash;
      u.status = v1::ACTIVE;
      if (!req->first_name().empty() || !req->last_name().empty()) {
        u.first_name = req->first_name();
        u.last_name = req->last_name();
      }
      ASSIGN_OR_RETURN(activated, tx.UpdateUser(u, now));
      RETURN_IF_ERROR(tx.Enqueue(SyncUsersMessage(activated)));
      session = SessionRecord{NewUuid(*deps_.random),
                              Sha256Hex(session_token),
                              u.id,
                              u.workspace_id,
                              now,
                              now + options_.session_ttl};
      return tx.InsertSession(session);
    }));
    SyncNow(activated);
    Kick();
    resp->set_token(session_token);
    *resp->mutable_user() = ToProto(activated);
    *resp->mutable_expire_time() = ToTimestamp(session.expire_time);
    return absl::OkStatus();
  }());
}

// ---------------------------------------------------------------------------
// Access requests
// ---------------------------------------------------------------------------

grpc::Status IdentityServiceImpl::RequestAccess(
    grpc::ServerContext* ctx, const v1::RequestAccessRequest* req,
    v1::AccessRequest* resp) {
  RequestScope scope(ctx, "RequestAccess");
  return scope.Done([&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    RETURN_IF_ERROR(ValidateEmail("email", req->email()));
    RETURN_IF_ERROR(ValidatePersonNames("first_name", req->first_name(),
                                        "last_name", req->last_name(), true));
    RETURN_IF_ERROR(ValidateText("message", req->message(), kMaxMessageChars));
    if (!req->idempotency_key().empty()) {
      RETURN_IF_ERROR(ValidateIdempotencyKey(req->idempotency_key()));
    }
    const std::string email_lc = absl::AsciiStrToLower(req->email());
    RETURN_IF_ERROR(CheckRate(absl::StrCat("ra:addr:", ClientAddress(*ctx)),
                              options_.request_access_per_address, true,
                              "access requests from this address"));
    RETURN_IF_ERROR(
        CheckRate(absl::StrCat("ra:email:", req->workspace_id(), ":", email_lc),
                  options_.request_access_per_email, true,
                  "access requests for this email"));
    return Idempotent(
        absl::StrCat("RequestAccess:", req->workspace_id()),
        req->idempotency_key(), *req, resp,
        [&](const SaveResponse& save) -> absl::Status {
          const absl::Time now = Now();
          AccessRequestRecord ar;
          UserRecord user;
          bool emails = false;
          absl::Status s;
          // The requester sees only what it sent, never the user's state.
          auto respond = [&](IdentityTx& tx) {
            *resp = ToProto(ar, user);
            v1::User* shown = resp->mutable_user();
            shown->set_status(v1::REQUESTED);
            shown->set_kind(v1::GUEST);
            shown->clear_metadata();
            shown->clear_access_expire_time();
            return save(tx, *resp);
          };
          // A concurrent request for the same email may win the insert:
          // retry, and then reuse what it created.
          for (int attempt = 0; attempt < 3; ++attempt) {
            emails = false;
            s = deps_.repository->Transact([&](IdentityTx& tx) {
              ASSIGN_OR_RETURN(WorkspaceRecord ws,
                               tx.GetWorkspace(req->workspace_id(), false));
              if (!ws.request_access_enabled) {
                return absl::FailedPreconditionError(
                    "this workspace does not accept access requests; ask an "
                    "admin for an invitation");
              }
              RETURN_IF_ERROR(CheckEmailDomain(req->email(),
                                               ws.allowed_email_domains,
                                               ws.blocked_email_domains));
              ASSIGN_OR_RETURN(std::optional<UserRecord> existing,
                               tx.FindUserByUsername(ws.id, email_lc, true));
              ar = AccessRequestRecord{};
              ar.workspace_id = ws.id;
              ar.email = req->email();
              ar.first_name = req->first_name();
              ar.last_name = req->last_name();
              ar.message = req->message();
              ar.state = v1::AccessRequest::PENDING;
              ar.create_time = now;
              if (existing.has_value() && existing->status != v1::REQUESTED) {
                // Known user: answer like a fresh request, with stable ids
                // derived from the email, and reveal nothing of the user.
                const std::string seed = absl::StrCat(ws.id, ":", email_lc);
                user = UserRecord{};
                user.id = DerivedUuid(options_.internal_token, "user:" + seed);
                user.workspace_id = ws.id;
                user.username = email_lc;
                user.email = req->email();
                user.first_name = req->first_name();
                user.last_name = req->last_name();
                user.kind = v1::GUEST;
                user.status = v1::REQUESTED;
                user.create_time = user.update_time = now;
                ar.id = DerivedUuid(options_.internal_token, "ar:" + seed);
                ar.user_id = user.id;
                return respond(tx);
              }
              if (existing.has_value()) {
                user = *existing;
                ASSIGN_OR_RETURN(std::optional<AccessRequestRecord> pending,
                                 tx.FindPendingAccessRequest(user.id));
                if (pending.has_value()) {
                  ar = *pending;
                } else {
                  ar.id = NewUuid(*deps_.random);
                  ar.user_id = user.id;
                  RETURN_IF_ERROR(tx.InsertAccessRequest(ar));
                }
              } else {
                user = UserRecord{};
                user.id = NewUuid(*deps_.random);
                user.workspace_id = ws.id;
                user.username = email_lc;
                user.email = req->email();
                user.first_name = req->first_name();
                user.last_name = req->last_name();
                user.kind = v1::GUEST;
                user.status = v1::REQUESTED;
                user.create_time = user.update_time = now;
                RETURN_IF_ERROR(tx.InsertUser(user));
                RETURN_IF_ERROR(tx.Enqueue(SyncUsersMessage(user)));
                ar.id = NewUuid(*deps_.random);
                ar.user_id = user.id;
                RETURN_IF_ERROR(tx.InsertAccessRequest(ar));
              }
              // Every admin is told, at most once a day per requester
              // (notification enforces the dedupe key, also under races).
              ASSIGN_OR_RETURN(std::vector<UserRecord> admins,
                               tx.ListAdmins(ws.id));
              const std::string day = UtcDate(now);
              std::string base = options_.public_url;
              while (!base.empty() && base.back() == '/') base.pop_back();
              for (const UserRecord& admin : admins) {
                if (admin.email.empty()) continue;
                notification::v1::SendEmailRequest email;
                email.set_workspace_id(ws.id);
                email.set_template_("access_request");
                email.set_to(admin.email);
                email.set_to_name(DisplayName(admin));
                auto& vars = *email.mutable_variables();
                vars["requester_email"] = req->email();
                vars["requester_name"] = std::string(absl::StripAsciiWhitespace(
                    absl::StrCat(req->first_name(), " ", req->last_name())));
                vars["message"] = req->message();
                vars["workspace_name"] = ws.display_name;
                vars["review_url"] = absl::StrCat(base, "/workspaces/", ws.id,
                                                  "/accessRequests");
                email.set_category("access_request");
                const std::string dedupe = absl::StrCat(
                    "access_request:", admin.id, ":", email_lc, ":", day);
                email.set_dedupe_key(dedupe);
                email.mutable_dedupe_window()->set_seconds(24 * 3600);
                email.set_idempotency_key(dedupe);
                email.set_recipient_user_id(admin.id);
                RETURN_IF_ERROR(tx.Enqueue(
                    {kTopicSendEmail, email.SerializeAsString(), dedupe}));
                emails = true;
              }
              return respond(tx);
            });
            if (s.code() != absl::StatusCode::kAlreadyExists &&
                s.code() != absl::StatusCode::kAborted) {
              break;
            }
          }
          RETURN_IF_ERROR(s);
          if (emails) Kick();
          return absl::OkStatus();
        });
  }());
}

grpc::Status IdentityServiceImpl::ListAccessRequests(
    grpc::ServerContext* ctx, const v1::ListAccessRequestsRequest* req,
    v1::ListAccessRequestsResponse* resp) {
  RequestScope scope(ctx, "ListAccessRequests");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("workspace_id", req->workspace_id()));
    RETURN_IF_ERROR(RequireUserAdmin(caller, req->workspace_id()));
    if (!v1::AccessRequest::State_IsValid(req->state())) {
      return absl::InvalidArgumentError(
          "state: unknown value; use PENDING, APPROVED or DENIED");
    }
    ASSIGN_OR_RETURN(int limit, NormalizePageSize(req->page_size()));
    const std::string fingerprint =
        absl::StrCat("ar:", req->workspace_id(), ":", req->state());
    ListOptions options;
    options.limit = limit;
    if (!req->page_token().empty()) {
      ASSIGN_OR_RETURN(options.after,
                       DecodePageToken(req->page_token(), fingerprint));
    }
    return deps_.repository->Transact([&](IdentityTx& tx) {
      RETURN_IF_ERROR(tx.GetWorkspace(req->workspace_id(), false).status());
      ASSIGN_OR_RETURN(
          std::vector<AccessRequestRecord> rows,
          tx.ListAccessRequests(req->workspace_id(), req->state(), options));
      const int n = std::min<int>(rows.size(), limit);
      std::vector<std::string> ids;
      for (int i = 0; i < n; ++i) ids.push_back(rows[i].user_id);
      ASSIGN_OR_RETURN(std::vector<UserRecord> users,
                       tx.GetUsers(req->workspace_id(), ids));
      absl::flat_hash_map<std::string, const UserRecord*> by_id;
      for (const auto& u : users) by_id[u.id] = &u;
      for (int i = 0; i < n; ++i) {
        auto it = by_id.find(rows[i].user_id);
        if (it == by_id.end()) continue;
        *resp->add_access_requests() = ToProto(rows[i], *it->second);
      }
      if (static_cast<int>(rows.size()) > limit) {
        resp->set_next_page_token(EncodePageToken(
            {absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", rows[n - 1].create_time,
                              absl::UTCTimeZone()),
             rows[n - 1].id},
            fingerprint));
      }
      return absl::OkStatus();
    });
  }());
}

grpc::Status IdentityServiceImpl::ApproveAccessRequest(
    grpc::ServerContext* ctx, const v1::ApproveAccessRequestRequest* req,
    v1::ApproveAccessRequestResponse* resp) {
  RequestScope scope(ctx, "ApproveAccessRequest");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("access_request_id", req->access_request_id()));
    RETURN_IF_ERROR(ValidateGrants(req->group_ids(), req->app_privileges()));
    return Idempotent(
        absl::StrCat("ApproveAccessRequest:", CallerId(caller)),
        req->idempotency_key(), *req, resp,
        [&](const SaveResponse& save) -> absl::Status {
          AccessRequestRecord ar;
          UserRecord user;
          RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
            absl::StatusOr<AccessRequestRecord> found =
                tx.GetAccessRequest(req->access_request_id(), false);
            if (!found.ok() || !SameWorkspace(caller, found->workspace_id)) {
              return absl::NotFoundError(absl::StrCat("access request ",
                                                      req->access_request_id(),
                                                      " does not exist"));
            }
            ar = *found;
            ASSIGN_OR_RETURN(user, tx.GetUser(ar.user_id, false));
            return absl::OkStatus();
          }));
          RETURN_IF_ERROR(RequireUserAdmin(caller, ar.workspace_id));
          if (ar.state != v1::AccessRequest::PENDING) {
            return absl::FailedPreconditionError(
                absl::StrCat("the access request is already ",
                             AccessRequestStateName(ar.state)));
          }
          if (user.status != v1::REQUESTED) {
            return absl::FailedPreconditionError(
                absl::StrCat("the requesting user is ", StatusName(user.status),
                             ", no longer REQUESTED"));
          }
          InviteSpec spec;
          spec.workspace_id = ar.workspace_id;
          spec.email = user.email;
          spec.username = user.username;
          spec.first_name = user.first_name;
          spec.last_name = user.last_name;
          spec.kind = v1::GUEST;
          spec.group_ids.assign(req->group_ids().begin(),
                                req->group_ids().end());
          spec.app_privileges.assign(req->app_privileges().begin(),
                                     req->app_privileges().end());
          if (req->has_access_expire_time()) {
            spec.access_expire_time = FromTimestamp(req->access_expire_time());
          }
          spec.send_email = req->has_send_email() ? req->send_email() : true;
          spec.existing_user = user;
          spec.access_request_id = ar.id;
          ar.state = v1::AccessRequest::APPROVED;
          RETURN_IF_ERROR(
              Invite(*ctx, caller, spec,
                     [&](IdentityTx& tx, const v1::Invitation& made) {
                       *resp->mutable_access_request() = ToProto(ar, user);
                       *resp->mutable_access_request()->mutable_user() =
                           made.user();
                       *resp->mutable_invitation() = made;
                       return save(tx, *resp);
                     })
                  .status());
          return absl::OkStatus();
        });
  }());
}

grpc::Status IdentityServiceImpl::DenyAccessRequest(
    grpc::ServerContext* ctx, const v1::DenyAccessRequestRequest* req,
    v1::AccessRequest* resp) {
  RequestScope scope(ctx, "DenyAccessRequest");
  return scope.Done([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, Caller(*ctx));
    RETURN_IF_ERROR(ValidateId("access_request_id", req->access_request_id()));
    const absl::Time now = Now();
    bool changed = false;
    RETURN_IF_ERROR(deps_.repository->Transact([&](IdentityTx& tx) {
      absl::StatusOr<AccessRequestRecord> found =
          tx.GetAccessRequest(req->access_request_id(), true);
      if (!found.ok() || !SameWorkspace(caller, found->workspace_id)) {
        return absl::NotFoundError(absl::StrCat(
            "access request ", req->access_request_id(), " does not exist"));
      }
      AccessRequestRecord ar = *found;
      RETURN_IF_ERROR(RequireUserAdmin(caller, ar.workspace_id));
      ASSIGN_OR_RETURN(UserRecord user, tx.GetUser(ar.user_id, true));
      if (ar.state == v1::AccessRequest::APPROVED) {
        return absl::FailedPreconditionError(
            "the access request was already APPROVED; archive the user "
            "instead");
      }
      if (ar.state == v1::AccessRequest::PENDING) {
        RETURN_IF_ERROR(
            tx.SetAccessRequestState(ar.id, v1::AccessRequest::DENIED, now));
        ar.state = v1::AccessRequest::DENIED;
        if (user.status == v1::REQUESTED) {
          user.status = v1::ARCHIVED;
          ASSIGN_OR_RETURN(user, tx.UpdateUser(user, now));
          RETURN_IF_ERROR(tx.Enqueue(SyncUsersMessage(user)));
          changed = true;
        }
      }
      *resp = ToProto(ar, user);
      return absl::OkStatus();
    }));
    if (changed) Kick();
    return absl::OkStatus();
  }());
}

}  // namespace guestlist::identity
