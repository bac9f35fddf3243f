#include "services/identity/storage/pg_repository.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/outbox.h"
#include "common/status_macros.h"
#include "services/identity/domain/rules.h"
#include "services/identity/storage/merge_search.h"

namespace guestlist::identity {
namespace {

using pg::Param;
using pg::Params;

constexpr char kUserColumns[] =
    "id, workspace_id, username, email, first_name, last_name, kind, status, "
    "metadata::text, access_expire_time, coalesce(password_hash, ''), "
    "version, create_time, update_time";

// kUserColumns of the alias u, for queries that join users.
constexpr char kUserColumnsOfU[] =
    "u.id, u.workspace_id, u.username, u.email, u.first_name, u.last_name, "
    "u.kind, u.status, u.metadata::text, u.access_expire_time, "
    "coalesce(u.password_hash, ''), u.version, u.create_time, u.update_time";

// ListUsers' query matches a prefix of any of these keys (lower-cased,
// byte-ordered; V001/V005 index each one).
constexpr const char* kSearchColumns[] = {"email_lc", "username_lc", "first_lc",
                                          "last_lc", "name_lc"};

// A query whose every search key matches at most this many users is
// answered from the key ranges (disjoint), with an exact totalSize; past
// it, from a walk of the sort index, with the planner's estimate as
// totalSize (AIP-158 allows one): an exact count of 10^5 matches costs
// hundreds of milliseconds.
constexpr int kBranchCap = 5000;
// A planner estimate above this is taken as "over kBranchCap" without
// counting (see ListUsers).
constexpr int64_t kSureDenseEstimate = 4 * kBranchCap;
// The walk of the sort index for many matches gives up for the key ranges
// after this many entries (a few milliseconds), or after as many as the
// ranges would read from the largest of them: the matches may
// all lie at the far end of the sort order.
constexpr int64_t kWalkCap = 20000;

// The user holding username $2 in workspace $1 (case-insensitively).
std::string FindUserByUsernameSql() {
  return absl::StrCat("SELECT ", kUserColumns,
                      " FROM identity.users WHERE workspace_id = $1 "
                      "AND lower(username) = lower($2)");
}

// A users INSERT refused by the unique username index.
absl::Status UsernameTaken(const std::string& username) {
  return absl::AlreadyExistsError(absl::StrCat(
      "username: \"", username,
      "\" is already taken in this workspace (case-insensitive); choose "
      "another username"));
}

constexpr char kWorkspaceColumns[] =
    "id, name, display_name, license_count, members_can_invite_guests, "
    "invitation_ttl_seconds, allowed_email_domains, blocked_email_domains, "
    "request_access_enabled, version, create_time, update_time";

constexpr char kInvitationColumns[] =
    "id, workspace_id, user_id, coalesce(inviter_id::text, ''), token_hash, "
    "token_generation, state, expire_time, create_time";

constexpr char kApiKeyColumns[] =
    "id, workspace_id, display_name, scopes, key_hash, prefix, "
    "coalesce(creator_id::text, ''), create_time, last_use_time";

constexpr char kAccessRequestColumns[] =
    "id, workspace_id, user_id, email, first_name, last_name, message, state, "
    "create_time";

constexpr char kEnqueueOutbox[] =
    "INSERT INTO identity.outbox (topic, payload) VALUES ($1, "
    "decode($2, 'hex'))";

// kUserColumns as text, for statements that union users with other rows.
#define GL_USER_COLUMNS_TEXT                                               \
  "id::text, workspace_id::text, username, email, first_name, last_name, " \
  "kind, status, metadata::text, access_expire_time::text, "               \
  "coalesce(password_hash, ''), version::text, create_time::text, "        \
  "update_time::text"

// A session and its user: the user's columns (kUserColumns), then the
// session's id, workspace_id, create_time, expire_time.
constexpr char kFindSessionUser[] =
    "SELECT u.id, u.workspace_id, u.username, u.email, u.first_name, "
    "u.last_name, u.kind, u.status, u.metadata::text, u.access_expire_time, "
    "coalesce(u.password_hash, ''), u.version, u.create_time, u.update_time, "
    "s.id, s.workspace_id, s.create_time, s.expire_time FROM "
    "identity.sessions s JOIN identity.users u ON u.id = s.user_id WHERE "
    "s.token_hash = $1";

// InviteUser's reads and its intent row, one row each, tagged in the last
// column: 'w' the workspace (kWorkspaceColumns), 'i' the inviter
// (kUserColumns), 'n' the intent row's id. The text casts print as the
// server's text output does (booleans as true/false, which ReadWorkspace
// reads alike). Prepared: planning this statement costs ten times running
// it. Every lookup is by primary key, so its cached plan can only use the
// key (or scan a table of a page or two, until autovacuum's next analyze
// remakes the plan). A lookup by username is left out: a generic plan made
// before identity.users has statistics can pick any index that starts with
// workspace_id and walk every user of the workspace.
constexpr int kPreludeTagColumn = 14;
constexpr char kInvitePrelude[] =
    "WITH ws AS (SELECT * FROM identity.workspaces WHERE id = $1), "
    "inviter AS (SELECT * FROM identity.users WHERE id = $2::uuid), "
    "intent AS (INSERT INTO identity.outbox (topic, payload, "
    "next_attempt_at) SELECT $3::text, decode($4::text, 'hex'), now() + "
    "make_interval(secs => $5::float8) WHERE $3::text IS NOT NULL AND "
    "EXISTS (SELECT 1 FROM ws) RETURNING id) "
    "SELECT id::text, name, display_name, license_count::text, "
    "members_can_invite_guests::text, invitation_ttl_seconds::text, "
    "allowed_email_domains::text, blocked_email_domains::text, "
    "request_access_enabled::text, version::text, create_time::text, "
    "update_time::text, NULL, NULL, 'w' FROM ws "
    "UNION ALL SELECT " GL_USER_COLUMNS_TEXT
    ", 'i' FROM inviter "
    "UNION ALL SELECT id::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL, NULL, NULL, 'n' FROM intent";

// A new user, its invitation and an optional outbox row ($20 NULL: none)
// in one statement; returns how many invitations and outbox rows it wrote.
constexpr char kInsertInvitedUser[] =
    "WITH u AS (INSERT INTO identity.users (id, workspace_id, username, "
    "email, first_name, last_name, kind, status, metadata, "
    "access_expire_time, password_hash, version, create_time, update_time) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::timestamptz, "
    "$11, 1, $12, $12) RETURNING id), "
    "i AS (INSERT INTO identity.invitations (id, workspace_id, user_id, "
    "inviter_id, token_hash, token_generation, state, expire_time, "
    "create_time) SELECT $13::uuid, $2::uuid, u.id, $14::uuid, $15::text, "
    "$16::integer, $17::text, $18::timestamptz, $19::timestamptz FROM u "
    "RETURNING id), "
    "o AS (INSERT INTO identity.outbox (topic, payload) SELECT $20::text, "
    "decode($21::text, 'hex') FROM i WHERE $20::text IS NOT NULL RETURNING "
    "id) "
    "SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM o)";

#undef GL_USER_COLUMNS_TEXT

// Parses a text[] value as printed by the server: {a,"b c"}.
std::vector<std::string> ParseTextArray(const std::string& text) {
  std::vector<std::string> out;
  if (text.size() < 2) return out;
  std::string cur;
  bool quoted = false, in_elem = false;
  for (size_t i = 1; i + 1 < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '\\' && i + 2 < text.size()) {
        cur += text[++i];
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
      in_elem = true;
    } else if (c == ',') {
      out.push_back(cur);
      cur.clear();
      in_elem = false;
    } else {
      cur += c;
      in_elem = true;
    }
  }
  if (in_elem || !cur.empty()) out.push_back(cur);
  return out;
}

std::optional<absl::Time> OptTime(const pg::Result& r, int row, int col) {
  if (r.IsNull(row, col)) return std::nullopt;
  return pg::ParseTime(r.Get(row, col));
}

Param OptTimeParam(const std::optional<absl::Time>& t) {
  if (!t.has_value()) return std::nullopt;
  return pg::Time(*t);
}

UserRecord ReadUser(const pg::Result& r, int i) {
  UserRecord u;
  u.id = r.Get(i, 0);
  u.workspace_id = r.Get(i, 1);
  u.username = r.Get(i, 2);
  u.email = r.Get(i, 3);
  u.first_name = r.Get(i, 4);
  u.last_name = r.Get(i, 5);
  u.kind = ParseKind(r.Get(i, 6));
  u.status = ParseStatus(r.Get(i, 7));
  u.metadata_json = r.Get(i, 8);
  u.access_expire_time = OptTime(r, i, 9);
  u.password_hash = r.Get(i, 10);
  u.version = r.GetInt(i, 11);
  u.create_time = pg::ParseTime(r.Get(i, 12));
  u.update_time = pg::ParseTime(r.Get(i, 13));
  return u;
}

WorkspaceRecord ReadWorkspace(const pg::Result& r, int i) {
  WorkspaceRecord w;
  w.id = r.Get(i, 0);
  w.name = r.Get(i, 1);
  w.display_name = r.Get(i, 2);
  w.license_count = static_cast<int>(r.GetInt(i, 3));
  w.members_can_invite_guests = r.GetBool(i, 4);
  w.invitation_ttl = absl::Seconds(r.GetInt(i, 5));
  w.allowed_email_domains = ParseTextArray(r.Get(i, 6));
  w.blocked_email_domains = ParseTextArray(r.Get(i, 7));
  w.request_access_enabled = r.GetBool(i, 8);
  w.version = r.GetInt(i, 9);
  w.create_time = pg::ParseTime(r.Get(i, 10));
  w.update_time = pg::ParseTime(r.Get(i, 11));
  return w;
}

InvitationRecord ReadInvitation(const pg::Result& r, int i) {
  InvitationRecord v;
  v.id = r.Get(i, 0);
  v.workspace_id = r.Get(i, 1);
  v.user_id = r.Get(i, 2);
  v.inviter_id = r.Get(i, 3);
  v.token_hash = r.Get(i, 4);
  v.token_generation = static_cast<int>(r.GetInt(i, 5));
  v.state = ParseInvitationState(r.Get(i, 6));
  v.expire_time = pg::ParseTime(r.Get(i, 7));
  v.create_time = pg::ParseTime(r.Get(i, 8));
  return v;
}

ApiKeyRecord ReadApiKey(const pg::Result& r, int i) {
  ApiKeyRecord k;
  k.id = r.Get(i, 0);
  k.workspace_id = r.Get(i, 1);
  k.display_name = r.Get(i, 2);
  k.scopes = ParseTextArray(r.Get(i, 3));
  k.key_hash = r.Get(i, 4);
  k.prefix = r.Get(i, 5);
  k.creator_id = r.Get(i, 6);
  k.create_time = pg::ParseTime(r.Get(i, 7));
  k.last_use_time = OptTime(r, i, 8);
  return k;
}

AccessRequestRecord ReadAccessRequest(const pg::Result& r, int i) {
  AccessRequestRecord a;
  a.id = r.Get(i, 0);
  a.workspace_id = r.Get(i, 1);
  a.user_id = r.Get(i, 2);
  a.email = r.Get(i, 3);
  a.first_name = r.Get(i, 4);
  a.last_name = r.Get(i, 5);
  a.message = r.Get(i, 6);
  a.state = ParseAccessRequestState(r.Get(i, 7));
  a.create_time = pg::ParseTime(r.Get(i, 8));
  return a;
}

std::vector<UserRecord> ReadUsers(const pg::Result& r) {
  std::vector<UserRecord> out;
  out.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) out.push_back(ReadUser(r, i));
  return out;
}

class PgTx final : public IdentityTx {
 public:
  // `tx` is null in autocommit mode (Repository::Autocommit).
  PgTx(pg::Connection& conn, pg::Transaction* tx, pg::Pool* pool,
       IdempotencyStore* idempotency)
      : conn_(conn), tx_(tx), pool_(pool), idempotency_(idempotency) {}

  absl::Status InsertWorkspace(const WorkspaceRecord& w) override {
    auto r = Exec(
        "INSERT INTO identity.workspaces (id, name, display_name, "
        "license_count, members_can_invite_guests, invitation_ttl_seconds, "
        "allowed_email_domains, blocked_email_domains, request_access_enabled, "
        "version, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, "
        "$7::text[], $8::text[], $9, 1, $10, $10)",
        {w.id, w.name, w.display_name, pg::Int(w.license_count),
         pg::Bool(w.members_can_invite_guests),
         pg::Int(absl::ToInt64Seconds(w.invitation_ttl)),
         pg::TextArray(w.allowed_email_domains),
         pg::TextArray(w.blocked_email_domains),
         pg::Bool(w.request_access_enabled), pg::Time(w.create_time)});
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(
          absl::StrCat("workspace.name: a workspace named \"", w.name,
                       "\" already exists; choose another name"));
    }
    return r.status();
  }

  absl::StatusOr<WorkspaceRecord> GetWorkspace(const std::string& id,
                                               bool for_update) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("SELECT ", kWorkspaceColumns,
                                       " FROM identity.workspaces WHERE "
                                       "id = $1",
                                       for_update ? " FOR UPDATE" : ""),
                          {id}));
    if (r.rows() == 0) {
      return absl::NotFoundError(
          absl::StrCat("workspace ", id, " does not exist"));
    }
    return ReadWorkspace(r, 0);
  }

  absl::StatusOr<WorkspaceRecord> UpdateWorkspace(const WorkspaceRecord& w,
                                                  absl::Time now) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(
            absl::StrCat("UPDATE identity.workspaces SET display_name = $2, "
                         "license_count = $3, members_can_invite_guests = $4, "
                         "invitation_ttl_seconds = $5, allowed_email_domains = "
                         "$6::text[], blocked_email_domains = $7::text[], "
                         "request_access_enabled = $8, version = version + 1, "
                         "update_time = $9 WHERE id = $1 RETURNING ",
                         kWorkspaceColumns),
            {w.id, w.display_name, pg::Int(w.license_count),
             pg::Bool(w.members_can_invite_guests),
             pg::Int(absl::ToInt64Seconds(w.invitation_ttl)),
             pg::TextArray(w.allowed_email_domains),
             pg::TextArray(w.blocked_email_domains),
             pg::Bool(w.request_access_enabled), pg::Time(now)}));
    if (r.rows() == 0) {
      return absl::NotFoundError(
          absl::StrCat("workspace ", w.id, " does not exist"));
    }
    return ReadWorkspace(r, 0);
  }

  absl::Status InsertUser(const UserRecord& u) override {
    auto r = Exec(
        "INSERT INTO identity.users (id, workspace_id, username, email, "
        "first_name, last_name, kind, status, metadata, access_expire_time, "
        "password_hash, version, create_time, update_time) VALUES ($1, $2, "
        "$3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, 1, $12, $12)",
        {u.id, u.workspace_id, u.username, u.email, u.first_name, u.last_name,
         KindName(u.kind), StatusName(u.status),
         pg::NullIfEmpty(u.metadata_json), OptTimeParam(u.access_expire_time),
         pg::NullIfEmpty(u.password_hash), pg::Time(u.create_time)});
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return UsernameTaken(u.username);
    }
    return r.status();
  }

  absl::StatusOr<UserRecord> GetUser(const std::string& id,
                                     bool for_update) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("SELECT ", kUserColumns,
                                       " FROM identity.users WHERE id = $1",
                                       for_update ? " FOR UPDATE" : ""),
                          {id}));
    if (r.rows() == 0) {
      return absl::NotFoundError(absl::StrCat("user ", id, " does not exist"));
    }
    return ReadUser(r, 0);
  }

  absl::StatusOr<std::optional<UserRecord>> FindUserByUsername(
      const std::string& workspace_id, const std::string& username,
      bool for_update) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat(FindUserByUsernameSql(),
                                       for_update ? " FOR UPDATE" : ""),
                          {workspace_id, username}));
    if (r.rows() == 0) return std::optional<UserRecord>();
    return std::optional<UserRecord>(ReadUser(r, 0));
  }

  absl::StatusOr<UserRecord> UpdateUser(const UserRecord& u,
                                        absl::Time now) override {
    auto r = Exec(
        absl::StrCat(
            "UPDATE identity.users SET username = $3, email = $4, "
            "first_name = $5, last_name = $6, kind = $7, status = $8, "
            "metadata = $9::jsonb, access_expire_time = $10, "
            "password_hash = $11, version = version + 1, update_time = $12, "
            "expiry_reminder_sent = CASE WHEN access_expire_time IS NOT "
            "DISTINCT FROM $10 THEN expiry_reminder_sent ELSE false END "
            "WHERE id = $1 AND version = $2 RETURNING ",
            kUserColumns),
        {u.id, pg::Int(u.version), u.username, u.email, u.first_name,
         u.last_name, KindName(u.kind), StatusName(u.status),
         pg::NullIfEmpty(u.metadata_json), OptTimeParam(u.access_expire_time),
         pg::NullIfEmpty(u.password_hash), pg::Time(now)});
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return UsernameTaken(u.username);
    }
    if (!r.ok()) return r.status();
    if (r->rows() == 0) {
      return absl::AbortedError(
          "the user was changed concurrently; retry the request");
    }
    return ReadUser(*r, 0);
  }

  absl::StatusOr<UserPage> ListUsers(const UserQuery& q) override {
    std::string key_col;
    std::string key_param_cast;
    switch (q.order.field) {
      case UserOrder::kEmail:
        key_col = "email_lc";
        key_param_cast = "$%d::text COLLATE \"C\"";
        break;
      case UserOrder::kName:
        key_col = "name_lc";
        key_param_cast = "$%d::text COLLATE \"C\"";
        break;
      case UserOrder::kCreateTime:
        key_col = "create_time";
        key_param_cast = "$%d::timestamptz";
        break;
    }
    Params params = {q.workspace_id};
    std::string filters;  // kind / status, part of every WHERE below
    if (q.kind != v1::USER_KIND_UNSPECIFIED) {
      params.push_back(KindName(q.kind));
      absl::StrAppend(&filters, " AND kind = $", params.size());
    }
    if (q.status != v1::USER_STATUS_UNSPECIFIED) {
      params.push_back(StatusName(q.status));
      absl::StrAppend(&filters, " AND status = $", params.size());
    }
    const std::string of_workspace =
        absl::StrCat(" FROM identity.users WHERE workspace_id = $1", filters);
    const std::string rows_of_workspace =
        absl::StrCat("SELECT id, ", key_col, " AS k", of_workspace);
    const size_t prefilter_params = params.size();
    const char* dir = q.order.descending ? " DESC" : "";
    const std::string order_by = absl::StrCat(" ORDER BY k", dir, ", id", dir);
    // Picks the page's ids (and sort keys) from the indexes alone, then
    // reads only those rows, one primary-key lookup each: as a plain join,
    // a generic plan that overestimates the page (a LIMIT parameter) read
    // every user of a table of 36,000 by a hash join (60 ms); OFFSET 0
    // keeps the lateral lookup from being flattened into such a join.
    // `extra` are more columns of the page.
    auto page_sql = [&](const std::string& page_ids, const char* extra) {
      return absl::StrCat("SELECT ", kUserColumnsOfU, ", p.k", extra, " FROM (",
                          page_ids,
                          ") p CROSS JOIN LATERAL (SELECT * FROM "
                          "identity.users WHERE id = p.id OFFSET 0) u "
                          "ORDER BY p.k",
                          dir, ", p.id", dir);
    };
    UserPage page;
    // Disjoint (id, sort key) queries of all matching users, when read by
    // a merge of ranges (no query: empty).
    std::vector<std::string> matching_ranges;
    // Set when many users match: what the walk of the sort index tests.
    std::string walk_hit;
    // Set when many users match in email or name order: the query's parameter.
    int merge_prefix = 0;
    if (q.prefix.empty()) {
      if (q.count_total) {
        // The trigger-kept counters answer without reading users.
        ASSIGN_OR_RETURN(
            pg::Result c,
            Exec(absl::StrCat("SELECT coalesce(sum(n), 0) FROM "
                              "identity.user_counts WHERE workspace_id = "
                              "$1",
                              filters),
                 params));
        page.total = static_cast<int>(c.GetInt(0, 0));
      }
    } else {
      params.push_back(q.prefix);
      const size_t p = params.size();
      auto range = [p](const char* col) {
        return PrefixRange(col, static_cast<int>(p));
      };
      // One index-only range scan per searchable key (V005 carries the sort
      // keys in each search index); the usernames that are the email and
      // the full names past the first name are left out: the email and
      // first-name ranges hold those users already. Each range leaves out
      // the users of the ranges before it (tested on the keys its index
      // carries), so they are counted and merged without a hash of every
      // match: "martin.sch" (2,500 matches) read 5,000 entries into a hash
      // for its union, ~9 ms on the session-8 VM; disjoint, ~3 ms.
      const bool has_space = absl::StrContains(q.prefix, ' ');
      auto rows_where = [&](const std::vector<std::string>& conditions) {
        std::vector<std::string> queries;
        for (const std::string& where : conditions) {
          queries.push_back(absl::StrCat(rows_of_workspace, " AND ", where));
        }
        return queries;
      };
      const std::vector<std::string> branches =
          rows_where(DisjointSearchRanges(static_cast<int>(p), has_space));
      // The plain ranges, for the planner's estimate: planning the disjoint
      // ones costs more (~1 ms on every broad first page).
      const std::vector<std::string> key_ranges =
          rows_where(SearchRanges(static_cast<int>(p), has_space));
      bool dense = false;
      if (q.count_total) {
        // The planner's estimate first (no scan): far over the cap, it
        // decides alone; counting the cap's worth of entries exactly cost
        // a broad query's first page ~1.5 ms. Near or under the cap (or
        // with statistics that lag behind, which underestimate), the exact
        // count decides.
        ASSIGN_OR_RETURN(int64_t estimate,
                         EstimateLargestBranch(key_ranges, params));
        if (estimate > kSureDenseEstimate) {
          dense = true;
        } else if (!q.after.has_value()) {
          // The first page, its exact count and whether a range is over
          // the cap, in one statement.
          ASSIGN_OR_RETURN(
              pg::Result r,
              ExecGeneric(page_sql(absl::StrCat(
                                       "SELECT d.id, d.k, c.n, c.widest FROM (",
                                       MergedRanges(branches, "", order_by,
                                                    MergeLimit(q.limit + 1)),
                                       ") d CROSS JOIN (",
                                       CappedCountsSql(branches), ") c"),
                                   ", p.n, p.widest"),
                          params));
          dense = r.rows() > 0 && r.GetInt(0, 16) > kBranchCap;
          if (!dense) {
            page.total = r.rows() > 0 ? static_cast<int>(r.GetInt(0, 15)) : 0;
            FillPage(r, q.limit, &page);
            return page;
          }
        } else {
          ASSIGN_OR_RETURN(dense, AnyBranchOverCap(key_ranges, params));
        }
        if (dense) {
          page.total =
              static_cast<int>(std::max<int64_t>(kBranchCap + 1, estimate));
        } else {
          ASSIGN_OR_RETURN(
              pg::Result c,
              Exec(absl::StrCat("SELECT count(*) FROM (",
                                absl::StrJoin(branches, " UNION ALL "), ") m"),
                   params));
          page.total = static_cast<int>(c.GetInt(0, 0));
        }
      } else {
        // Later pages: either strategy gives the same rows in the same
        // order (keyset); the first page's total says which is cheaper.
        dense = q.after.has_value() && q.after->total > kBranchCap;
      }
      if (dense && q.order.field != UserOrder::kCreateTime) {
        ASSIGN_OR_RETURN(
            pg::Result names,
            Prepared(CountNamesOfPrefixSql(), {q.workspace_id, q.prefix}));
        // Email order reads a run per first and last name, name order one
        // per last name (the full-name run holds the first names of a
        // query without edge spaces, as the API trims it).
        const bool by_email = q.order.field == UserOrder::kEmail;
        const int64_t runs =
            names.GetInt(0, 1) + (by_email ? names.GetInt(0, 0) : 0);
        const bool trimmed = q.prefix.front() != ' ' && q.prefix.back() != ' ';
        if (runs <= kMaxMergedNames && (by_email || trimmed)) {
          merge_prefix = static_cast<int>(p);
        }
      }
      if (dense && merge_prefix == 0) {
        // Many matches: walk the sort index and test the search keys it
        // carries; the walk stops after one page, or at kWalkCap entries
        // when the matches lie far apart (or far along the sort order:
        // emails start with first names, so "zo" matches only near the
        // end of the email order), where the union of the ranges is
        // cheaper.
        std::vector<std::string> ors;
        for (const char* col : kSearchColumns) {
          ors.push_back(absl::StrCat("(", range(col), ")"));
        }
        walk_hit = absl::StrCat("(", absl::StrJoin(ors, " OR "), ")");
      }
      // Few matches per key (or the walk cut short): merge the ranges.
      matching_ranges = branches;
    }
    const char* cmp = q.order.descending ? "<" : ">";
    // The keyset condition past the cursor, whose key and id are
    // parameters n and n + 1 (empty on the first page). `split` spells the
    // row comparison as scalar ones: a btree range with a bound of its own
    // on the key then starts at the greater bound (PostgreSQL cannot weigh
    // a row bound against a scalar one and may start at the cursor, far
    // before the range: 150 ms for a page of the email range).
    auto after_cursor = [&](size_t n, bool split) -> std::string {
      if (!q.after.has_value()) return "";
      char key[64];
      snprintf(key, sizeof(key), key_param_cast.c_str(), static_cast<int>(n));
      if (split) {
        return absl::StrCat(" WHERE k ", cmp, "= ", key, " AND (k ", cmp, " ",
                            key, " OR id ", cmp, " $", n + 1, "::uuid)");
      }
      return absl::StrCat(" WHERE (k, id) ", cmp, " (", key, ", $", n + 1,
                          "::uuid)");
    };
    // Appends the cursor's key and id to `to`; returns the key's number.
    auto push_cursor = [&](Params* to) -> size_t {
      if (!q.after.has_value()) return 0;
      to->push_back(q.after->key);
      to->push_back(q.after->id);
      return to->size() - 1;
    };
    // The probe below leaves the query out of its parameters.
    Params probe_params(params.begin(), params.begin() + prefilter_params);
    const std::string probe_after =
        after_cursor(push_cursor(&probe_params), false);
    const size_t cursor_param = push_cursor(&params);
    const std::string after = after_cursor(cursor_param, false);
    // The generic plans below take their LIMIT as a literal (MergeLimit).
    const Params generic_params = params;
    params.push_back(pg::Int(q.limit + 1));
    const std::string limit = absl::StrCat(" LIMIT $", params.size());
    if (merge_prefix > 0) {
      const MergeQuery m{filters, merge_prefix,
                         after_cursor(cursor_param, true), order_by,
                         q.limit + 1};
      const std::string merge =
          q.order.field == UserOrder::kEmail
              ? EmailOrderMergeSql(m, absl::StrContains(q.prefix, ' '))
              : NameOrderMergeSql(m);
      // Planning the merge took 3-4 ms, executing it 1.5 ms with a plan
      // for the values and 0.4 ms with a generic one: every run is an index
      // range stopped after a page, whatever the values. So it is prepared
      // once per connection, planned generically from the first call (not
      // after five custom plans on each pooled connection): ExecGeneric.
      ASSIGN_OR_RETURN(
          pg::Result r,
          ExecGeneric(page_sql(absl::StrCat("SELECT id, k FROM (", merge, ") u",
                                            order_by, MergeLimit(q.limit + 1)),
                               ""),
                      generic_params));
      FillPage(r, q.limit, &page);
      return page;
    }
    if (!walk_hit.empty()) {
      const int64_t matches = q.after.has_value() ? q.after->total : page.total;
      const pg::Param walk_cap = pg::Int(std::max(kWalkCap, matches));
      // The matches among the next walk_cap entries of the sort order.
      Params walk_params = params;
      walk_params.push_back(walk_cap);
      ASSIGN_OR_RETURN(
          pg::Result r,
          Exec(page_sql(
                   absl::StrCat("SELECT id, k FROM (SELECT * FROM (SELECT id, ",
                                key_col, " AS k, ",
                                absl::StrJoin(kSearchColumns, ", "),
                                of_workspace, ") m", after, order_by,
                                " LIMIT $", walk_params.size(), ") w WHERE ",
                                walk_hit, order_by, limit),
                   ""),
               walk_params));
      // Short of a page: the end of the matches, unless the walk stopped at
      // the cap before the end of the workspace's entries.
      bool cut_short = false;
      if (r.rows() <= q.limit) {
        probe_params.push_back(walk_cap);
        ASSIGN_OR_RETURN(
            pg::Result probe,
            Exec(absl::StrCat("SELECT 1 FROM (", rows_of_workspace, ") m",
                              probe_after, order_by, " OFFSET $",
                              probe_params.size(), " LIMIT 1"),
                 probe_params));
        cut_short = probe.rows() > 0;
      }
      if (!cut_short) {
        FillPage(r, q.limit, &page);
        return page;
      }
    }
    if (!matching_ranges.empty()) {
      ASSIGN_OR_RETURN(
          pg::Result r,
          ExecGeneric(page_sql(MergedRanges(matching_ranges,
                                            after_cursor(cursor_param, true),
                                            order_by, MergeLimit(q.limit + 1)),
                               ""),
                      generic_params));
      FillPage(r, q.limit, &page);
      return page;
    }
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(page_sql(absl::StrCat("SELECT id, k FROM (", rows_of_workspace,
                                   ") m", after, order_by, limit),
                      ""),
             params));
    FillPage(r, q.limit, &page);
    return page;
  }

  // `sql` prepared and planned generically from its first call on this
  // connection, in one round trip with that setting, which is then reset
  // (later statements of the transaction are planned for their values).
  // For the page queries whose every branch is an index range cut at a
  // page, whatever the values: planning the disjoint ranges of a query
  // took 8.8 ms of a 12 ms first page.
  absl::StatusOr<pg::Result> ExecGeneric(const std::string& sql,
                                         const Params& params) {
    std::vector<pg::Statement> statements = {
        {"SELECT set_config('plan_cache_mode', 'force_generic_plan', true)",
         {}},
        {sql, params},
        {"SELECT set_config('plan_cache_mode', 'auto', true)", {}}};
    bool committed = false;
    ASSIGN_OR_RETURN(std::vector<pg::Result> results,
                     conn_.ExecPipeline(statements, false, &committed));
    return std::move(results[1]);
  }

  // (id, k) of the page's users from disjoint `ranges`: each range's own
  // page past the cursor (`after`), then the first of those in order. Each
  // range is read whole, then sorted: OFFSET 0 keeps a generic plan, blind
  // to the range's size, from walking the sort index for it instead.
  static std::string MergedRanges(const std::vector<std::string>& ranges,
                                  const std::string& after,
                                  const std::string& order_by,
                                  const std::string& limit) {
    std::vector<std::string> pages;
    for (const std::string& r : ranges) {
      pages.push_back(absl::StrCat("(SELECT id, k FROM (", r, " OFFSET 0) m",
                                   after, order_by, limit, ")"));
    }
    return absl::StrCat("SELECT id, k FROM (",
                        absl::StrJoin(pages, " UNION ALL "), ") u", order_by,
                        limit);
  }

  // The users of r (in page order) up to `limit`, and the cursor of the
  // next page when there are more.
  static void FillPage(const pg::Result& r, int limit, UserPage* page) {
    const int n = std::min(r.rows(), limit);
    for (int i = 0; i < n; ++i) page->users.push_back(ReadUser(r, i));
    if (r.rows() > limit && n > 0) {
      page->next = PageCursor{r.Get(n - 1, 14), r.Get(n - 1, 0)};
    }
  }

  // One row: n, the users of the disjoint `ranges`, and widest, the users
  // of the largest, each counted up to kBranchCap + 1: over kBranchCap, n
  // is not every match.
  static std::string CappedCountsSql(const std::vector<std::string>& ranges) {
    std::vector<std::string> counts, names;
    for (size_t i = 0; i < ranges.size(); ++i) {
      counts.push_back(absl::StrCat("(SELECT count(*) FROM (", ranges[i],
                                    " LIMIT ", kBranchCap + 1, ") x) AS c", i));
      names.push_back(absl::StrCat("c", i));
    }
    return absl::StrCat("SELECT ", absl::StrJoin(names, " + "),
                        " AS n, greatest(", absl::StrJoin(names, ", "),
                        ") AS widest FROM (SELECT ",
                        absl::StrJoin(counts, ", "), ") s");
  }

  // Whether one of `branches` has more than kBranchCap rows, sizing them
  // one at a time (index-only, stopping at the cap) and stopping at the
  // first that does: a broad query costs one capped scan.
  absl::StatusOr<bool> AnyBranchOverCap(
      const std::vector<std::string>& branches, const Params& params) {
    for (const std::string& b : branches) {
      ASSIGN_OR_RETURN(pg::Result c,
                       Exec(absl::StrCat("SELECT count(*) FROM (", b, " LIMIT ",
                                         kBranchCap + 1, ") b"),
                            params));
      if (c.GetInt(0, 0) > kBranchCap) return true;
    }
    return false;
  }

  // The planner's row estimate (from its statistics, no scan) of the
  // largest of `branches`. The key ranges overlap heavily (an email
  // usually starts with the first name), so the largest is a closer
  // estimate of the matches than their sum.
  absl::StatusOr<int64_t> EstimateLargestBranch(
      const std::vector<std::string>& branches, const Params& params) {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("EXPLAIN (FORMAT JSON) ",
                                       absl::StrJoin(branches, " UNION ALL ")),
                          params));
    // [{"Plan": {"Node Type": "Append", "Plan Rows": sum, "Plans": [...]}}]
    const nlohmann::json plan = nlohmann::json::parse(
        r.rows() > 0 ? r.Get(0, 0) : "", nullptr, /*allow_exceptions=*/false);
    if (!plan.is_array() || plan.empty() || !plan[0].contains("Plan")) {
      return absl::InternalError("could not read the planner's estimate");
    }
    const nlohmann::json& top = plan[0]["Plan"];
    int64_t largest = top.value("Plan Rows", int64_t{0});
    if (top.contains("Plans")) {
      largest = 0;
      for (const nlohmann::json& branch : top["Plans"]) {
        largest = std::max(largest, branch.value("Plan Rows", int64_t{0}));
      }
    }
    return largest;
  }

  absl::StatusOr<std::vector<UserRecord>> ListAdmins(
      const std::string& workspace_id) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(absl::StrCat("SELECT ", kUserColumns,
                          " FROM identity.users WHERE workspace_id = $1 "
                          "AND kind = 'ADMIN' AND status = 'ACTIVE' "
                          "ORDER BY email_lc, id LIMIT 1000"),
             {workspace_id}));
    return ReadUsers(r);
  }

  absl::StatusOr<std::vector<UserRecord>> GetUsers(
      const std::string& workspace_id,
      const std::vector<std::string>& ids) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(absl::StrCat("SELECT ", kUserColumns,
                          " FROM identity.users WHERE workspace_id = $1 "
                          "AND id = ANY($2::uuid[])"),
             {workspace_id, pg::TextArray(ids)}));
    return ReadUsers(r);
  }

  absl::StatusOr<int> CountActiveAdmins(
      const std::string& workspace_id) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec("SELECT count(*) FROM identity.users WHERE "
                          "workspace_id = $1 AND kind = 'ADMIN' AND "
                          "status = 'ACTIVE'",
                          {workspace_id}));
    return static_cast<int>(r.GetInt(0, 0));
  }

  absl::Status InsertSession(const SessionRecord& s) override {
    return Exec(
               "INSERT INTO identity.sessions (id, token_hash, user_id, "
               "workspace_id, create_time, expire_time) VALUES ($1, $2, $3, "
               "$4, "
               "$5, $6)",
               {s.id, s.token_hash, s.user_id, s.workspace_id,
                pg::Time(s.create_time), pg::Time(s.expire_time)})
        .status();
  }

  absl::StatusOr<std::optional<std::pair<SessionRecord, UserRecord>>>
  FindSessionUser(const std::string& token_hash) override {
    using Found = std::optional<std::pair<SessionRecord, UserRecord>>;
    ASSIGN_OR_RETURN(pg::Result r, Prepared(kFindSessionUser, {token_hash}));
    if (r.rows() == 0) return Found();
    SessionRecord s;
    s.id = r.Get(0, 14);
    s.token_hash = token_hash;
    s.user_id = r.Get(0, 0);
    s.workspace_id = r.Get(0, 15);
    s.create_time = pg::ParseTime(r.Get(0, 16));
    s.expire_time = pg::ParseTime(r.Get(0, 17));
    return Found(std::make_pair(std::move(s), ReadUser(r, 0)));
  }

  absl::StatusOr<std::optional<SessionRecord>> FindSession(
      const std::string& token_hash) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec("SELECT id, token_hash, user_id, workspace_id, create_time, "
             "expire_time FROM identity.sessions WHERE token_hash = $1",
             {token_hash}));
    if (r.rows() == 0) return std::optional<SessionRecord>();
    SessionRecord s;
    s.id = r.Get(0, 0);
    s.token_hash = r.Get(0, 1);
    s.user_id = r.Get(0, 2);
    s.workspace_id = r.Get(0, 3);
    s.create_time = pg::ParseTime(r.Get(0, 4));
    s.expire_time = pg::ParseTime(r.Get(0, 5));
    return std::optional<SessionRecord>(s);
  }

  absl::Status DeleteSession(const std::string& token_hash) override {
    return Exec("DELETE FROM identity.sessions WHERE token_hash = $1",
                {token_hash})
        .status();
  }

  absl::Status DeleteUserSessions(const std::string& user_id) override {
    return Exec("DELETE FROM identity.sessions WHERE user_id = $1", {user_id})
        .status();
  }

  absl::Status InsertApiKey(const ApiKeyRecord& k) override {
    return Exec(
               "INSERT INTO identity.api_keys (id, workspace_id, display_name, "
               "scopes, key_hash, prefix, creator_id, create_time) VALUES ($1, "
               "$2, $3, $4::text[], $5, $6, $7, $8)",
               {k.id, k.workspace_id, k.display_name, pg::TextArray(k.scopes),
                k.key_hash, k.prefix, pg::NullIfEmpty(k.creator_id),
                pg::Time(k.create_time)})
        .status();
  }

  absl::StatusOr<std::optional<ApiKeyRecord>> FindApiKeyByHash(
      const std::string& key_hash) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("SELECT ", kApiKeyColumns,
                                       " FROM identity.api_keys WHERE "
                                       "key_hash = $1"),
                          {key_hash}));
    if (r.rows() == 0) return std::optional<ApiKeyRecord>();
    return std::optional<ApiKeyRecord>(ReadApiKey(r, 0));
  }

  absl::StatusOr<std::optional<ApiKeyRecord>> GetApiKey(
      const std::string& id) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("SELECT ", kApiKeyColumns,
                                       " FROM identity.api_keys WHERE "
                                       "id = $1"),
                          {id}));
    if (r.rows() == 0) return std::optional<ApiKeyRecord>();
    return std::optional<ApiKeyRecord>(ReadApiKey(r, 0));
  }

  absl::StatusOr<std::vector<ApiKeyRecord>> ListApiKeys(
      const std::string& workspace_id, const ListOptions& o) override {
    Params params = {workspace_id, pg::Int(o.limit + 1)};
    std::string where = "workspace_id = $1";
    if (o.after.has_value()) {
      params.push_back(o.after->key);
      params.push_back(o.after->id);
      where += " AND (create_time, id) < ($3::timestamptz, $4::uuid)";
    }
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(absl::StrCat("SELECT ", kApiKeyColumns,
                          " FROM identity.api_keys WHERE ", where,
                          " ORDER BY create_time DESC, id DESC LIMIT $2"),
             params));
    std::vector<ApiKeyRecord> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(ReadApiKey(r, i));
    return out;
  }

  absl::Status DeleteApiKey(const std::string& id) override {
    return Exec("DELETE FROM identity.api_keys WHERE id = $1", {id}).status();
  }

  absl::Status InsertInvitation(const InvitationRecord& v) override {
    return Exec(
               "INSERT INTO identity.invitations (id, workspace_id, user_id, "
               "inviter_id, token_hash, token_generation, state, expire_time, "
               "create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
               {v.id, v.workspace_id, v.user_id, pg::NullIfEmpty(v.inviter_id),
                v.token_hash, pg::Int(v.token_generation),
                InvitationStateName(v.state), pg::Time(v.expire_time),
                pg::Time(v.create_time)})
        .status();
  }

  absl::StatusOr<InvitationRecord> GetInvitation(const std::string& id,
                                                 bool for_update) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("SELECT ", kInvitationColumns,
                                       " FROM identity.invitations WHERE "
                                       "id = $1",
                                       for_update ? " FOR UPDATE" : ""),
                          {id}));
    if (r.rows() == 0) {
      return absl::NotFoundError(
          absl::StrCat("invitation ", id, " does not exist"));
    }
    return ReadInvitation(r, 0);
  }

  absl::StatusOr<std::optional<InvitationRecord>> FindInvitationByToken(
      const std::string& token_hash) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("SELECT ", kInvitationColumns,
                                       " FROM identity.invitations WHERE "
                                       "token_hash = $1"),
                          {token_hash}));
    if (r.rows() == 0) return std::optional<InvitationRecord>();
    return std::optional<InvitationRecord>(ReadInvitation(r, 0));
  }

  absl::Status UpdateInvitation(const InvitationRecord& v) override {
    return Exec(
               "UPDATE identity.invitations SET token_hash = $2, "
               "token_generation = $3, state = $4, expire_time = $5 WHERE "
               "id = $1",
               {v.id, v.token_hash, pg::Int(v.token_generation),
                InvitationStateName(v.state), pg::Time(v.expire_time)})
        .status();
  }

  absl::StatusOr<std::optional<InvitationRecord>> ConsumeInvitation(
      const std::string& token_hash, absl::Time now) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(absl::StrCat("UPDATE identity.invitations SET state = "
                          "'ACCEPTED', accept_time = $2 WHERE token_hash = "
                          "$1 AND state = 'PENDING' AND expire_time > $2 "
                          "RETURNING ",
                          kInvitationColumns),
             {token_hash, pg::Time(now)}));
    if (r.rows() == 0) return std::optional<InvitationRecord>();
    return std::optional<InvitationRecord>(ReadInvitation(r, 0));
  }

  absl::StatusOr<InvitationPage> ListInvitations(
      const std::string& workspace_id, InvitationState state,
      const std::string& inviter_id, const ListOptions& o,
      absl::Time now) override {
    Params params = {workspace_id};
    std::string where = "workspace_id = $1";
    switch (state) {
      case v1::Invitation::PENDING:
        params.push_back(pg::Time(now));
        where += " AND state = 'PENDING' AND expire_time > $2";
        break;
      case v1::Invitation::EXPIRED:
        params.push_back(pg::Time(now));
        where +=
            " AND (state = 'EXPIRED' OR (state = 'PENDING' AND expire_time <= "
            "$2))";
        break;
      case v1::Invitation::ACCEPTED:
        where += " AND state = 'ACCEPTED'";
        break;
      case v1::Invitation::REVOKED:
        where += " AND state = 'REVOKED'";
        break;
      default:
        break;
    }
    if (!inviter_id.empty()) {
      params.push_back(inviter_id);
      absl::StrAppend(&where, " AND inviter_id = $", params.size());
    }
    InvitationPage page;
    ASSIGN_OR_RETURN(pg::Result c,
                     Exec(absl::StrCat("SELECT count(*) FROM "
                                       "identity.invitations WHERE ",
                                       where),
                          params));
    page.total = static_cast<int>(c.GetInt(0, 0));
    if (o.after.has_value()) {
      params.push_back(o.after->key);
      params.push_back(o.after->id);
      absl::StrAppend(&where, " AND (create_time, id) < ($", params.size() - 1,
                      "::timestamptz, $", params.size(), "::uuid)");
    }
    params.push_back(pg::Int(o.limit + 1));
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(absl::StrCat("SELECT ", kInvitationColumns,
                          ", create_time FROM identity.invitations WHERE ",
                          where, " ORDER BY create_time DESC, id DESC LIMIT $",
                          params.size()),
             params));
    const int n = std::min(r.rows(), o.limit);
    for (int i = 0; i < n; ++i)
      page.invitations.push_back(ReadInvitation(r, i));
    if (r.rows() > o.limit && n > 0) {
      page.next = PageCursor{r.Get(n - 1, 9), r.Get(n - 1, 0)};
    }
    return page;
  }

  absl::Status RevokePendingInvitations(const std::string& user_id) override {
    return Exec(
               "UPDATE identity.invitations SET state = 'REVOKED' WHERE "
               "user_id = $1 AND state = 'PENDING'",
               {user_id})
        .status();
  }

  absl::Status InsertAccessRequest(const AccessRequestRecord& a) override {
    return Exec(
               "INSERT INTO identity.access_requests (id, workspace_id, "
               "user_id, email, first_name, last_name, message, state, "
               "create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
               {a.id, a.workspace_id, a.user_id, a.email, a.first_name,
                a.last_name, a.message, AccessRequestStateName(a.state),
                pg::Time(a.create_time)})
        .status();
  }

  absl::StatusOr<AccessRequestRecord> GetAccessRequest(
      const std::string& id, bool for_update) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("SELECT ", kAccessRequestColumns,
                                       " FROM identity.access_requests "
                                       "WHERE id = $1",
                                       for_update ? " FOR UPDATE" : ""),
                          {id}));
    if (r.rows() == 0) {
      return absl::NotFoundError(
          absl::StrCat("access request ", id, " does not exist"));
    }
    return ReadAccessRequest(r, 0);
  }

  absl::StatusOr<std::optional<AccessRequestRecord>> FindPendingAccessRequest(
      const std::string& user_id) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec(absl::StrCat("SELECT ", kAccessRequestColumns,
                                       " FROM identity.access_requests "
                                       "WHERE user_id = $1 AND state = "
                                       "'PENDING'"),
                          {user_id}));
    if (r.rows() == 0) return std::optional<AccessRequestRecord>();
    return std::optional<AccessRequestRecord>(ReadAccessRequest(r, 0));
  }

  absl::Status SetAccessRequestState(const std::string& id,
                                     AccessRequestState state,
                                     absl::Time now) override {
    return Exec(
               "UPDATE identity.access_requests SET state = $2, decide_time = "
               "$3 WHERE id = $1",
               {id, AccessRequestStateName(state), pg::Time(now)})
        .status();
  }

  absl::StatusOr<std::vector<AccessRequestRecord>> ListAccessRequests(
      const std::string& workspace_id, AccessRequestState state,
      const ListOptions& o) override {
    Params params = {workspace_id, pg::Int(o.limit + 1)};
    std::string where = "workspace_id = $1";
    if (state != v1::AccessRequest::STATE_UNSPECIFIED) {
      params.push_back(AccessRequestStateName(state));
      absl::StrAppend(&where, " AND state = $", params.size());
    }
    if (o.after.has_value()) {
      params.push_back(o.after->key);
      params.push_back(o.after->id);
      absl::StrAppend(&where, " AND (create_time, id) < ($", params.size() - 1,
                      "::timestamptz, $", params.size(), "::uuid)");
    }
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(absl::StrCat("SELECT ", kAccessRequestColumns,
                          " FROM identity.access_requests WHERE ", where,
                          " ORDER BY create_time DESC, id DESC LIMIT $2"),
             params));
    std::vector<AccessRequestRecord> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(ReadAccessRequest(r, i));
    return out;
  }

  absl::StatusOr<RateCounter> HitRateLimit(const std::string& bucket,
                                           absl::Duration window,
                                           absl::Time now) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec("INSERT INTO identity.rate_limits AS r (bucket, window_start, "
             "hits) VALUES ($1, $2, 1) ON CONFLICT (bucket) DO UPDATE SET "
             "hits = CASE WHEN r.window_start + make_interval(secs => $3) "
             "<= $2 THEN 1 ELSE r.hits + 1 END, window_start = CASE WHEN "
             "r.window_start + make_interval(secs => $3) <= $2 THEN $2 "
             "ELSE r.window_start END RETURNING hits, window_start",
             {bucket, pg::Time(now), pg::Int(absl::ToInt64Seconds(window))}));
    return RateCounter{static_cast<int>(r.GetInt(0, 0)),
                       pg::ParseTime(r.Get(0, 1))};
  }

  absl::StatusOr<RateCounter> PeekRateLimit(const std::string& bucket,
                                            absl::Duration window,
                                            absl::Time now) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec("SELECT hits, window_start FROM identity.rate_limits WHERE "
             "bucket = $1 AND window_start + make_interval(secs => $3) > "
             "$2",
             {bucket, pg::Time(now), pg::Int(absl::ToInt64Seconds(window))}));
    if (r.rows() == 0) return RateCounter{0, now};
    return RateCounter{static_cast<int>(r.GetInt(0, 0)),
                       pg::ParseTime(r.Get(0, 1))};
  }

  absl::Status ResetRateLimit(const std::string& bucket) override {
    return Exec("DELETE FROM identity.rate_limits WHERE bucket = $1", {bucket})
        .status();
  }

  absl::StatusOr<std::optional<std::string>> LookupIdempotent(
      const std::string& scope, const std::string& key,
      const std::string& request_hash) override {
    if (tx_ == nullptr) {
      return idempotency_->Lookup(*pool_, scope, key, request_hash);
    }
    return idempotency_->Lookup(*tx_, scope, key, request_hash);
  }

  absl::Status SaveIdempotent(const std::string& scope, const std::string& key,
                              const std::string& request_hash,
                              const std::string& response) override {
    if (tx_ == nullptr) {
      return absl::InternalError(
          "an idempotent response must be saved in the transaction of its "
          "work");
    }
    return idempotency_->Save(*tx_, scope, key, request_hash, response);
  }

  absl::Status Enqueue(const OutboxMessage& m) override {
    // common/outbox.h EnqueueOutbox's statement, prepared.
    return Prepared(kEnqueueOutbox,
                    {m.topic, absl::BytesToHexString(m.payload)})
        .status();
  }

  absl::StatusOr<int64_t> EnqueueDelayed(const OutboxMessage& m,
                                         absl::Duration delay) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec("INSERT INTO identity.outbox (topic, payload, "
             "next_attempt_at) VALUES ($1, decode($2, 'hex'), now() + "
             "make_interval(secs => $3)) RETURNING id",
             {m.topic, absl::BytesToHexString(m.payload),
              absl::StrCat(absl::ToDoubleSeconds(delay))}));
    return r.GetInt(0, 0);
  }

  absl::Status DeleteOutboxRow(int64_t id) override {
    return Exec("DELETE FROM identity.outbox WHERE id = $1", {pg::Int(id)})
        .status();
  }

  absl::Status TakeOutboxRow(int64_t id) override {
    // Not prepared: the outbox is small but bloats between vacuums, and a
    // plan cached while it was one page could scan it whole.
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec("DELETE FROM identity.outbox WHERE id = $1 "
                          "RETURNING id",
                          {pg::Int(id)}));
    if (r.rows() == 0) {
      return absl::AbortedError(
          "the invitation was reconciled while starting; retry the call");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<InvitePrelude> LoadInvitePrelude(
      const std::string& workspace_id, const std::string& inviter_id,
      const std::string& username, const OutboxMessage* intent,
      absl::Duration delay) override {
    InvitePrelude out;
    Params params = {workspace_id, pg::NullIfEmpty(inviter_id)};
    if (intent != nullptr) {
      params.push_back(intent->topic);
      params.push_back(absl::BytesToHexString(intent->payload));
    } else {
      params.push_back(std::nullopt);
      params.push_back(std::nullopt);
    }
    params.push_back(absl::StrCat(absl::ToDoubleSeconds(delay)));
    // One round trip: the username's holder (not part of the prepared
    // statement, see kInvitePrelude: planned for its values) and the
    // prelude. The intent row is written even when the username turns out
    // taken; the caller, refusing the invite, deletes it.
    std::vector<pg::Statement> statements;
    if (!username.empty()) {
      statements.push_back({FindUserByUsernameSql(),
                            {workspace_id, username},
                            /*prepared=*/false});
    }
    statements.push_back({kInvitePrelude, std::move(params)});
    bool committed = false;
    ASSIGN_OR_RETURN(std::vector<pg::Result> results,
                     conn_.ExecPipeline(statements, false, &committed));
    if (!username.empty() && results[0].rows() > 0) {
      out.existing = ReadUser(results[0], 0);
    }
    const pg::Result& r = results.back();
    for (int i = 0; i < r.rows(); ++i) {
      const std::string tag = r.Get(i, kPreludeTagColumn);
      if (tag == "w") {
        out.workspace = ReadWorkspace(r, i);
      } else if (tag == "i") {
        out.inviter = ReadUser(r, i);
      } else if (tag == "n") {
        out.intent_id = r.GetInt(i, 0);
      }
    }
    return out;
  }

  absl::Status InsertInvitedUser(const UserRecord& u, const InvitationRecord& v,
                                 const OutboxMessage* m) override {
    auto r =
        Prepared(kInsertInvitedUser,
                 {u.id,
                  u.workspace_id,
                  u.username,
                  u.email,
                  u.first_name,
                  u.last_name,
                  KindName(u.kind),
                  StatusName(u.status),
                  pg::NullIfEmpty(u.metadata_json),
                  OptTimeParam(u.access_expire_time),
                  pg::NullIfEmpty(u.password_hash),
                  pg::Time(u.create_time),
                  v.id,
                  pg::NullIfEmpty(v.inviter_id),
                  v.token_hash,
                  pg::Int(v.token_generation),
                  InvitationStateName(v.state),
                  pg::Time(v.expire_time),
                  pg::Time(v.create_time),
                  m != nullptr ? pg::Param(m->topic) : std::nullopt,
                  m != nullptr ? pg::Param(absl::BytesToHexString(m->payload))
                               : std::nullopt});
    if (r.status().code() == absl::StatusCode::kAlreadyExists) {
      return UsernameTaken(u.username);
    }
    if (!r.ok()) return r.status();
    if (r->GetInt(0, 0) != 1 || r->GetInt(0, 1) != (m != nullptr ? 1 : 0)) {
      return absl::InternalError("the invitation was not stored; retry");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<bool> UserExists(const std::string& id) override {
    ASSIGN_OR_RETURN(pg::Result r,
                     Exec("SELECT 1 FROM identity.users WHERE id = $1", {id}));
    return r.rows() > 0;
  }

  absl::StatusOr<std::vector<UserRecord>> ExpireUsers(absl::Time now,
                                                      int limit) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(absl::StrCat(
                 "UPDATE identity.users SET status = 'EXPIRED', version = "
                 "version + 1, update_time = $1 WHERE id IN (SELECT id "
                 "FROM identity.users WHERE access_expire_time IS NOT "
                 "NULL AND status IN ('ACTIVE', 'INVITED') AND "
                 "access_expire_time <= $1 LIMIT $2 FOR UPDATE SKIP "
                 "LOCKED) RETURNING ",
                 kUserColumns),
             {pg::Time(now), pg::Int(limit)}));
    return ReadUsers(r);
  }

  absl::StatusOr<std::vector<UserRecord>> TakeDueReminders(
      absl::Time now, absl::Duration horizon, int limit) override {
    ASSIGN_OR_RETURN(
        pg::Result r,
        Exec(absl::StrCat(
                 "UPDATE identity.users SET expiry_reminder_sent = true "
                 "WHERE id IN (SELECT id FROM identity.users WHERE "
                 "access_expire_time IS NOT NULL AND status = 'ACTIVE' "
                 "AND kind = 'GUEST' AND NOT expiry_reminder_sent AND "
                 "access_expire_time > $1 AND access_expire_time <= $2 "
                 "AND email <> '' LIMIT $3 FOR UPDATE SKIP LOCKED) "
                 "RETURNING ",
                 kUserColumns),
             {pg::Time(now), pg::Time(now + horizon), pg::Int(limit)}));
    return ReadUsers(r);
  }

  absl::StatusOr<int64_t> DeleteStale(absl::Time now,
                                      absl::Duration max_window) override {
    ASSIGN_OR_RETURN(pg::Result a, Exec("DELETE FROM identity.sessions WHERE "
                                        "expire_time < $1",
                                        {pg::Time(now)}));
    ASSIGN_OR_RETURN(pg::Result b,
                     Exec("DELETE FROM identity.rate_limits WHERE "
                          "window_start < $1",
                          {pg::Time(now - max_window)}));
    return a.AffectedRows() + b.AffectedRows();
  }

 private:
  // One statement on the connection (inside the transaction, if any).
  absl::StatusOr<pg::Result> Exec(const std::string& sql,
                                  const Params& params = {}) {
    return conn_.Exec(sql, params);
  }
  // The same, parsed and planned once per connection: for hot statements
  // whose plan does not depend on the values (lookups and inserts by key).
  absl::StatusOr<pg::Result> Prepared(const std::string& sql,
                                      const Params& params = {}) {
    return conn_.ExecPrepared(sql, params);
  }

  pg::Connection& conn_;
  pg::Transaction* tx_;
  pg::Pool* pool_;
  IdempotencyStore* idempotency_;
};

}  // namespace

absl::Status PgRepository::Transact(
    const std::function<absl::Status(IdentityTx&)>& fn) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  PgTx ptx(*conn, &tx, pool_, idempotency_);
  RETURN_IF_ERROR(fn(ptx));
  return tx.Commit();
}

absl::Status PgRepository::Autocommit(
    const std::function<absl::Status(IdentityTx&)>& fn) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  PgTx ptx(*conn, nullptr, pool_, idempotency_);
  return fn(ptx);
}

absl::StatusOr<std::optional<std::string>> PgRepository::LookupIdempotent(
    const std::string& scope, const std::string& key,
    const std::string& request_hash) {
  return idempotency_->Lookup(*pool_, scope, key, request_hash);
}

}  // namespace guestlist::identity
