// An in-memory MembershipRepository for unit tests of the api / domain
// logic: users, workspaces, groups, memberships and app privileges in maps,
// answering exactly as MembershipStore's queries do (an unknown id is
// nullopt / kNone, never an error). Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "services/membership/storage/repository.h"

namespace guestlist::membership {

class InMemoryMembershipRepository final : public MembershipRepository {
 public:
  // --- set-up (each replaces what was stored under the same id) ---------
  void PutWorkspace(const Workspace& workspace);
  void PutUser(const User& user);
  void PutGroup(const Group& group, const std::string& name = "");
  void PutMember(const std::string& group_id, const std::string& user_id,
                 Role role);
  void RemoveMember(const std::string& group_id, const std::string& user_id);
  void PutApp(const std::string& app_id, const std::string& workspace_id);
  void PutAppPrivilege(const std::string& app_id, const std::string& user_id);

  // --- MembershipRepository ----------------------------------------------
  absl::StatusOr<std::optional<Workspace>> GetWorkspace(
      const std::string& id) override;
  absl::StatusOr<std::optional<User>> GetUser(const std::string& id) override;
  absl::StatusOr<std::optional<v1::Group>> GetGroup(
      const std::string& id) override;
  absl::StatusOr<Role> GetRole(const std::string& group_id,
                               const std::string& user_id) override;
  absl::StatusOr<CheckFacts> LoadFacts(const std::string& subject_id,
                                       const Resource& resource) override;

 private:
  struct StoredGroup {
    Group group;
    std::string name;
  };
  using Key = std::pair<std::string, std::string>;  // (group or app, user)

  Role RoleLocked(const std::string& group_id, const std::string& user_id)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool SharesGroupLocked(const std::string& a, const std::string& b)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::map<std::string, Workspace> workspaces_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, User> users_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredGroup> groups_ ABSL_GUARDED_BY(mu_);
  std::map<Key, Role> members_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> apps_ ABSL_GUARDED_BY(mu_);  // -> ws
  std::set<Key> privileges_ ABSL_GUARDED_BY(mu_);
};

}  // namespace guestlist::membership
