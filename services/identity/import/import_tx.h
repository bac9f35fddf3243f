// The writes of one import inside the transaction that commits it: users,
// invitations, updates and archives in set-based statements (unnest of
// arrays, never a round trip per row), the invitation emails as outbox rows
// (delivered by identity's relay only after commit, so a crash can neither
// lose them nor send them for rows that were rolled back), and the job's
// final report.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/pg.h"
#include "guestlist/identity/v1/identity.pb.h"

namespace guestlist::identity::import {

namespace v1 = ::guestlist::identity::v1;

// Outbox topics of the import. kTopicBatchSendEmail's payload is a
// notification.v1.BatchSendEmailRequest (at most 500 messages, each with its
// own idempotency key); the relay's handler is in
// services/identity/clients/outbox_relay.cc.
inline constexpr char kTopicBatchSendEmail[] = "notification.BatchSendEmail";
// Same topic and payload (membership.v1.DeleteUsersRequest) as InviteUser's
// intent rows (services/identity/domain/model.h kTopicReconcileInvite).
inline constexpr char kTopicReconcileInvite[] = "identity.ReconcileInvite";
// Restore intents: before membership applies a batch's changes to EXISTING
// users, a membership.v1.ApplyGrantsRequest undoing them (for each user:
// only its id, the groups and app privileges as they were before). Handled
// by ImportStore::RestoreUsers when the import does not commit.
inline constexpr char kTopicRestoreUsers[] = "identity.RestoreImportedUsers";

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

// What every write of one import shares.
struct WriteContext {
  std::string workspace_id;
  std::string inviter_id;  // "" for the operator / API keys
  absl::Time now;
  absl::Time invitation_expire_time;
};

struct ImportJob {
  std::string id;
  std::string workspace_id;
  std::string idempotency_key;
  std::string creator;
  v1::ImportReport report;  // counters, state, rows
  std::string error_csv;
  // Why the job FAILED when no row is to blame ("" otherwise).
  std::string failure_reason;
};

class ImportTx final {
 public:
  ImportTx(pg::Transaction& tx, WriteContext context)
      : tx_(tx), context_(std::move(context)) {}

  // Locks a committed intent row (ImportStore::AddRestoreIntent) until the
  // commit, which deletes it. Errors: ABORTED when it is gone (reconciled).
  absl::Status LockIntent(int64_t id);
  const std::vector<int64_t>& locked_intents() const { return locked_; }

  absl::Status InsertUsers(absl::Span<const NewUser> users);
  // `version` of each user is the version read (optimistic check).
  // Errors: ABORTED when a user changed since it was read.
  absl::Status UpdateUsers(absl::Span<const ExistingUser> users);
  absl::Status ArchiveUsers(absl::Span<const ExistingUser> users);
  // One outbox row per payload, in one statement.
  absl::Status Enqueue(const std::string& topic,
                       const std::vector<std::string>& payloads);
  // Records the final report. Errors: ABORTED when the job is no longer
  // RUNNING (another replica judged it dead and failed it).
  absl::Status FinishJob(const ImportJob& job);

 private:
  pg::Transaction& tx_;
  const WriteContext context_;
  std::vector<int64_t> locked_;
};

// The UPDATE that records a finished job, on the job's connection, inside
// or outside its commit: $1 id, $2 state, $3.. counters, report, the error
// CSV's header line, reason.
std::string FinishJobSql();
pg::Params FinishJobParams(const ImportJob& job);

}  // namespace guestlist::identity::import
