// In-memory facts for Check, so the hot path needs no database round trip.
// Entries (a user with its groups and apps, a group, an app, a workspace)
// are loaded on first use. A dedicated connection LISTENs on
// `membership_authz` (sent on commit by triggers on every
// authorization-relevant table, see V002) and drops everything when a
// notification arrives; loads that started before a drop are used once but
// not kept. The listener pings every `poll_interval`; if it has not been
// healthy for `max_staleness` (database unreachable, connection lost) the
// cache is bypassed, and it is dropped again when the listener reconnects.
// So a suspension synced by identity bites on every replica at once.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/pg.h"
#include "services/membership/domain/permissions.h"

namespace guestlist::membership {

class CheckCache final {
 public:
  struct Options {
    absl::Duration poll_interval = absl::Milliseconds(200);
    absl::Duration max_staleness = absl::Seconds(1);
    size_t max_users = 200000;
  };

  // Starts the poller. `pool` must outlive the cache.
  CheckCache(pg::Pool* pool, Options options);
  ~CheckCache();
  CheckCache(const CheckCache&) = delete;
  CheckCache& operator=(const CheckCache&) = delete;

  // Everything Decide() needs about `subject_id` and `resource`.
  absl::StatusOr<CheckFacts> LoadFacts(const std::string& subject_id,
                                       const Resource& resource);

  // The user as the cache knows it; nullopt when unknown.
  absl::StatusOr<std::optional<User>> LookupUser(const std::string& id);

  // Drops every entry now (tests; writes of this replica).
  void Invalidate();

  // Lookups served from memory / loaded from the database, since start.
  int64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  int64_t misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  struct UserEntry {
    bool exists = false;
    User user;
    absl::flat_hash_map<std::string, Role> groups;
    absl::flat_hash_set<std::string> apps;
  };
  struct GroupEntry {
    bool exists = false;
    Group group;
    bool members_can_invite_guests = false;
  };
  struct SimpleEntry {
    bool exists = false;
    std::string workspace_id;
  };

  absl::StatusOr<std::shared_ptr<const UserEntry>> GetUser(
      const std::string& id);
  absl::StatusOr<std::shared_ptr<const GroupEntry>> GetGroup(
      const std::string& id);
  absl::StatusOr<std::shared_ptr<const SimpleEntry>> GetApp(
      const std::string& id);
  absl::StatusOr<std::shared_ptr<const SimpleEntry>> GetWorkspace(
      const std::string& id);
  bool Fresh() ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The listener thread's loop.
  void Listen();

  template <typename Entry, typename Load>
  absl::StatusOr<std::shared_ptr<const Entry>> GetOrLoad(
      absl::flat_hash_map<std::string, std::shared_ptr<const Entry>>* map,
      const std::string& id, Load load);

  pg::Pool* pool_;
  const Options options_;
  std::atomic<int64_t> hits_{0};
  std::atomic<int64_t> misses_{0};
  absl::Notification stop_;
  std::thread poller_;

  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_healthy_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::flat_hash_map<std::string, std::shared_ptr<const UserEntry>> users_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const GroupEntry>> groups_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const SimpleEntry>> apps_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<const SimpleEntry>>
      workspaces_ ABSL_GUARDED_BY(mu_);
};

}  // namespace guestlist::membership
