// Licence counters (V003) against a throwaway PostgreSQL: after every step
// of a mixed sequence of writes (bulk inserts, status and kind changes,
// groups added and removed, a group with members deleted, users deleted,
// bulk ApplyGrants, SyncUsers, a user moved between workspaces) the
// counters on membership.workspaces and users.group_count equal a full
// recount, and GetLicenseUsage reports them, and no membership or privilege
// outlives its user, group or app (V006 replaced the foreign keys with
// locks and deletes in the store). Also: bulk statements cost one trigger
// call per statement, deletes racing grants leave no orphans, and counter
// updates do not notify the Check caches of a workspace change.
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/migrations.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/membership/migrations.h"
#include "services/membership/storage/store.h"
#include "tests/testing/postgres.h"

namespace guestlist::membership {
namespace {

// The recount the counters replaced (the former kUsage of store.cc): one
// pass over every counted user with a per-guest count of its groups.
constexpr char kRecount[] =
    "SELECT w.license_count,"
    " count(u.id) FILTER (WHERE u.kind IN (1, 2)),"
    " count(u.id) FILTER (WHERE u.kind = 3 AND gc.n >= 2),"
    " count(u.id) FILTER (WHERE u.kind = 3 AND gc.n < 2) "
    "FROM membership.workspaces w "
    "LEFT JOIN membership.users u ON u.workspace_id = w.id "
    " AND u.status NOT IN (1, 6) "
    "LEFT JOIN LATERAL (SELECT count(*) AS n FROM membership.group_members gm"
    " WHERE gm.user_id = u.id) gc ON u.kind = 3 "
    "WHERE w.id = $1 GROUP BY w.license_count";

constexpr char kCounters[] =
    "SELECT license_count, used_by_members, used_by_multi_group_guests, "
    "single_group_guests FROM membership.workspaces WHERE id = $1";

std::string Uuid(int kind, int n) {
  return absl::StrFormat("00000000-0000-4000-%04d-%012d", 8000 + kind, n);
}
// Users 8000-..., groups 8001-..., workspaces 8002-..., apps 8003-...
std::string UserId(int n) { return Uuid(0, n); }
std::string GroupId(int n) { return Uuid(1, n); }
const std::string kWs1 = Uuid(2, 1);
const std::string kWs2 = Uuid(2, 2);

class LicenseCountersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new guestlist::testing::TestPostgres();
    pool_ = new pg::Pool({.conninfo = db_->ConnInfo(), .max_size = 4});
    absl::Status s = RunMigrations(*pool_, "membership", Migrations());
    ASSERT_TRUE(s.ok()) << s;
  }
  static void TearDownTestSuite() {
    delete pool_;
    delete db_;
  }

  void Exec(const std::string& sql, const pg::Params& params = {}) {
    absl::StatusOr<pg::Result> r = pool_->Exec(sql, params);
    ASSERT_TRUE(r.ok()) << r.status() << "\n" << sql;
  }

  std::vector<int64_t> Row(const char* sql, const std::string& ws) {
    absl::StatusOr<pg::Result> r = pool_->Exec(sql, {ws});
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<int64_t> out;
    if (!r.ok() || r->rows() != 1) return out;
    for (int c = 0; c < 4; ++c) out.push_back(r->GetInt(0, c));
    return out;
  }

  // Counters == recount for both workspaces; group_count == count(*) for
  // every user. `step` names the failing step.
  void ExpectExact(const std::string& step) {
    SCOPED_TRACE(step);
    for (const std::string& ws : {kWs1, kWs2}) {
      const std::vector<int64_t> recount = Row(kRecount, ws);
      EXPECT_EQ(Row(kCounters, ws), recount) << "workspace " << ws;
      absl::StatusOr<LicenseUsage> usage = store_.GetLicenseUsage(ws);
      ASSERT_TRUE(usage.ok()) << usage.status();
      ASSERT_EQ(recount.size(), 4u);
      EXPECT_EQ(usage->used_by_members, recount[1]);
      EXPECT_EQ(usage->used_by_multi_group_guests, recount[2]);
      EXPECT_EQ(usage->single_group_guests, recount[3]);
    }
    absl::StatusOr<pg::Result> drift = pool_->Exec(
        "SELECT count(*) FROM membership.users u WHERE u.group_count <> "
        "(SELECT count(*) FROM membership.group_members m "
        "WHERE m.user_id = u.id)");
    ASSERT_TRUE(drift.ok()) << drift.status();
    EXPECT_EQ(drift->GetInt(0, 0), 0) << "users with a wrong group_count";
    EXPECT_EQ(Orphans(), 0);
  }

  // Memberships and privileges whose user, group or app is gone.
  int64_t Orphans() {
    absl::StatusOr<pg::Result> r = pool_->Exec(
        "SELECT (SELECT count(*) FROM membership.group_members m WHERE NOT "
        "EXISTS (SELECT 1 FROM membership.users u WHERE u.id = m.user_id) OR "
        "NOT EXISTS (SELECT 1 FROM membership.groups g WHERE g.id = "
        "m.group_id)) + (SELECT count(*) FROM membership.app_privileges p "
        "WHERE NOT EXISTS (SELECT 1 FROM membership.users u WHERE u.id = "
        "p.user_id) OR NOT EXISTS (SELECT 1 FROM membership.apps a WHERE "
        "a.id = p.app_id))");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->GetInt(0, 0) : -1;
  }

  // A synced workspace with `licenses` and one group per (id, name).
  void MakeWorkspace(
      const std::string& ws, int licenses,
      const std::vector<std::pair<std::string, std::string>>& groups) {
    v1::WorkspaceRecord w;
    w.set_workspace_id(ws);
    w.set_license_count(licenses);
    w.set_version(1);
    ASSERT_TRUE(store_.SyncWorkspace(w).ok());
    for (const auto& [id, name] : groups) {
      Exec(
          "INSERT INTO membership.groups (id, workspace_id, name, visibility) "
          "VALUES ($1, $2, $3, 1)",
          {id, ws, name});
    }
  }

  // The workspace row's version (xmin): changes iff the row was written.
  std::string RowVersion(const std::string& ws) {
    absl::StatusOr<pg::Result> r = pool_->Exec(
        "SELECT xmin::text FROM membership.workspaces WHERE id = $1", {ws});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->rows() == 1 ? r->Get(0, 0) : "";
  }

  static v1::UserGrants Grants(const std::string& id, const std::string& ws,
                               v1::DirectoryUser::Kind kind, int64_t version,
                               const std::vector<std::string>& groups) {
    v1::UserGrants g;
    v1::UserRecord* u = g.mutable_user();
    u->set_id(id);
    u->set_workspace_id(ws);
    u->set_username(absl::StrCat("user-", id));
    u->set_kind(kind);
    u->set_status(v1::DirectoryUser::ACTIVE);
    u->set_version(version);
    for (const std::string& gid : groups) g.add_group_ids(gid);
    return g;
  }

  static guestlist::testing::TestPostgres* db_;
  static pg::Pool* pool_;
  SystemClock clock_;
  MembershipStore store_{pool_, &clock_};
};

guestlist::testing::TestPostgres* LicenseCountersTest::db_ = nullptr;
pg::Pool* LicenseCountersTest::pool_ = nullptr;

TEST_F(LicenseCountersTest, CountersEqualFullRecountAfterMixedWrites) {
  for (const std::string& ws : {kWs1, kWs2}) {
    v1::WorkspaceRecord w;
    w.set_workspace_id(ws);
    w.set_license_count(100000);
    w.set_members_can_invite_guests(true);
    w.set_version(1);
    ASSERT_TRUE(store_.SyncWorkspace(w).ok());
  }
  ExpectExact("empty workspaces");

  // One bulk statement across both workspaces: users 1..600, every kind
  // and status (1 admin, 2 member, 3 guest; status 1..6).
  Exec(
      "INSERT INTO membership.users (id, workspace_id, username, kind, "
      "status, version) SELECT ('00000000-0000-4000-8000-' || "
      "lpad(i::text, 12, '0'))::uuid, CASE WHEN i % 2 = 0 THEN $1::uuid "
      "ELSE $2::uuid END, 'u' || i, CASE WHEN i % 10 = 0 THEN 1 "
      "WHEN i % 10 < 4 THEN 2 ELSE 3 END, 1 + (i / 10) % 6, 1 "
      "FROM generate_series(1, 600) i",
      {kWs1, kWs2});
  ExpectExact("bulk insert of users");

  // 10 groups per workspace (odd group numbers in kWs2).
  Exec(
      "INSERT INTO membership.groups (id, workspace_id, name, visibility) "
      "SELECT ('00000000-0000-4000-8001-' || lpad(i::text, 12, '0'))::uuid, "
      "CASE WHEN i % 2 = 0 THEN $1::uuid ELSE $2::uuid END, 'g' || i, "
      "1 + i % 3 FROM generate_series(1, 20) i",
      {kWs1, kWs2});
  // Memberships in one statement: user i joins i % 4 groups of its own
  // workspace (0, 1, 2 or 3 groups).
  Exec(
      "INSERT INTO membership.group_members (group_id, user_id) "
      "SELECT ('00000000-0000-4000-8001-' || "
      "lpad((2 * k - i % 2)::text, 12, '0'))::uuid, "
      "('00000000-0000-4000-8000-' || lpad(i::text, 12, '0'))::uuid "
      "FROM generate_series(1, 600) i, generate_series(1, 3) k "
      "WHERE k <= i % 4");
  ExpectExact("bulk insert of memberships");
  {
    absl::StatusOr<pg::Result> r = pool_->Exec(
        "SELECT count(*) FROM membership.users WHERE group_count >= 2 AND "
        "kind = 3 AND status NOT IN (1, 6)");
    ASSERT_TRUE(r.ok());
    EXPECT_GT(r->GetInt(0, 0), 0) << "the sequence must cover multi-group "
                                     "guests";
  }

  // Status changes: some to suspended (still counted), archived, requested,
  // and back to active.
  Exec("UPDATE membership.users SET status = 4 WHERE username LIKE 'u%7'");
  Exec("UPDATE membership.users SET status = 6 WHERE username LIKE 'u%3'");
  Exec("UPDATE membership.users SET status = 1 WHERE username LIKE 'u%9'");
  ExpectExact("status changes");
  Exec("UPDATE membership.users SET status = 3 WHERE username LIKE 'u%9'");
  ExpectExact("requested back to active");

  // Kind changes: guests become members (a multi-group guest's licence
  // becomes a member's).
  Exec(
      "UPDATE membership.users SET kind = 2 WHERE kind = 3 AND "
      "username LIKE 'u%5'");
  ExpectExact("guest -> member");

  // A change that moves no counter does not write the workspace row.
  const std::string before = RowVersion(kWs1);
  Exec("UPDATE membership.users SET first_name = 'x' WHERE workspace_id = $1",
       {kWs1});
  Exec(
      "UPDATE membership.group_members SET role = 2 WHERE user_id IN "
      "(SELECT id FROM membership.users WHERE kind = 2)");
  EXPECT_EQ(RowVersion(kWs1), before);
  ExpectExact("names and roles");

  // Removing groups: multi-group guests drop to single-group ones.
  Exec(
      "DELETE FROM membership.group_members WHERE group_id IN ($1, $2) AND "
      "user_id IN (SELECT id FROM membership.users WHERE kind = 3)",
      {GroupId(2), GroupId(3)});
  ExpectExact("groups removed from guests");

  // Deleting a group with members, through the store.
  ASSERT_TRUE(store_.DeleteGroup(GroupId(4)).ok());
  ASSERT_TRUE(store_.DeleteGroup(GroupId(5)).ok());
  ExpectExact("groups with members deleted");

  // Deleting users with memberships, through the store.
  ASSERT_TRUE(
      store_.DeleteUsers(kWs1, {UserId(2), UserId(6), UserId(14), UserId(22)})
          .ok());
  {
    absl::StatusOr<pg::Result> ids = pool_->Exec(
        "SELECT id FROM membership.users WHERE username LIKE 'u%1' AND "
        "workspace_id = $1",
        {kWs2});
    ASSERT_TRUE(ids.ok()) << ids.status();
    ASSERT_GT(ids->rows(), 0);
    std::vector<std::string> doomed;
    for (int i = 0; i < ids->rows(); ++i) doomed.push_back(ids->Get(i, 0));
    ASSERT_TRUE(store_.DeleteUsers(kWs2, doomed).ok());
  }
  ExpectExact("users deleted");

  // Bulk ApplyGrants: new guests in one and two groups, an existing guest
  // moved to two groups, another replaced down to none, a new member.
  v1::ApplyGrantsRequest req;
  req.set_workspace_id(kWs1);
  req.set_best_effort(true);
  for (int i = 1000; i < 1050; ++i) {
    std::vector<std::string> groups = {GroupId(6)};
    if (i % 2 == 0) groups.push_back(GroupId(8));
    *req.add_users() =
        Grants(UserId(i), kWs1, v1::DirectoryUser::GUEST, 1, groups);
  }
  *req.add_users() = Grants(UserId(1100), kWs1, v1::DirectoryUser::MEMBER, 1,
                            {GroupId(6), GroupId(8), GroupId(10)});
  *req.add_users() = Grants(UserId(8), kWs1, v1::DirectoryUser::GUEST, 50,
                            {GroupId(10), GroupId(12)});
  v1::UserGrants replaced =
      Grants(UserId(16), kWs1, v1::DirectoryUser::GUEST, 50, {});
  replaced.set_replace(true);
  *req.add_users() = replaced;
  absl::StatusOr<v1::ApplyGrantsResponse> applied = store_.ApplyGrants(req);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_TRUE(applied->applied());
  for (const v1::UserGrantResult& r : applied->results()) {
    EXPECT_TRUE(r.ok()) << r.DebugString();
  }
  ExpectExact("bulk ApplyGrants");
  // The usage ApplyGrants reports is the one now stored.
  const std::vector<int64_t> now = Row(kCounters, kWs1);
  EXPECT_EQ(applied->usage_after().used_by_members(), now[1]);
  EXPECT_EQ(applied->usage_after().used_by_multi_group_guests(), now[2]);
  EXPECT_EQ(applied->usage_after().single_group_guests(), now[3]);

  // SyncUsers: a guest converted to a member, another archived.
  v1::UserRecord convert =
      Grants(UserId(1002), kWs1, v1::DirectoryUser::MEMBER, 2, {}).user();
  v1::UserRecord archive =
      Grants(UserId(1003), kWs1, v1::DirectoryUser::GUEST, 2, {}).user();
  archive.set_status(v1::DirectoryUser::ARCHIVED);
  ASSERT_TRUE(store_.SyncUsers({convert, archive}).ok());
  ExpectExact("SyncUsers");

  // Single memberships through the store.
  ASSERT_TRUE(
      store_.AddGroupMember(kWs1, GroupId(12), UserId(1001), Role::kMember)
          .ok());
  ASSERT_TRUE(store_.RemoveGroupMember(GroupId(6), UserId(1000)).ok());
  ExpectExact("AddGroupMember / RemoveGroupMember");

  // A user moved to the other workspace leaves one set of counters for the
  // other in the same statement.
  Exec("UPDATE membership.users SET workspace_id = $2 WHERE id = $1",
       {UserId(1100), kWs2});
  ExpectExact("user moved between workspaces");
}

// V007: asked to (optimistic grants), the counter trigger fails a statement
// that raises usage past the licence count; other writers, and statements
// that do not raise usage, pass as before.
TEST_F(LicenseCountersTest, TriggerRefusesUsagePastTheCountOnlyWhenAsked) {
  const std::string ws = Uuid(2, 7);
  MakeWorkspace(ws, 1, {});
  auto insert_member = [&](int n, bool enforce) -> absl::Status {
    absl::StatusOr<pg::PooledConnection> conn = pool_->Acquire();
    if (!conn.ok()) return conn.status();
    pg::Transaction tx(*conn, enforce ? "BEGIN; SET LOCAL "
                                        "membership.enforce_licences = 'on'"
                                      : "BEGIN");
    absl::Status s =
        tx.Exec(
              "INSERT INTO membership.users (id, workspace_id, username, "
              "kind, status, version) VALUES ($1, $2, $3, 2, 3, 1)",
              {Uuid(7, n), ws, absl::StrCat("member", n)})
            .status();
    return s.ok() ? tx.Commit() : s;
  };
  EXPECT_TRUE(insert_member(1, true).ok());  // 1 of 1
  absl::Status over = insert_member(2, true);
  EXPECT_FALSE(over.ok());
  EXPECT_THAT(std::string(over.message()), ::testing::HasSubstr("GL001"));
  EXPECT_EQ(Row(kCounters, ws), (std::vector<int64_t>{1, 1, 0, 0}));
  // Not asked (SyncUsers, the careful path): over the count is recorded.
  EXPECT_TRUE(insert_member(2, false).ok());
  EXPECT_EQ(Row(kCounters, ws), (std::vector<int64_t>{1, 2, 0, 0}));
  // Over the count but not raising usage: passes even when asked.
  absl::StatusOr<pg::PooledConnection> conn = pool_->Acquire();
  ASSERT_TRUE(conn.ok()) << conn.status();
  pg::Transaction tx(*conn,
                     "BEGIN; SET LOCAL membership.enforce_licences = 'on'");
  EXPECT_TRUE(tx.Exec("UPDATE membership.users SET first_name = 'M' WHERE "
                      "workspace_id = $1",
                      {ws})
                  .ok());
  EXPECT_TRUE(tx.Exec("UPDATE membership.users SET status = 6 WHERE id = $1",
                      {Uuid(7, 2)})
                  .ok());
  EXPECT_TRUE(tx.Commit().ok());
  EXPECT_EQ(Row(kCounters, ws), (std::vector<int64_t>{1, 1, 0, 0}));
}

TEST_F(LicenseCountersTest, BulkInsertIsOneTriggerCallNotOnePerRow) {
  const std::string ws = Uuid(2, 3);
  v1::WorkspaceRecord w;
  w.set_workspace_id(ws);
  w.set_license_count(10);
  w.set_version(1);
  ASSERT_TRUE(store_.SyncWorkspace(w).ok());
  absl::StatusOr<pg::PooledConnection> conn = pool_->Acquire();
  ASSERT_TRUE(conn.ok()) << conn.status();
  pg::Transaction tx(*conn);
  ASSERT_TRUE(tx.status().ok()) << tx.status();
  ASSERT_TRUE(tx.Exec("SET LOCAL track_functions = 'pl'").ok());
  // 50,000 invited guests in one statement.
  ASSERT_TRUE(
      tx.Exec("INSERT INTO membership.users (id, workspace_id, username, "
              "kind, status, version) SELECT ('00000000-0000-4000-8004-' || "
              "lpad(i::text, 12, '0'))::uuid, $1, 'bulk' || i, 3, 2, 1 "
              "FROM generate_series(1, 50000) i",
              {ws})
          .ok());
  absl::StatusOr<pg::Result> calls = tx.Exec(
      "SELECT calls FROM pg_stat_xact_user_functions WHERE "
      "funcname = 'count_licenses'");
  ASSERT_TRUE(calls.ok()) << calls.status();
  ASSERT_EQ(calls->rows(), 1);
  EXPECT_EQ(calls->GetInt(0, 0), 1) << "one trigger call per statement";
  ASSERT_TRUE(tx.Commit().ok());
  absl::StatusOr<LicenseUsage> usage = store_.GetLicenseUsage(ws);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->single_group_guests, 50000);
  EXPECT_EQ(usage->used(), 0);
  EXPECT_EQ(Row(kCounters, ws), Row(kRecount, ws));

  // Deleting them all: one trigger call for the whole statement too.
  absl::StatusOr<pg::PooledConnection> conn2 = pool_->Acquire();
  ASSERT_TRUE(conn2.ok()) << conn2.status();
  pg::Transaction del(*conn2);
  ASSERT_TRUE(del.Exec("SET LOCAL track_functions = 'pl'").ok());
  ASSERT_TRUE(
      del.Exec("DELETE FROM membership.users WHERE workspace_id = $1", {ws})
          .ok());
  absl::StatusOr<pg::Result> del_calls = del.Exec(
      "SELECT calls FROM pg_stat_xact_user_functions WHERE "
      "funcname = 'count_licenses'");
  ASSERT_TRUE(del_calls.ok()) << del_calls.status();
  ASSERT_EQ(del_calls->rows(), 1);
  EXPECT_EQ(del_calls->GetInt(0, 0), 1);
  ASSERT_TRUE(del.Commit().ok());
  EXPECT_EQ(Row(kCounters, ws), Row(kRecount, ws));
}

// V008: an invite writes the new user's memberships before the user (V005),
// so the group counter has nothing to update; its empty UPDATE used to fire
// the users' and then the workspaces' UPDATE triggers anyway. A membership
// of an existing user still moves its group_count.
TEST_F(LicenseCountersTest, MembershipsOfANewUserFireNoUserOrWorkspaceTrigger) {
  const std::string ws = Uuid(2, 9);
  const std::string group = Uuid(1, 800);
  MakeWorkspace(ws, 10, {{group, "Invitees"}});
  absl::StatusOr<pg::PooledConnection> conn = pool_->Acquire();
  ASSERT_TRUE(conn.ok()) << conn.status();
  pg::Transaction tx(*conn);
  ASSERT_TRUE(tx.status().ok()) << tx.status();
  ASSERT_TRUE(tx.Exec("SET LOCAL track_functions = 'pl'").ok());
  // Counts of this backend not yet flushed to the shared statistics are
  // in the view too (earlier transactions on the pooled connection): the
  // INSERT's calls are the difference.
  auto calls = [&](const char* function) -> int64_t {
    absl::StatusOr<pg::Result> r = tx.Exec(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
        "WHERE funcname = $1",
        {function});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->GetInt(0, 0) : -1;
  };
  const std::string fresh = Uuid(8, 1);
  const int64_t groups_before = calls("count_user_groups");
  const int64_t licences_before = calls("count_licenses");
  const int64_t workspace_before = calls("notify_workspace_update");
  ASSERT_TRUE(tx.Exec("INSERT INTO membership.group_members (group_id, "
                      "user_id, role) VALUES ($1, $2, 1)",
                      {group, fresh})
                  .ok());
  EXPECT_EQ(calls("count_user_groups") - groups_before, 1);
  EXPECT_EQ(calls("count_licenses") - licences_before, 0)
      << "no users UPDATE trigger";
  EXPECT_EQ(calls("notify_workspace_update") - workspace_before, 0)
      << "no workspaces trigger";
  ASSERT_TRUE(tx.Exec("INSERT INTO membership.users (id, workspace_id, "
                      "username, kind, status, version, group_count) "
                      "VALUES ($1, $2, 'fresh', 3, 2, 1, 1)",
                      {fresh, ws})
                  .ok());
  // A second group for the now existing user is counted.
  const std::string second = Uuid(1, 801);
  ASSERT_TRUE(tx.Exec("INSERT INTO membership.groups (id, workspace_id, "
                      "name, visibility) VALUES ($1, $2, 'Second', 1)",
                      {second, ws})
                  .ok());
  ASSERT_TRUE(tx.Exec("INSERT INTO membership.group_members (group_id, "
                      "user_id, role) VALUES ($1, $2, 1)",
                      {second, fresh})
                  .ok());
  absl::StatusOr<pg::Result> count = tx.Exec(
      "SELECT group_count FROM membership.users WHERE id = $1", {fresh});
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(count->GetInt(0, 0), 2);
  // A role change moves no count and fires no users trigger; a membership
  // moved to another user moves one from each.
  const int64_t licences_before_role = calls("count_licenses");
  ASSERT_TRUE(tx.Exec("UPDATE membership.group_members SET role = 2 "
                      "WHERE user_id = $1",
                      {fresh})
                  .ok());
  EXPECT_EQ(calls("count_licenses") - licences_before_role, 0);
  const std::string other = Uuid(8, 2);
  ASSERT_TRUE(tx.Exec("INSERT INTO membership.users (id, workspace_id, "
                      "username, kind, status, version) "
                      "VALUES ($1, $2, 'other', 3, 2, 1)",
                      {other, ws})
                  .ok());
  ASSERT_TRUE(tx.Exec("UPDATE membership.group_members SET user_id = $2 "
                      "WHERE group_id = $3 AND user_id = $1",
                      {fresh, other, second})
                  .ok());
  absl::StatusOr<pg::Result> counts = tx.Exec(
      "SELECT group_count FROM membership.users WHERE id IN ($1, $2) "
      "ORDER BY username",
      {fresh, other});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->GetInt(0, 0), 1) << "fresh";
  EXPECT_EQ(counts->GetInt(1, 0), 1) << "other";
  ASSERT_TRUE(tx.Commit().ok());
  // Two single-group guests, as a full recount says.
  EXPECT_EQ(Row(kCounters, ws), (std::vector<int64_t>{10, 0, 0, 2}));
  EXPECT_EQ(Row(kRecount, ws), Row(kCounters, ws));
}

// Bulk ApplyGrants write new users once, with their group_count already set
// (V005: memberships first, then the users). Requests racing to create
// the same users with different groups, and a bulk request that also adds
// groups to users it created before, must still leave exact counters.
TEST_F(LicenseCountersTest, ConcurrentBulkCreatesOfTheSameUsersStayExact) {
  const std::string ws = Uuid(2, 5);
  MakeWorkspace(
      ws, 1000,
      {{GroupId(951), "c1"}, {GroupId(952), "c2"}, {GroupId(953), "c3"}});
  const std::vector<std::vector<std::string>> sets = {
      {GroupId(951)},
      {GroupId(952)},
      {GroupId(951), GroupId(953)},
      {GroupId(952), GroupId(953)},
      {}};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < sets.size(); ++t) {
    threads.emplace_back([&, t] {
      v1::ApplyGrantsRequest req;
      req.set_workspace_id(ws);
      req.set_best_effort(true);
      for (int i = 0; i < 40; ++i) {
        *req.add_users() =
            Grants(UserId(9500 + i), ws, v1::DirectoryUser::GUEST, 1, sets[t]);
      }
      absl::StatusOr<v1::ApplyGrantsResponse> r = store_.ApplyGrants(req);
      EXPECT_TRUE(r.ok()) << r.status();
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(Row(kCounters, ws), Row(kRecount, ws));
  absl::StatusOr<pg::Result> members = pool_->Exec(
      "SELECT count(DISTINCT group_id) FROM membership.group_members m JOIN "
      "membership.users u ON u.id = m.user_id WHERE u.workspace_id = $1",
      {ws});
  ASSERT_TRUE(members.ok()) << members.status();
  EXPECT_EQ(members->GetInt(0, 0), 3) << "every request added its groups";
  absl::StatusOr<pg::Result> drift = pool_->Exec(
      "SELECT count(*) FROM membership.users u WHERE u.workspace_id = $1 AND "
      "u.group_count <> (SELECT count(*) FROM membership.group_members m "
      "WHERE m.user_id = u.id)",
      {ws});
  ASSERT_TRUE(drift.ok()) << drift.status();
  EXPECT_EQ(drift->GetInt(0, 0), 0) << "users with a wrong group_count";
  absl::StatusOr<LicenseUsage> usage = store_.GetLicenseUsage(ws);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->used_by_multi_group_guests, 40);
}

// Single-user grants (the invite path) create a new user without the
// workspace lock, memberships first, then the user with its group_count.
// Racing creates of the same user with different groups: one wins, the
// others fall back to the locked path; the counts stay exact.
TEST_F(LicenseCountersTest, ConcurrentSingleUserCreatesStayExact) {
  const std::string ws = Uuid(2, 8);
  MakeWorkspace(
      ws, 1000,
      {{GroupId(981), "s1"}, {GroupId(982), "s2"}, {GroupId(983), "s3"}});
  const std::vector<std::vector<std::string>> sets = {
      {GroupId(981)},
      {GroupId(982)},
      {GroupId(981), GroupId(983)},
      {GroupId(982), GroupId(983)}};
  for (int round = 0; round < 10; ++round) {
    const std::string user = UserId(9800 + round);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < sets.size(); ++t) {
      threads.emplace_back([&, t] {
        v1::ApplyGrantsRequest req;
        req.set_workspace_id(ws);
        *req.add_users() =
            Grants(user, ws, v1::DirectoryUser::GUEST, 1, sets[t]);
        absl::StatusOr<v1::ApplyGrantsResponse> r = store_.ApplyGrants(req);
        EXPECT_TRUE(r.ok()) << r.status();
      });
    }
    for (std::thread& t : threads) t.join();
  }
  EXPECT_EQ(Row(kCounters, ws), Row(kRecount, ws));
  absl::StatusOr<pg::Result> drift = pool_->Exec(
      "SELECT count(*), count(*) FILTER (WHERE u.group_count <> (SELECT "
      "count(*) FROM membership.group_members m WHERE m.user_id = u.id)) "
      "FROM membership.users u WHERE u.workspace_id = $1",
      {ws});
  ASSERT_TRUE(drift.ok()) << drift.status();
  EXPECT_EQ(drift->GetInt(0, 0), 10) << "each user created once";
  EXPECT_EQ(drift->GetInt(0, 1), 0) << "users with a wrong group_count";
  EXPECT_EQ(Orphans(), 0);
}

// Counter updates write the workspace row, but they are not authorization
// changes: they must not make every replica's Check cache drop the
// workspace's groups (V002 notified on every workspaces UPDATE).
TEST_F(LicenseCountersTest, CounterChangesDoNotNotifyWorkspaceChanges) {
  const std::string ws = Uuid(2, 4);
  v1::WorkspaceRecord w;
  w.set_workspace_id(ws);
  w.set_license_count(10);
  w.set_members_can_invite_guests(true);
  w.set_version(1);
  ASSERT_TRUE(store_.SyncWorkspace(w).ok());
  Exec(
      "INSERT INTO membership.groups (id, workspace_id, name, visibility) "
      "VALUES ($1, $2, 'n1', 1), ($3, $2, 'n2', 1)",
      {GroupId(901), ws, GroupId(902)});

  pg::Connection listener(PQconnectdb(db_->ConnInfo().c_str()));
  ASSERT_TRUE(listener.healthy());
  ASSERT_TRUE(listener.ExecScript("LISTEN membership_authz").ok());
  // Everything committed before a round trip has been delivered after it.
  auto drain = [&listener]() {
    std::vector<std::string> payloads;
    EXPECT_TRUE(listener.Exec("SELECT 1").ok());
    while (PGnotify* n = PQnotifies(listener.raw())) {
      payloads.emplace_back(n->extra);
      PQfreemem(n);
    }
    return payloads;
  };

  v1::ApplyGrantsRequest req;
  req.set_workspace_id(ws);
  *req.add_users() = Grants(UserId(9001), ws, v1::DirectoryUser::GUEST, 1,
                            {GroupId(901), GroupId(902)});
  *req.add_users() =
      Grants(UserId(9002), ws, v1::DirectoryUser::MEMBER, 1, {GroupId(901)});
  absl::StatusOr<v1::ApplyGrantsResponse> applied = store_.ApplyGrants(req);
  ASSERT_TRUE(applied.ok()) << applied.status();
  ASSERT_TRUE(applied->applied());
  EXPECT_EQ(applied->usage_after().used_by_members(), 1);
  EXPECT_EQ(applied->usage_after().used_by_multi_group_guests(), 1);
  for (const std::string& p : drain()) {
    EXPECT_NE(p.substr(0, 2), "w:") << p;
    EXPECT_NE(p, "*");
  }

  // A settings change still notifies.
  w.set_members_can_invite_guests(false);
  w.set_version(2);
  ASSERT_TRUE(store_.SyncWorkspace(w).ok());
  const std::vector<std::string> payloads = drain();
  EXPECT_NE(std::find(payloads.begin(), payloads.end(), "w:" + ws),
            payloads.end());
}

namespace race {

// Waits until some session waits for a lock (the store's call blocked).
bool AwaitLockWaiter(pg::Pool& pool) {
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<pg::Result> r = pool.Exec(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
        "'Lock' AND datname = current_database()");
    if (r.ok() && r->GetInt(0, 0) > 0) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return false;
}

}  // namespace race

// A grant that holds its group (FOR KEY SHARE, as ApplyGrants does) and
// commits while DeleteGroup waits: the delete must still take the new
// membership with it (it deletes memberships after the group, not before).
TEST_F(LicenseCountersTest, GroupDeleteWaitingForAGrantLeavesNoOrphans) {
  const std::string ws = Uuid(2, 6);
  MakeWorkspace(ws, 100, {{GroupId(961), "doomed"}});
  v1::ApplyGrantsRequest req;
  req.set_workspace_id(ws);
  *req.add_users() = Grants(UserId(9601), ws, v1::DirectoryUser::GUEST, 1, {});
  ASSERT_TRUE(store_.ApplyGrants(req).ok());

  pg::Connection grant(PQconnectdb(db_->ConnInfo().c_str()));
  ASSERT_TRUE(grant.ExecScript("BEGIN").ok());
  ASSERT_TRUE(grant
                  .Exec("SELECT 1 FROM membership.groups WHERE id = $1 FOR "
                        "KEY SHARE",
                        {GroupId(961)})
                  .ok());
  absl::Status deleted;
  std::thread deleter([&] { deleted = store_.DeleteGroup(GroupId(961)); });
  EXPECT_TRUE(race::AwaitLockWaiter(*pool_));
  ASSERT_TRUE(grant
                  .Exec("INSERT INTO membership.group_members (group_id, "
                        "user_id) VALUES ($1, $2)",
                        {GroupId(961), UserId(9601)})
                  .ok());
  ASSERT_TRUE(grant.ExecScript("COMMIT").ok());
  deleter.join();
  EXPECT_TRUE(deleted.ok()) << deleted;
  EXPECT_EQ(Orphans(), 0);
  EXPECT_EQ(Row(kCounters, ws), Row(kRecount, ws));
}

// A grant racing a group delete that commits first: ApplyGrants read the
// group before the delete committed, waits on it, and must then refuse
// (NOT_FOUND) instead of adding a membership to a deleted group.
TEST_F(LicenseCountersTest, GrantWaitingForAGroupDeleteFindsTheGroupGone) {
  const std::string ws = Uuid(2, 7);
  MakeWorkspace(ws, 100, {{GroupId(971), "going"}});

  pg::Connection deleter(PQconnectdb(db_->ConnInfo().c_str()));
  ASSERT_TRUE(deleter.ExecScript("BEGIN").ok());
  ASSERT_TRUE(
      deleter
          .Exec("DELETE FROM membership.groups WHERE id = $1", {GroupId(971)})
          .ok());
  absl::StatusOr<v1::ApplyGrantsResponse> granted;
  std::thread grant([&] {
    v1::ApplyGrantsRequest req;
    req.set_workspace_id(ws);
    *req.add_users() =
        Grants(UserId(9701), ws, v1::DirectoryUser::GUEST, 1, {GroupId(971)});
    granted = store_.ApplyGrants(req);
  });
  EXPECT_TRUE(race::AwaitLockWaiter(*pool_));
  ASSERT_TRUE(deleter.ExecScript("COMMIT").ok());
  grant.join();
  ASSERT_TRUE(granted.ok()) << granted.status();
  ASSERT_EQ(granted->results_size(), 1);
  EXPECT_FALSE(granted->results(0).ok());
  EXPECT_EQ(granted->results(0).error_code(),
            static_cast<int>(absl::StatusCode::kNotFound))
      << granted->results(0).error_message();
  EXPECT_EQ(Orphans(), 0);
}

}  // namespace
}  // namespace guestlist::membership
