// gRPC handlers of guestlist.membership.v1.MembershipService: authenticate
// the caller, convert between proto and domain, and delegate to the
// Authorizer (who may do what, Check; api/authorizer.h) and the store. The
// rules themselves live in domain/.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/types/span.h"
#include "common/auth.h"
#include "common/blocking_pool.h"
#include "common/clock.h"
#include "common/idempotency.h"
#include "common/pg.h"
#include "guestlist/membership/v1/membership.grpc.pb.h"
#include "services/membership/api/authorizer.h"
#include "services/membership/storage/check_cache.h"
#include "services/membership/storage/store.h"

namespace guestlist::membership {

// Check and BatchCheck use gRPC's callback API: answered from memory they
// finish on gRPC's own thread, with no hand-off to a request thread (half
// the CPU of a synchronous call in tests/bench/membership); a call that
// needs the database or identity moves to `blocking_`. Every other method
// is synchronous.
using MembershipServiceBase = v1::MembershipService::WithCallbackMethod_Check<
    v1::MembershipService::WithCallbackMethod_BatchCheck<
        v1::MembershipService::Service>>;

class MembershipServiceImpl final : public MembershipServiceBase {
 public:
  // `auth`, `pool`, `clock` and `cache` must outlive the service. Without
  // a cache every Check reads the database.
  MembershipServiceImpl(Authenticator* auth, pg::Pool* pool, const Clock* clock,
                        CheckCache* cache = nullptr);

  grpc::Status CreateApp(grpc::ServerContext* ctx,
                         const v1::CreateAppRequest* req,
                         v1::App* resp) override;
  grpc::Status ListApps(grpc::ServerContext* ctx,
                        const v1::ListAppsRequest* req,
                        v1::ListAppsResponse* resp) override;
  grpc::Status DeleteApp(grpc::ServerContext* ctx,
                         const v1::DeleteAppRequest* req,
                         google::protobuf::Empty* resp) override;
  grpc::Status CreateGroup(grpc::ServerContext* ctx,
                           const v1::CreateGroupRequest* req,
                           v1::Group* resp) override;
  grpc::Status ListGroups(grpc::ServerContext* ctx,
                          const v1::ListGroupsRequest* req,
                          v1::ListGroupsResponse* resp) override;
  grpc::Status GetGroup(grpc::ServerContext* ctx,
                        const v1::GetGroupRequest* req,
                        v1::Group* resp) override;
  grpc::Status UpdateGroup(grpc::ServerContext* ctx,
                           const v1::UpdateGroupRequest* req,
                           v1::Group* resp) override;
  grpc::Status DeleteGroup(grpc::ServerContext* ctx,
                           const v1::DeleteGroupRequest* req,
                           google::protobuf::Empty* resp) override;
  grpc::Status AddGroupMember(grpc::ServerContext* ctx,
                              const v1::AddGroupMemberRequest* req,
                              v1::GroupMember* resp) override;
  grpc::Status ListGroupMembers(grpc::ServerContext* ctx,
                                const v1::ListGroupMembersRequest* req,
                                v1::ListGroupMembersResponse* resp) override;
  grpc::Status RemoveGroupMember(grpc::ServerContext* ctx,
                                 const v1::RemoveGroupMemberRequest* req,
                                 google::protobuf::Empty* resp) override;
  grpc::Status SetAppPrivilege(grpc::ServerContext* ctx,
                               const v1::SetAppPrivilegeRequest* req,
                               v1::UserAppPrivilege* resp) override;
  grpc::Status RemoveAppPrivilege(grpc::ServerContext* ctx,
                                  const v1::RemoveAppPrivilegeRequest* req,
                                  google::protobuf::Empty* resp) override;
  grpc::Status ListAppAccess(grpc::ServerContext* ctx,
                             const v1::ListAppAccessRequest* req,
                             v1::ListAppAccessResponse* resp) override;
  grpc::Status GetLicenseUsage(grpc::ServerContext* ctx,
                               const v1::GetLicenseUsageRequest* req,
                               v1::LicenseUsage* resp) override;
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const v1::CheckRequest* req,
                                  v1::CheckResponse* resp) override;
  grpc::ServerUnaryReactor* BatchCheck(grpc::CallbackServerContext* ctx,
                                       const v1::BatchCheckRequest* req,
                                       v1::BatchCheckResponse* resp) override;
  grpc::Status ListDirectory(grpc::ServerContext* ctx,
                             const v1::ListDirectoryRequest* req,
                             v1::ListDirectoryResponse* resp) override;
  grpc::Status SyncUsers(grpc::ServerContext* ctx,
                         const v1::SyncUsersRequest* req,
                         v1::SyncUsersResponse* resp) override;
  grpc::Status SyncWorkspace(grpc::ServerContext* ctx,
                             const v1::SyncWorkspaceRequest* req,
                             v1::SyncWorkspaceResponse* resp) override;
  grpc::Status ApplyGrants(grpc::ServerContext* ctx,
                           const v1::ApplyGrantsRequest* req,
                           v1::ApplyGrantsResponse* resp) override;
  grpc::Status DeleteUsers(grpc::ServerContext* ctx,
                           const v1::DeleteUsersRequest* req,
                           v1::DeleteUsersResponse* resp) override;
  grpc::Status GetUserAccess(grpc::ServerContext* ctx,
                             const v1::GetUserAccessRequest* req,
                             v1::GetUserAccessResponse* resp) override;
  grpc::Status ListAppRecipients(grpc::ServerContext* ctx,
                                 const v1::ListAppRecipientsRequest* req,
                                 v1::ListAppRecipientsResponse* resp) override;

  using Caller = ::guestlist::membership::Caller;

 private:
  // Authenticates the call; the rest is Authorizer::Resolve.
  absl::StatusOr<Caller> Resolve(const grpc::ServerContextBase& ctx,
                                 bool load_copy = true);

  // The caller (or why it is refused) when everything `checks` reads is
  // in memory: the caller authenticates from memory and the cache holds
  // every entry the checks read. nullopt when serving needs I/O.
  std::optional<absl::StatusOr<Caller>> CallerFromMemory(
      const grpc::ServerContextBase& ctx,
      absl::Span<const v1::CheckRequest* const> checks);
  // Serves the call with `body(caller)`, logged as `method`: right here
  // when `caller` is known from memory, else on `blocking_` after
  // resolving it there (RESOURCE_EXHAUSTED when its queue is full).
  template <typename Fn>
  grpc::ServerUnaryReactor* React(grpc::CallbackServerContext* ctx,
                                  const char* method,
                                  std::optional<absl::StatusOr<Caller>> caller,
                                  Fn body);
  absl::Status RequireInternal(const grpc::ServerContext& ctx);

  absl::Status DoCreateApp(const grpc::ServerContext& ctx,
                           const v1::CreateAppRequest& req, v1::App* resp);
  absl::Status DoCreateGroup(const grpc::ServerContext& ctx,
                             const v1::CreateGroupRequest& req,
                             v1::Group* resp);
  absl::Status DoUpdateGroup(const grpc::ServerContext& ctx,
                             const v1::UpdateGroupRequest& req,
                             v1::Group* resp);
  absl::Status DoAddGroupMember(const grpc::ServerContext& ctx,
                                const v1::AddGroupMemberRequest& req,
                                v1::GroupMember* resp);
  absl::Status DoApplyGrants(const v1::ApplyGrantsRequest& req,
                             v1::ApplyGrantsResponse* resp);

  // Runs `create` unless (scope, key) already has a response; stores the
  // response afterwards.
  template <typename Req, typename Resp, typename Fn>
  absl::Status Idempotent(const std::string& scope, const std::string& key,
                          const Req& req, Resp* resp, Fn create);

  // Runs a handler that changes data; on success waits until this
  // replica's Check cache has applied the change notifications, so its own
  // writes are visible to its next Check (other replicas follow through
  // LISTEN/NOTIFY within milliseconds).
  template <typename Fn>
  grpc::Status ServeWrite(grpc::ServerContext* ctx, const char* method,
                          Fn body);

  Authenticator* auth_;
  CheckCache* cache_;
  BlockingPool blocking_;
  pg::Pool* pool_;
  const Clock* clock_;
  MembershipStore store_;
  Authorizer authz_;  // reads through store_ (and cache_ for Check)
  IdempotencyStore idempotency_;
};

}  // namespace guestlist::membership
