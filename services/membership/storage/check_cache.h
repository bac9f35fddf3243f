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
//
// Warm-up: once the listener is healthy (at start and after every
// reconnect) a background thread loads users (up to `warm_users`) and
// groups in id order, `warm_chunk` at a time, so the first call for a user
// of the long tail does not pay a database round trip. A chunk read while
// a change was notified is read again, so warm-up never keeps data older
// than the notifications.
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
    // Users loaded ahead of use; 0 turns warm-up off. Kept below
    // `max_users` so on-demand loads have room before the map is reset.
    size_t warm_users = 100000;
    size_t warm_groups = 100000;
    int warm_chunk = 2000;
  };

  // Starts the poller. `pool` must outlive the cache.
  CheckCache(pg::Pool* pool, Options options);
  ~CheckCache();
  CheckCache(const CheckCache&) = delete;
  CheckCache& operator=(const CheckCache&) = delete;

  // Everything Decide() needs about `subject_id` and `resource`.
  absl::StatusOr<CheckFacts> LoadFacts(const std::string& subject_id,
                                       const Resource& resource);

  // Whether the user's entry (and `resource`'s, when given) are in memory
  // and fresh, so LoadFacts / LookupUser would not wait on the database.
  bool Covers(const std::string& user_id, const Resource* resource = nullptr);

  // The user as the cache knows it; nullopt when unknown.
  absl::StatusOr<std::optional<User>> LookupUser(const std::string& id);

  // Drops every entry now.
  void Invalidate();

  // Returns once the listener has processed every notification committed
  // before the call (read-your-writes for this replica's own changes), or
  // after `timeout`, in which case everything is dropped.
  void AwaitChanges(absl::Duration timeout = absl::Seconds(1));

  // Blocks until the current warm-up pass has finished or `timeout`
  // passed; true when finished.
  bool AwaitWarm(absl::Duration timeout);

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
  // The warm-up thread's loop: one pass per listener (re)connect.
  void WarmUp();
  // Runs `sql` (entries with id > `after`, at most `limit`, id first) and
  // keeps the entries in `map` unless a change was notified while they
  // were read; the last id read goes to `*last` ("" when none).
  template <typename Entry, typename Parse>
  absl::Status WarmChunk(
      absl::flat_hash_map<std::string, std::shared_ptr<const Entry>>* map,
      const std::string& sql, const std::string& after, int limit,
      std::string* last, Parse parse);
  // Parses the user columns (workspace, kind, status, expiry, groups,
  // apps) starting at `col` of row `row`.
  static std::shared_ptr<const UserEntry> ParseUser(const std::string& id,
                                                    const pg::Result& r,
                                                    int row, int col);
  static std::shared_ptr<const GroupEntry> ParseGroup(const std::string& id,
                                                      const pg::Result& r,
                                                      int row, int col);
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
  std::thread warmer_;

  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_healthy_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Listener cycles (ping + notifications drained): the number of the
  // last one started (numbered before its ping) and last one completed.
  uint64_t cycles_started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t cycles_completed_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped by every listener (re)connect; the warmer runs a pass for each
  // value it has not warmed yet.
  uint64_t connects_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t warmed_connect_ ABSL_GUARDED_BY(mu_) = 0;
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
