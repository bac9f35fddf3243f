// Storage of the notification service: the message outbox (enqueue with
// idempotency, dedupe windows and suppression in one transaction; lease-based
// claims for delivery workers), attachments, unsubscribes and report
// publications, in the PostgreSQL schema `notification`.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/pg.h"
#include "services/notification/domain/mime.h"

namespace guestlist::notification {

enum class MessageState { kQueued, kSent, kFailed, kSuppressed, kDeduplicated };

const char* MessageStateName(MessageState state);
std::optional<MessageState> ParseMessageState(const std::string& name);

struct NewAttachment {
  std::string id;
  MimeAttachment attachment;
};

struct NewMessage {
  std::string id;
  std::string workspace_id;
  std::string recipient;
  std::string recipient_name;
  std::string recipient_user_id;
  std::string category;
  std::string template_name;
  std::string subject;
  std::string text_body;
  std::string html_body;
  std::string message_id_header;
  std::string unsubscribe_url;
  std::string idempotency_key;  // empty: none
  std::string request_hash;
  std::string dedupe_key;  // empty: none
  absl::Duration dedupe_window;
  std::string report_id;  // empty: none
  // Ids of attachments (created in the same Enqueue call or earlier).
  std::vector<std::string> attachment_ids;
};

struct StoredMessage {
  std::string id;
  std::string workspace_id;
  std::string recipient;
  std::string recipient_name;
  std::string recipient_user_id;
  std::string category;
  std::string template_name;
  MessageState state = MessageState::kQueued;
  std::string subject;
  std::string text_body;
  std::string html_body;
  std::string message_id_header;
  std::string unsubscribe_url;
  int attempts = 0;
  std::string last_error;
  absl::Time create_time;
  absl::Time update_time;
  std::optional<absl::Time> send_time;
};

struct AttachmentRef {
  std::string message_id;
  std::string attachment_id;
};

struct ListFilter {
  std::string workspace_id;
  std::string recipient;  // case-insensitive exact match; empty: any
  std::string category;   // empty: any
  std::optional<MessageState> state;
  int page_size = 50;
  // Keyset cursor: strictly older than (create_time, id).
  std::optional<std::pair<absl::Time, std::string>> after;
};

struct Report {
  std::string id;
  std::string app_id;
  std::string workspace_id;
  std::string idempotency_key;
  std::string request_hash;
  std::string title;
  std::string filename;
  int recipients = 0;
  int suppressed = 0;
};

class MessageStore final {
 public:
  explicit MessageStore(pg::Pool* pool) : pool_(pool) {}

  // Stores `messages` in one transaction, after inserting `attachments`.
  // Per message: an existing message with the same idempotency key is
  // returned as is (InvalidArgument naming the index when its request hash
  // differs); an unsubscribed (recipient, category) is stored SUPPRESSED; a
  // live dedupe key stores it DEDUPLICATED; otherwise QUEUED, due at `now`.
  // Returns the stored messages in order. Aborted when a concurrent call
  // with the same idempotency key won (retry).
  absl::StatusOr<std::vector<StoredMessage>> Enqueue(
      const std::vector<NewMessage>& messages,
      const std::vector<NewAttachment>& attachments, absl::Time now);

  // Claims up to `limit` due QUEUED messages for `owner`: they become
  // invisible to other claims until now + lease (a crashed owner's messages
  // are taken over after that).
  absl::StatusOr<std::vector<StoredMessage>> Claim(const std::string& owner,
                                                   absl::Time now,
                                                   absl::Duration lease,
                                                   int limit);
  absl::StatusOr<std::vector<AttachmentRef>> AttachmentRefs(
      const std::vector<std::string>& message_ids);
  absl::StatusOr<MimeAttachment> GetAttachment(const std::string& id);

  // Delivery outcomes. Each only touches a message still QUEUED.
  absl::Status MarkSent(const std::string& id, absl::Time now);
  absl::Status MarkRetry(const std::string& id, absl::Time now,
                         absl::Time next_attempt, const std::string& error);
  absl::Status MarkFailed(const std::string& id, absl::Time now,
                          const std::string& error);
  // Hands claimed messages back without counting an attempt (rate limits,
  // lease running out, shutdown).
  absl::Status Release(const std::vector<std::string>& ids,
                       absl::Time next_attempt);

  // Deletes dedupe keys whose window ended before `before`; returns how
  // many (housekeeping: expired keys are otherwise only overwritten).
  absl::StatusOr<int64_t> PurgeDedupeKeys(absl::Time before);

  // NotFound when unknown.
  absl::StatusOr<StoredMessage> Get(const std::string& id);
  absl::StatusOr<std::vector<StoredMessage>> List(const ListFilter& filter);
  // Counts of messages per state (tests, metrics).
  absl::StatusOr<int64_t> CountByState(MessageState state);

  // Unsubscribes; returns nothing new when already unsubscribed.
  absl::Status Unsubscribe(const std::string& workspace_id,
                           const std::string& recipient,
                           const std::string& category, absl::Time now);
  absl::StatusOr<std::vector<std::string>> UnsubscribedCategories(
      const std::string& workspace_id, const std::string& recipient);
  // Replaces the recipient's unsubscribed categories.
  absl::Status SetUnsubscribedCategories(
      const std::string& workspace_id, const std::string& recipient,
      const std::vector<std::string>& categories, absl::Time now);

  // Reports: the existing one for (app_id, idempotency_key), if any.
  absl::StatusOr<std::optional<Report>> FindReport(
      const std::string& app_id, const std::string& idempotency_key);
  // Stores the messages, their shared attachment and the report row (with
  // its recipients/suppressed counts, returned) in one transaction.
  // AlreadyExists if a concurrent call stored the same idempotency key.
  absl::StatusOr<Report> EnqueueReport(Report report,
                                       const NewAttachment& attachment,
                                       const std::vector<NewMessage>& messages,
                                       absl::Time now);

 private:
  absl::StatusOr<std::vector<StoredMessage>> EnqueueInTransaction(
      pg::Transaction& tx, const std::vector<NewMessage>& messages,
      const std::vector<NewAttachment>& attachments, absl::Time now);

  pg::Pool* pool_;
};

}  // namespace guestlist::notification
