#include "services/identity/import/store.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/status_macros.h"
#include "services/identity/import/rows.h"

namespace guestlist::identity::import {
namespace {

constexpr char kSelectUser[] =
    "SELECT id, username, email, first_name, last_name, kind, status, "
    "metadata::text, access_expire_time, version, create_time "
    "FROM identity.users ";

ExistingUser UserFromRow(const pg::Result& r, int i) {
  ExistingUser u;
  u.id = r.Get(i, 0);
  u.username = r.Get(i, 1);
  u.email = r.Get(i, 2);
  u.first_name = r.Get(i, 3);
  u.last_name = r.Get(i, 4);
  v1::UserKind_Parse(r.Get(i, 5), &u.kind);
  v1::UserStatus_Parse(r.Get(i, 6), &u.status);
  if (!r.IsNull(i, 7)) {
    // jsonb prints with spaces; compare in the import's canonical form.
    absl::StatusOr<std::string> canonical = CanonicalMetadata(r.Get(i, 7));
    u.metadata = canonical.ok() ? *canonical : r.Get(i, 7);
    if (u.metadata == "{}") u.metadata = "";
  }
  if (!r.IsNull(i, 8)) u.access_expire_time = pg::ParseTime(r.Get(i, 8));
  u.version = r.GetInt(i, 9);
  u.create_time = pg::ParseTime(r.Get(i, 10));
  return u;
}

// Rows per statement: bounds the size of the array parameters (memory)
// while keeping round trips per import in the tens, not per row.
constexpr size_t kRowsPerStatement = 5000;

template <typename T, typename F>
pg::Param Array(absl::Span<const T> items, F field) {
  std::vector<std::string> values;
  values.reserve(items.size());
  for (const T& item : items) values.push_back(field(item));
  return pg::TextArray(values);
}

// Ids are compared as uuid so the primary keys serve the lookups; text
// that is not a UUID cannot name anything.
bool LooksLikeUuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !absl::ascii_isxdigit(s[i])) return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> ParseTextArray(const std::string& literal) {
  std::vector<std::string> out;
  if (literal.size() < 2) return out;
  size_t i = 1;
  const size_t end = literal.size() - 1;  // the closing brace
  while (i < end) {
    std::string value;
    if (literal[i] == '"') {
      ++i;
      while (i < end && literal[i] != '"') {
        if (literal[i] == '\\' && i + 1 < end) ++i;
        value.push_back(literal[i++]);
      }
      ++i;  // closing quote
    } else {
      while (i < end && literal[i] != ',') value.push_back(literal[i++]);
    }
    out.push_back(std::move(value));
    if (i < end && literal[i] == ',') ++i;
  }
  return out;
}

absl::StatusOr<WorkspaceInfo> ImportStore::LoadWorkspace(
    const std::string& workspace_id) {
  if (!LooksLikeUuid(workspace_id)) {
    return absl::NotFoundError(
        absl::StrCat("workspace ", workspace_id, " does not exist"));
  }
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec("SELECT id, display_name, invitation_ttl_seconds, "
                  "allowed_email_domains, blocked_email_domains "
                  "FROM identity.workspaces WHERE id = $1::uuid",
                  {workspace_id}));
  if (r.rows() == 0) {
    return absl::NotFoundError(
        absl::StrCat("workspace ", workspace_id, " does not exist"));
  }
  WorkspaceInfo w;
  w.id = r.Get(0, 0);
  w.display_name = r.Get(0, 1);
  w.invitation_ttl = absl::Seconds(r.GetInt(0, 2));
  w.allowed_email_domains = ParseTextArray(r.Get(0, 3));
  w.blocked_email_domains = ParseTextArray(r.Get(0, 4));
  return w;
}

absl::StatusOr<absl::flat_hash_map<std::string, ExistingUser>>
ImportStore::FindUsersByUsername(const std::string& workspace_id,
                                 const std::vector<std::string>& lower) {
  absl::flat_hash_map<std::string, ExistingUser> users;
  constexpr size_t kBatch = 20000;
  for (size_t start = 0; start < lower.size(); start += kBatch) {
    std::vector<std::string> batch(
        lower.begin() + start,
        lower.begin() + std::min(lower.size(), start + kBatch));
    ASSIGN_OR_RETURN(
        pg::Result r,
        pool_->Exec(absl::StrCat(kSelectUser,
                                 "WHERE workspace_id = $1::uuid AND "
                                 "lower(username) = ANY($2::text[])"),
                    {workspace_id, pg::TextArray(batch)}));
    for (int i = 0; i < r.rows(); ++i) {
      ExistingUser u = UserFromRow(r, i);
      std::string key = absl::AsciiStrToLower(u.username);
      users.emplace(std::move(key), std::move(u));
    }
  }
  return users;
}

absl::StatusOr<std::vector<ExistingUser>> ImportStore::ListUsers(
    const std::string& workspace_id, v1::UserKind kind, v1::UserStatus status,
    const std::string& query) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          absl::StrCat(
              kSelectUser,
              "WHERE workspace_id = $1::uuid "
              "AND ($2 = '' OR kind = $2) "
              "AND (CASE WHEN $3 = '' THEN status <> 'ARCHIVED' "
              "ELSE status = $3 END) "
              "AND ($4 = '' OR starts_with(username_lc, $4) OR "
              "starts_with(email_lc, $4) OR starts_with(first_lc, $4) OR "
              "starts_with(last_lc, $4) OR starts_with(name_lc, $4)) "
              "ORDER BY username_lc, id"),
          {workspace_id,
           kind == v1::USER_KIND_UNSPECIFIED ? "" : v1::UserKind_Name(kind),
           status == v1::USER_STATUS_UNSPECIFIED ? ""
                                                 : v1::UserStatus_Name(status),
           absl::AsciiStrToLower(query)}));
  std::vector<ExistingUser> users;
  users.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) users.push_back(UserFromRow(r, i));
  return users;
}

absl::StatusOr<std::string> ImportStore::UserDisplayName(
    const std::string& user_id) {
  if (!LooksLikeUuid(user_id)) return std::string();
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec("SELECT btrim(first_name || ' ' || last_name), username "
                  "FROM identity.users WHERE id = $1::uuid",
                  {user_id}));
  if (r.rows() == 0) return std::string();
  return r.Get(0, 0).empty() ? r.Get(0, 1) : r.Get(0, 0);
}

absl::Status ImportStore::Apply(const ImportWrites& w) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  for (size_t start = 0; start < w.creates.size(); start += kRowsPerStatement) {
    const absl::Span<const NewUser> part =
        absl::MakeConstSpan(w.creates).subspan(start, kRowsPerStatement);
    auto user = [](const NewUser& n) -> const ExistingUser& { return n.user; };
    RETURN_IF_ERROR(
        tx.Exec(
              "INSERT INTO identity.users (id, workspace_id, username, email, "
              "first_name, last_name, kind, status, metadata, version, "
              "create_time, update_time) "
              "SELECT u.id, $1::uuid, u.username, u.email, u.first_name, "
              "u.last_name, u.kind, 'INVITED', NULLIF(u.metadata, '')::jsonb, "
              "1, $2, $2 "
              "FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], "
              "$7::text[], $8::text[], $9::text[]) "
              "AS u(id, username, email, first_name, last_name, kind, "
              "metadata)",
              {w.workspace_id, pg::Time(w.now),
               Array(part, [&](const NewUser& n) { return user(n).id; }),
               Array(part, [&](const NewUser& n) { return user(n).username; }),
               Array(part, [&](const NewUser& n) { return user(n).email; }),
               Array(part,
                     [&](const NewUser& n) { return user(n).first_name; }),
               Array(part, [&](const NewUser& n) { return user(n).last_name; }),
               Array(part,
                     [&](const NewUser& n) {
                       return v1::UserKind_Name(user(n).kind);
                     }),
               Array(part, [&](const NewUser& n) { return user(n).metadata; })})
            .status());
    RETURN_IF_ERROR(
        tx.Exec("INSERT INTO identity.invitations (id, workspace_id, user_id, "
                "inviter_id, token_hash, state, expire_time, create_time) "
                "SELECT i.id, $1::uuid, i.user_id, $2::uuid, i.token_hash, "
                "'PENDING', $3, $4 "
                "FROM unnest($5::uuid[], $6::uuid[], $7::text[]) "
                "AS i(id, user_id, token_hash)",
                {w.workspace_id, pg::NullIfEmpty(w.inviter_id),
                 pg::Time(w.invitation_expire_time), pg::Time(w.now),
                 Array(part, [](const NewUser& n) { return n.invitation_id; }),
                 Array(part, [](const NewUser& n) { return n.user.id; }),
                 Array(part, [](const NewUser& n) { return n.token_hash; })})
            .status());
  }
  for (size_t start = 0; start < w.updates.size(); start += kRowsPerStatement) {
    const absl::Span<const ExistingUser> part =
        absl::MakeConstSpan(w.updates).subspan(start, kRowsPerStatement);
    ASSIGN_OR_RETURN(
        pg::Result r,
        tx.Exec(
            "UPDATE identity.users AS u SET username = v.username, "
            "email = v.email, first_name = v.first_name, "
            "last_name = v.last_name, kind = v.kind, "
            "metadata = NULLIF(v.metadata, '')::jsonb, "
            "version = u.version + 1, update_time = $2 "
            "FROM unnest($3::uuid[], $4::bigint[], $5::text[], $6::text[], "
            "$7::text[], $8::text[], $9::text[], $10::text[]) "
            "AS v(id, version, username, email, first_name, last_name, kind, "
            "metadata) "
            "WHERE u.id = v.id AND u.workspace_id = $1::uuid "
            "AND u.version = v.version",
            {w.workspace_id, pg::Time(w.now),
             Array(part, [](const ExistingUser& u) { return u.id; }),
             Array(part,
                   [](const ExistingUser& u) {
                     return std::to_string(u.version);
                   }),
             Array(part, [](const ExistingUser& u) { return u.username; }),
             Array(part, [](const ExistingUser& u) { return u.email; }),
             Array(part, [](const ExistingUser& u) { return u.first_name; }),
             Array(part, [](const ExistingUser& u) { return u.last_name; }),
             Array(part,
                   [](const ExistingUser& u) {
                     return v1::UserKind_Name(u.kind);
                   }),
             Array(part, [](const ExistingUser& u) { return u.metadata; })}));
    if (r.AffectedRows() != static_cast<int64_t>(part.size())) {
      return absl::AbortedError(
          "some users changed while the import ran; upload the file again");
    }
  }
  for (size_t start = 0; start < w.archives.size();
       start += kRowsPerStatement) {
    const absl::Span<const ExistingUser> part =
        absl::MakeConstSpan(w.archives).subspan(start, kRowsPerStatement);
    const pg::Param ids =
        Array(part, [](const ExistingUser& u) { return u.id; });
    ASSIGN_OR_RETURN(
        pg::Result r,
        tx.Exec("UPDATE identity.users AS u SET status = 'ARCHIVED', "
                "version = u.version + 1, update_time = $2 "
                "FROM unnest($3::uuid[], $4::bigint[]) AS v(id, version) "
                "WHERE u.id = v.id AND u.workspace_id = $1::uuid "
                "AND u.version = v.version",
                {w.workspace_id, pg::Time(w.now), ids,
                 Array(part, [](const ExistingUser& u) {
                   return std::to_string(u.version);
                 })}));
    if (r.AffectedRows() != static_cast<int64_t>(part.size())) {
      return absl::AbortedError(
          "some users changed while the import ran; upload the file again");
    }
    // An archived user can neither accept an invitation nor keep a session.
    RETURN_IF_ERROR(tx.Exec("UPDATE identity.invitations SET state = "
                            "'REVOKED' WHERE user_id = ANY($1::uuid[]) "
                            "AND state = 'PENDING'",
                            {ids})
                        .status());
    RETURN_IF_ERROR(
        tx.Exec("DELETE FROM identity.sessions WHERE user_id = ANY($1::uuid[])",
                {ids})
            .status());
  }
  return tx.Commit();
}

absl::Status ImportStore::CreateJob(const ImportJob& job) {
  const v1::ImportReport& r = job.report;
  return pool_
      ->Exec(
          "INSERT INTO identity.imports (id, workspace_id, "
          "idempotency_key, creator, dry_run, mode, state, rows_total, "
          "create_time) VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, "
          "$8, $9)",
          {job.id, job.workspace_id, job.idempotency_key, job.creator,
           pg::Bool(r.dry_run()), v1::ImportMode_Name(r.mode()),
           v1::ImportReport::State_Name(r.state()), pg::Int(r.rows_total()),
           pg::Time(absl::FromUnixSeconds(r.create_time().seconds()) +
                    absl::Nanoseconds(r.create_time().nanos()))})
      .status();
}

absl::Status ImportStore::UpdateProgress(const std::string& id,
                                         int rows_processed) {
  return pool_
      ->Exec(
          "UPDATE identity.imports SET rows_processed = $2 "
          "WHERE id = $1::uuid AND state = 'RUNNING'",
          {id, pg::Int(rows_processed)})
      .status();
}

absl::Status ImportStore::FinishJob(const ImportJob& job) {
  const v1::ImportReport& r = job.report;
  return pool_
      ->Exec(
          "UPDATE identity.imports SET state = $2, rows_processed = $3, "
          "created = $4, updated = $5, deleted = $6, unchanged = $7, "
          "failed = $8, report = decode($9, 'hex'), error_csv = $10, "
          "finish_time = now() WHERE id = $1::uuid",
          {job.id, v1::ImportReport::State_Name(r.state()),
           pg::Int(r.rows_processed()), pg::Int(r.created()),
           pg::Int(r.updated()), pg::Int(r.deleted()), pg::Int(r.unchanged()),
           pg::Int(r.failed()), absl::BytesToHexString(r.SerializeAsString()),
           job.error_csv})
      .status();
}

absl::StatusOr<ImportJob> ImportStore::GetJob(const std::string& id) {
  if (!LooksLikeUuid(id)) {
    return absl::NotFoundError(absl::StrCat("import ", id, " does not exist"));
  }
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          "SELECT id, workspace_id, idempotency_key, creator, dry_run, mode, "
          "state, rows_total, rows_processed, created, updated, deleted, "
          "unchanged, failed, encode(report, 'hex'), error_csv, create_time "
          "FROM identity.imports WHERE id = $1::uuid",
          {id}));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("import ", id, " does not exist"));
  }
  ImportJob job;
  job.id = r.Get(0, 0);
  job.workspace_id = r.Get(0, 1);
  job.idempotency_key = r.Get(0, 2);
  job.creator = r.Get(0, 3);
  job.error_csv = r.Get(0, 15);
  if (!r.IsNull(0, 14)) {
    job.report.ParseFromString(absl::HexStringToBytes(r.Get(0, 14)));
  }
  v1::ImportReport& rep = job.report;
  rep.set_import_id(job.id);
  rep.set_workspace_id(job.workspace_id);
  rep.set_dry_run(r.GetBool(0, 4));
  v1::ImportMode mode;
  if (v1::ImportMode_Parse(r.Get(0, 5), &mode)) rep.set_mode(mode);
  v1::ImportReport::State state;
  if (v1::ImportReport::State_Parse(r.Get(0, 6), &state)) rep.set_state(state);
  rep.set_rows_total(static_cast<int32_t>(r.GetInt(0, 7)));
  rep.set_rows_processed(static_cast<int32_t>(r.GetInt(0, 8)));
  rep.set_created(static_cast<int32_t>(r.GetInt(0, 9)));
  rep.set_updated(static_cast<int32_t>(r.GetInt(0, 10)));
  rep.set_deleted(static_cast<int32_t>(r.GetInt(0, 11)));
  rep.set_unchanged(static_cast<int32_t>(r.GetInt(0, 12)));
  rep.set_failed(static_cast<int32_t>(r.GetInt(0, 13)));
  const absl::Time created = pg::ParseTime(r.Get(0, 16));
  rep.mutable_create_time()->set_seconds(absl::ToUnixSeconds(created));
  return job;
}

absl::StatusOr<std::optional<std::string>> ImportStore::FindJobByKey(
    const std::string& workspace_id, const std::string& key) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec("SELECT id FROM identity.imports WHERE "
                  "workspace_id = $1::uuid AND idempotency_key = $2",
                  {workspace_id, key}));
  if (r.rows() == 0) return std::optional<std::string>();
  return std::optional<std::string>(r.Get(0, 0));
}

absl::Status ImportStore::FailStaleJobs(absl::Duration older_than,
                                        absl::Time now) {
  return pool_
      ->Exec(
          "UPDATE identity.imports SET state = 'FAILED', "
          "finish_time = now() WHERE state = 'RUNNING' AND "
          "create_time < $1",
          {pg::Time(now - older_than)})
      .status();
}

}  // namespace guestlist::identity::import
