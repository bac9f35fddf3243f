#include "services/membership/storage/check_cache.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace guestlist::membership {
namespace {

absl::Time ReadExpiry(const pg::Result& r, int row, int col) {
  if (r.IsNull(row, col)) return absl::InfiniteFuture();
  return pg::ParseTime(r.Get(row, col));
}

}  // namespace

CheckCache::CheckCache(pg::Pool* pool, Options options)
    : pool_(pool), options_(options) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  poller_ = std::thread([this] { Listen(); });
}

CheckCache::~CheckCache() {
  stop_.Notify();
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
  if (poller_.joinable()) poller_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void CheckCache::ClearAll() {
  ++generation_;
  users_.clear();
  groups_.clear();
  apps_.clear();
  workspaces_.clear();
}

void CheckCache::Apply(const std::string& payload) {
  // Any change makes in-flight loads suspect (they may have read the old
  // rows), so they are not kept.
  ++generation_;
  if (payload.size() < 2 || payload[1] != ':') {
    ClearAll();
    return;
  }
  const char kind = payload[0];
  for (absl::string_view id : absl::StrSplit(
           absl::string_view(payload).substr(2), ',', absl::SkipEmpty())) {
    const std::string key(id);
    switch (kind) {
      case 'u':
        users_.erase(key);
        break;
      case 'g':
        groups_.erase(key);
        break;
      case 'a':
        apps_.erase(key);
        break;
      case 'w':
        // Group entries carry their workspace's settings.
        workspaces_.erase(key);
        groups_.clear();
        break;
      default:
        ClearAll();
        return;
    }
  }
}

void CheckCache::Invalidate() {
  absl::MutexLock lock(&mu_);
  ClearAll();
}

void CheckCache::AwaitChanges(absl::Duration timeout) {
  uint64_t target;
  {
    absl::MutexLock lock(&mu_);
    // The first cycle numbered after this point pings after our commit.
    target = cycles_started_ + 1;
  }
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  absl::MutexLock lock(&mu_);
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return cycles_completed_ >= target;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) ClearAll();
}

void CheckCache::Listen() {
  PGconn* conn = nullptr;
  const int wait_ms =
      static_cast<int>(absl::ToInt64Milliseconds(options_.poll_interval));
  while (!stop_.HasBeenNotified()) {
    if (conn == nullptr) {
      conn = PQconnectdb(pool_->options().conninfo.c_str());
      PGresult* r = PQstatus(conn) == CONNECTION_OK
                        ? PQexec(conn, "LISTEN membership_authz")
                        : nullptr;
      const bool ok = r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK;
      if (r != nullptr) PQclear(r);
      if (!ok) {
        PQfinish(conn);
        conn = nullptr;
        stop_.WaitForNotificationWithTimeout(options_.poll_interval);
        continue;
      }
      // Changes made while we were not listening are unknown: start over.
      Invalidate();
    }
    pollfd fds[2] = {{PQsocket(conn), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    ::poll(fds, 2, wait_ms);
    uint64_t drained;
    while (read(wake_fd_, &drained, sizeof(drained)) > 0) {
    }
    uint64_t cycle;
    {
      absl::MutexLock lock(&mu_);
      cycle = ++cycles_started_;
    }
    // The ping proves the connection is alive (a silent socket proves
    // nothing) and, as the server sends pending notifications before it
    // answers, everything committed before it is read below.
    PGresult* r = PQexec(conn, "SELECT 1");
    const bool ok = r != nullptr && PQresultStatus(r) == PGRES_TUPLES_OK;
    if (r != nullptr) PQclear(r);
    std::vector<std::string> payloads;
    while (PGnotify* n = PQnotifies(conn)) {
      payloads.emplace_back(n->extra != nullptr ? n->extra : "*");
      PQfreemem(n);
    }
    absl::MutexLock lock(&mu_);
    for (const std::string& p : payloads) Apply(p);
    if (!ok) {
      PQfinish(conn);
      conn = nullptr;
      continue;
    }
    last_healthy_ = absl::Now();
    cycles_completed_ = cycle;
  }
  if (conn != nullptr) PQfinish(conn);
}

bool CheckCache::Fresh() {
  return absl::Now() - last_healthy_ <= options_.max_staleness;
}

template <typename Entry, typename Load>
absl::StatusOr<std::shared_ptr<const Entry>> CheckCache::GetOrLoad(
    absl::flat_hash_map<std::string, std::shared_ptr<const Entry>>* map,
    const std::string& id, Load load) {
  uint64_t generation;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (Fresh()) {
      auto it = map->find(id);
      if (it != map->end()) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        return it->second;
      }
    }
    generation = generation_;
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  ASSIGN_OR_RETURN(std::shared_ptr<const Entry> entry, load());
  absl::MutexLock lock(&mu_);
  // A load that raced with an invalidation may hold pre-change data: use it
  // for this call (it was current when read) but do not keep it.
  if (generation_ == generation && Fresh()) {
    if (users_.size() >= options_.max_users) {
      ++generation_;
      users_.clear();
    }
    map->emplace(id, entry);
  }
  return entry;
}

absl::StatusOr<std::shared_ptr<const CheckCache::UserEntry>>
CheckCache::GetUser(const std::string& id) {
  return GetOrLoad<UserEntry>(
      &users_, id, [&]() -> absl::StatusOr<std::shared_ptr<const UserEntry>> {
        ASSIGN_OR_RETURN(
            pg::Result r,
            pool_->ExecPrepared(
                "SELECT u.workspace_id, u.kind, u.status, "
                "u.access_expire_time, (SELECT string_agg(m.group_id::text "
                "|| ':' || m.role, ',') FROM membership.group_members m WHERE "
                "m.user_id = u.id), (SELECT string_agg(p.app_id::text, ',') "
                "FROM membership.app_privileges p WHERE p.user_id = u.id) "
                "FROM membership.users u WHERE u.id = $1",
                {id}));
        auto e = std::make_shared<UserEntry>();
        if (r.rows() > 0) {
          e->exists = true;
          e->user.id = id;
          e->user.workspace_id = r.Get(0, 0);
          e->user.kind = static_cast<Kind>(r.GetInt(0, 1));
          e->user.status = static_cast<Status>(r.GetInt(0, 2));
          e->user.access_expire_time = ReadExpiry(r, 0, 3);
          for (absl::string_view g :
               absl::StrSplit(r.Get(0, 4), ',', absl::SkipEmpty())) {
            std::pair<std::string, std::string> kv =
                absl::StrSplit(g, absl::MaxSplits(':', 1));
            e->groups[kv.first] =
                kv.second == "2" ? Role::kGroupAdmin : Role::kMember;
          }
          for (absl::string_view a :
               absl::StrSplit(r.Get(0, 5), ',', absl::SkipEmpty())) {
            e->apps.insert(std::string(a));
          }
        }
        return std::shared_ptr<const UserEntry>(std::move(e));
      });
}

absl::StatusOr<std::shared_ptr<const CheckCache::GroupEntry>>
CheckCache::GetGroup(const std::string& id) {
  return GetOrLoad<GroupEntry>(
      &groups_, id, [&]() -> absl::StatusOr<std::shared_ptr<const GroupEntry>> {
        ASSIGN_OR_RETURN(
            pg::Result r,
            pool_->ExecPrepared(
                "SELECT g.workspace_id, g.visibility, "
                "g.members_can_invite, g.members_can_publish, "
                "w.members_can_invite_guests FROM membership.groups g "
                "JOIN membership.workspaces w ON w.id = "
                "g.workspace_id WHERE g.id = $1",
                {id}));
        auto e = std::make_shared<GroupEntry>();
        if (r.rows() > 0) {
          e->exists = true;
          e->group.id = id;
          e->group.workspace_id = r.Get(0, 0);
          e->group.visibility = static_cast<Visibility>(r.GetInt(0, 1));
          e->group.members_can_invite = r.GetBool(0, 2);
          e->group.members_can_publish = r.GetBool(0, 3);
          e->members_can_invite_guests = r.GetBool(0, 4);
        }
        return std::shared_ptr<const GroupEntry>(std::move(e));
      });
}

absl::StatusOr<std::shared_ptr<const CheckCache::SimpleEntry>>
CheckCache::GetApp(const std::string& id) {
  return GetOrLoad<SimpleEntry>(
      &apps_, id, [&]() -> absl::StatusOr<std::shared_ptr<const SimpleEntry>> {
        ASSIGN_OR_RETURN(pg::Result r,
                         pool_->ExecPrepared("SELECT workspace_id FROM "
                                             "membership.apps WHERE id = $1",
                                             {id}));
        auto e = std::make_shared<SimpleEntry>();
        if (r.rows() > 0) {
          e->exists = true;
          e->workspace_id = r.Get(0, 0);
        }
        return std::shared_ptr<const SimpleEntry>(std::move(e));
      });
}

absl::StatusOr<std::shared_ptr<const CheckCache::SimpleEntry>>
CheckCache::GetWorkspace(const std::string& id) {
  return GetOrLoad<SimpleEntry>(
      &workspaces_, id,
      [&]() -> absl::StatusOr<std::shared_ptr<const SimpleEntry>> {
        ASSIGN_OR_RETURN(
            pg::Result r,
            pool_->ExecPrepared("SELECT id FROM membership.workspaces "
                                "WHERE id = $1",
                                {id}));
        auto e = std::make_shared<SimpleEntry>();
        if (r.rows() > 0) {
          e->exists = true;
          e->workspace_id = id;
        }
        return std::shared_ptr<const SimpleEntry>(std::move(e));
      });
}

absl::StatusOr<std::optional<User>> CheckCache::LookupUser(
    const std::string& id) {
  ASSIGN_OR_RETURN(std::shared_ptr<const UserEntry> e, GetUser(id));
  if (!e->exists) return std::optional<User>();
  return std::optional<User>(e->user);
}

absl::StatusOr<CheckFacts> CheckCache::LoadFacts(const std::string& subject_id,
                                                 const Resource& resource) {
  CheckFacts f;
  ASSIGN_OR_RETURN(std::shared_ptr<const UserEntry> subject,
                   GetUser(subject_id));
  if (subject->exists) f.subject = subject->user;
  switch (resource.type) {
    case ResourceType::kGroup: {
      ASSIGN_OR_RETURN(std::shared_ptr<const GroupEntry> g,
                       GetGroup(resource.id));
      if (!g->exists) break;
      f.resource_workspace_id = g->group.workspace_id;
      f.group = g->group;
      f.workspace.id = g->group.workspace_id;
      f.workspace.members_can_invite_guests = g->members_can_invite_guests;
      auto it = subject->groups.find(resource.id);
      f.subject_role = it == subject->groups.end() ? Role::kNone : it->second;
      break;
    }
    case ResourceType::kUser: {
      ASSIGN_OR_RETURN(std::shared_ptr<const UserEntry> t,
                       GetUser(resource.id));
      if (!t->exists) break;
      f.resource_workspace_id = t->user.workspace_id;
      f.target = t->user;
      const auto& small = subject->groups.size() <= t->groups.size()
                              ? subject->groups
                              : t->groups;
      const auto& large =
          &small == &subject->groups ? t->groups : subject->groups;
      for (const auto& [gid, role] : small) {
        if (large.contains(gid)) {
          f.shares_group = true;
          break;
        }
      }
      break;
    }
    case ResourceType::kApp: {
      ASSIGN_OR_RETURN(std::shared_ptr<const SimpleEntry> a,
                       GetApp(resource.id));
      if (!a->exists) break;
      f.resource_workspace_id = a->workspace_id;
      f.has_app_privilege = subject->apps.contains(resource.id);
      break;
    }
    case ResourceType::kWorkspace: {
      ASSIGN_OR_RETURN(std::shared_ptr<const SimpleEntry> w,
                       GetWorkspace(resource.id));
      if (w->exists) f.resource_workspace_id = resource.id;
      break;
    }
  }
  return f;
}

}  // namespace guestlist::membership
