#include "services/membership/storage/store.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace guestlist::membership {
namespace {

using pg::Param;
using pg::Params;

constexpr char kUserColumns[] =
    "u.id, u.username, u.email, u.first_name, u.last_name, u.kind, u.status";

constexpr char kGroupColumns[] =
    "g.id, g.workspace_id, g.name, g.description, g.visibility, "
    "g.members_can_invite, g.members_can_publish, g.create_time, "
    "g.update_time, (SELECT count(*) FROM membership.group_members c "
    "WHERE c.group_id = g.id)";

// Locks the workspace row: every licence-changing transaction of the
// workspace queues here, so two grants never both see the last licence.
constexpr char kLockWorkspace[] =
    "SELECT license_count, members_can_invite_guests FROM "
    "membership.workspaces WHERE id = $1 FOR UPDATE";

// Licence usage of a workspace: the counters V003's triggers keep exact on
// every write, so a check under the workspace lock is O(1).
constexpr char kUsage[] =
    "SELECT license_count, used_by_members, used_by_multi_group_guests, "
    "single_group_guests FROM membership.workspaces WHERE id = $1";

// Locks the workspace of a group before its memberships change: licence
// counters live on the workspace row, so every writer that may move them
// takes that lock first (the same order as ApplyGrants), never after
// holding user or membership rows (which could deadlock).
constexpr char kLockGroupWorkspace[] =
    "SELECT w.id FROM membership.groups g JOIN membership.workspaces w ON "
    "w.id = g.workspace_id WHERE g.id = $1 FOR UPDATE OF w";

// ApplyGrants of at least this many users lock the workspace first (see
// MembershipStore::ApplyGrants); single invites keep the optimistic path.
constexpr int kLockFirstUsers = 2;

google::protobuf::Timestamp ToProtoTime(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t micros = absl::ToUnixMicros(t);
  int64_t secs = micros / 1000000;
  int64_t rem = micros % 1000000;
  if (rem < 0) {
    rem += 1000000;
    --secs;
  }
  ts.set_seconds(secs);
  ts.set_nanos(static_cast<int32_t>(rem * 1000));
  return ts;
}

absl::Time FromProtoTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string IntArray(const std::vector<int64_t>& values) {
  return absl::StrCat("{", absl::StrJoin(values, ","), "}");
}

// SQL matching `$n` as a case-insensitive prefix of any searchable column,
// as range scans on the C-collated keys (the btrees serve them), exactly as
// identity's ListUsers does.
std::string PrefixFilter(int n) {
  auto range = [n](const char* col) {
    return absl::StrCat("(u.", col, " >= lower($", n, ") COLLATE \"C\" AND u.",
                        col, " < (lower($", n,
                        ") || chr(1114111)) COLLATE \"C\")");
  };
  return absl::StrCat("(", range("email_lc"), " OR ", range("username_lc"),
                      " OR ", range("first_lc"), " OR ", range("last_lc"),
                      " OR ", range("name_lc"), ")");
}

// V006 dropped the foreign keys of group_members and app_privileges: each
// cost an index probe and a row lock per inserted row, a quarter of a bulk
// grant's database time. Their guarantee is kept once per statement
// instead. A writer locks the parent rows it attaches rows to FOR KEY
// SHARE (the lock the FK check took) within `ws`; a deleter deletes the
// parent row first and its children after (DeleteChildren). A writer
// racing a delete either commits first (its rows are then deleted with the
// rest) or waits for the delete and finds the parent gone.
// `table`: "groups", "apps" or "users".
absl::Status LockParents(pg::Transaction& tx, absl::string_view table,
                         const std::string& ws,
                         const std::vector<std::string>& ids) {
  if (ids.empty()) return absl::OkStatus();
  const absl::flat_hash_set<std::string> distinct(ids.begin(), ids.end());
  ASSIGN_OR_RETURN(
      pg::Result r,
      tx.Exec(
          absl::StrCat("SELECT count(*) FROM (SELECT 1 FROM membership.", table,
                       " WHERE workspace_id = $1 AND id = ANY($2::uuid[]) "
                       "FOR KEY SHARE) s"),
          {ws, pg::TextArray(std::vector<std::string>(distinct.begin(),
                                                      distinct.end()))}));
  if (r.GetInt(0, 0) != static_cast<int64_t>(distinct.size())) {
    return absl::AbortedError(
        absl::StrCat("a ", table.substr(0, table.size() - 1),
                     " of this request was deleted while it ran; retry"));
  }
  return absl::OkStatus();
}

// The rows V006's dropped foreign keys deleted by cascade: after deleting
// the parent rows (`column` = "group_id", "app_id" or "user_id").
absl::Status DeleteChildren(pg::Transaction& tx, absl::string_view column,
                            const std::vector<std::string>& ids) {
  const pg::Param array = pg::TextArray(ids);
  if (column != "app_id") {
    RETURN_IF_ERROR(tx.Exec(absl::StrCat("DELETE FROM membership.group_members "
                                         "WHERE ",
                                         column, " = ANY($1::uuid[])"),
                            {array})
                        .status());
  }
  if (column != "group_id") {
    RETURN_IF_ERROR(
        tx.Exec(absl::StrCat("DELETE FROM membership.app_privileges WHERE ",
                             column, " = ANY($1::uuid[])"),
                {array})
            .status());
  }
  return absl::OkStatus();
}

int ClampPageSize(int requested, int def) {
  if (requested <= 0) return def;
  return std::min(requested, 1000);
}

v1::DirectoryUser ReadUser(const pg::Result& r, int row, int col) {
  v1::DirectoryUser u;
  u.set_id(r.Get(row, col));
  u.set_username(r.Get(row, col + 1));
  u.set_email(r.Get(row, col + 2));
  u.set_first_name(r.Get(row, col + 3));
  u.set_last_name(r.Get(row, col + 4));
  u.set_kind(static_cast<v1::DirectoryUser::Kind>(r.GetInt(row, col + 5)));
  u.set_status(static_cast<v1::DirectoryUser::Status>(r.GetInt(row, col + 6)));
  return u;
}

v1::Group ReadGroup(const pg::Result& r, int row) {
  v1::Group g;
  g.set_id(r.Get(row, 0));
  g.set_workspace_id(r.Get(row, 1));
  g.set_name(r.Get(row, 2));
  g.set_description(r.Get(row, 3));
  g.set_visibility(static_cast<v1::Group::Visibility>(r.GetInt(row, 4)));
  g.set_members_can_invite(r.GetBool(row, 5));
  g.set_members_can_publish(r.GetBool(row, 6));
  *g.mutable_create_time() = ToProtoTime(pg::ParseTime(r.Get(row, 7)));
  *g.mutable_update_time() = ToProtoTime(pg::ParseTime(r.Get(row, 8)));
  g.set_member_count(static_cast<int32_t>(r.GetInt(row, 9)));
  return g;
}

v1::App ReadApp(const pg::Result& r, int row) {
  v1::App a;
  a.set_id(r.Get(row, 0));
  a.set_workspace_id(r.Get(row, 1));
  a.set_slug(r.Get(row, 2));
  a.set_name(r.Get(row, 3));
  *a.mutable_create_time() = ToProtoTime(pg::ParseTime(r.Get(row, 4)));
  return a;
}

absl::Time ReadExpiry(const pg::Result& r, int row, int col) {
  if (r.IsNull(row, col)) return absl::InfiniteFuture();
  return pg::ParseTime(r.Get(row, col));
}

// The licence usage of kUsage's result.
absl::StatusOr<LicenseUsage> UsageOf(const pg::Result& r,
                                     const std::string& ws) {
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("workspace ", ws, " not found"));
  }
  LicenseUsage u;
  u.license_count = static_cast<int>(r.GetInt(0, 0));
  u.used_by_members = static_cast<int>(r.GetInt(0, 1));
  u.used_by_multi_group_guests = static_cast<int>(r.GetInt(0, 2));
  u.single_group_guests = static_cast<int>(r.GetInt(0, 3));
  return u;
}

template <typename Exec>
absl::StatusOr<LicenseUsage> QueryUsage(Exec&& exec, const std::string& ws) {
  ASSIGN_OR_RETURN(pg::Result r, exec(kUsage, Params{ws}));
  return UsageOf(r, ws);
}

// Usage as seen by `tx`. Exact while `tx` holds the workspace lock (no
// other writer can move the counters until it commits, and each statement
// of a READ COMMITTED transaction sees everything committed before it);
// without the lock, a snapshot that the caller must check again.
absl::StatusOr<LicenseUsage> TxUsage(pg::Transaction& tx,
                                     const std::string& ws) {
  return QueryUsage(
      [&](const char* sql, const Params& p) { return tx.ExecPrepared(sql, p); },
      ws);
}

absl::Status NeverSynced(const std::string& ws) {
  return absl::FailedPreconditionError(absl::StrCat(
      "workspace ", ws,
      " is unknown to membership; identity must SyncWorkspace it first"));
}

v1::LicenseUsage ToProto(const LicenseUsage& u) {
  v1::LicenseUsage p;
  p.set_license_count(u.license_count);
  p.set_used_by_members(u.used_by_members);
  p.set_used_by_multi_group_guests(u.used_by_multi_group_guests);
  p.set_single_group_guests(u.single_group_guests);
  p.set_available(u.available());
  return p;
}

std::string Describe(const std::string& username, Kind kind) {
  return absl::StrCat(KindName(kind), " ", username);
}

// The licence-relevant state of one user in ApplyGrants.
struct Existing {
  std::string workspace_id;
  Kind kind = Kind::kUnspecified;
  Status status = Status::kUnspecified;
  int64_t version = 0;
  std::string username;
  std::map<std::string, int> groups;      // group id -> role
  std::map<std::string, int> privileges;  // app id -> privilege
};

struct GrantsOutcome {
  std::vector<v1::UserGrantResult> results;
  LicenseUsage before;
  LicenseUsage after;
  bool any_failed = false;
  std::string first_error_message;
  int first_error_code = 0;
};

// Plans and (unless `dry_run`) writes ApplyGrants for one workspace inside
// `tx`. With the workspace row locked first the plan is exact; without,
// the caller must check the counters before commit. When !best_effort and
// a user fails, nothing is written.
//
// The users the plan found absent are created with their memberships
// counted once (V005): memberships first (V003's counter trigger finds no
// such user and writes nothing), then the users with group_count already
// set, with a plain INSERT. A user created meanwhile by another
// transaction is a unique-key error that rolls all of this back (the
// optimistic caller then retries under the lock), never a miscount; and no
// other writer adds memberships to a user before its row is committed:
// every one locks the user row first (LockParents, or the locking reads
// above).
//
// The writes go in one round trip (libpq pipeline); with `commit`, with the
// COMMIT: the new users' INSERT (the write that locks the workspace row)
// and the COMMIT then run with no client wait in between.
absl::StatusOr<GrantsOutcome> ApplyGrantsTx(
    pg::Transaction& tx, const std::string& ws,
    const google::protobuf::RepeatedPtrField<v1::UserGrants>& users,
    bool dry_run, bool best_effort, bool touch_grants, bool commit = false) {
  GrantsOutcome out;
  std::vector<std::string> user_ids, group_ids, app_ids;
  for (const v1::UserGrants& g : users) {
    user_ids.push_back(g.user().id());
    for (const auto& id : g.group_ids()) group_ids.push_back(id);
    for (const auto& id : g.remove_group_ids()) group_ids.push_back(id);
    for (const auto& p : g.app_privileges()) app_ids.push_back(p.app_id());
    for (const auto& id : g.remove_app_ids()) app_ids.push_back(id);
  }
  // A write locks every group, app and existing user it reads FOR KEY
  // SHARE as it reads them (see LockParents): one statement each, and a
  // concurrent delete is either waited for (and the row then found gone)
  // or kept out until this transaction ends.
  // The reads go together in one round trip (libpq pipeline): the groups
  // and apps named, the users, the licence usage.
  const char* const lock = dry_run ? "" : " FOR KEY SHARE";
  std::vector<pg::Statement> reads;
  // Which of `ids` the workspace has in `table` ("groups" or "apps"); no
  // statement for none.
  auto read_known = [&](const char* table,
                        const std::vector<std::string>& ids) {
    if (ids.empty()) return;
    reads.push_back({absl::StrCat("SELECT id FROM membership.", table,
                                  " WHERE workspace_id = $1 AND id = "
                                  "ANY($2::uuid[])",
                                  lock),
                     {ws, pg::TextArray(ids)}});
  };
  read_known("groups", group_ids);
  read_known("apps", app_ids);
  reads.push_back({absl::StrCat("SELECT id, workspace_id, kind, status, "
                                "version, username FROM membership.users "
                                "WHERE id = ANY($1::uuid[])",
                                lock),
                   {pg::TextArray(user_ids)}});
  reads.push_back({kUsage, {ws}});
  ASSIGN_OR_RETURN(std::vector<pg::Result> read, tx.ExecPipeline(reads));
  size_t next_read = 0;
  // The results of read_known, in the same order.
  auto known = [&](const std::vector<std::string>& ids) {
    absl::flat_hash_set<std::string> out;
    if (ids.empty()) return out;
    const pg::Result& r = read[next_read++];
    for (int i = 0; i < r.rows(); ++i) out.insert(r.Get(i, 0));
    return out;
  };
  const absl::flat_hash_set<std::string> known_groups = known(group_ids);
  const absl::flat_hash_set<std::string> known_apps = known(app_ids);
  absl::flat_hash_map<std::string, Existing> existing;
  std::vector<std::string> found;  // memberships exist only for these
  {
    const pg::Result& r = read[next_read++];
    found.reserve(r.rows());
    for (int i = 0; i < r.rows(); ++i) {
      Existing& e = existing[r.Get(i, 0)];
      e.workspace_id = r.Get(i, 1);
      e.kind = static_cast<Kind>(r.GetInt(i, 2));
      e.status = static_cast<Status>(r.GetInt(i, 3));
      e.version = r.GetInt(i, 4);
      e.username = r.Get(i, 5);
      found.push_back(r.Get(i, 0));
    }
  }
  ASSIGN_OR_RETURN(out.before, UsageOf(read[next_read++], ws));
  // A batch of new users (an import, an invite) skips both lookups.
  if (!found.empty()) {
    ASSIGN_OR_RETURN(
        std::vector<pg::Result> access,
        tx.ExecPipeline(
            {{"SELECT user_id, group_id, role FROM membership.group_members "
              "WHERE user_id = ANY($1::uuid[])",
              {pg::TextArray(found)}},
             {"SELECT user_id, app_id, privilege FROM "
              "membership.app_privileges WHERE user_id = ANY($1::uuid[])",
              {pg::TextArray(found)}}}));
    for (int i = 0; i < access[0].rows(); ++i) {
      existing[access[0].Get(i, 0)].groups[access[0].Get(i, 1)] =
          static_cast<int>(access[0].GetInt(i, 2));
    }
    for (int i = 0; i < access[1].rows(); ++i) {
      existing[access[1].Get(i, 0)].privileges[access[1].Get(i, 1)] =
          static_cast<int>(access[1].GetInt(i, 2));
    }
  }
  LicenseUsage usage = out.before;

  // Planned writes, for the users that pass; `creates` with their group
  // counts and memberships new_g / new_u.
  std::vector<const v1::UserRecord*> upserts, creates;
  std::vector<int64_t> create_group_counts;
  std::vector<std::string> add_g, add_u, new_g, new_u, del_g, del_u, setp_a,
      setp_u, delp_a, delp_u;
  std::vector<int64_t> setp_p;
  std::vector<std::string> demote;
  absl::flat_hash_set<std::string> seen;

  for (const v1::UserGrants& g : users) {
    const v1::UserRecord& rec = g.user();
    v1::UserGrantResult res;
    res.set_user_id(rec.id());
    auto fail = [&](absl::StatusCode code, std::string message) {
      res.set_ok(false);
      res.set_error_code(static_cast<int>(code));
      res.set_error_message(message);
      if (!out.any_failed) {
        out.first_error_code = static_cast<int>(code);
        out.first_error_message = message;
      }
      out.any_failed = true;
      out.results.push_back(res);
    };
    if (!seen.insert(rec.id()).second) {
      fail(absl::StatusCode::kInvalidArgument,
           absl::StrCat("user ", rec.id(), " appears twice in the request"));
      continue;
    }
    auto it = existing.find(rec.id());
    const bool exists =
        it != existing.end() && !it->second.workspace_id.empty();
    Existing cur = it != existing.end() ? it->second : Existing{};
    if (exists && cur.workspace_id != ws) {
      fail(absl::StatusCode::kInvalidArgument,
           absl::StrCat("user ", rec.id(), " belongs to another workspace"));
      continue;
    }
    const bool newer = !exists || rec.version() > cur.version;
    if (!exists && rec.username().empty()) {
      fail(absl::StatusCode::kInvalidArgument,
           absl::StrCat("user ", rec.id(), " is new and needs a username"));
      continue;
    }
    const Kind kind = newer ? static_cast<Kind>(rec.kind()) : cur.kind;
    const Status status =
        newer ? static_cast<Status>(rec.status()) : cur.status;
    const std::string username = newer ? rec.username() : cur.username;

    // Desired groups and privileges.
    std::map<std::string, int> groups =
        g.replace() ? std::map<std::string, int>{} : cur.groups;
    std::map<std::string, int> privs =
        g.replace() ? std::map<std::string, int>{} : cur.privileges;
    std::string missing;
    for (const auto& id : g.group_ids()) {
      if (!known_groups.contains(id)) {
        missing = absl::StrCat("group ", id, " not found in the workspace");
        break;
      }
      auto old = cur.groups.find(id);
      groups[id] = old != cur.groups.end() ? old->second : 1;
    }
    for (const auto& p : g.app_privileges()) {
      if (!known_apps.contains(p.app_id())) {
        missing =
            absl::StrCat("app ", p.app_id(), " not found in the workspace");
        break;
      }
      privs[p.app_id()] = p.privilege();
    }
    if (!missing.empty()) {
      fail(absl::StatusCode::kNotFound, missing);
      continue;
    }
    if (!g.replace()) {
      for (const auto& id : g.remove_group_ids()) groups.erase(id);
      for (const auto& id : g.remove_app_ids()) privs.erase(id);
    }
    if (kind == Kind::kGuest) {
      for (auto& [id, role] : groups) role = 1;  // never GROUP_ADMIN
    }

    const LicenseClass before_class =
        exists ? Classify(cur.kind, cur.status,
                          static_cast<int>(cur.groups.size()))
               : LicenseClass::kNone;
    const LicenseClass after_class =
        Classify(kind, status, static_cast<int>(groups.size()));
    LicenseUsage next = usage;
    Apply(before_class, -1, &next);
    Apply(after_class, +1, &next);
    std::string what;
    if (after_class == LicenseClass::kMultiGroupGuest &&
        before_class == LicenseClass::kSingleGroupGuest &&
        cur.groups.size() <= 1 && groups.size() == 2) {
      what = absl::StrCat("adding a second group to guest ", username);
    } else if (after_class == LicenseClass::kMultiGroupGuest) {
      what = absl::StrCat("guest ", username, " in ", groups.size(), " groups");
    } else {
      what = absl::StrCat("adding ", Describe(username, kind));
    }
    absl::Status lic = CheckLicenseChange(usage, next, what);
    if (!lic.ok()) {
      fail(lic.code(), std::string(lic.message()));
      continue;
    }
    usage = next;

    bool changed = newer && exists ? true : !exists;
    const bool create = !exists;
    if (create) {
      creates.push_back(&rec);
      create_group_counts.push_back(static_cast<int64_t>(groups.size()));
    } else if (newer) {
      upserts.push_back(&rec);
    }
    if (touch_grants) {
      for (const auto& [id, role] : cur.groups) {
        auto n = groups.find(id);
        if (n == groups.end()) {
          del_g.push_back(id);
          del_u.push_back(rec.id());
          changed = true;
        } else if (n->second != role) {
          demote.push_back(rec.id());
          changed = true;
        }
      }
      for (const auto& [id, role] : groups) {
        if (!cur.groups.count(id)) {
          (create ? new_g : add_g).push_back(id);
          (create ? new_u : add_u).push_back(rec.id());
          changed = true;
        }
      }
      for (const auto& [id, p] : cur.privileges) {
        if (!privs.count(id)) {
          delp_a.push_back(id);
          delp_u.push_back(rec.id());
          changed = true;
        }
      }
      for (const auto& [id, p] : privs) {
        auto o = cur.privileges.find(id);
        if (o == cur.privileges.end() || o->second != p) {
          setp_a.push_back(id);
          setp_u.push_back(rec.id());
          setp_p.push_back(p);
          changed = true;
        }
      }
    } else if (kind == Kind::kGuest) {
      for (const auto& [id, role] : cur.groups) {
        if (role == 2) {
          demote.push_back(rec.id());
          break;
        }
      }
    }
    res.set_ok(true);
    res.set_changed(changed);
    out.results.push_back(res);
  }
  out.after = usage;
  if (dry_run || (out.any_failed && !best_effort)) {
    out.after = out.before;
    return out;
  }
  // A refused user leaves the decision to the caller.
  if (out.any_failed) commit = false;

  // The writes go to the server together, in this order, in one round trip
  // (with the COMMIT when `commit`): no client wait between them.
  std::vector<pg::Statement> writes;
  // The users' columns as arrays for unnest. `counts`: the group_count of
  // each (creates only).
  auto write_users = [&](const std::vector<const v1::UserRecord*>& records,
                         const std::vector<int64_t>* counts) {
    if (records.empty()) return;
    std::vector<std::string> ids, usernames, emails, firsts, lasts, expires,
        created;
    std::vector<int64_t> kinds, statuses, versions;
    for (const v1::UserRecord* r : records) {
      ids.push_back(r->id());
      usernames.push_back(r->username());
      emails.push_back(r->email());
      firsts.push_back(r->first_name());
      lasts.push_back(r->last_name());
      kinds.push_back(r->kind());
      statuses.push_back(r->status());
      versions.push_back(r->version());
      expires.push_back(r->has_access_expire_time()
                            ? *pg::Time(FromProtoTime(r->access_expire_time()))
                            : "");
      created.push_back(r->has_create_time()
                            ? *pg::Time(FromProtoTime(r->create_time()))
                            : "");
    }
    pg::Params params = {ws,
                         pg::TextArray(ids),
                         pg::TextArray(usernames),
                         pg::TextArray(emails),
                         pg::TextArray(firsts),
                         pg::TextArray(lasts),
                         IntArray(kinds),
                         IntArray(statuses),
                         pg::TextArray(expires),
                         pg::TextArray(created),
                         IntArray(versions)};
    if (counts != nullptr) {
      params.push_back(IntArray(*counts));
      writes.push_back(
          {"INSERT INTO membership.users (id, workspace_id, username, "
           "email, first_name, last_name, kind, status, "
           "access_expire_time, create_time, version, group_count) "
           "SELECT x.id::uuid, $1::uuid, x.username, x.email, x.first, "
           "x.last, x.kind, x.status, NULLIF(x.expire, '')::timestamptz, "
           "COALESCE(NULLIF(x.created, '')::timestamptz, now()), "
           "x.version, x.groups FROM unnest($2::text[], $3::text[], "
           "$4::text[], $5::text[], $6::text[], $7::smallint[], "
           "$8::smallint[], $9::text[], $10::text[], $11::bigint[], "
           "$12::integer[]) AS x(id, username, email, first, last, kind, "
           "status, expire, created, version, groups)",
           std::move(params)});
      return;
    }
    writes.push_back(
        {"INSERT INTO membership.users (id, workspace_id, username, "
         "email, first_name, last_name, kind, status, "
         "access_expire_time, create_time, version) "
         "SELECT x.id::uuid, $1::uuid, x.username, x.email, x.first, "
         "x.last, x.kind, x.status, NULLIF(x.expire, '')::timestamptz, "
         "COALESCE(NULLIF(x.created, '')::timestamptz, now()), "
         "x.version FROM unnest($2::text[], $3::text[], $4::text[], "
         "$5::text[], $6::text[], $7::smallint[], $8::smallint[], "
         "$9::text[], $10::text[], $11::bigint[]) AS x(id, username, "
         "email, first, last, kind, status, expire, created, version) "
         "ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, "
         "email = EXCLUDED.email, first_name = EXCLUDED.first_name, "
         "last_name = EXCLUDED.last_name, kind = EXCLUDED.kind, "
         "status = EXCLUDED.status, "
         "access_expire_time = EXCLUDED.access_expire_time, "
         "version = EXCLUDED.version "
         "WHERE membership.users.version < EXCLUDED.version",
         std::move(params)});
  };
  if (!new_g.empty()) {
    // See above: the new users' memberships first, the users last.
    writes.push_back(
        {"INSERT INTO membership.group_members (group_id, "
         "user_id, role) SELECT d.g, d.u, 1 FROM "
         "unnest($1::uuid[], $2::uuid[]) AS d(g, u)",
         {pg::TextArray(new_g), pg::TextArray(new_u)}});
  }
  write_users(upserts, nullptr);
  if (!del_g.empty()) {
    writes.push_back(
        {"DELETE FROM membership.group_members gm USING "
         "unnest($1::uuid[], $2::uuid[]) AS d(g, u) "
         "WHERE gm.group_id = d.g AND gm.user_id = d.u",
         {pg::TextArray(del_g), pg::TextArray(del_u)}});
  }
  if (!add_g.empty()) {
    writes.push_back(
        {"INSERT INTO membership.group_members (group_id, "
         "user_id, role) SELECT d.g, d.u, 1 FROM "
         "unnest($1::uuid[], $2::uuid[]) AS d(g, u) "
         "ON CONFLICT DO NOTHING",
         {pg::TextArray(add_g), pg::TextArray(add_u)}});
  }
  if (!demote.empty()) {
    writes.push_back(
        {"UPDATE membership.group_members SET role = 1 "
         "WHERE user_id = ANY($1::uuid[]) AND role = 2",
         {pg::TextArray(demote)}});
  }
  if (!delp_a.empty()) {
    writes.push_back(
        {"DELETE FROM membership.app_privileges p USING "
         "unnest($1::uuid[], $2::uuid[]) AS d(a, u) "
         "WHERE p.app_id = d.a AND p.user_id = d.u",
         {pg::TextArray(delp_a), pg::TextArray(delp_u)}});
  }
  if (!setp_a.empty()) {
    writes.push_back(
        {"INSERT INTO membership.app_privileges (app_id, user_id, "
         "privilege) SELECT d.a, d.u, d.p FROM unnest($1::uuid[], "
         "$2::uuid[], $3::smallint[]) AS d(a, u, p) "
         "ON CONFLICT (app_id, user_id) DO UPDATE SET privilege = "
         "EXCLUDED.privilege, update_time = now()",
         {pg::TextArray(setp_a), pg::TextArray(setp_u), IntArray(setp_p)}});
  }
  // The new users last: their INSERT moves the licence counters, which
  // locks the workspace row until commit (V003). Every other write of the
  // request is done by then, so concurrent invites of the workspace queue
  // on that row for the counters and the commit only.
  write_users(creates, &create_group_counts);
  if (writes.empty()) {
    if (commit) RETURN_IF_ERROR(tx.Commit());
    return out;
  }
  RETURN_IF_ERROR(tx.ExecPipeline(writes, commit).status());
  return out;
}

}  // namespace

std::string EncodePageToken(const std::vector<std::string>& parts) {
  return absl::WebSafeBase64Escape(absl::StrJoin(parts, "\x1f"));
}

absl::StatusOr<std::vector<std::string>> DecodePageToken(
    const std::string& token, size_t parts) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError(
        "page_token is not one this server returned; start from the first "
        "page");
  }
  std::vector<std::string> out = absl::StrSplit(raw, '\x1f');
  if (out.size() != parts) {
    return absl::InvalidArgumentError(
        "page_token is not one this server returned; start from the first "
        "page");
  }
  return out;
}

// ---------------------------------------------------------------------------
// Copies fed by identity
// ---------------------------------------------------------------------------

absl::StatusOr<std::optional<Workspace>> MembershipStore::GetWorkspace(
    const std::string& id) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec("SELECT license_count, members_can_invite_guests"
                               " FROM membership.workspaces WHERE id = $1",
                               {id}));
  if (r.rows() == 0) return std::optional<Workspace>();
  Workspace w;
  w.id = id;
  w.license_count = static_cast<int>(r.GetInt(0, 0));
  w.members_can_invite_guests = r.GetBool(0, 1);
  return std::optional<Workspace>(w);
}

absl::StatusOr<LicenseUsage> MembershipStore::SyncWorkspace(
    const v1::WorkspaceRecord& record) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  const std::string& ws = record.workspace_id();
  // Insert first so the row exists to lock; the lock then serializes the
  // licence check with concurrent grants.
  RETURN_IF_ERROR(
      tx.Exec("INSERT INTO membership.workspaces (id, license_count, "
              "members_can_invite_guests, version) VALUES ($1, $2, $3, $4) "
              "ON CONFLICT (id) DO NOTHING",
              {ws, pg::Int(record.license_count()),
               pg::Bool(record.members_can_invite_guests()),
               pg::Int(record.version())})
          .status());
  ASSIGN_OR_RETURN(pg::Result locked,
                   tx.Exec("SELECT version FROM membership.workspaces WHERE "
                           "id = $1 FOR UPDATE",
                           {ws}));
  ASSIGN_OR_RETURN(LicenseUsage before, TxUsage(tx, ws));
  if (record.version() > locked.GetInt(0, 0)) {
    LicenseUsage after = before;
    after.license_count = record.license_count();
    if (after.license_count < before.used()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot lower the licence count to ", after.license_count, ": ",
          before.used(), " licences are in use; remove ",
          before.used() - after.license_count,
          " members or multi-group guests first"));
    }
    RETURN_IF_ERROR(
        tx.Exec("UPDATE membership.workspaces SET license_count = $2, "
                "members_can_invite_guests = $3, version = $4, "
                "update_time = now() WHERE id = $1",
                {ws, pg::Int(record.license_count()),
                 pg::Bool(record.members_can_invite_guests()),
                 pg::Int(record.version())})
            .status());
    before = after;
  }
  RETURN_IF_ERROR(tx.Commit());
  return before;
}

absl::Status MembershipStore::SyncUsers(
    const std::vector<v1::UserRecord>& users) {
  std::map<std::string, google::protobuf::RepeatedPtrField<v1::UserGrants>>
      by_ws;  // sorted: locks are taken in a fixed order (no deadlocks)
  for (const v1::UserRecord& u : users) {
    *by_ws[u.workspace_id()].Add()->mutable_user() = u;
  }
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  // Lock every workspace (in sorted order) before any write, so two
  // multi-workspace syncs cannot deadlock on each other's rows.
  for (const auto& [ws, grants] : by_ws) {
    ASSIGN_OR_RETURN(pg::Result lock, tx.Exec(kLockWorkspace, {ws}));
    if (lock.rows() == 0) return NeverSynced(ws);
  }
  for (const auto& [ws, grants] : by_ws) {
    ASSIGN_OR_RETURN(GrantsOutcome out,
                     ApplyGrantsTx(tx, ws, grants, /*dry_run=*/false,
                                   /*best_effort=*/false,
                                   /*touch_grants=*/false));
    if (out.any_failed) {
      return absl::Status(static_cast<absl::StatusCode>(out.first_error_code),
                          out.first_error_message);
    }
  }
  return tx.Commit();
}

absl::Status MembershipStore::DeleteUsers(const std::string& ws,
                                          const std::vector<std::string>& ids) {
  if (ids.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  // The delete moves the licence counters: lock the workspace first.
  ASSIGN_OR_RETURN(pg::Result lock, tx.Exec(kLockWorkspace, {ws}));
  if (lock.rows() == 0) return absl::OkStatus();  // nothing was ever synced
  ASSIGN_OR_RETURN(pg::Result deleted,
                   tx.Exec("DELETE FROM membership.users WHERE workspace_id = "
                           "$1 AND id = ANY($2::uuid[]) RETURNING id",
                           {ws, pg::TextArray(ids)}));
  std::vector<std::string> gone;
  for (int i = 0; i < deleted.rows(); ++i) gone.push_back(deleted.Get(i, 0));
  if (!gone.empty()) RETURN_IF_ERROR(DeleteChildren(tx, "user_id", gone));
  return tx.Commit();
}

absl::StatusOr<std::optional<User>> MembershipStore::GetUser(
    const std::string& id) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec("SELECT workspace_id, kind, status, "
                               "access_expire_time FROM membership.users "
                               "WHERE id = $1",
                               {id}));
  if (r.rows() == 0) return std::optional<User>();
  User u;
  u.id = id;
  u.workspace_id = r.Get(0, 0);
  u.kind = static_cast<Kind>(r.GetInt(0, 1));
  u.status = static_cast<Status>(r.GetInt(0, 2));
  u.access_expire_time = ReadExpiry(r, 0, 3);
  return std::optional<User>(u);
}

absl::StatusOr<LicenseUsage> MembershipStore::GetLicenseUsage(
    const std::string& ws) {
  return QueryUsage(
      [&](const char* sql, const Params& p) { return pool_->Exec(sql, p); },
      ws);
}

// ---------------------------------------------------------------------------
// Check
// ---------------------------------------------------------------------------

absl::StatusOr<CheckFacts> MembershipStore::LoadFacts(
    const std::string& subject_id, const Resource& resource) {
  // Columns 0-3: the subject; 4..: the resource. One round trip, primary
  // key lookups only.
  static constexpr char kSubject[] =
      "SELECT s.workspace_id, s.kind, s.status, s.access_expire_time";
  std::string sql;
  switch (resource.type) {
    case ResourceType::kGroup:
      sql = absl::StrCat(
          kSubject,
          ", g.workspace_id, g.visibility, g.members_can_invite, "
          "g.members_can_publish, w.members_can_invite_guests, gm.role "
          "FROM (SELECT 1) one "
          "LEFT JOIN membership.users s ON s.id = $1 "
          "LEFT JOIN membership.groups g ON g.id = $2 "
          "LEFT JOIN membership.workspaces w ON w.id = g.workspace_id "
          "LEFT JOIN membership.group_members gm ON gm.group_id = g.id "
          "AND gm.user_id = s.id");
      break;
    case ResourceType::kUser:
      sql = absl::StrCat(
          kSubject,
          ", t.workspace_id, t.kind, t.status, t.access_expire_time, "
          "EXISTS (SELECT 1 FROM membership.group_members a JOIN "
          "membership.group_members b ON a.group_id = b.group_id WHERE "
          "a.user_id = s.id AND b.user_id = t.id) "
          "FROM (SELECT 1) one "
          "LEFT JOIN membership.users s ON s.id = $1 "
          "LEFT JOIN membership.users t ON t.id = $2");
      break;
    case ResourceType::kApp:
      sql = absl::StrCat(
          kSubject,
          ", a.workspace_id, EXISTS (SELECT 1 FROM membership.app_privileges "
          "p WHERE p.app_id = a.id AND p.user_id = s.id) "
          "FROM (SELECT 1) one "
          "LEFT JOIN membership.users s ON s.id = $1 "
          "LEFT JOIN membership.apps a ON a.id = $2");
      break;
    case ResourceType::kWorkspace:
      sql = absl::StrCat(kSubject,
                         ", w.id FROM (SELECT 1) one "
                         "LEFT JOIN membership.users s ON s.id = $1 "
                         "LEFT JOIN membership.workspaces w ON w.id = $2");
      break;
  }
  ASSIGN_OR_RETURN(pg::Result r, pool_->Exec(sql, {subject_id, resource.id}));
  CheckFacts f;
  if (!r.IsNull(0, 0)) {
    User s;
    s.id = subject_id;
    s.workspace_id = r.Get(0, 0);
    s.kind = static_cast<Kind>(r.GetInt(0, 1));
    s.status = static_cast<Status>(r.GetInt(0, 2));
    s.access_expire_time = ReadExpiry(r, 0, 3);
    f.subject = s;
  }
  if (!r.IsNull(0, 4)) f.resource_workspace_id = r.Get(0, 4);
  switch (resource.type) {
    case ResourceType::kGroup:
      if (f.resource_workspace_id) {
        f.group.id = resource.id;
        f.group.workspace_id = *f.resource_workspace_id;
        f.group.visibility = static_cast<Visibility>(r.GetInt(0, 5));
        f.group.members_can_invite = r.GetBool(0, 6);
        f.group.members_can_publish = r.GetBool(0, 7);
        f.workspace.id = *f.resource_workspace_id;
        f.workspace.members_can_invite_guests =
            r.IsNull(0, 8) ? false : r.GetBool(0, 8);
        f.subject_role =
            r.IsNull(0, 9) ? Role::kNone : static_cast<Role>(r.GetInt(0, 9));
      }
      break;
    case ResourceType::kUser:
      if (f.resource_workspace_id) {
        User t;
        t.id = resource.id;
        t.workspace_id = *f.resource_workspace_id;
        t.kind = static_cast<Kind>(r.GetInt(0, 5));
        t.status = static_cast<Status>(r.GetInt(0, 6));
        t.access_expire_time = ReadExpiry(r, 0, 7);
        f.target = t;
        f.shares_group = r.GetBool(0, 8);
      }
      break;
    case ResourceType::kApp:
      f.has_app_privilege = !r.IsNull(0, 5) && r.GetBool(0, 5);
      break;
    case ResourceType::kWorkspace:
      break;
  }
  return f;
}

// ---------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------

absl::StatusOr<v1::App> MembershipStore::CreateApp(const std::string& ws,
                                                   const std::string& slug,
                                                   const std::string& name) {
  absl::StatusOr<pg::Result> r = pool_->Exec(
      "INSERT INTO membership.apps (id, workspace_id, slug, name) VALUES "
      "(gen_random_uuid(), $1, $2, $3) RETURNING id, workspace_id, slug, "
      "name, create_time",
      {ws, slug, name});
  if (r.status().code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(absl::StrCat(
        "an app with slug \"", slug, "\" already exists in the workspace"));
  }
  if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
    return NeverSynced(ws);
  }
  RETURN_IF_ERROR(r.status());
  return ReadApp(*r, 0);
}

absl::StatusOr<std::optional<v1::App>> MembershipStore::GetApp(
    const std::string& id) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec("SELECT id, workspace_id, slug, name, "
                               "create_time FROM membership.apps WHERE id = $1",
                               {id}));
  if (r.rows() == 0) return std::optional<v1::App>();
  return std::optional<v1::App>(ReadApp(r, 0));
}

absl::Status MembershipStore::DeleteApp(const std::string& id) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  ASSIGN_OR_RETURN(pg::Result r,
                   tx.Exec("DELETE FROM membership.apps WHERE id = $1", {id}));
  if (r.AffectedRows() == 0) {
    return absl::NotFoundError(absl::StrCat("app ", id, " not found"));
  }
  RETURN_IF_ERROR(DeleteChildren(tx, "app_id", {id}));
  return tx.Commit();
}

absl::StatusOr<v1::ListAppsResponse> MembershipStore::ListApps(
    const std::string& ws, const Viewer& viewer, int page_size,
    const std::string& token) {
  const int size = ClampPageSize(page_size, 100);
  std::string after;
  if (!token.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> parts, DecodePageToken(token, 1));
    after = parts[0];
  }
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          "SELECT a.id, a.workspace_id, a.slug, a.name, a.create_time FROM "
          "membership.apps a WHERE a.workspace_id = $1 AND a.slug > $2 AND "
          "($3::uuid IS NULL OR EXISTS (SELECT 1 FROM "
          "membership.app_privileges p WHERE p.app_id = a.id AND "
          "p.user_id = $3)) ORDER BY a.slug LIMIT $4",
          {ws, after,
           viewer.kind == Kind::kGuest ? Param(viewer.user_id) : std::nullopt,
           pg::Int(size + 1)}));
  v1::ListAppsResponse resp;
  for (int i = 0; i < r.rows() && i < size; ++i) {
    *resp.add_apps() = ReadApp(r, i);
  }
  if (r.rows() > size) {
    resp.set_next_page_token(EncodePageToken({resp.apps(size - 1).slug()}));
  }
  return resp;
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

absl::StatusOr<v1::Group> MembershipStore::CreateGroup(
    const std::string& ws, const v1::Group& group,
    const std::string& creator_id) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  absl::StatusOr<pg::Result> r = tx.Exec(
      "INSERT INTO membership.groups (id, workspace_id, name, description, "
      "visibility, members_can_invite, members_can_publish) VALUES "
      "(gen_random_uuid(), $1, $2, $3, $4, $5, $6) RETURNING id",
      {ws, group.name(), group.description(), pg::Int(group.visibility()),
       pg::Bool(group.has_members_can_invite() && group.members_can_invite()),
       pg::Bool(!group.has_members_can_publish() ||
                group.members_can_publish())});
  if (r.status().code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(absl::StrCat(
        "a group named \"", group.name(),
        "\" already exists in the workspace (names are case-insensitive)"));
  }
  if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
    return NeverSynced(ws);
  }
  RETURN_IF_ERROR(r.status());
  const std::string id = r->Get(0, 0);
  if (!creator_id.empty()) {
    if (absl::Status locked = LockParents(tx, "users", ws, {creator_id});
        !locked.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the group's creator ", creator_id,
          " is not a user of the workspace yet; retry in a moment"));
    }
    RETURN_IF_ERROR(tx.Exec("INSERT INTO membership.group_members (group_id, "
                            "user_id, role) VALUES ($1, $2, 2)",
                            {id, creator_id})
                        .status());
  }
  ASSIGN_OR_RETURN(pg::Result g,
                   tx.Exec(absl::StrCat("SELECT ", kGroupColumns,
                                        " FROM membership.groups g WHERE "
                                        "g.id = $1"),
                           {id}));
  RETURN_IF_ERROR(tx.Commit());
  return ReadGroup(g, 0);
}

absl::StatusOr<std::optional<v1::Group>> MembershipStore::GetGroup(
    const std::string& id) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec(absl::StrCat("SELECT ", kGroupColumns,
                                            " FROM membership.groups g WHERE "
                                            "g.id = $1"),
                               {id}));
  if (r.rows() == 0) return std::optional<v1::Group>();
  return std::optional<v1::Group>(ReadGroup(r, 0));
}

absl::StatusOr<Role> MembershipStore::GetRole(const std::string& group_id,
                                              const std::string& user_id) {
  if (user_id.empty()) return Role::kNone;
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec("SELECT role FROM membership.group_members "
                               "WHERE group_id = $1 AND user_id = $2",
                               {group_id, user_id}));
  if (r.rows() == 0) return Role::kNone;
  return static_cast<Role>(r.GetInt(0, 0));
}

absl::StatusOr<v1::ListGroupsResponse> MembershipStore::ListGroups(
    const std::string& ws, const Viewer& viewer, int page_size,
    const std::string& token) {
  const int size = ClampPageSize(page_size, 50);
  Param after_name, after_id;
  if (!token.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> parts, DecodePageToken(token, 2));
    after_name = parts[0];
    after_id = parts[1];
  }
  // Admins see all; members OPEN, PRIVATE and their own; guests their own.
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          absl::StrCat(
              "SELECT ", kGroupColumns,
              ", lower(g.name) FROM "
              "membership.groups g WHERE g.workspace_id = $1 AND ("
              "$2::int = 1 OR ($2::int = 2 AND g.visibility IN (1, 2)) OR "
              "EXISTS (SELECT 1 FROM membership.group_members m WHERE "
              "m.group_id = g.id AND m.user_id = $3::uuid)) AND "
              "($4::text IS NULL OR (lower(g.name), g.id) > ($4, $5::uuid)) "
              "ORDER BY lower(g.name), g.id LIMIT $6"),
          {ws, pg::Int(static_cast<int>(viewer.kind)),
           viewer.user_id.empty() ? std::nullopt : Param(viewer.user_id),
           after_name, after_id, pg::Int(size + 1)}));
  v1::ListGroupsResponse resp;
  for (int i = 0; i < r.rows() && i < size; ++i) {
    *resp.add_groups() = ReadGroup(r, i);
  }
  if (r.rows() > size) {
    resp.set_next_page_token(
        EncodePageToken({r.Get(size - 1, 10), r.Get(size - 1, 0)}));
  }
  return resp;
}

absl::StatusOr<v1::Group> MembershipStore::UpdateGroup(
    const std::string& id, const v1::Group& group,
    const std::vector<std::string>& paths) {
  std::vector<std::string> sets;
  Params params = {id};
  for (const std::string& path : paths) {
    if (path == "name") {
      params.push_back(group.name());
      sets.push_back(absl::StrCat("name = $", params.size()));
    } else if (path == "description") {
      params.push_back(group.description());
      sets.push_back(absl::StrCat("description = $", params.size()));
    } else if (path == "visibility") {
      params.push_back(pg::Int(group.visibility()));
      sets.push_back(absl::StrCat("visibility = $", params.size()));
    } else if (path == "members_can_invite") {
      params.push_back(pg::Bool(group.members_can_invite()));
      sets.push_back(absl::StrCat("members_can_invite = $", params.size()));
    } else if (path == "members_can_publish") {
      params.push_back(pg::Bool(group.members_can_publish()));
      sets.push_back(absl::StrCat("members_can_publish = $", params.size()));
    }
  }
  if (!sets.empty()) {
    absl::StatusOr<pg::Result> r = pool_->Exec(
        absl::StrCat("UPDATE membership.groups SET ", absl::StrJoin(sets, ", "),
                     ", update_time = now() WHERE id = $1"),
        params);
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(
          absl::StrCat("a group named \"", group.name(), "\" already exists"));
    }
    RETURN_IF_ERROR(r.status());
  }
  ASSIGN_OR_RETURN(std::optional<v1::Group> g, GetGroup(id));
  if (!g) return absl::NotFoundError(absl::StrCat("group ", id, " not found"));
  return *g;
}

absl::Status MembershipStore::DeleteGroup(const std::string& id) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  // The cascade to group_members moves the licence counters.
  ASSIGN_OR_RETURN(pg::Result lock, tx.Exec(kLockGroupWorkspace, {id}));
  if (lock.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("group ", id, " not found"));
  }
  ASSIGN_OR_RETURN(
      pg::Result r,
      tx.Exec("DELETE FROM membership.groups WHERE id = $1", {id}));
  if (r.AffectedRows() == 0) {
    return absl::NotFoundError(absl::StrCat("group ", id, " not found"));
  }
  RETURN_IF_ERROR(DeleteChildren(tx, "group_id", {id}));
  return tx.Commit();
}

// ---------------------------------------------------------------------------
// Memberships and privileges
// ---------------------------------------------------------------------------

absl::StatusOr<v1::GroupMember> MembershipStore::AddGroupMember(
    const std::string& ws, const std::string& group_id,
    const std::string& user_id, Role role) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  ASSIGN_OR_RETURN(pg::Result lock, tx.Exec(kLockWorkspace, {ws}));
  if (lock.rows() == 0) return NeverSynced(ws);
  ASSIGN_OR_RETURN(
      pg::Result u,
      tx.Exec(absl::StrCat("SELECT ", kUserColumns,
                           ", (SELECT count(*) FROM membership.group_members "
                           "c WHERE c.user_id = u.id), (SELECT role FROM "
                           "membership.group_members c WHERE c.user_id = "
                           "u.id AND c.group_id = $2) FROM membership.users "
                           "u WHERE u.id = $1 AND u.workspace_id = $3 "
                           "FOR KEY SHARE OF u"),
              {user_id, group_id, ws}));
  if (u.rows() == 0) {
    return absl::NotFoundError(
        absl::StrCat("user ", user_id, " not found in the workspace"));
  }
  v1::DirectoryUser user = ReadUser(u, 0, 0);
  const Kind kind = static_cast<Kind>(user.kind());
  const Status status = static_cast<Status>(user.status());
  if (kind == Kind::kGuest && role == Role::kGroupAdmin) {
    return absl::InvalidArgumentError(
        "a guest cannot be a GROUP_ADMIN; add it as MEMBER");
  }
  if (status != Status::kActive && status != Status::kInvited) {
    return absl::FailedPreconditionError(
        absl::StrCat("user ", user.username(), " is ", StatusName(status),
                     "; only active or invited users join groups"));
  }
  if (!LockParents(tx, "groups", ws, {group_id}).ok()) {
    return absl::NotFoundError(
        absl::StrCat("group ", group_id, " not found in the workspace"));
  }
  const int groups = static_cast<int>(u.GetInt(0, 7));
  const bool already = !u.IsNull(0, 8);
  if (!already) {
    ASSIGN_OR_RETURN(LicenseUsage before, TxUsage(tx, ws));
    LicenseUsage after = before;
    Apply(Classify(kind, status, groups), -1, &after);
    Apply(Classify(kind, status, groups + 1), +1, &after);
    const std::string what =
        kind == Kind::kGuest && groups == 1
            ? absl::StrCat("adding a second group to guest ", user.username())
            : absl::StrCat("adding ", Describe(user.username(), kind),
                           " to the group");
    RETURN_IF_ERROR(CheckLicenseChange(before, after, what));
  }
  ASSIGN_OR_RETURN(
      pg::Result m,
      tx.Exec("INSERT INTO membership.group_members (group_id, user_id, role) "
              "VALUES ($1, $2, $3) ON CONFLICT (group_id, user_id) DO UPDATE "
              "SET role = EXCLUDED.role RETURNING create_time",
              {group_id, user_id, pg::Int(static_cast<int>(role))}));
  RETURN_IF_ERROR(tx.Commit());
  v1::GroupMember out;
  out.set_group_id(group_id);
  out.set_user_id(user_id);
  out.set_role(static_cast<v1::GroupMember::Role>(role));
  *out.mutable_user() = user;
  *out.mutable_create_time() = ToProtoTime(pg::ParseTime(m.Get(0, 0)));
  return out;
}

absl::StatusOr<v1::ListGroupMembersResponse> MembershipStore::ListGroupMembers(
    const std::string& group_id, int page_size, const std::string& token) {
  const int size = ClampPageSize(page_size, 50);
  Param after_name, after_id;
  if (!token.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> parts, DecodePageToken(token, 2));
    after_name = parts[0];
    after_id = parts[1];
  }
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          absl::StrCat("SELECT ", kUserColumns,
                       ", m.role, m.create_time, u.username_lc FROM "
                       "membership.group_members m JOIN membership.users u ON "
                       "u.id = m.user_id WHERE m.group_id = $1 AND ($2::text "
                       "IS NULL OR (u.username_lc, u.id) > ($2::text COLLATE "
                       "\"C\", $3::uuid)) ORDER BY u.username_lc, u.id "
                       "LIMIT $4"),
          {group_id, after_name, after_id, pg::Int(size + 1)}));
  v1::ListGroupMembersResponse resp;
  for (int i = 0; i < r.rows() && i < size; ++i) {
    v1::GroupMember* m = resp.add_members();
    *m->mutable_user() = ReadUser(r, i, 0);
    m->set_group_id(group_id);
    m->set_user_id(m->user().id());
    m->set_role(static_cast<v1::GroupMember::Role>(r.GetInt(i, 7)));
    *m->mutable_create_time() = ToProtoTime(pg::ParseTime(r.Get(i, 8)));
  }
  if (r.rows() > size) {
    resp.set_next_page_token(
        EncodePageToken({r.Get(size - 1, 9), r.Get(size - 1, 0)}));
  }
  return resp;
}

absl::Status MembershipStore::RemoveGroupMember(const std::string& group_id,
                                                const std::string& user_id) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  // The removal moves the licence counters.
  ASSIGN_OR_RETURN(pg::Result ws_lock,
                   tx.Exec(kLockGroupWorkspace, {group_id}));
  if (ws_lock.rows() == 0) {
    return absl::NotFoundError(
        absl::StrCat("user ", user_id, " is not a member of the group"));
  }
  // Lock the group's memberships so two admins cannot remove each other.
  ASSIGN_OR_RETURN(pg::Result all,
                   tx.Exec("SELECT user_id, role FROM membership.group_members"
                           " WHERE group_id = $1 FOR UPDATE",
                           {group_id}));
  int admins = 0;
  int role = 0;
  for (int i = 0; i < all.rows(); ++i) {
    if (all.GetInt(i, 1) == 2) ++admins;
    if (all.Get(i, 0) == user_id) role = static_cast<int>(all.GetInt(i, 1));
  }
  if (role == 0) {
    return absl::NotFoundError(
        absl::StrCat("user ", user_id, " is not a member of the group"));
  }
  if (role == 2 && admins == 1 && all.rows() > 1) {
    return absl::FailedPreconditionError(
        "this is the group's last group admin; make another member "
        "GROUP_ADMIN first");
  }
  RETURN_IF_ERROR(tx.Exec("DELETE FROM membership.group_members WHERE "
                          "group_id = $1 AND user_id = $2",
                          {group_id, user_id})
                      .status());
  return tx.Commit();
}

absl::StatusOr<v1::UserAppPrivilege> MembershipStore::SetAppPrivilege(
    const std::string& ws, const std::string& app_id,
    const std::string& user_id, int privilege) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  if (!LockParents(tx, "apps", ws, {app_id}).ok()) {
    return absl::NotFoundError(
        absl::StrCat("app ", app_id, " not found in the workspace"));
  }
  if (!LockParents(tx, "users", ws, {user_id}).ok()) {
    return absl::NotFoundError(
        absl::StrCat("user ", user_id, " not found in the workspace"));
  }
  ASSIGN_OR_RETURN(
      pg::Result r,
      tx.Exec("INSERT INTO membership.app_privileges (app_id, user_id, "
              "privilege) VALUES ($1, $2, $3) "
              "ON CONFLICT (app_id, user_id) DO UPDATE SET privilege = "
              "EXCLUDED.privilege, update_time = now() "
              "RETURNING update_time",
              {app_id, user_id, pg::Int(privilege)}));
  RETURN_IF_ERROR(tx.Commit());
  v1::UserAppPrivilege out;
  out.set_app_id(app_id);
  out.set_user_id(user_id);
  out.set_privilege(static_cast<v1::AppPrivilegeGrant::Privilege>(privilege));
  *out.mutable_update_time() = ToProtoTime(pg::ParseTime(r.Get(0, 0)));
  return out;
}

absl::Status MembershipStore::RemoveAppPrivilege(const std::string& app_id,
                                                 const std::string& user_id) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec("DELETE FROM membership.app_privileges WHERE "
                               "app_id = $1 AND user_id = $2",
                               {app_id, user_id}));
  if (r.AffectedRows() == 0) {
    return absl::NotFoundError(
        absl::StrCat("user ", user_id, " holds no privilege on app ", app_id));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Listings
// ---------------------------------------------------------------------------

absl::StatusOr<v1::ListAppAccessResponse> MembershipStore::ListAppAccess(
    const v1::ListAppAccessRequest& req) {
  std::string order = std::string(absl::StripAsciiWhitespace(req.order_by()));
  bool desc = false;
  if (absl::EndsWith(order, " desc")) {
    desc = true;
    order = std::string(
        absl::StripAsciiWhitespace(order.substr(0, order.size() - 5)));
  }
  std::string key;  // sort expression (fixed strings only, never input)
  std::string cast;
  if (order.empty() || order == "email") {
    order = "email";
    key = "u.email_lc";
    cast = "text COLLATE \"C\"";
  } else if (order == "name") {
    key = "u.name_lc";
    cast = "text COLLATE \"C\"";
  } else if (order == "createTime" || order == "create_time") {
    order = "createTime";
    key = "u.create_time";
    cast = "timestamptz";
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "order_by \"", req.order_by(),
        "\" is not supported; use email, name or createTime, optionally "
        "followed by \" desc\""));
  }
  const std::string order_tag = absl::StrCat(order, desc ? " desc" : "");
  const int size = ClampPageSize(req.page_size(), 50);
  Param after_key, after_id;
  if (!req.page_token().empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> parts,
                     DecodePageToken(req.page_token(), 3));
    if (parts[0] != order_tag) {
      return absl::InvalidArgumentError(
          "page_token was made for another order_by; start from the first "
          "page");
    }
    after_key = parts[1];
    after_id = parts[2];
  }
  const std::string filters = absl::StrCat(
      "u.workspace_id = $1 AND ($2::int = 0 OR u.kind = $2) AND "
      "($3::int = 0 OR u.status = $3) AND ($4::text IS NULL OR ",
      PrefixFilter(4), ")");
  const Param pattern = req.query().empty() ? std::nullopt : Param(req.query());
  Params params = {req.workspace_id(), pg::Int(req.kind()),
                   pg::Int(req.status()), pattern};
  ASSIGN_OR_RETURN(pg::Result count,
                   pool_->Exec(absl::StrCat("SELECT count(*) FROM "
                                            "membership.users u WHERE ",
                                            filters),
                               params));
  params.push_back(after_key);
  params.push_back(after_id);
  params.push_back(pg::Int(size + 1));
  const char* cmp = desc ? "<" : ">";
  const char* dir = desc ? " DESC" : "";
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          absl::StrCat("SELECT ", kUserColumns, ", ", key,
                       " FROM "
                       "membership.users u WHERE ",
                       filters, " AND ($5::text IS NULL OR (", key, ", u.id) ",
                       cmp, " ($5::", cast, ", $6::uuid)) ORDER BY ", key, dir,
                       ", u.id", dir, " LIMIT $7"),
          params));
  v1::ListAppAccessResponse resp;
  resp.set_total_size(static_cast<int32_t>(count.GetInt(0, 0)));
  std::vector<std::string> ids;
  absl::flat_hash_map<std::string, v1::AppAccessRow*> rows;
  for (int i = 0; i < r.rows() && i < size; ++i) {
    v1::AppAccessRow* row = resp.add_rows();
    *row->mutable_user() = ReadUser(r, i, 0);
    ids.push_back(row->user().id());
    rows[row->user().id()] = row;
  }
  if (r.rows() > size) {
    resp.set_next_page_token(
        EncodePageToken({order_tag, r.Get(size - 1, 7), r.Get(size - 1, 0)}));
  }
  if (!ids.empty()) {
    ASSIGN_OR_RETURN(
        pg::Result p,
        pool_->Exec("SELECT p.user_id, p.app_id, p.privilege FROM "
                    "membership.app_privileges p JOIN membership.apps a ON "
                    "a.id = p.app_id WHERE p.user_id = ANY($1::uuid[]) "
                    "ORDER BY a.slug",
                    {pg::TextArray(ids)}));
    for (int i = 0; i < p.rows(); ++i) {
      v1::AppPrivilegeGrant* g = rows[p.Get(i, 0)]->add_privileges();
      g->set_app_id(p.Get(i, 1));
      g->set_privilege(
          static_cast<v1::AppPrivilegeGrant::Privilege>(p.GetInt(i, 2)));
    }
  }
  ASSIGN_OR_RETURN(
      pg::Result apps,
      pool_->Exec("SELECT id, workspace_id, slug, name, create_time FROM "
                  "membership.apps WHERE workspace_id = $1 ORDER BY slug",
                  {req.workspace_id()}));
  for (int i = 0; i < apps.rows(); ++i) *resp.add_apps() = ReadApp(apps, i);
  return resp;
}

absl::StatusOr<v1::ListDirectoryResponse> MembershipStore::ListDirectory(
    const v1::ListDirectoryRequest& req, const Viewer& viewer) {
  const int size = ClampPageSize(req.page_size(), 50);
  Param after_name, after_id;
  if (!req.page_token().empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> parts,
                     DecodePageToken(req.page_token(), 2));
    after_name = parts[0];
    after_id = parts[1];
  }
  const bool guest = viewer.kind == Kind::kGuest;
  // Guests: only co-members (and themselves); everyone else: all active.
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          absl::StrCat(
              "SELECT ", kUserColumns,
              ", u.username_lc FROM "
              "membership.users u WHERE u.workspace_id = $1 AND "
              "u.status = 3 AND ($2::uuid IS NULL OR u.id = $2 OR EXISTS ("
              "SELECT 1 FROM membership.group_members a JOIN "
              "membership.group_members b ON a.group_id = b.group_id WHERE "
              "a.user_id = $2 AND b.user_id = u.id)) AND ($3::text IS NULL OR ",
              PrefixFilter(3),
              ") AND ($4::text IS NULL OR (u.username_lc, u.id) > ($4::text "
              "COLLATE \"C\", $5::uuid)) ORDER BY u.username_lc, u.id "
              "LIMIT $6"),
          {req.workspace_id(), guest ? Param(viewer.user_id) : std::nullopt,
           req.query().empty() ? std::nullopt : Param(req.query()), after_name,
           after_id, pg::Int(size + 1)}));
  v1::ListDirectoryResponse resp;
  for (int i = 0; i < r.rows() && i < size; ++i) {
    *resp.add_users() = ReadUser(r, i, 0);
  }
  if (r.rows() > size) {
    resp.set_next_page_token(
        EncodePageToken({r.Get(size - 1, 7), r.Get(size - 1, 0)}));
  }
  return resp;
}

absl::StatusOr<v1::GetUserAccessResponse> MembershipStore::GetUserAccess(
    const v1::GetUserAccessRequest& req) {
  std::vector<std::string> ids(req.user_ids().begin(), req.user_ids().end());
  v1::GetUserAccessResponse resp;
  absl::flat_hash_map<std::string, std::vector<v1::UserAccess*>> by_id;
  for (const std::string& id : ids) {
    v1::UserAccess* a = resp.add_users();
    a->set_user_id(id);
    by_id[id].push_back(a);
  }
  ASSIGN_OR_RETURN(
      pg::Result g,
      pool_->Exec("SELECT m.user_id, g.id, g.name, m.role FROM "
                  "membership.group_members m JOIN membership.groups g ON "
                  "g.id = m.group_id WHERE g.workspace_id = $1 AND "
                  "m.user_id = ANY($2::uuid[]) ORDER BY lower(g.name)",
                  {req.workspace_id(), pg::TextArray(ids)}));
  for (int i = 0; i < g.rows(); ++i) {
    for (v1::UserAccess* a : by_id[g.Get(i, 0)]) {
      v1::GroupMembershipRef* ref = a->add_groups();
      ref->set_group_id(g.Get(i, 1));
      ref->set_group_name(g.Get(i, 2));
      ref->set_role(static_cast<v1::GroupMember::Role>(g.GetInt(i, 3)));
    }
  }
  ASSIGN_OR_RETURN(
      pg::Result p,
      pool_->Exec("SELECT p.user_id, p.app_id, p.privilege FROM "
                  "membership.app_privileges p JOIN membership.apps a ON "
                  "a.id = p.app_id WHERE a.workspace_id = $1 AND "
                  "p.user_id = ANY($2::uuid[]) ORDER BY a.slug",
                  {req.workspace_id(), pg::TextArray(ids)}));
  for (int i = 0; i < p.rows(); ++i) {
    for (v1::UserAccess* a : by_id[p.Get(i, 0)]) {
      v1::AppPrivilegeGrant* grant = a->add_app_privileges();
      grant->set_app_id(p.Get(i, 1));
      grant->set_privilege(
          static_cast<v1::AppPrivilegeGrant::Privilege>(p.GetInt(i, 2)));
    }
  }
  ASSIGN_OR_RETURN(
      pg::Result apps,
      pool_->Exec("SELECT id, workspace_id, slug, name, create_time FROM "
                  "membership.apps WHERE workspace_id = $1 ORDER BY slug",
                  {req.workspace_id()}));
  for (int i = 0; i < apps.rows(); ++i) *resp.add_apps() = ReadApp(apps, i);
  return resp;
}

absl::StatusOr<v1::ListAppRecipientsResponse>
MembershipStore::ListAppRecipients(const v1::ListAppRecipientsRequest& req) {
  ASSIGN_OR_RETURN(std::optional<v1::App> app, GetApp(req.app_id()));
  if (!app) {
    return absl::NotFoundError(
        absl::StrCat("app ", req.app_id(), " not found"));
  }
  const int size = ClampPageSize(req.page_size(), 500);
  Param after;
  if (!req.page_token().empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> parts,
                     DecodePageToken(req.page_token(), 1));
    after = parts[0];
  }
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          absl::StrCat("SELECT ", kUserColumns,
                       " FROM membership.app_privileges"
                       " p JOIN membership.users u ON u.id = p.user_id WHERE "
                       "p.app_id = $1 AND u.kind = 3 AND u.status = 3 AND "
                       "(u.access_expire_time IS NULL OR u.access_expire_time "
                       "> now()) AND ($2::uuid IS NULL OR u.id > $2) "
                       "ORDER BY u.id LIMIT $3"),
          {req.app_id(), after, pg::Int(size + 1)}));
  v1::ListAppRecipientsResponse resp;
  resp.set_workspace_id(app->workspace_id());
  resp.set_app_slug(app->slug());
  resp.set_app_name(app->name());
  for (int i = 0; i < r.rows() && i < size; ++i) {
    *resp.add_users() = ReadUser(r, i, 0);
  }
  if (r.rows() > size) {
    resp.set_next_page_token(EncodePageToken({r.Get(size - 1, 0)}));
  }
  return resp;
}

std::optional<v1::ApplyGrantsResponse>
MembershipStore::TryApplyGrantsOptimistically(
    const v1::ApplyGrantsRequest& req) {
  absl::StatusOr<pg::PooledConnection> conn = pool_->Acquire();
  if (!conn.ok()) return std::nullopt;
  // Planned against counters read without the lock; they may be stale. The
  // writes move the counters through V003's trigger, which locks the
  // workspace row until commit and, asked to (V007), fails the statement
  // that raises usage past the licence count, so no other writer can have
  // used the licences this request counted on. No read between the writes
  // and the commit: every grant of the workspace waits for that commit.
  pg::Transaction tx(*conn,
                     "BEGIN; SET LOCAL membership.enforce_licences = 'on'");
  if (!tx.status().ok()) return std::nullopt;
  absl::StatusOr<GrantsOutcome> out =
      ApplyGrantsTx(tx, req.workspace_id(), req.users(), /*dry_run=*/false,
                    req.best_effort(), /*touch_grants=*/true, /*commit=*/true);
  // Refused (nothing written nor committed), or over the limit now
  // (SQLSTATE GL001), or not committed: roll back; the careful path words
  // the refusal (and finds the work done if a lost COMMIT answer hid it).
  if (!out.ok() || out->any_failed) return std::nullopt;
  v1::ApplyGrantsResponse resp;
  for (auto& r : out->results) *resp.add_results() = std::move(r);
  resp.set_applied(true);
  // The usage read before the writes plus this request's change (requests
  // committed in between are not in it).
  *resp.mutable_usage_after() = ToProto(out->after);
  return resp;
}

absl::StatusOr<v1::ApplyGrantsResponse> MembershipStore::ApplyGrants(
    const v1::ApplyGrantsRequest& req) {
  // Most grants are far from the licence limit: write first and lock the
  // workspace only for the last statements (a short queue per workspace).
  // Any doubt (stale counters, a refusal, a deadlock) takes the careful
  // path below, which locks first and decides user by user. Bulk requests
  // (an import's batches) lock first: their writes take the lock at their
  // users INSERT anyway (V003's trigger), and planning them under it is
  // exact.
  if (!req.dry_run() && req.users_size() < kLockFirstUsers) {
    if (std::optional<v1::ApplyGrantsResponse> fast =
            TryApplyGrantsOptimistically(req);
        fast.has_value()) {
      return *std::move(fast);
    }
  }
  // The careful path can still lose a deadlock to an optimistic request
  // creating the same user (a retried invite): each holds what the other
  // waits for (the new user's keys, the workspace row). PostgreSQL aborts
  // one; try again, the other has finished by then.
  absl::StatusOr<v1::ApplyGrantsResponse> resp;
  for (int attempt = 0; attempt < 3; ++attempt) {
    resp = ApplyGrantsLocked(req);
    if (resp.status().code() != absl::StatusCode::kAborted) break;
  }
  return resp;
}

absl::StatusOr<v1::ApplyGrantsResponse> MembershipStore::ApplyGrantsLocked(
    const v1::ApplyGrantsRequest& req) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  ASSIGN_OR_RETURN(pg::Result lock,
                   tx.ExecPrepared(kLockWorkspace, {req.workspace_id()}));
  if (lock.rows() == 0) return NeverSynced(req.workspace_id());
  ASSIGN_OR_RETURN(GrantsOutcome out,
                   ApplyGrantsTx(tx, req.workspace_id(), req.users(),
                                 req.dry_run(), req.best_effort(),
                                 /*touch_grants=*/true));
  v1::ApplyGrantsResponse resp;
  for (auto& r : out.results) *resp.add_results() = std::move(r);
  const bool apply = !req.dry_run() && (req.best_effort() || !out.any_failed);
  if (apply) RETURN_IF_ERROR(tx.Commit());
  resp.set_applied(apply);
  *resp.mutable_usage_after() = ToProto(out.after);
  return resp;
}

}  // namespace guestlist::membership
