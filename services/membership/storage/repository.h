// The reads that membership's authorization logic (api/authorizer.h) needs
// from storage, as an interface: MembershipStore implements it on
// PostgreSQL and InMemoryMembershipRepository (storage/in_memory_repository.h)
// in memory, so the access rules can be unit-tested without a database.
// Writes stay on MembershipStore: they are only meaningful with the
// transactions, locks and licence counters of PostgreSQL.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "services/membership/domain/model.h"
#include "services/membership/domain/permissions.h"

namespace guestlist::membership {

class MembershipRepository {
 public:
  virtual ~MembershipRepository() = default;

  // nullopt when the workspace was never synced.
  virtual absl::StatusOr<std::optional<Workspace>> GetWorkspace(
      const std::string& id) = 0;
  // nullopt for an unknown user.
  virtual absl::StatusOr<std::optional<User>> GetUser(
      const std::string& id) = 0;
  // nullopt for an unknown group.
  virtual absl::StatusOr<std::optional<v1::Group>> GetGroup(
      const std::string& id) = 0;
  // kNone when `user_id` is empty or not a member of the group.
  virtual absl::StatusOr<Role> GetRole(const std::string& group_id,
                                       const std::string& user_id) = 0;
  // Everything Decide() needs about `subject_id` and `resource`.
  virtual absl::StatusOr<CheckFacts> LoadFacts(const std::string& subject_id,
                                               const Resource& resource) = 0;
};

}  // namespace guestlist::membership
