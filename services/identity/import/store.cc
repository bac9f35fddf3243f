#include "services/identity/import/store.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "services/identity/import/rows.h"

namespace guestlist::identity::import {

namespace mv1 = ::guestlist::membership::v1;

namespace {

// The columns UserFromRow reads.
constexpr char kUserColumns[] =
    "id, username, email, first_name, last_name, kind, status, "
    "metadata::text, access_expire_time, version, create_time ";

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

// The advisory lock of a job ($1 = its id). One 64-bit key space is
// shared with other users of advisory locks; the prefix keeps ours apart.
constexpr char kLockKey[] =
    "hashtextextended('identity.imports:' || $1::text, 0)";

constexpr char kDiedReason[] =
    "the identity process running this import stopped before it finished "
    "(crash or restart), so identity created or changed none of its users: "
    "upload the file again";

pg::Param IdArray(const std::vector<int64_t>& ids) {
  std::vector<std::string> text;
  text.reserve(ids.size());
  for (int64_t id : ids) text.push_back(std::to_string(id));
  return pg::TextArray(text);
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

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  ts.set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(ts.seconds())) /
                                    absl::Nanoseconds(1)));
  return ts;
}

mv1::UserRecord ToMembershipRecord(const ExistingUser& u,
                                   const std::string& workspace_id) {
  mv1::UserRecord r;
  r.set_id(u.id);
  r.set_workspace_id(workspace_id);
  r.set_username(u.username);
  r.set_email(u.email);
  r.set_first_name(u.first_name);
  r.set_last_name(u.last_name);
  // Same numbers in both enums (see membership.proto DirectoryUser).
  r.set_kind(static_cast<mv1::DirectoryUser::Kind>(u.kind));
  r.set_status(static_cast<mv1::DirectoryUser::Status>(u.status));
  if (u.access_expire_time.has_value()) {
    *r.mutable_access_expire_time() = ToProto(*u.access_expire_time);
  }
  *r.mutable_create_time() = ToProto(u.create_time);
  r.set_version(u.version);
  return r;
}

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
        pool_->Exec(
            absl::StrCat("SELECT ", kUserColumns, "FROM identity.users ",
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
              "SELECT ", kUserColumns, "FROM identity.users ",
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

absl::StatusOr<std::unique_ptr<JobLease>> ImportStore::OpenLease() {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  return std::make_unique<JobLease>(std::move(conn));
}

absl::Status ImportStore::StartJob(JobLease& lease, const ImportJob& job) {
  // Locked before the row exists, so no reader ever sees the job RUNNING
  // and unlocked while it is alive.
  RETURN_IF_ERROR(
      lease.conn()
          ->Exec(absl::StrCat("SELECT pg_advisory_lock(", kLockKey, ")"),
                 {job.id})
          .status());
  lease.job_id_ = job.id;
  const v1::ImportReport& r = job.report;
  return lease.conn()
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

JobLease::~JobLease() {
  if (conn_->healthy()) {
    (void)conn_->Exec(absl::StrCat("SELECT pg_advisory_unlock(", kLockKey, ")"),
                      {job_id_});
  }
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

absl::Status ImportStore::FinishJob(JobLease& lease, const ImportJob& job) {
  return lease.conn()->Exec(FinishJobSql(), FinishJobParams(job)).status();
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
          "unchanged, failed, encode(report, 'hex'), error_csv, create_time, "
          "failure_reason, finish_time "
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
  job.failure_reason = r.Get(0, 17);
  if (!job.failure_reason.empty()) {
    // ImportReport has no field for it: a row-level error on line 0 (no
    // line of the file) says why nothing was applied.
    v1::ImportRow* why = rep.add_rows();
    why->set_line(0);
    why->set_action(v1::ImportRow::ERROR);
    why->add_errors()->set_reason(job.failure_reason);
  }
  if (!r.IsNull(0, 18) && !rep.has_finish_time()) {
    rep.mutable_finish_time()->set_seconds(
        absl::ToUnixSeconds(pg::ParseTime(r.Get(0, 18))));
  }
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

absl::StatusOr<bool> ImportStore::ReapIfOrphaned(const std::string& id,
                                                 const Undo& undo) {
  if (!LooksLikeUuid(id)) return false;
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  ASSIGN_OR_RETURN(
      pg::Result running,
      conn->Exec("SELECT workspace_id FROM identity.imports WHERE id = "
                 "$1::uuid AND state = 'RUNNING'",
                 {id}));
  if (running.rows() == 0) return false;
  const std::string workspace_id = running.Get(0, 0);
  ASSIGN_OR_RETURN(
      pg::Result locked,
      conn->Exec(absl::StrCat("SELECT pg_try_advisory_lock(", kLockKey, ")"),
                 {id}));
  if (!locked.GetBool(0, 0)) return false;  // its process is alive
  // Holding the job's lock: undo membership's part first, so whoever reads
  // FAILED finds membership as it was. If membership is down, the relay
  // does it later from the same rows.
  absl::Status undone = UndoJobOn(conn, id, workspace_id, undo);
  if (!undone.ok()) {
    LogWarning(absl::StrCat("import ", id,
                            ": membership not reconciled yet (the relay will "
                            "retry): ",
                            undone.ToString()));
  }
  absl::StatusOr<pg::Result> failed = conn->Exec(
      "UPDATE identity.imports SET state = 'FAILED', finish_time = now(), "
      "rows_processed = rows_total, failure_reason = $2 "
      "WHERE id = $1::uuid AND state = 'RUNNING'",
      {id, kDiedReason});
  absl::Status unlocked =
      conn->Exec(absl::StrCat("SELECT pg_advisory_unlock(", kLockKey, ")"),
                 {id})
          .status();
  RETURN_IF_ERROR(failed.status());
  RETURN_IF_ERROR(unlocked);
  return failed->AffectedRows() > 0;
}

absl::Status ImportStore::UndoJob(const std::string& job_id,
                                  const std::string& workspace_id,
                                  const Undo& undo) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  return UndoJobOn(conn, job_id, workspace_id, undo);
}

absl::Status ImportStore::UndoJobOn(pg::PooledConnection& conn,
                                    const std::string& job_id,
                                    const std::string& workspace_id,
                                    const Undo& undo) {
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  // Waits for the relay if it is handling the same rows right now.
  ASSIGN_OR_RETURN(
      pg::Result rows,
      tx.Exec("SELECT o.id, o.topic, encode(o.payload, 'hex') "
              "FROM identity.outbox o "
              "JOIN identity.imports j ON o.id = ANY(j.intent_ids) "
              "WHERE j.id = $1::uuid ORDER BY o.id FOR UPDATE OF o",
              {job_id}));
  for (int i = 0; i < rows.rows(); ++i) {
    const std::string payload = absl::HexStringToBytes(rows.Get(i, 2));
    // What does not parse is not ours to judge: the relay drops it.
    if (rows.Get(i, 1) == kTopicRestoreUsers) {
      mv1::ApplyGrantsRequest inverse;
      if (!inverse.ParseFromString(payload)) continue;
      RETURN_IF_ERROR(RestoreUsers(std::move(inverse), undo.apply));
    } else {
      mv1::DeleteUsersRequest created;
      if (!created.ParseFromString(payload)) continue;
      const std::vector<std::string> ids(created.user_ids().begin(),
                                         created.user_ids().end());
      RETURN_IF_ERROR(
          DropMissingFromMembership(workspace_id, ids, undo.remove));
    }
    RETURN_IF_ERROR(
        tx.Exec("DELETE FROM identity.outbox WHERE id = $1", {rows.Get(i, 0)})
            .status());
  }
  return tx.Commit();
}

absl::Status ImportStore::ReapOrphanedJobs(const Undo& undo) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec("SELECT id FROM identity.imports WHERE state = 'RUNNING'"));
  for (int i = 0; i < r.rows(); ++i) {
    RETURN_IF_ERROR(ReapIfOrphaned(r.Get(i, 0), undo).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> ImportStore::AddIntents(
    JobLease& lease, const std::string& workspace_id,
    const std::vector<std::string>& user_ids, int per_row) {
  std::vector<std::string> payloads;
  for (size_t start = 0; start < user_ids.size(); start += per_row) {
    mv1::DeleteUsersRequest undo;
    undo.set_workspace_id(workspace_id);
    for (size_t i = start; i < std::min(user_ids.size(), start + per_row);
         ++i) {
      undo.add_user_ids(user_ids[i]);
    }
    payloads.push_back(absl::BytesToHexString(undo.SerializeAsString()));
  }
  std::vector<int64_t> ids;
  if (payloads.empty()) return ids;
  // Autocommit: the rows must be durable before membership is touched;
  // the job row names them in the same statement. Due in a minute, not a
  // second (InviteUser's): the commit locks them only after all of a large
  // file's are in. After a crash, whoever next reads the job (or start-up)
  // reconciles them at once; the relay is the fallback.
  ASSIGN_OR_RETURN(
      pg::Result r,
      lease.conn()->Exec(
          "WITH i AS (INSERT INTO identity.outbox (topic, payload, "
          "next_attempt_at) SELECT $1, decode(p, 'hex'), now() + interval "
          "'60 seconds' FROM unnest($2::text[]) AS p RETURNING id), "
          "j AS (UPDATE identity.imports SET intent_ids = "
          "coalesce(intent_ids, '{}') || (SELECT array_agg(id) FROM i) "
          "WHERE id = $3::uuid) "
          "SELECT id FROM i ORDER BY id",
          {kTopicReconcileInvite, pg::TextArray(payloads), lease.job_id()}));
  for (int i = 0; i < r.rows(); ++i) ids.push_back(r.GetInt(i, 0));
  return ids;
}

absl::StatusOr<int64_t> ImportStore::AddRestoreIntent(
    const std::string& job_id, const mv1::ApplyGrantsRequest& inverse) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(
          "WITH i AS (INSERT INTO identity.outbox (topic, payload, "
          "next_attempt_at) VALUES ($1, decode($2, 'hex'), now() + "
          "interval '60 seconds') RETURNING id), "
          "j AS (UPDATE identity.imports SET intent_ids = "
          "coalesce(intent_ids, '{}') || (SELECT id FROM i) "
          "WHERE id = $3::uuid) "
          "SELECT id FROM i",
          {kTopicRestoreUsers,
           absl::BytesToHexString(inverse.SerializeAsString()), job_id}));
  return r.GetInt(0, 0);
}

absl::Status ImportStore::RestoreUsers(mv1::ApplyGrantsRequest inverse,
                                       const ApplyGrants& apply) {
  std::vector<std::string> ids;
  for (const mv1::UserGrants& g : inverse.users()) {
    if (LooksLikeUuid(g.user().id())) ids.push_back(g.user().id());
  }
  // Autocommit: a retry after a failed call moves the version again,
  // which is harmless (only "newer than membership's" matters).
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(absl::StrCat("UPDATE identity.users SET version = "
                               "version + 2 WHERE workspace_id = $1::uuid "
                               "AND id = ANY($2::uuid[]) RETURNING ",
                               kUserColumns),
                  {inverse.workspace_id(), pg::TextArray(ids)}));
  absl::flat_hash_map<std::string, ExistingUser> users;
  for (int i = 0; i < r.rows(); ++i) {
    ExistingUser u = UserFromRow(r, i);
    users.emplace(u.id, std::move(u));
  }
  mv1::ApplyGrantsRequest request;
  request.set_workspace_id(inverse.workspace_id());
  request.set_best_effort(true);
  for (mv1::UserGrants& g : *inverse.mutable_users()) {
    auto found = users.find(g.user().id());
    if (found == users.end()) continue;  // identity never had it
    *g.mutable_user() =
        ToMembershipRecord(found->second, request.workspace_id());
    *request.add_users() = std::move(g);
  }
  if (request.users_size() == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(mv1::ApplyGrantsResponse response, apply(request));
  int refused = 0;
  std::string example;
  for (const mv1::UserGrantResult& result : response.results()) {
    if (result.ok()) continue;
    if (refused++ == 0) {
      example = absl::StrCat(result.user_id(), ": ", result.error_message());
    }
  }
  if (refused > 0) {
    LogWarning(absl::StrCat(
        "restoring users after an import that did not commit: membership "
        "refused ",
        refused, " of ", request.users_size(), " (e.g. ", example,
        "); the others are restored"));
  }
  return absl::OkStatus();
}

absl::Status ImportStore::DropMissingFromMembership(
    const std::string& workspace_id, const std::vector<std::string>& user_ids,
    const RemoveUsers& remove) {
  ASSIGN_OR_RETURN(
      pg::Result missing,
      pool_->Exec("SELECT c.id FROM unnest($1::uuid[]) AS c(id) WHERE NOT "
                  "EXISTS (SELECT 1 FROM identity.users u WHERE u.id = c.id)",
                  {pg::TextArray(user_ids)}));
  if (missing.rows() == 0) return absl::OkStatus();
  mv1::DeleteUsersRequest req;
  req.set_workspace_id(workspace_id);
  for (int i = 0; i < missing.rows(); ++i) req.add_user_ids(missing.Get(i, 0));
  return remove(req);
}

absl::Status ImportStore::Commit(
    JobLease& lease, const std::vector<int64_t>& intents,
    const WriteContext& context,
    const std::function<absl::Status(ImportTx&)>& fn) {
  pg::Transaction tx(lease.conn());
  RETURN_IF_ERROR(tx.status());
  if (!intents.empty()) {
    ASSIGN_OR_RETURN(pg::Result locked,
                     tx.Exec("SELECT id FROM identity.outbox WHERE id = "
                             "ANY($1::bigint[]) FOR UPDATE",
                             {IdArray(intents)}));
    if (locked.rows() != static_cast<int>(intents.size())) {
      return absl::AbortedError(
          "the import's intent rows were reconciled before it could start "
          "(the database was too slow); upload the file again");
    }
  }
  ImportTx writes(tx, context);
  RETURN_IF_ERROR(fn(writes));
  std::vector<int64_t> done = intents;
  done.insert(done.end(), writes.locked_intents().begin(),
              writes.locked_intents().end());
  if (!done.empty()) {
    RETURN_IF_ERROR(tx.Exec("DELETE FROM identity.outbox WHERE id = "
                            "ANY($1::bigint[])",
                            {IdArray(done)})
                        .status());
  }
  return tx.Commit();
}

}  // namespace guestlist::identity::import
