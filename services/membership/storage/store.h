// PostgreSQL storage of membership: the users/workspaces copies, apps,
// groups, memberships, privileges, licence accounting and the facts a
// Check needs (one query per Check). Every change that can take a licence
// locks the workspace row (SELECT ... FOR UPDATE) first, in the same
// transaction, so concurrent grants are serialized per workspace. Licence
// usage is read from counters on that row, kept exact by triggers (V003),
// so the locked section is O(1) in the workspace's size.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/pg.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "services/membership/domain/licenses.h"
#include "services/membership/domain/model.h"
#include "services/membership/domain/permissions.h"
#include "services/membership/storage/repository.h"

namespace guestlist::membership {

// Who is listing: decides what ListGroups / ListDirectory / ListApps show.
struct Viewer {
  // kAdmin also for the operator, internal credential and API keys.
  Kind kind = Kind::kAdmin;
  std::string user_id;  // empty for non-user principals
};

class MembershipStore final : public MembershipRepository {
 public:
  MembershipStore(pg::Pool* pool, const Clock* clock)
      : pool_(pool), clock_(clock) {}

  // --- copies fed by identity -------------------------------------------
  // nullopt when the workspace was never synced.
  absl::StatusOr<std::optional<Workspace>> GetWorkspace(
      const std::string& id) override;
  // Errors: FailedPrecondition when lowering license_count below usage.
  absl::StatusOr<LicenseUsage> SyncWorkspace(const v1::WorkspaceRecord& record);
  // All-or-nothing upsert (newer versions only), licence-checked.
  // Errors: FailedPrecondition (licences, unknown workspace).
  absl::Status SyncUsers(const std::vector<v1::UserRecord>& users);
  absl::Status DeleteUsers(const std::string& workspace_id,
                           const std::vector<std::string>& ids);
  // nullopt for an unknown user.
  absl::StatusOr<std::optional<User>> GetUser(const std::string& id) override;
  absl::StatusOr<LicenseUsage> GetLicenseUsage(const std::string& ws);

  // --- authorization ----------------------------------------------------
  // Loads everything Decide() needs in one query.
  absl::StatusOr<CheckFacts> LoadFacts(const std::string& subject_id,
                                       const Resource& resource) override;

  // --- apps -------------------------------------------------------------
  // Errors: AlreadyExists (slug taken).
  absl::StatusOr<v1::App> CreateApp(const std::string& ws,
                                    const std::string& slug,
                                    const std::string& name);
  absl::StatusOr<std::optional<v1::App>> GetApp(const std::string& id);
  absl::Status DeleteApp(const std::string& id);
  // Guests see only apps they hold a privilege on.
  absl::StatusOr<v1::ListAppsResponse> ListApps(const std::string& ws,
                                                const Viewer& viewer,
                                                int page_size,
                                                const std::string& token);

  // --- groups -----------------------------------------------------------
  // Creates the group; `creator_id` (non-empty) becomes its GROUP_ADMIN.
  // Errors: AlreadyExists (name taken, case-insensitive).
  absl::StatusOr<v1::Group> CreateGroup(const std::string& ws,
                                        const v1::Group& group,
                                        const std::string& creator_id);
  absl::StatusOr<std::optional<v1::Group>> GetGroup(
      const std::string& id) override;
  absl::StatusOr<Role> GetRole(const std::string& group_id,
                               const std::string& user_id) override;
  absl::StatusOr<v1::ListGroupsResponse> ListGroups(const std::string& ws,
                                                    const Viewer& viewer,
                                                    int page_size,
                                                    const std::string& token);
  // Applies the named fields (name, description, visibility,
  // members_can_invite, members_can_publish).
  absl::StatusOr<v1::Group> UpdateGroup(const std::string& id,
                                        const v1::Group& group,
                                        const std::vector<std::string>& paths);
  // Deletes the group (memberships cascade).
  absl::Status DeleteGroup(const std::string& id);

  // --- memberships and privileges ----------------------------------------
  // Adds or changes a membership, licence-checked under the workspace lock.
  // Errors: NotFound (user), InvalidArgument (GROUP_ADMIN for a guest),
  // FailedPrecondition (licences; user not active or invited).
  absl::StatusOr<v1::GroupMember> AddGroupMember(const std::string& ws,
                                                 const std::string& group_id,
                                                 const std::string& user_id,
                                                 Role role);
  absl::StatusOr<v1::ListGroupMembersResponse> ListGroupMembers(
      const std::string& group_id, int page_size, const std::string& token);
  // Errors: NotFound (not a member), FailedPrecondition (last group admin
  // of a group that has other members).
  absl::Status RemoveGroupMember(const std::string& group_id,
                                 const std::string& user_id);
  // Errors: NotFound (user not in the app's workspace).
  absl::StatusOr<v1::UserAppPrivilege> SetAppPrivilege(
      const std::string& ws, const std::string& app_id,
      const std::string& user_id, int privilege);
  absl::Status RemoveAppPrivilege(const std::string& app_id,
                                  const std::string& user_id);

  // --- listings ---------------------------------------------------------
  absl::StatusOr<v1::ListAppAccessResponse> ListAppAccess(
      const v1::ListAppAccessRequest& request);
  absl::StatusOr<v1::ListDirectoryResponse> ListDirectory(
      const v1::ListDirectoryRequest& request, const Viewer& viewer);
  absl::StatusOr<v1::GetUserAccessResponse> GetUserAccess(
      const v1::GetUserAccessRequest& request);
  absl::StatusOr<v1::ListAppRecipientsResponse> ListAppRecipients(
      const v1::ListAppRecipientsRequest& request);

  // --- batch grants -----------------------------------------------------
  // ApplyGrants as the proto describes (the request is already validated
  // for shape by the caller).
  absl::StatusOr<v1::ApplyGrantsResponse> ApplyGrants(
      const v1::ApplyGrantsRequest& request);
  // The fast path of ApplyGrants: writes without locking the workspace
  // first, then checks the licence counters (whose triggers took the lock)
  // just before commit. Nullopt when the careful path must decide.
  std::optional<v1::ApplyGrantsResponse> TryApplyGrantsOptimistically(
      const v1::ApplyGrantsRequest& request);
  // The careful path: locks the workspace, then decides user by user.
  absl::StatusOr<v1::ApplyGrantsResponse> ApplyGrantsLocked(
      const v1::ApplyGrantsRequest& request);

 private:
  pg::Pool* pool_;
  const Clock* clock_;
};

// Page tokens: opaque base64 of the last row's sort key and id.
std::string EncodePageToken(const std::vector<std::string>& parts);
absl::StatusOr<std::vector<std::string>> DecodePageToken(
    const std::string& token, size_t parts);

}  // namespace guestlist::membership
