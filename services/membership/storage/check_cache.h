// In-memory facts for Check, so the hot path needs no database round trip.
// Entries (a user with its groups and apps, a group, an app, a workspace)
// are loaded on first use. A dedicated connection LISTENs on
// `membership_authz`: triggers on every authorization table send, on
// commit, which users / groups / apps / workspaces changed (see V002), and
// exactly those entries are dropped ('*' drops all). Loads that raced with
// a drop are used once but not kept. The listener pings every
// `poll_interval`; if it has not been healthy for `max_staleness` the cache
// is bypassed, and everything is dropped when it reconnects (notifications
// may have been missed). A suspension synced by identity therefore bites on
// every replica within milliseconds.
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

  // Drops every entry now.
  void Invalidate();

  // Returns once the listener has processed every notification committed
  // before the call (read-your-writes for this replica's own changes), or
  // after `timeout`, in which case everything is dropped.
  void AwaitChanges(absl::Duration timeout = absl::Seconds(1));

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
  // Applies one notification payload.
  void Apply(const std::string& payload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  template <typename Entry, typename Load>
  absl::StatusOr<std::shared_ptr<const Entry>> GetOrLoad(
      absl::flat_hash_map<std::string, std::shared_ptr<const Entry>>* map,
      const std::string& id, Load load);

  pg::Pool* pool_;
  const Options options_;
  std::atomic<int64_t> hits_{0};
  std::atomic<int64_t> misses_{0};
  absl::Notification stop_;
  int wake_fd_ = -1;  // eventfd: interrupts the listener's wait
  std::thread poller_;

  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_healthy_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Listener cycles (ping + notifications drained): the number of the
  // last one started (numbered before its ping) and last one completed.
  uint64_t cycles_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t cycles_completed_ ABSL_GUARDED_BY(mu_) = 0;
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
