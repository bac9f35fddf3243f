#include "services/identity/import/import_tx.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "services/identity/import/staging.h"

namespace guestlist::identity::import {
namespace {

// Rows per statement: bounds the size of the array parameters (memory)
// while keeping round trips per import in the tens, not per row.
constexpr size_t kRowsPerStatement = 5000;
// Outbox payloads per statement (a BatchSendEmail payload is ~200 KB).
constexpr size_t kPayloadsPerStatement = 16;

template <typename T, typename F>
pg::Param Array(absl::Span<const T> items, F field) {
  std::vector<std::string> values;
  values.reserve(items.size());
  for (const T& item : items) values.push_back(field(item));
  return pg::TextArray(values);
}

absl::Status ChangedSinceRead() {
  return absl::AbortedError(
      "some users changed while the import ran; upload the file again");
}

}  // namespace

// The error CSV is its header line ($10) plus the failed rows staged on
// the same connection (staging.h).
std::string FinishJobSql() {
  return absl::StrCat(
      "UPDATE identity.imports SET state = $2, rows_processed = $3, "
      "created = $4, updated = $5, deleted = $6, unchanged = $7, "
      "failed = $8, report = decode($9, 'hex'), error_csv = $10 || ",
      Staging::kErrorLinesSql,
      ", failure_reason = $11, finish_time = now() WHERE id = $1::uuid");
}

pg::Params FinishJobParams(const ImportJob& job) {
  const v1::ImportReport& r = job.report;
  return {job.id,
          v1::ImportReport::State_Name(r.state()),
          pg::Int(r.rows_processed()),
          pg::Int(r.created()),
          pg::Int(r.updated()),
          pg::Int(r.deleted()),
          pg::Int(r.unchanged()),
          pg::Int(r.failed()),
          absl::BytesToHexString(r.SerializeAsString()),
          job.error_csv,
          job.failure_reason};
}

absl::Status ImportTx::LockIntent(int64_t id) {
  ASSIGN_OR_RETURN(pg::Result r,
                   tx_.Exec("SELECT id FROM identity.outbox WHERE id = $1 "
                            "FOR UPDATE",
                            {std::to_string(id)}));
  if (r.rows() != 1) {
    return absl::AbortedError(
        "the import's restore row was reconciled before membership was "
        "called (the database was too slow); upload the file again");
  }
  locked_.push_back(id);
  return absl::OkStatus();
}

absl::Status ImportTx::InsertUsers(absl::Span<const NewUser> users) {
  const WriteContext& w = context_;
  for (size_t start = 0; start < users.size(); start += kRowsPerStatement) {
    const absl::Span<const NewUser> part =
        users.subspan(start, kRowsPerStatement);
    RETURN_IF_ERROR(
        tx_.Exec(
               "INSERT INTO identity.users (id, workspace_id, username, "
               "email, first_name, last_name, kind, status, metadata, "
               "version, create_time, update_time) "
               "SELECT u.id, $1::uuid, u.username, u.email, u.first_name, "
               "u.last_name, u.kind, 'INVITED', "
               "NULLIF(u.metadata, '')::jsonb, 1, $2, $2 "
               "FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], "
               "$7::text[], $8::text[], $9::text[]) "
               "AS u(id, username, email, first_name, last_name, kind, "
               "metadata)",
               {w.workspace_id, pg::Time(w.now),
                Array(part, [](const NewUser& n) { return n.user.id; }),
                Array(part, [](const NewUser& n) { return n.user.username; }),
                Array(part, [](const NewUser& n) { return n.user.email; }),
                Array(part, [](const NewUser& n) { return n.user.first_name; }),
                Array(part, [](const NewUser& n) { return n.user.last_name; }),
                Array(part,
                      [](const NewUser& n) {
                        return v1::UserKind_Name(n.user.kind);
                      }),
                Array(part, [](const NewUser& n) { return n.user.metadata; })})
            .status());
    RETURN_IF_ERROR(
        tx_.Exec("INSERT INTO identity.invitations (id, workspace_id, "
                 "user_id, inviter_id, token_hash, state, expire_time, "
                 "create_time) "
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
  return absl::OkStatus();
}

absl::Status ImportTx::UpdateUsers(absl::Span<const ExistingUser> users) {
  const WriteContext& w = context_;
  for (size_t start = 0; start < users.size(); start += kRowsPerStatement) {
    const absl::Span<const ExistingUser> part =
        users.subspan(start, kRowsPerStatement);
    ASSIGN_OR_RETURN(
        pg::Result r,
        tx_.Exec(
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
      return ChangedSinceRead();
    }
  }
  return absl::OkStatus();
}

absl::Status ImportTx::ArchiveUsers(absl::Span<const ExistingUser> users) {
  const WriteContext& w = context_;
  for (size_t start = 0; start < users.size(); start += kRowsPerStatement) {
    const absl::Span<const ExistingUser> part =
        users.subspan(start, kRowsPerStatement);
    const pg::Param ids =
        Array(part, [](const ExistingUser& u) { return u.id; });
    ASSIGN_OR_RETURN(
        pg::Result r,
        tx_.Exec("UPDATE identity.users AS u SET status = 'ARCHIVED', "
                 "version = u.version + 1, update_time = $2 "
                 "FROM unnest($3::uuid[], $4::bigint[]) AS v(id, version) "
                 "WHERE u.id = v.id AND u.workspace_id = $1::uuid "
                 "AND u.version = v.version",
                 {w.workspace_id, pg::Time(w.now), ids,
                  Array(part, [](const ExistingUser& u) {
                    return std::to_string(u.version);
                  })}));
    if (r.AffectedRows() != static_cast<int64_t>(part.size())) {
      return ChangedSinceRead();
    }
    // An archived user can neither accept an invitation nor keep a session.
    RETURN_IF_ERROR(tx_.Exec("UPDATE identity.invitations SET state = "
                             "'REVOKED' WHERE user_id = ANY($1::uuid[]) "
                             "AND state = 'PENDING'",
                             {ids})
                        .status());
    RETURN_IF_ERROR(tx_.Exec("DELETE FROM identity.sessions WHERE user_id = "
                             "ANY($1::uuid[])",
                             {ids})
                        .status());
  }
  return absl::OkStatus();
}

absl::Status ImportTx::Enqueue(const std::string& topic,
                               const std::vector<std::string>& payloads) {
  for (size_t start = 0; start < payloads.size();
       start += kPayloadsPerStatement) {
    // Base64, not hex: a third less text for the server to parse.
    std::vector<std::string> encoded;
    for (size_t i = start;
         i < std::min(payloads.size(), start + kPayloadsPerStatement); ++i) {
      encoded.push_back(absl::Base64Escape(payloads[i]));
    }
    RETURN_IF_ERROR(
        tx_.Exec("INSERT INTO identity.outbox (topic, payload) "
                 "SELECT $1, decode(p, 'base64') FROM unnest($2::text[]) AS p",
                 {topic, pg::TextArray(encoded)})
            .status());
  }
  return absl::OkStatus();
}

absl::Status ImportTx::FinishJob(const ImportJob& job) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      tx_.Exec(absl::StrCat(FinishJobSql(), " AND state = 'RUNNING'"),
               FinishJobParams(job)));
  if (r.AffectedRows() != 1) {
    return absl::AbortedError(absl::StrCat(
        "import ", job.id,
        " was marked FAILED while it ran (its lock was lost); nothing of it "
        "was applied in identity"));
  }
  return absl::OkStatus();
}

}  // namespace guestlist::identity::import
