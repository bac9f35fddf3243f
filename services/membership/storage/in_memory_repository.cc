#include "services/membership/storage/in_memory_repository.h"

namespace guestlist::membership {

void InMemoryMembershipRepository::PutWorkspace(const Workspace& workspace) {
  absl::MutexLock lock(&mu_);
  workspaces_[workspace.id] = workspace;
}

void InMemoryMembershipRepository::PutUser(const User& user) {
  absl::MutexLock lock(&mu_);
  users_[user.id] = user;
}

void InMemoryMembershipRepository::PutGroup(const Group& group,
                                            const std::string& name) {
  absl::MutexLock lock(&mu_);
  groups_[group.id] = {group, name.empty() ? group.id : name};
}

void InMemoryMembershipRepository::PutMember(const std::string& group_id,
                                             const std::string& user_id,
                                             Role role) {
  absl::MutexLock lock(&mu_);
  members_[{group_id, user_id}] = role;
}

void InMemoryMembershipRepository::RemoveMember(const std::string& group_id,
                                                const std::string& user_id) {
  absl::MutexLock lock(&mu_);
  members_.erase({group_id, user_id});
}

void InMemoryMembershipRepository::PutApp(const std::string& app_id,
                                          const std::string& workspace_id) {
  absl::MutexLock lock(&mu_);
  apps_[app_id] = workspace_id;
}

void InMemoryMembershipRepository::PutAppPrivilege(const std::string& app_id,
                                                   const std::string& user_id) {
  absl::MutexLock lock(&mu_);
  privileges_.insert({app_id, user_id});
}

absl::StatusOr<std::optional<Workspace>>
InMemoryMembershipRepository::GetWorkspace(const std::string& id) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = workspaces_.find(id);
  if (it == workspaces_.end()) return std::optional<Workspace>();
  return std::optional<Workspace>(it->second);
}

absl::StatusOr<std::optional<User>> InMemoryMembershipRepository::GetUser(
    const std::string& id) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = users_.find(id);
  if (it == users_.end()) return std::optional<User>();
  return std::optional<User>(it->second);
}

absl::StatusOr<std::optional<v1::Group>> InMemoryMembershipRepository::GetGroup(
    const std::string& id) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = groups_.find(id);
  if (it == groups_.end()) return std::optional<v1::Group>();
  const Group& g = it->second.group;
  v1::Group out;
  out.set_id(g.id);
  out.set_workspace_id(g.workspace_id);
  out.set_name(it->second.name);
  out.set_visibility(static_cast<v1::Group::Visibility>(g.visibility));
  out.set_members_can_invite(g.members_can_invite);
  out.set_members_can_publish(g.members_can_publish);
  int count = 0;
  for (const auto& [key, role] : members_) count += key.first == id;
  out.set_member_count(count);
  return std::optional<v1::Group>(out);
}

absl::StatusOr<Role> InMemoryMembershipRepository::GetRole(
    const std::string& group_id, const std::string& user_id) {
  absl::ReaderMutexLock lock(&mu_);
  return RoleLocked(group_id, user_id);
}

Role InMemoryMembershipRepository::RoleLocked(const std::string& group_id,
                                              const std::string& user_id) {
  auto it = members_.find({group_id, user_id});
  return it == members_.end() ? Role::kNone : it->second;
}

bool InMemoryMembershipRepository::SharesGroupLocked(const std::string& a,
                                                     const std::string& b) {
  for (const auto& [key, role] : members_) {
    if (key.second == a && members_.count({key.first, b}) > 0) return true;
  }
  return false;
}

absl::StatusOr<CheckFacts> InMemoryMembershipRepository::LoadFacts(
    const std::string& subject_id, const Resource& resource) {
  absl::ReaderMutexLock lock(&mu_);
  CheckFacts f;
  auto subject = users_.find(subject_id);
  if (subject != users_.end()) f.subject = subject->second;
  const bool has_subject = f.subject.has_value();
  switch (resource.type) {
    case ResourceType::kGroup: {
      auto g = groups_.find(resource.id);
      if (g == groups_.end()) break;
      f.resource_workspace_id = g->second.group.workspace_id;
      f.group = g->second.group;
      f.workspace.id = g->second.group.workspace_id;
      // As the store's LEFT JOIN: an unsynced workspace allows nothing.
      auto w = workspaces_.find(f.workspace.id);
      f.workspace.members_can_invite_guests =
          w != workspaces_.end() && w->second.members_can_invite_guests;
      if (has_subject) f.subject_role = RoleLocked(resource.id, subject_id);
      break;
    }
    case ResourceType::kUser: {
      auto t = users_.find(resource.id);
      if (t == users_.end()) break;
      f.resource_workspace_id = t->second.workspace_id;
      f.target = t->second;
      f.shares_group =
          has_subject && SharesGroupLocked(subject_id, resource.id);
      break;
    }
    case ResourceType::kApp: {
      auto a = apps_.find(resource.id);
      if (a == apps_.end()) break;
      f.resource_workspace_id = a->second;
      f.has_app_privilege =
          has_subject && privileges_.count({resource.id, subject_id}) > 0;
      break;
    }
    case ResourceType::kWorkspace:
      if (workspaces_.count(resource.id) > 0) {
        f.resource_workspace_id = resource.id;
      }
      break;
  }
  return f;
}

}  // namespace guestlist::membership
