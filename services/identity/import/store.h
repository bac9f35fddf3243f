// PostgreSQL side of the bulk import: identity's users and invitations
// written in a few set-based statements (unnest of arrays, never one round
// trip per row), and the import jobs (identity.imports, migration V100).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/pg.h"
#include "guestlist/identity/v1/identity.pb.h"

namespace guestlist::identity::import {

namespace v1 = ::guestlist::identity::v1;

struct WorkspaceInfo {
  std::string id;
  std::string display_name;
  absl::Duration invitation_ttl = absl::Hours(24 * 7);
  std::vector<std::string> allowed_email_domains;
  std::vector<std::string> blocked_email_domains;
};

// An existing user as the import compares it.
struct ExistingUser {
  std::string id;
  std::string username;
  std::string email;
  std::string first_name;
  std::string last_name;
  v1::UserKind kind = v1::GUEST;
  v1::UserStatus status = v1::INVITED;
  std::string metadata;  // canonical JSON text, "" = none
  std::optional<absl::Time> access_expire_time;
  int64_t version = 1;
  absl::Time create_time;
};

// A user to create with its invitation.
struct NewUser {
  ExistingUser user;  // id, username, email, names, kind, metadata
  std::string invitation_id;
  std::string token_hash;
};

// Everything one import writes, applied in one transaction.
struct ImportWrites {
  std::string workspace_id;
  std::string inviter_id;  // "" for the operator / API keys
  absl::Time now;
  absl::Time invitation_expire_time;
  std::vector<NewUser> creates;
  // New state; `version` is the version read (optimistic check).
  std::vector<ExistingUser> updates;
  std::vector<ExistingUser> archives;  // version = version read
};

struct ImportJob {
  std::string id;
  std::string workspace_id;
  std::string idempotency_key;
  std::string creator;
  v1::ImportReport report;  // counters, state, rows
  std::string error_csv;
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

  // Writes users, invitations, updates and archives atomically.
  // Errors: ABORTED when a user changed since it was read (retry).
  absl::Status Apply(const ImportWrites& writes);

  // Jobs. CreateJob fails with ALREADY_EXISTS when the workspace already
  // has a job with the same idempotency key.
  absl::Status CreateJob(const ImportJob& job);
  absl::Status UpdateProgress(const std::string& id, int rows_processed);
  absl::Status FinishJob(const ImportJob& job);
  // Errors: NOT_FOUND.
  absl::StatusOr<ImportJob> GetJob(const std::string& id);
  absl::StatusOr<std::optional<std::string>> FindJobByKey(
      const std::string& workspace_id, const std::string& key);
  // A RUNNING job left behind by a crashed replica is marked FAILED.
  absl::Status FailStaleJobs(absl::Duration older_than, absl::Time now);

 private:
  pg::Pool* pool_;
};

// Parses the `text[]` output format ({a,"b c"}) into its elements.
std::vector<std::string> ParseTextArray(const std::string& literal);

}  // namespace guestlist::identity::import
