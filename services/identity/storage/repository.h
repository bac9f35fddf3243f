// Identity's storage interface: every read and write runs inside a
// transaction (`Repository::Transact`), so a handler composes several steps
// (user + invitation + outbox rows) atomically. The PostgreSQL
// implementation is in pg_repository.h.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/identity/domain/listing.h"
#include "services/identity/domain/model.h"

namespace guestlist::identity {

struct UserQuery {
  std::string workspace_id;
  UserKind kind = v1::USER_KIND_UNSPECIFIED;
  UserStatus status = v1::USER_STATUS_UNSPECIFIED;
  std::string prefix;  // case-insensitive prefix; "" = all
  OrderBy order;
  std::optional<PageCursor> after;
  int limit = 50;
  bool count_total = true;
};

struct UserPage {
  std::vector<UserRecord> users;
  // Cursor of the last row when more rows follow.
  std::optional<PageCursor> next;
  int total = 0;
};

struct ListOptions {
  std::optional<PageCursor> after;  // key = create_time text
  int limit = 50;
};

struct InvitationPage {
  std::vector<InvitationRecord> invitations;
  std::optional<PageCursor> next;
  int total = 0;
};

// A counter of a fixed-window rate limit after a hit (or a peek).
struct RateCounter {
  int hits = 0;
  absl::Time window_start;
};

// What an invitation depends on, read in one statement
// (IdentityTx::LoadInvitePrelude).
struct InvitePrelude {
  std::optional<WorkspaceRecord> workspace;  // nullopt: no such workspace
  std::optional<UserRecord> inviter;         // when an inviter id was given
  std::optional<UserRecord> existing;        // the user holding the username
  int64_t intent_id = 0;                     // 0: no intent row was written
};

class IdentityTx {
 public:
  virtual ~IdentityTx() = default;

  // Workspaces. NotFound / AlreadyExists (name taken).
  virtual absl::Status InsertWorkspace(const WorkspaceRecord& ws) = 0;
  virtual absl::StatusOr<WorkspaceRecord> GetWorkspace(const std::string& id,
                                                       bool for_update) = 0;
  // Writes the mutable fields, bumps version and update_time.
  virtual absl::StatusOr<WorkspaceRecord> UpdateWorkspace(
      const WorkspaceRecord& ws, absl::Time now) = 0;

  // Users. AlreadyExists when the username is taken (case-insensitive).
  virtual absl::Status InsertUser(const UserRecord& user) = 0;
  virtual absl::StatusOr<UserRecord> GetUser(const std::string& id,
                                             bool for_update) = 0;
  virtual absl::StatusOr<std::optional<UserRecord>> FindUserByUsername(
      const std::string& workspace_id, const std::string& username,
      bool for_update) = 0;
  // Writes the mutable fields of `user` if its version is still
  // `user.version` (else Aborted); returns it with version + 1.
  virtual absl::StatusOr<UserRecord> UpdateUser(const UserRecord& user,
                                                absl::Time now) = 0;
  virtual absl::StatusOr<UserPage> ListUsers(const UserQuery& query) = 0;
  virtual absl::StatusOr<std::vector<UserRecord>> ListAdmins(
      const std::string& workspace_id) = 0;
  virtual absl::StatusOr<std::vector<UserRecord>> GetUsers(
      const std::string& workspace_id, const std::vector<std::string>& ids) = 0;
  virtual absl::StatusOr<int> CountActiveAdmins(
      const std::string& workspace_id) = 0;

  // Sessions.
  virtual absl::Status InsertSession(const SessionRecord& session) = 0;
  virtual absl::StatusOr<std::optional<SessionRecord>> FindSession(
      const std::string& token_hash) = 0;
  // The session with this token hash and its user, in one read.
  virtual absl::StatusOr<std::optional<std::pair<SessionRecord, UserRecord>>>
  FindSessionUser(const std::string& token_hash) = 0;
  virtual absl::Status DeleteSession(const std::string& token_hash) = 0;
  virtual absl::Status DeleteUserSessions(const std::string& user_id) = 0;

  // API keys.
  virtual absl::Status InsertApiKey(const ApiKeyRecord& key) = 0;
  virtual absl::StatusOr<std::optional<ApiKeyRecord>> FindApiKeyByHash(
      const std::string& key_hash) = 0;
  virtual absl::StatusOr<std::optional<ApiKeyRecord>> GetApiKey(
      const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<ApiKeyRecord>> ListApiKeys(
      const std::string& workspace_id, const ListOptions& options) = 0;
  virtual absl::Status DeleteApiKey(const std::string& id) = 0;

  // Invitations.
  virtual absl::Status InsertInvitation(const InvitationRecord& inv) = 0;
  virtual absl::StatusOr<InvitationRecord> GetInvitation(const std::string& id,
                                                         bool for_update) = 0;
  virtual absl::StatusOr<std::optional<InvitationRecord>> FindInvitationByToken(
      const std::string& token_hash) = 0;
  // Writes token_hash, token_generation, state, expire_time.
  virtual absl::Status UpdateInvitation(const InvitationRecord& inv) = 0;
  // Marks the PENDING, unexpired invitation with this token ACCEPTED; only
  // one of concurrent callers gets it back.
  virtual absl::StatusOr<std::optional<InvitationRecord>> ConsumeInvitation(
      const std::string& token_hash, absl::Time now) = 0;
  virtual absl::StatusOr<InvitationPage> ListInvitations(
      const std::string& workspace_id, InvitationState state,
      const std::string& inviter_id, const ListOptions& options,
      absl::Time now) = 0;
  virtual absl::Status RevokePendingInvitations(const std::string& user_id) = 0;

  // Access requests.
  virtual absl::Status InsertAccessRequest(const AccessRequestRecord& ar) = 0;
  virtual absl::StatusOr<AccessRequestRecord> GetAccessRequest(
      const std::string& id, bool for_update) = 0;
  virtual absl::StatusOr<std::optional<AccessRequestRecord>>
  FindPendingAccessRequest(const std::string& user_id) = 0;
  virtual absl::Status SetAccessRequestState(const std::string& id,
                                             AccessRequestState state,
                                             absl::Time now) = 0;
  virtual absl::StatusOr<std::vector<AccessRequestRecord>> ListAccessRequests(
      const std::string& workspace_id, AccessRequestState state,
      const ListOptions& options) = 0;

  // Rate limits: adds one hit to `bucket` (a new window if the last one is
  // over) and returns the counter.
  virtual absl::StatusOr<RateCounter> HitRateLimit(const std::string& bucket,
                                                   absl::Duration window,
                                                   absl::Time now) = 0;
  virtual absl::StatusOr<RateCounter> PeekRateLimit(const std::string& bucket,
                                                    absl::Duration window,
                                                    absl::Time now) = 0;
  virtual absl::Status ResetRateLimit(const std::string& bucket) = 0;

  // Idempotency (common/idempotency.h): the stored response for (scope,
  // key), nullopt if the key is new, InvalidArgument if it was used with
  // another request.
  virtual absl::StatusOr<std::optional<std::string>> LookupIdempotent(
      const std::string& scope, const std::string& key,
      const std::string& request_hash) = 0;
  // AlreadyExists if a concurrent call saved first.
  virtual absl::Status SaveIdempotent(const std::string& scope,
                                      const std::string& key,
                                      const std::string& request_hash,
                                      const std::string& response) = 0;

  // Outbox (common/outbox.h): delivered after commit by the relay.
  virtual absl::Status Enqueue(const OutboxMessage& message) = 0;
  // A durable intent for work that spans a peer call: an outbox row due
  // after `delay`. Returns its id.
  virtual absl::StatusOr<int64_t> EnqueueDelayed(const OutboxMessage& message,
                                                 absl::Duration delay) = 0;
  virtual absl::Status DeleteOutboxRow(int64_t id) = 0;
  // Deletes the intent row, keeping it locked until the transaction ends:
  // the relay (which skips locked rows) cannot reconcile it meanwhile, and
  // finds it again if the transaction rolls back. Aborted if it is gone.
  virtual absl::Status TakeOutboxRow(int64_t id) = 0;

  // InviteUser's reads, in one round trip: the user holding `username` in
  // the workspace (when not empty), the workspace, the inviter (when
  // `inviter_id` is not empty) and, when `intent` is given and the
  // workspace exists, the intent row (an outbox row due after `delay`;
  // written even when the username is taken: the caller, refusing the
  // invite, deletes it). Meant for Repository::Autocommit, where the intent
  // row is committed with the reads.
  virtual absl::StatusOr<InvitePrelude> LoadInvitePrelude(
      const std::string& workspace_id, const std::string& inviter_id,
      const std::string& username, const OutboxMessage* intent,
      absl::Duration delay) = 0;
  // A new user, its invitation and (unless null) an outbox message, in one
  // statement. AlreadyExists when the username is taken.
  virtual absl::Status InsertInvitedUser(const UserRecord& user,
                                         const InvitationRecord& inv,
                                         const OutboxMessage* message) = 0;
  // Whether identity has this user.
  virtual absl::StatusOr<bool> UserExists(const std::string& id) = 0;

  // Temporary access: marks ACTIVE / INVITED users past their
  // access_expire_time EXPIRED (version + 1) and returns them.
  virtual absl::StatusOr<std::vector<UserRecord>> ExpireUsers(absl::Time now,
                                                              int limit) = 0;
  // Guests expiring within (now, now + horizon] not yet reminded; marks
  // them reminded and returns them.
  virtual absl::StatusOr<std::vector<UserRecord>> TakeDueReminders(
      absl::Time now, absl::Duration horizon, int limit) = 0;
  // Housekeeping: removes sessions expired before `now` and rate-limit
  // windows older than `max_window`. Returns the rows removed.
  virtual absl::StatusOr<int64_t> DeleteStale(absl::Time now,
                                              absl::Duration max_window) = 0;
};

class Repository {
 public:
  virtual ~Repository() = default;
  // Runs `fn` in a transaction: committed if it returns OK, rolled back
  // otherwise (its status is returned).
  virtual absl::Status Transact(
      const std::function<absl::Status(IdentityTx&)>& fn) = 0;
  // Runs `fn` without a transaction: each statement commits on its own.
  // For single-statement reads and writes (one round trip instead of
  // three); SaveIdempotent needs Transact.
  virtual absl::Status Autocommit(
      const std::function<absl::Status(IdentityTx&)>& fn) = 0;
  // IdentityTx::LookupIdempotent in one statement of its own.
  virtual absl::StatusOr<std::optional<std::string>> LookupIdempotent(
      const std::string& scope, const std::string& key,
      const std::string& request_hash) = 0;
  virtual absl::Status Ping() = 0;
};

}  // namespace guestlist::identity
