// gRPC handlers of guestlist.identity.v1.IdentityService: authenticate the
// caller, check its right and workspace, validate, then run the domain rules
// against the repository and the peers. Bulk import is delegated to
// ImportHandlers.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/auth.h"
#include "common/clock.h"
#include "common/random.h"
#include "guestlist/identity/v1/identity.grpc.pb.h"
#include "services/identity/api/import_handlers.h"
#include "services/identity/clients/peers.h"
#include "services/identity/domain/password.h"
#include "services/identity/domain/rules.h"
#include "services/identity/storage/repository.h"

namespace guestlist::identity {

struct IdentityOptions {
  std::string operator_token;
  std::string internal_token;
  // Base of invitation links: <public_url>/invite#token=<token>.
  std::string public_url = "http://127.0.0.1:8080";
  absl::Duration session_ttl = absl::Hours(12);
  RateLimit login_per_account{10, absl::Minutes(15)};
  RateLimit login_per_address{100, absl::Minutes(15)};
  RateLimit request_access_per_address{20, absl::Hours(1)};
  RateLimit request_access_per_email{5, absl::Hours(1)};
  // GetInvitation / AcceptInvitation per client address.
  RateLimit token_per_address{300, absl::Minutes(1)};
};

struct IdentityDeps {
  Repository* repository = nullptr;
  MembershipClient* membership = nullptr;
  NotificationClient* notification = nullptr;
  PasswordHasher* hasher = nullptr;
  const Clock* clock = nullptr;
  RandomSource* random = nullptr;
  ImportHandlers* imports = nullptr;
  // Called after a commit that enqueued outbox rows.
  std::function<void()> kick_outbox;
};

class IdentityServiceImpl final : public v1::IdentityService::Service {
 public:
  IdentityServiceImpl(IdentityOptions options, IdentityDeps deps);

  // Resolves a bearer token (also used by the Authenticate RPC).
  absl::StatusOr<Principal> AuthenticateToken(const std::string& token);

  grpc::Status CreateWorkspace(grpc::ServerContext* ctx,
                               const v1::CreateWorkspaceRequest* req,
                               v1::Workspace* resp) override;
  grpc::Status GetWorkspace(grpc::ServerContext* ctx,
                            const v1::GetWorkspaceRequest* req,
                            v1::Workspace* resp) override;
  grpc::Status UpdateWorkspace(grpc::ServerContext* ctx,
                               const v1::UpdateWorkspaceRequest* req,
                               v1::Workspace* resp) override;
  grpc::Status Login(grpc::ServerContext* ctx, const v1::LoginRequest* req,
                     v1::Session* resp) override;
  grpc::Status Logout(grpc::ServerContext* ctx, const v1::LogoutRequest* req,
                      google::protobuf::Empty* resp) override;
  grpc::Status Authenticate(grpc::ServerContext* ctx,
                            const v1::AuthenticateRequest* req,
                            v1::Principal* resp) override;
  grpc::Status InviteUser(grpc::ServerContext* ctx,
                          const v1::InviteUserRequest* req,
                          v1::Invitation* resp) override;
  grpc::Status ListInvitations(grpc::ServerContext* ctx,
                               const v1::ListInvitationsRequest* req,
                               v1::ListInvitationsResponse* resp) override;
  grpc::Status ResendInvitation(grpc::ServerContext* ctx,
                                const v1::ResendInvitationRequest* req,
                                v1::Invitation* resp) override;
  grpc::Status RevokeInvitation(grpc::ServerContext* ctx,
                                const v1::RevokeInvitationRequest* req,
                                v1::Invitation* resp) override;
  grpc::Status GetInvitation(grpc::ServerContext* ctx,
                             const v1::GetInvitationRequest* req,
                             v1::InvitationInfo* resp) override;
  grpc::Status AcceptInvitation(grpc::ServerContext* ctx,
                                const v1::AcceptInvitationRequest* req,
                                v1::Session* resp) override;
  grpc::Status GetUser(grpc::ServerContext* ctx, const v1::GetUserRequest* req,
                       v1::User* resp) override;
  grpc::Status UpdateUser(grpc::ServerContext* ctx,
                          const v1::UpdateUserRequest* req,
                          v1::User* resp) override;
  grpc::Status ListUsers(grpc::ServerContext* ctx,
                         const v1::ListUsersRequest* req,
                         v1::ListUsersResponse* resp) override;
  grpc::Status SuspendUser(grpc::ServerContext* ctx,
                           const v1::SuspendUserRequest* req,
                           v1::User* resp) override;
  grpc::Status ReactivateUser(grpc::ServerContext* ctx,
                              const v1::ReactivateUserRequest* req,
                              v1::User* resp) override;
  grpc::Status ArchiveUser(grpc::ServerContext* ctx,
                           const v1::ArchiveUserRequest* req,
                           v1::User* resp) override;
  grpc::Status ConvertGuestToMember(grpc::ServerContext* ctx,
                                    const v1::ConvertGuestToMemberRequest* req,
                                    v1::User* resp) override;
  grpc::Status CreateApiKey(grpc::ServerContext* ctx,
                            const v1::CreateApiKeyRequest* req,
                            v1::ApiKey* resp) override;
  grpc::Status ListApiKeys(grpc::ServerContext* ctx,
                           const v1::ListApiKeysRequest* req,
                           v1::ListApiKeysResponse* resp) override;
  grpc::Status DeleteApiKey(grpc::ServerContext* ctx,
                            const v1::DeleteApiKeyRequest* req,
                            google::protobuf::Empty* resp) override;
  grpc::Status RequestAccess(grpc::ServerContext* ctx,
                             const v1::RequestAccessRequest* req,
                             v1::AccessRequest* resp) override;
  grpc::Status ListAccessRequests(
      grpc::ServerContext* ctx, const v1::ListAccessRequestsRequest* req,
      v1::ListAccessRequestsResponse* resp) override;
  grpc::Status ApproveAccessRequest(
      grpc::ServerContext* ctx, const v1::ApproveAccessRequestRequest* req,
      v1::ApproveAccessRequestResponse* resp) override;
  grpc::Status DenyAccessRequest(grpc::ServerContext* ctx,
                                 const v1::DenyAccessRequestRequest* req,
                                 v1::AccessRequest* resp) override;
  grpc::Status GetImportTemplate(grpc::ServerContext* ctx,
                                 const v1::GetImportTemplateRequest* req,
                                 google::api::HttpBody* resp) override;
  grpc::Status ImportUsers(grpc::ServerContext* ctx,
                           grpc::ServerReader<v1::ImportUsersRequest>* reader,
                           v1::ImportReport* resp) override;
  grpc::Status GetImport(grpc::ServerContext* ctx,
                         const v1::GetImportRequest* req,
                         v1::ImportReport* resp) override;
  grpc::Status GetImportErrors(grpc::ServerContext* ctx,
                               const v1::GetImportErrorsRequest* req,
                               google::api::HttpBody* resp) override;
  grpc::Status ExportUsers(grpc::ServerContext* ctx,
                           const v1::ExportUsersRequest* req,
                           google::api::HttpBody* resp) override;
  grpc::Status ListAdmins(grpc::ServerContext* ctx,
                          const v1::ListAdminsRequest* req,
                          v1::ListAdminsResponse* resp) override;
  grpc::Status BatchGetUsers(grpc::ServerContext* ctx,
                             const v1::BatchGetUsersRequest* req,
                             v1::BatchGetUsersResponse* resp) override;

 private:
  // What an invitation is made of (InviteUser and ApproveAccessRequest).
  struct InviteSpec {
    std::string workspace_id;
    std::string email;
    std::string username;
    std::string first_name;
    std::string last_name;
    UserKind kind = v1::GUEST;
    std::vector<std::string> group_ids;
    std::vector<v1::AppPrivilegeGrant> app_privileges;
    std::optional<absl::Time> access_expire_time;
    bool send_email = true;
    std::string metadata_json;
    // ApproveAccessRequest: the REQUESTED user and its request.
    std::optional<UserRecord> existing_user;
    std::string access_request_id;
  };

  absl::Time Now() const;
  absl::StatusOr<Principal> Caller(const grpc::ServerContext& ctx);
  std::string ClientAddress(const grpc::ServerContext& ctx) const;
  absl::Status CheckRate(const std::string& bucket, const RateLimit& limit,
                         bool hit, const std::string& what);
  void Kick();
  // Pushes the user to membership right after a commit, so the caller's
  // next call sees the change; the outbox row already queued is the
  // guarantee when this best-effort push fails.
  void SyncNow(const UserRecord& user);

  // Saves the finished response in the transaction that commits the work,
  // so a crash can never keep the work and lose the response (a same-key
  // retry would then fail). No-op when the call has no idempotency key.
  using SaveResponse = std::function<absl::Status(
      IdentityTx& tx, const google::protobuf::Message& response)>;

  // Runs `body` once per idempotency key: a repeat with the same request
  // gets the stored response; with another request INVALID_ARGUMENT. `body`
  // must call the SaveResponse it is given as the last step of the
  // transaction that commits its work.
  absl::Status Idempotent(
      const std::string& scope, const std::string& key,
      const google::protobuf::Message& request,
      google::protobuf::Message* response,
      const std::function<absl::Status(const SaveResponse& save)>& body);

  // `on_commit` runs last inside the committing transaction with the
  // finished invitation (to save an idempotent response).
  absl::StatusOr<v1::Invitation> Invite(
      const grpc::ServerContext& ctx, const Principal& caller, InviteSpec spec,
      const std::function<absl::Status(IdentityTx&, const v1::Invitation&)>&
          on_commit);
  absl::Status ValidateInviteSpec(const InviteSpec& spec);
  absl::Status CheckMemberMayInvite(const grpc::ServerContext& ctx,
                                    const Principal& caller,
                                    const WorkspaceRecord& ws,
                                    const InviteSpec& spec);
  absl::StatusOr<UserRecord> LoadUserFor(const Principal& caller,
                                         const std::string& user_id);
  OutboxMessage SyncUsersMessage(const UserRecord& user) const;
  OutboxMessage InvitationEmail(const WorkspaceRecord& ws,
                                const UserRecord& user,
                                const InvitationRecord& inv,
                                const std::string& inviter_name,
                                const std::string& token) const;
  std::string InvitationUrl(const std::string& token) const;
  absl::StatusOr<v1::User> ChangeStatus(
      const Principal& caller, const std::string& user_id,
      const std::function<absl::StatusOr<Transition>(const UserRecord&)>& rule,
      std::optional<std::optional<absl::Time>> new_expire);

  const IdentityOptions options_;
  const IdentityDeps deps_;
  const std::string operator_token_hash_;
};

}  // namespace guestlist::identity
