#include "services/membership/storage/check_cache.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace guestlist::membership {
namespace {

absl::Time ReadExpiry(const pg::Result& r, int row, int col) {
  if (r.IsNull(row, col)) return absl::InfiniteFuture();
  return pg::ParseTime(r.Get(row, col));
}

// What a user entry needs (see ParseUser), from `membership.users u`.
#define USER_COLUMNS                                                        \
  "u.workspace_id, u.kind, u.status, u.access_expire_time, "                \
  "(SELECT string_agg(m.group_id::text || ':' || m.role, ',') FROM "        \
  "membership.group_members m WHERE m.user_id = u.id), "                    \
  "(SELECT string_agg(p.app_id::text, ',') FROM membership.app_privileges " \
  "p WHERE p.user_id = u.id) FROM membership.users u"
// What a group entry needs (see ParseGroup), from `membership.groups g`.
#define GROUP_COLUMNS                                           \
  "g.workspace_id, g.visibility, g.members_can_invite, "        \
  "g.members_can_publish, w.members_can_invite_guests FROM "    \
  "membership.groups g JOIN membership.workspaces w ON w.id = " \
  "g.workspace_id"

constexpr char kLoadUser[] = "SELECT " USER_COLUMNS " WHERE u.id = $1";
constexpr char kLoadGroup[] = "SELECT " GROUP_COLUMNS " WHERE g.id = $1";
// Warm-up chunks: the entries after an id, in id order.
constexpr char kWarmUsers[] = "SELECT u.id, " USER_COLUMNS
                              " WHERE u.id > $1::uuid ORDER BY u.id "
                              "LIMIT $2::int";
constexpr char kWarmGroups[] = "SELECT g.id, " GROUP_COLUMNS
                               " WHERE g.id > $1::uuid ORDER BY g.id "
                               "LIMIT $2::int";
#undef USER_COLUMNS
#undef GROUP_COLUMNS

// Ids are random (v4) UUIDs, so the nil UUID sorts before every real one.
constexpr char kBeforeAllIds[] = "00000000-0000-0000-0000-000000000000";

// A warm-up chunk read while changes were notified is read again this many
// times, then left to on-demand loads.
constexpr int kWarmChunkAttempts = 5;

}  // namespace

CheckCache::CheckCache(pg::Pool* pool, Options options)
    : pool_(pool), options_(options) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  poller_ = std::thread([this] { Listen(); });
  if (options_.warm_users > 0 || options_.warm_groups > 0) {
    warmer_ = std::thread([this] { WarmUp(); });
  }
}

CheckCache::~CheckCache() {
  stop_.Notify();
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
  if (poller_.joinable()) poller_.join();
  {
    // Unlocking re-evaluates the warmer's wait condition, which reads stop_.
    absl::MutexLock lock(&mu_);
  }
  if (warmer_.joinable()) warmer_.join();
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
      absl::MutexLock lock(&mu_);
      ClearAll();
      ++connects_;
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

std::shared_ptr<const CheckCache::UserEntry> CheckCache::ParseUser(
    const std::string& id, const pg::Result& r, int row, int col) {
  auto e = std::make_shared<UserEntry>();
  if (r.rows() <= row) return e;
  e->exists = true;
  e->user.id = id;
  e->user.workspace_id = r.Get(row, col);
  e->user.kind = static_cast<Kind>(r.GetInt(row, col + 1));
  e->user.status = static_cast<Status>(r.GetInt(row, col + 2));
  e->user.access_expire_time = ReadExpiry(r, row, col + 3);
  for (absl::string_view g :
       absl::StrSplit(r.Get(row, col + 4), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(g, absl::MaxSplits(':', 1));
    e->groups[kv.first] = kv.second == "2" ? Role::kGroupAdmin : Role::kMember;
  }
  for (absl::string_view a :
       absl::StrSplit(r.Get(row, col + 5), ',', absl::SkipEmpty())) {
    e->apps.insert(std::string(a));
  }
  return e;
}

std::shared_ptr<const CheckCache::GroupEntry> CheckCache::ParseGroup(
    const std::string& id, const pg::Result& r, int row, int col) {
  auto e = std::make_shared<GroupEntry>();
  if (r.rows() <= row) return e;
  e->exists = true;
  e->group.id = id;
  e->group.workspace_id = r.Get(row, col);
  e->group.visibility = static_cast<Visibility>(r.GetInt(row, col + 1));
  e->group.members_can_invite = r.GetBool(row, col + 2);
  e->group.members_can_publish = r.GetBool(row, col + 3);
  e->members_can_invite_guests = r.GetBool(row, col + 4);
  return e;
}

bool CheckCache::AwaitWarm(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto warm = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return connects_ > 0 && warmed_connect_ == connects_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&warm), timeout);
}

void CheckCache::WarmUp() {
  while (true) {
    uint64_t connect;
    {
      absl::MutexLock lock(&mu_);
      auto due = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_.HasBeenNotified() ||
               (connects_ > warmed_connect_ && Fresh());
      };
      mu_.Await(absl::Condition(&due));
      if (stop_.HasBeenNotified()) return;
      connect = connects_;
    }
    const absl::Time start = absl::Now();
    // One pass per kind; a reconnect (which clears everything) ends the
    // pass and the next one starts over.
    auto pass = [&](auto* map, const char* sql, auto parse,
                    size_t limit) -> absl::Status {
      std::string after = kBeforeAllIds;
      size_t loaded = 0;
      while (loaded < limit && !stop_.HasBeenNotified()) {
        {
          absl::ReaderMutexLock lock(&mu_);
          if (connects_ != connect) return absl::OkStatus();
        }
        const int n = static_cast<int>(
            std::min<size_t>(options_.warm_chunk, limit - loaded));
        std::string last;
        RETURN_IF_ERROR(WarmChunk(map, sql, after, n, &last, parse));
        if (last.empty()) break;
        after = std::move(last);
        loaded += n;
      }
      return absl::OkStatus();
    };
    absl::Status s = pass(&groups_, kWarmGroups, &CheckCache::ParseGroup,
                          options_.warm_groups);
    if (s.ok()) {
      s = pass(&users_, kWarmUsers, &CheckCache::ParseUser,
               options_.warm_users);
    }
    size_t users, groups;
    {
      absl::MutexLock lock(&mu_);
      warmed_connect_ = connect;
      users = users_.size();
      groups = groups_.size();
    }
    if (!s.ok()) {
      LogWarning("check cache warm-up stopped; entries load on first use",
                 {{"error", s.ToString()}});
    } else {
      LogInfo("check cache warm",
              {{"users", absl::StrCat(users)},
               {"groups", absl::StrCat(groups)},
               {"seconds",
                absl::StrCat(absl::ToDoubleSeconds(absl::Now() - start))}});
    }
  }
}

template <typename Entry, typename Parse>
absl::Status CheckCache::WarmChunk(
    absl::flat_hash_map<std::string, std::shared_ptr<const Entry>>* map,
    const std::string& sql, const std::string& after, int limit,
    std::string* last, Parse parse) {
  last->clear();
  for (int attempt = 0; attempt < kWarmChunkAttempts; ++attempt) {
    uint64_t generation;
    {
      absl::ReaderMutexLock lock(&mu_);
      generation = generation_;
    }
    ASSIGN_OR_RETURN(pg::Result r,
                     pool_->ExecPrepared(sql, {after, absl::StrCat(limit)}));
    if (r.rows() == 0) return absl::OkStatus();
    *last = r.Get(r.rows() - 1, 0);
    std::vector<std::pair<std::string, std::shared_ptr<const Entry>>> entries;
    entries.reserve(r.rows());
    for (int i = 0; i < r.rows(); ++i) {
      std::string id = r.Get(i, 0);
      std::shared_ptr<const Entry> e = parse(id, r, i, 1);
      entries.emplace_back(std::move(id), std::move(e));
    }
    absl::MutexLock lock(&mu_);
    // As in GetOrLoad: rows read while a change was notified may be stale.
    if (generation_ != generation || !Fresh()) continue;
    // An entry loaded on demand meanwhile is as fresh: keep it.
    for (auto& [id, e] : entries) map->try_emplace(id, std::move(e));
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const CheckCache::UserEntry>>
CheckCache::GetUser(const std::string& id) {
  return GetOrLoad<UserEntry>(
      &users_, id, [&]() -> absl::StatusOr<std::shared_ptr<const UserEntry>> {
        ASSIGN_OR_RETURN(pg::Result r, pool_->ExecPrepared(kLoadUser, {id}));
        return ParseUser(id, r, 0, 0);
      });
}

absl::StatusOr<std::shared_ptr<const CheckCache::GroupEntry>>
CheckCache::GetGroup(const std::string& id) {
  return GetOrLoad<GroupEntry>(
      &groups_, id, [&]() -> absl::StatusOr<std::shared_ptr<const GroupEntry>> {
        ASSIGN_OR_RETURN(pg::Result r, pool_->ExecPrepared(kLoadGroup, {id}));
        return ParseGroup(id, r, 0, 0);
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

bool CheckCache::Covers(const std::string& user_id, const Resource* resource) {
  absl::ReaderMutexLock lock(&mu_);
  if (!Fresh() || !users_.contains(user_id)) return false;
  if (resource == nullptr) return true;
  switch (resource->type) {
    case ResourceType::kGroup:
      return groups_.contains(resource->id);
    case ResourceType::kUser:
      return users_.contains(resource->id);
    case ResourceType::kApp:
      return apps_.contains(resource->id);
    case ResourceType::kWorkspace:
      return workspaces_.contains(resource->id);
  }
  return false;
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
