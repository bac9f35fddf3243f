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
  // If the job is RUNNING but nobody holds its lock (the process running
  // it died): reconciles its intent rows (removes from membership, through
  // `remove`, the users identity does not have), then marks it FAILED with
  // a reason. Returns whether it did.
  absl::StatusOr<bool> ReapIfOrphaned(const std::string& id,
                                      const RemoveUsers& remove);
  // ReapIfOrphaned for every RUNNING job (at start-up).
  absl::Status ReapOrphanedJobs(const RemoveUsers& remove);

  // Intent rows for the users an import is about to create in membership
  // (InviteUser's mechanism): committed outbox rows of topic
  // kTopicReconcileInvite, each a DeleteUsersRequest of at most `per_row`
  // ids, due in a minute. Commit locks them before the grants and
  // deletes them with the commit; if the process dies in between, the relay
  // finds them unlocked and removes from membership the users identity
  // does not have. Returns their ids.
  absl::StatusOr<std::vector<int64_t>> AddIntents(
      JobLease& lease, const std::string& workspace_id,
      const std::vector<std::string>& user_ids, int per_row);
  // Deletes intent rows (after a failed import was compensated).
  absl::Status DropIntents(const std::vector<int64_t>& ids);
  // Calls `remove` with those of `user_ids` identity does not have, at most
  // `per_call` at a time (the compensation of a rolled-back import).
  absl::Status DropMissingFromMembership(
      const std::string& workspace_id, const std::vector<std::string>& user_ids,
      int per_call, const RemoveUsers& remove);
  // One transaction on the job's connection: locks `intents` (ABORTED if
  // one is gone: the relay already reconciled it), runs `fn` (the grants,
  // then the writes through ImportTx), deletes the intents and commits if
  // `fn` returns OK; rolls back otherwise.
  absl::Status Commit(JobLease& lease, const std::vector<int64_t>& intents,
                      const WriteContext& context,
                      const std::function<absl::Status(ImportTx&)>& fn);

 private:
  absl::Status ReconcileIntents(pg::PooledConnection& conn,
                                const std::string& job_id,
                                const std::string& workspace_id,
                                const RemoveUsers& remove);

  pg::Pool* pool_;
};

// Parses the `text[]` output format ({a,"b c"}) into its elements.
std::vector<std::string> ParseTextArray(const std::string& literal);

}  // namespace guestlist::identity::import
