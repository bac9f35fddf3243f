// PostgreSQL side of the bulk import: reads of identity's users, the commit
// transaction (writes in import_tx.h), the import jobs (identity.imports,
// migrations V100 / V101) and their liveness locks.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/pg.h"
#include "guestlist/identity/v1/identity.pb.h"
#include "guestlist/membership/v1/membership.pb.h"
#include "services/identity/import/import_tx.h"

namespace guestlist::identity::import {

namespace v1 = ::guestlist::identity::v1;

struct WorkspaceInfo {
  std::string id;
  std::string display_name;
  absl::Duration invitation_ttl = absl::Hours(24 * 7);
  std::vector<std::string> allowed_email_domains;
  std::vector<std::string> blocked_email_domains;
};

// The connection an import job runs on, from its upload to its end: it
// holds the staged rows (staging.h) and, once the job exists, a session
// advisory lock keyed by the job id, so a RUNNING job whose lock is free
// belongs to a process that died (ImportStore::ReapIfOrphaned).
class JobLease final {
 public:
  explicit JobLease(pg::PooledConnection conn) : conn_(std::move(conn)) {}
  // Drops the staged rows and releases the lock (a broken connection has
  // lost both already).
  ~JobLease();
  JobLease(const JobLease&) = delete;
  JobLease& operator=(const JobLease&) = delete;

  pg::PooledConnection& conn() { return conn_; }
  const std::string& job_id() const { return job_id_; }

 private:
  friend class ImportStore;
  pg::PooledConnection conn_;
  std::string job_id_;  // set by StartJob
};

class ImportStore final {
 public:
  explicit ImportStore(pg::Pool* pool) : pool_(pool) {}

  // Errors: NOT_FOUND (workspace).
  absl::StatusOr<WorkspaceInfo> LoadWorkspace(const std::string& workspace_id);
  // The users of the workspace whose lower-cased username is in `lower`.
  // Returns them by lower-cased username.
  absl::StatusOr<absl::flat_hash_map<std::string, ExistingUser>>
  FindUsersByUsername(const std::string& workspace_id,
                      const std::vector<std::string>& lower);
  // Users for export: `kind` / `status` filters (unspecified: any kind,
  // every status but ARCHIVED), `query` a case-insensitive prefix of
  // username, email or name; ordered by username.
  absl::StatusOr<std::vector<ExistingUser>> ListUsers(
      const std::string& workspace_id, v1::UserKind kind, v1::UserStatus status,
      const std::string& query);
  // "First Last", else the username; "" if unknown.
  absl::StatusOr<std::string> UserDisplayName(const std::string& user_id);

  // Jobs. OpenLease takes the job's connection (for staging the upload);
  // StartJob locks the job's advisory lock on it and inserts the RUNNING
  // job; the lease keeps both until the job ends. ALREADY_EXISTS when the
  // workspace already has a job with the same idempotency key.
  absl::StatusOr<std::unique_ptr<JobLease>> OpenLease();
  absl::Status StartJob(JobLease& lease, const ImportJob& job);
  absl::Status UpdateProgress(const std::string& id, int rows_processed);
  // Records the final report; the failed rows of the error CSV come from
  // the rows staged on the lease's connection.
  absl::Status FinishJob(JobLease& lease, const ImportJob& job);
  // Errors: NOT_FOUND.
  absl::StatusOr<ImportJob> GetJob(const std::string& id);
  absl::StatusOr<std::optional<std::string>> FindJobByKey(
      const std::string& workspace_id, const std::string& key);
  // Removes users from membership (membership.DeleteUsers).
  using RemoveUsers = std::function<absl::Status(
      const ::guestlist::membership::v1::DeleteUsersRequest&)>;
  // membership.ApplyGrants.
  using ApplyGrants = std::function<
      absl::StatusOr<::guestlist::membership::v1::ApplyGrantsResponse>(
          const ::guestlist::membership::v1::ApplyGrantsRequest&)>;
  // How an import that did not commit is undone in membership.
  struct Undo {
    RemoveUsers remove;  // the users it created
    ApplyGrants apply;   // restores the users it changed
  };
  // If the job is RUNNING but nobody holds its lock (the process running
  // it died): undoes its intent rows (UndoJob), then marks it FAILED with
  // a reason. Returns whether it did.
  absl::StatusOr<bool> ReapIfOrphaned(const std::string& id, const Undo& undo);
  // ReapIfOrphaned for every RUNNING job (at start-up).
  absl::Status ReapOrphanedJobs(const Undo& undo);
  // Undoes in membership what a job that did not commit left there, from
  // its intent rows still present (a committed job deleted them): removes
  // the created users identity does not have and restores the changed ones
  // (RestoreUsers); each row is deleted once handled. Waits for the relay
  // if it handles one of them right now.
  absl::Status UndoJob(const std::string& job_id,
                       const std::string& workspace_id, const Undo& undo);

  // Intent rows for the users an import is about to create in membership
  // (InviteUser's mechanism): committed outbox rows of topic
  // kTopicReconcileInvite, each a DeleteUsersRequest of at most `per_row`
  // ids, due in a minute. Commit locks them before the grants and
  // deletes them with the commit; if the process dies in between, the relay
  // finds them unlocked and removes from membership the users identity
  // does not have. Added to the job's intent_ids (one call per 50,000
  // users). Returns their ids.
  absl::StatusOr<std::vector<int64_t>> AddIntents(
      JobLease& lease, const std::string& workspace_id,
      const std::vector<std::string>& user_ids, int per_row);
  // A restore intent (kTopicRestoreUsers) for one batch about to change
  // existing users in membership: committed at once (autocommit), due in a
  // minute, and named in the job's intent_ids so that UndoJob finds it.
  // The job's transaction locks it (ImportTx::LockIntent) before calling
  // membership. Returns its id.
  absl::StatusOr<int64_t> AddRestoreIntent(
      const std::string& job_id,
      const ::guestlist::membership::v1::ApplyGrantsRequest& inverse);
  // Puts back in membership the users of `inverse` (ids and their groups
  // and privileges as they were before an import that did not commit).
  // Their profile record may be at a version identity never committed, so
  // identity first moves their version 2 past its own (past anything the
  // import sent), then membership gets identity's records at that version
  // with the old access, best effort (a group deleted since is logged).
  // Safe to repeat.
  absl::Status RestoreUsers(
      ::guestlist::membership::v1::ApplyGrantsRequest inverse,
      const ApplyGrants& apply);
  // One transaction on the job's connection: locks `intents` (ABORTED if
  // one is gone: the relay already reconciled it), runs `fn` (the grants,
  // then the writes through ImportTx), deletes the intents (with those
  // `fn` locked) and commits if `fn` returns OK; rolls back otherwise.
  absl::Status Commit(JobLease& lease, const std::vector<int64_t>& intents,
                      const WriteContext& context,
                      const std::function<absl::Status(ImportTx&)>& fn);

 private:
  absl::Status UndoJobOn(pg::PooledConnection& conn, const std::string& job_id,
                         const std::string& workspace_id, const Undo& undo);
  // Calls `remove` with those of `user_ids` identity does not have.
  absl::Status DropMissingFromMembership(
      const std::string& workspace_id, const std::vector<std::string>& user_ids,
      const RemoveUsers& remove);

  pg::Pool* pool_;
};

google::protobuf::Timestamp ToProto(absl::Time t);
// The user as membership stores it (membership.v1.UserRecord).
::guestlist::membership::v1::UserRecord ToMembershipRecord(
    const ExistingUser& u, const std::string& workspace_id);

// Parses the `text[]` output format ({a,"b c"}) into its elements.
std::vector<std::string> ParseTextArray(const std::string& literal);

}  // namespace guestlist::identity::import
