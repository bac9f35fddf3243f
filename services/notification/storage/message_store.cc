#include "services/notification/storage/message_store.h"

#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace guestlist::notification {
namespace {

constexpr char kMessageColumns[] =
    "id, workspace_id, recipient, recipient_name, recipient_user_id, "
    "category, template, state, subject, text_body, html_body, "
    "message_id_header, unsubscribe_url, attempts, last_error, create_time, "
    "update_time, send_time, request_hash";

constexpr char kFindByIdempotencyKey[] =
    "SELECT id, request_hash FROM notification.messages "
    "WHERE workspace_id = $1 AND idempotency_key = $2";

// One round trip for a whole batch: which (workspace, recipient, category)
// triples have left.
constexpr char kUnsubscribedAmong[] =
    "SELECT t.i FROM unnest($1::text[], $2::text[], $3::text[]) "
    "WITH ORDINALITY AS t(w, r, c, i) JOIN notification.unsubscribes u "
    "ON u.workspace_id = t.w AND u.recipient = lower(t.r) "
    "AND u.category = t.c";

// Takes the key when it is new or its window has passed; returns no row
// when a live message holds it. The row lock serialises concurrent callers.
constexpr char kTakeDedupeKey[] =
    "INSERT INTO notification.dedupe_keys AS d "
    "(workspace_id, dedupe_key, message_id, expire_time) "
    "VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (workspace_id, dedupe_key) DO UPDATE "
    "SET message_id = EXCLUDED.message_id, expire_time = EXCLUDED.expire_time "
    "WHERE d.expire_time <= $5 "
    "RETURNING message_id";

constexpr char kInsertMessage[] =
    "INSERT INTO notification.messages (id, workspace_id, recipient, "
    "recipient_name, recipient_user_id, category, template, state, subject, "
    "text_body, html_body, message_id_header, unsubscribe_url, "
    "next_attempt_time, idempotency_key, request_hash, dedupe_key, "
    "report_id, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, "
    "$7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18::uuid, $14, "
    "$14) ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key "
    "IS NOT NULL DO NOTHING RETURNING id";

constexpr char kInsertAttachment[] =
    "INSERT INTO notification.attachments (id, filename, content_type, "
    "content, create_time) VALUES ($1, $2, $3, $4::bytea, $5)";

// Messages without an idempotency key, many rows in one round trip.
constexpr char kBulkInsertMessages[] =
    "INSERT INTO notification.messages (id, workspace_id, recipient, "
    "recipient_name, recipient_user_id, category, template, state, subject, "
    "text_body, html_body, message_id_header, unsubscribe_url, "
    "next_attempt_time, request_hash, dedupe_key, report_id, create_time, "
    "update_time) SELECT t.id::uuid, t.w, t.r, t.rn, t.ru, t.c, t.tp, t.st, "
    "t.sub, t.tb, t.hb, t.mid, t.uu, $1, t.rh, NULLIF(t.dk, ''), "
    "NULLIF(t.rep, '')::uuid, $1, $1 FROM unnest($2::text[], $3::text[], "
    "$4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], "
    "$10::text[], $11::text[], $12::text[], $13::text[], $14::text[], "
    "$15::text[], $16::text[], $17::text[]) AS t(id, w, r, rn, ru, c, tp, st, "
    "sub, tb, hb, mid, uu, rh, dk, rep)";

constexpr char kBulkLinkAttachments[] =
    "INSERT INTO notification.message_attachments (message_id, position, "
    "attachment_id) SELECT m::uuid, p::integer, a::uuid "
    "FROM unnest($1::text[], $2::text[], $3::text[]) AS t(m, p, a)";

// Keyed messages: the same, with the idempotency key; a key stored by a
// concurrent call makes its row go missing from RETURNING.
constexpr char kBulkInsertKeyedMessages[] =
    "INSERT INTO notification.messages (id, workspace_id, recipient, "
    "recipient_name, recipient_user_id, category, template, state, subject, "
    "text_body, html_body, message_id_header, unsubscribe_url, "
    "next_attempt_time, request_hash, dedupe_key, report_id, create_time, "
    "update_time, idempotency_key) SELECT t.id::uuid, t.w, t.r, t.rn, t.ru, "
    "t.c, t.tp, t.st, t.sub, t.tb, t.hb, t.mid, t.uu, $1, t.rh, "
    "NULLIF(t.dk, ''), NULLIF(t.rep, '')::uuid, $1, $1, t.ik FROM "
    "unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
    "$7::text[], $8::text[], $9::text[], $10::text[], $11::text[], "
    "$12::text[], $13::text[], $14::text[], $15::text[], $16::text[], "
    "$17::text[], $18::text[]) AS t(id, w, r, rn, ru, c, tp, st, sub, tb, hb, "
    "mid, uu, rh, dk, rep, ik) ON CONFLICT (workspace_id, idempotency_key) "
    "WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id";

// Which of a batch's (workspace, idempotency key) pairs are stored: the
// 1-based position in the arrays, the message id and its request hash.
constexpr char kFindByIdempotencyKeys[] =
    "SELECT t.i, m.id, m.request_hash FROM unnest($1::text[], $2::text[]) "
    "WITH ORDINALITY AS t(w, k, i) JOIN notification.messages m "
    "ON m.workspace_id = t.w AND m.idempotency_key = t.k "
    "WHERE m.idempotency_key IS NOT NULL";

// Column arrays for kBulkInsertMessages (and, with the idempotency keys,
// kBulkInsertKeyedMessages).
class BulkInsert final {
 public:
  explicit BulkInsert(bool keyed = false) : keyed_(keyed) {}
  void Add(const NewMessage& m, MessageState state) {
    const std::string* values[] = {&m.id,
                                   &m.workspace_id,
                                   &m.recipient,
                                   &m.recipient_name,
                                   &m.recipient_user_id,
                                   &m.category,
                                   &m.template_name,
                                   nullptr,
                                   &m.subject,
                                   &m.text_body,
                                   &m.html_body,
                                   &m.message_id_header,
                                   &m.unsubscribe_url,
                                   &m.request_hash,
                                   &m.dedupe_key,
                                   &m.report_id};
    for (size_t c = 0; c < kColumns; ++c) {
      columns_[c].push_back(values[c] != nullptr ? *values[c]
                                                 : MessageStateName(state));
    }
    if (keyed_) keys_.push_back(m.idempotency_key);
  }
  bool empty() const { return columns_[0].empty(); }
  size_t size() const { return columns_[0].size(); }
  const std::string& id(size_t row) const { return columns_[0][row]; }
  pg::Params Params(absl::Time now) const {
    pg::Params params = {pg::Time(now)};
    for (const auto& column : columns_) {
      params.push_back(pg::TextArray(column));
    }
    if (keyed_) params.push_back(pg::TextArray(keys_));
    return params;
  }

 private:
  static constexpr size_t kColumns = 16;
  const bool keyed_;
  std::vector<std::string> columns_[kColumns];
  std::vector<std::string> keys_;
};

constexpr char kClaim[] =
    "UPDATE notification.messages m SET lease_owner = $1, "
    "next_attempt_time = $3 FROM (SELECT id FROM notification.messages "
    "WHERE state = 'QUEUED' AND next_attempt_time <= $2 "
    "ORDER BY next_attempt_time LIMIT $4 FOR UPDATE SKIP LOCKED) c "
    "WHERE m.id = c.id RETURNING m.id, m.workspace_id, m.recipient, "
    "m.recipient_name, m.recipient_user_id, m.category, m.template, m.state, "
    "m.subject, m.text_body, m.html_body, m.message_id_header, "
    "m.unsubscribe_url, m.attempts, m.last_error, m.create_time, "
    "m.update_time, m.send_time, m.request_hash";

constexpr char kMarkSent[] =
    "UPDATE notification.messages SET state = 'SENT', send_time = $2, "
    "update_time = $2, attempts = attempts + 1, last_error = '', "
    "lease_owner = NULL WHERE id = $1 AND state = 'QUEUED'";

constexpr char kMarkRetry[] =
    "UPDATE notification.messages SET update_time = $2, "
    "next_attempt_time = $3, attempts = attempts + 1, last_error = $4, "
    "lease_owner = NULL WHERE id = $1 AND state = 'QUEUED'";

constexpr char kMarkFailed[] =
    "UPDATE notification.messages SET state = 'FAILED', update_time = $2, "
    "attempts = attempts + 1, last_error = $3, lease_owner = NULL "
    "WHERE id = $1 AND state = 'QUEUED'";

constexpr char kRelease[] =
    "UPDATE notification.messages SET next_attempt_time = $2, "
    "lease_owner = NULL WHERE id = ANY($1::uuid[]) AND state = 'QUEUED'";

constexpr char kAttachmentRefs[] =
    "SELECT message_id, attachment_id FROM notification.message_attachments "
    "WHERE message_id = ANY($1::uuid[]) ORDER BY message_id, position";

constexpr char kGetAttachment[] =
    "SELECT filename, content_type, content FROM notification.attachments "
    "WHERE id = $1";

constexpr char kUnsubscribe[] =
    "INSERT INTO notification.unsubscribes (workspace_id, recipient, "
    "category, create_time) VALUES ($1, lower($2), $3, $4) "
    "ON CONFLICT DO NOTHING";

constexpr char kUnsubscribedCategories[] =
    "SELECT category FROM notification.unsubscribes "
    "WHERE workspace_id = $1 AND recipient = lower($2) ORDER BY category";

constexpr char kClearUnsubscribes[] =
    "DELETE FROM notification.unsubscribes "
    "WHERE workspace_id = $1 AND recipient = lower($2)";

constexpr char kFindReport[] =
    "SELECT id, app_id, workspace_id, request_hash, title, filename, "
    "recipients, suppressed FROM notification.reports "
    "WHERE app_id = $1 AND idempotency_key = $2";

constexpr char kInsertReport[] =
    "INSERT INTO notification.reports (id, app_id, workspace_id, "
    "idempotency_key, request_hash, title, filename, recipients, suppressed, "
    "create_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

std::string HexBytea(const std::string& bytes) {
  return absl::StrCat("\\x", absl::BytesToHexString(bytes));
}

std::string UnhexBytea(const std::string& text) {
  if (text.size() >= 2 && text[0] == '\\' && text[1] == 'x') {
    return absl::HexStringToBytes(text.substr(2));
  }
  return text;
}

StoredMessage RowToMessage(const pg::Result& r, int row) {
  StoredMessage m;
  m.id = r.Get(row, 0);
  m.workspace_id = r.Get(row, 1);
  m.recipient = r.Get(row, 2);
  m.recipient_name = r.Get(row, 3);
  m.recipient_user_id = r.Get(row, 4);
  m.category = r.Get(row, 5);
  m.template_name = r.Get(row, 6);
  m.state = ParseMessageState(r.Get(row, 7)).value_or(MessageState::kQueued);
  m.subject = r.Get(row, 8);
  m.text_body = r.Get(row, 9);
  m.html_body = r.Get(row, 10);
  m.message_id_header = r.Get(row, 11);
  m.unsubscribe_url = r.Get(row, 12);
  m.attempts = static_cast<int>(r.GetInt(row, 13));
  m.last_error = r.Get(row, 14);
  m.create_time = pg::ParseTime(r.Get(row, 15));
  m.update_time = pg::ParseTime(r.Get(row, 16));
  if (!r.IsNull(row, 17)) m.send_time = pg::ParseTime(r.Get(row, 17));
  return m;
}

absl::StatusOr<StoredMessage> GetInTransaction(pg::Transaction& tx,
                                               const std::string& id) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      tx.Exec(absl::StrCat("SELECT ", kMessageColumns,
                           " FROM notification.messages WHERE id = $1"),
              {id}));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("message ", id, " not found"));
  }
  return RowToMessage(r, 0);
}

}  // namespace

const char* MessageStateName(MessageState state) {
  switch (state) {
    case MessageState::kQueued:
      return "QUEUED";
    case MessageState::kSent:
      return "SENT";
    case MessageState::kFailed:
      return "FAILED";
    case MessageState::kSuppressed:
      return "SUPPRESSED";
    case MessageState::kDeduplicated:
      return "DEDUPLICATED";
  }
  return "QUEUED";
}

std::optional<MessageState> ParseMessageState(const std::string& name) {
  for (MessageState s :
       {MessageState::kQueued, MessageState::kSent, MessageState::kFailed,
        MessageState::kSuppressed, MessageState::kDeduplicated}) {
    if (name == MessageStateName(s)) return s;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<StoredMessage>> MessageStore::Enqueue(
    const std::vector<NewMessage>& messages,
    const std::vector<NewAttachment>& attachments, absl::Time now) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  ASSIGN_OR_RETURN(std::vector<StoredMessage> stored,
                   EnqueueInTransaction(tx, messages, attachments, now));
  RETURN_IF_ERROR(tx.Commit());
  return stored;
}

absl::StatusOr<std::vector<StoredMessage>> MessageStore::EnqueueInTransaction(
    pg::Transaction& tx, const std::vector<NewMessage>& messages,
    const std::vector<NewAttachment>& attachments, absl::Time now) {
  for (const NewAttachment& a : attachments) {
    RETURN_IF_ERROR(
        tx.Exec(kInsertAttachment,
                {a.id, a.attachment.filename, a.attachment.content_type,
                 HexBytea(a.attachment.content), pg::Time(now)})
            .status());
  }
  std::vector<bool> unsubscribed(messages.size(), false);
  {
    std::vector<std::string> w, r, c;
    for (const NewMessage& m : messages) {
      w.push_back(m.workspace_id);
      r.push_back(m.recipient);
      c.push_back(m.category);
    }
    ASSIGN_OR_RETURN(
        pg::Result rows,
        tx.Exec(kUnsubscribedAmong,
                {pg::TextArray(w), pg::TextArray(r), pg::TextArray(c)}));
    for (int row = 0; row < rows.rows(); ++row) {
      const int64_t index = rows.GetInt(row, 0) - 1;  // ORDINALITY is 1-based
      if (index >= 0 && index < static_cast<int64_t>(messages.size())) {
        unsubscribed[index] = true;
      }
    }
  }
  // The stored (id, request hash) of each keyed message, looked up for the
  // whole batch in one round trip; one by one (below) when two messages of
  // the batch share a key, so the second finds the first.
  std::vector<std::optional<std::pair<std::string, std::string>>> stored_keys(
      messages.size());
  bool keys_distinct = true;
  {
    std::vector<std::string> w, k;
    std::vector<size_t> keyed;
    std::set<std::pair<std::string, std::string>> seen;
    for (size_t i = 0; i < messages.size(); ++i) {
      const NewMessage& m = messages[i];
      if (m.idempotency_key.empty()) continue;
      if (!seen.emplace(m.workspace_id, m.idempotency_key).second) {
        keys_distinct = false;
        break;
      }
      w.push_back(m.workspace_id);
      k.push_back(m.idempotency_key);
      keyed.push_back(i);
    }
    if (keys_distinct && !keyed.empty()) {
      ASSIGN_OR_RETURN(pg::Result rows,
                       tx.Exec(kFindByIdempotencyKeys,
                               {pg::TextArray(w), pg::TextArray(k)}));
      for (int row = 0; row < rows.rows(); ++row) {
        const int64_t at = rows.GetInt(row, 0) - 1;  // ORDINALITY is 1-based
        if (at >= 0 && at < static_cast<int64_t>(keyed.size())) {
          stored_keys[keyed[at]] =
              std::make_pair(rows.Get(row, 1), rows.Get(row, 2));
        }
      }
    }
  }
  BulkInsert bulk;
  // Keyed messages, in one statement when their keys are distinct.
  BulkInsert keyed_bulk(/*keyed=*/true);
  std::vector<size_t> keyed_rows;  // index in `messages` of each keyed_bulk row
  std::vector<std::string> link_messages, link_positions, link_attachments;
  std::vector<StoredMessage> out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    const NewMessage& m = messages[i];
    if (!m.idempotency_key.empty()) {
      std::optional<std::pair<std::string, std::string>> existing =
          stored_keys[i];
      if (!keys_distinct) {
        ASSIGN_OR_RETURN(pg::Result found,
                         tx.Exec(kFindByIdempotencyKey,
                                 {m.workspace_id, m.idempotency_key}));
        if (found.rows() > 0) {
          existing = std::make_pair(found.Get(0, 0), found.Get(0, 1));
        }
      }
      if (existing.has_value()) {
        if (existing->second != m.request_hash) {
          return absl::InvalidArgumentError(absl::StrCat(
              "message ", i, ": idempotency_key \"", m.idempotency_key,
              "\" was already used with a different request; use a new key"));
        }
        ASSIGN_OR_RETURN(StoredMessage s,
                         GetInTransaction(tx, existing->first));
        out.push_back(std::move(s));
        continue;
      }
    }
    MessageState state = MessageState::kQueued;
    // Invitations cannot be left, whatever the table says.
    if (m.category != "invitation" && unsubscribed[i]) {
      state = MessageState::kSuppressed;
    }
    if (state == MessageState::kQueued && !m.dedupe_key.empty()) {
      ASSIGN_OR_RETURN(
          pg::Result taken,
          tx.Exec(kTakeDedupeKey,
                  {m.workspace_id, m.dedupe_key, m.id,
                   pg::Time(now + m.dedupe_window), pg::Time(now)}));
      if (taken.rows() == 0) state = MessageState::kDeduplicated;
    }
    if (m.idempotency_key.empty()) {
      // Nothing can conflict: insert it with the others in one statement.
      bulk.Add(m, state);
    } else if (keys_distinct) {
      keyed_bulk.Add(m, state);
      keyed_rows.push_back(i);
    } else {
      ASSIGN_OR_RETURN(
          pg::Result inserted,
          tx.Exec(
              kInsertMessage,
              {m.id, m.workspace_id, m.recipient, m.recipient_name,
               m.recipient_user_id, m.category, m.template_name,
               MessageStateName(state), m.subject, m.text_body, m.html_body,
               m.message_id_header, m.unsubscribe_url, pg::Time(now),
               pg::NullIfEmpty(m.idempotency_key), m.request_hash,
               pg::NullIfEmpty(m.dedupe_key), pg::NullIfEmpty(m.report_id)}));
      if (inserted.rows() == 0) {
        return absl::AbortedError(
            absl::StrCat("message ", i,
                         ": a concurrent request with the same "
                         "idempotency_key is in progress; retry"));
      }
    }
    for (size_t p = 0; p < m.attachment_ids.size(); ++p) {
      link_messages.push_back(m.id);
      link_positions.push_back(absl::StrCat(p));
      link_attachments.push_back(m.attachment_ids[p]);
    }
    StoredMessage s;
    s.id = m.id;
    s.workspace_id = m.workspace_id;
    s.recipient = m.recipient;
    s.recipient_name = m.recipient_name;
    s.recipient_user_id = m.recipient_user_id;
    s.category = m.category;
    s.template_name = m.template_name;
    s.state = state;
    s.subject = m.subject;
    s.message_id_header = m.message_id_header;
    s.unsubscribe_url = m.unsubscribe_url;
    // The database keeps microseconds; report what a later Get returns.
    s.create_time = s.update_time =
        absl::FromUnixMicros(absl::ToUnixMicros(now));
    out.push_back(std::move(s));
  }
  if (!keyed_bulk.empty()) {
    ASSIGN_OR_RETURN(pg::Result inserted,
                     tx.connection().ExecPrepared(kBulkInsertKeyedMessages,
                                                  keyed_bulk.Params(now)));
    if (inserted.rows() != static_cast<int>(keyed_bulk.size())) {
      std::set<std::string> ids;
      for (int row = 0; row < inserted.rows(); ++row) {
        ids.insert(inserted.Get(row, 0));
      }
      size_t missing = 0;
      while (missing + 1 < keyed_bulk.size() &&
             ids.count(keyed_bulk.id(missing)) > 0) {
        ++missing;
      }
      return absl::AbortedError(absl::StrCat(
          "message ", keyed_rows[missing],
          ": a concurrent request with the same idempotency_key is in "
          "progress; retry"));
    }
  }
  if (!bulk.empty()) {
    RETURN_IF_ERROR(tx.Exec(kBulkInsertMessages, bulk.Params(now)).status());
  }
  if (!link_messages.empty()) {
    RETURN_IF_ERROR(
        tx.Exec(kBulkLinkAttachments,
                {pg::TextArray(link_messages), pg::TextArray(link_positions),
                 pg::TextArray(link_attachments)})
            .status());
  }
  return out;
}

absl::StatusOr<std::vector<StoredMessage>> MessageStore::Claim(
    const std::string& owner, absl::Time now, absl::Duration lease, int limit) {
  ASSIGN_OR_RETURN(pg::Result r, pool_->Exec(kClaim, {owner, pg::Time(now),
                                                      pg::Time(now + lease),
                                                      pg::Int(limit)}));
  std::vector<StoredMessage> out;
  out.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) out.push_back(RowToMessage(r, i));
  return out;
}

absl::StatusOr<std::vector<AttachmentRef>> MessageStore::AttachmentRefs(
    const std::vector<std::string>& message_ids) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec(kAttachmentRefs, {pg::TextArray(message_ids)}));
  std::vector<AttachmentRef> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back({r.Get(i, 0), r.Get(i, 1)});
  }
  return out;
}

absl::StatusOr<MimeAttachment> MessageStore::GetAttachment(
    const std::string& id) {
  ASSIGN_OR_RETURN(pg::Result r, pool_->Exec(kGetAttachment, {id}));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("attachment ", id, " not found"));
  }
  return MimeAttachment{r.Get(0, 0), r.Get(0, 1), UnhexBytea(r.Get(0, 2))};
}

absl::Status MessageStore::MarkSent(const std::string& id, absl::Time now) {
  return pool_->Exec(kMarkSent, {id, pg::Time(now)}).status();
}

absl::Status MessageStore::MarkRetry(const std::string& id, absl::Time now,
                                     absl::Time next_attempt,
                                     const std::string& error) {
  return pool_
      ->Exec(kMarkRetry, {id, pg::Time(now), pg::Time(next_attempt), error})
      .status();
}

absl::Status MessageStore::MarkFailed(const std::string& id, absl::Time now,
                                      const std::string& error) {
  return pool_->Exec(kMarkFailed, {id, pg::Time(now), error}).status();
}

absl::Status MessageStore::Release(const std::vector<std::string>& ids,
                                   absl::Time next_attempt) {
  if (ids.empty()) return absl::OkStatus();
  return pool_->Exec(kRelease, {pg::TextArray(ids), pg::Time(next_attempt)})
      .status();
}

absl::StatusOr<int64_t> MessageStore::PurgeDedupeKeys(absl::Time before) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec("DELETE FROM notification.dedupe_keys "
                               "WHERE expire_time < $1",
                               {pg::Time(before)}));
  return r.AffectedRows();
}

absl::StatusOr<StoredMessage> MessageStore::Get(const std::string& id) {
  ASSIGN_OR_RETURN(
      pg::Result r,
      pool_->Exec(absl::StrCat("SELECT ", kMessageColumns,
                               " FROM notification.messages WHERE id = $1"),
                  {id}));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("message ", id, " not found"));
  }
  return RowToMessage(r, 0);
}

absl::StatusOr<std::vector<StoredMessage>> MessageStore::List(
    const ListFilter& f) {
  // Optional filters as "($n = '' OR column = $n)" keep the statement
  // constant and every value bound.
  const std::string sql = absl::StrCat(
      "SELECT ", kMessageColumns,
      " FROM notification.messages WHERE workspace_id = $1 "
      "AND ($2 = '' OR lower(recipient) = lower($2)) "
      "AND ($3 = '' OR category = $3) AND ($4 = '' OR state = $4) "
      "AND ($5::timestamptz IS NULL OR (create_time, id) < ($5, $6::uuid)) "
      "ORDER BY create_time DESC, id DESC LIMIT $7");
  pg::Params params = {
      f.workspace_id,
      f.recipient,
      f.category,
      f.state ? std::string(MessageStateName(*f.state)) : std::string(),
      f.after ? pg::Time(f.after->first) : pg::Param(),
      f.after ? pg::Param(f.after->second) : pg::Param(),
      pg::Int(f.page_size)};
  ASSIGN_OR_RETURN(pg::Result r, pool_->Exec(sql, params));
  std::vector<StoredMessage> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(RowToMessage(r, i));
  return out;
}

absl::StatusOr<int64_t> MessageStore::CountByState(MessageState state) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec("SELECT count(*) FROM notification.messages "
                               "WHERE state = $1",
                               {MessageStateName(state)}));
  return r.GetInt(0, 0);
}

absl::Status MessageStore::Unsubscribe(const std::string& workspace_id,
                                       const std::string& recipient,
                                       const std::string& category,
                                       absl::Time now) {
  return pool_
      ->Exec(kUnsubscribe, {workspace_id, recipient, category, pg::Time(now)})
      .status();
}

absl::StatusOr<std::vector<std::string>> MessageStore::UnsubscribedCategories(
    const std::string& workspace_id, const std::string& recipient) {
  ASSIGN_OR_RETURN(pg::Result r, pool_->Exec(kUnsubscribedCategories,
                                             {workspace_id, recipient}));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.Get(i, 0));
  return out;
}

absl::Status MessageStore::SetUnsubscribedCategories(
    const std::string& workspace_id, const std::string& recipient,
    const std::vector<std::string>& categories, absl::Time now) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  RETURN_IF_ERROR(
      tx.Exec(kClearUnsubscribes, {workspace_id, recipient}).status());
  for (const std::string& c : categories) {
    RETURN_IF_ERROR(
        tx.Exec(kUnsubscribe, {workspace_id, recipient, c, pg::Time(now)})
            .status());
  }
  return tx.Commit();
}

absl::StatusOr<std::optional<Report>> MessageStore::FindReport(
    const std::string& app_id, const std::string& idempotency_key) {
  ASSIGN_OR_RETURN(pg::Result r,
                   pool_->Exec(kFindReport, {app_id, idempotency_key}));
  if (r.rows() == 0) return std::optional<Report>();
  Report rep;
  rep.id = r.Get(0, 0);
  rep.app_id = r.Get(0, 1);
  rep.workspace_id = r.Get(0, 2);
  rep.idempotency_key = idempotency_key;
  rep.request_hash = r.Get(0, 3);
  rep.title = r.Get(0, 4);
  rep.filename = r.Get(0, 5);
  rep.recipients = static_cast<int>(r.GetInt(0, 6));
  rep.suppressed = static_cast<int>(r.GetInt(0, 7));
  return std::optional<Report>(rep);
}

absl::StatusOr<Report> MessageStore::EnqueueReport(
    Report report, const NewAttachment& attachment,
    const std::vector<NewMessage>& messages, absl::Time now) {
  ASSIGN_OR_RETURN(pg::PooledConnection conn, pool_->Acquire());
  pg::Transaction tx(conn);
  RETURN_IF_ERROR(tx.status());
  ASSIGN_OR_RETURN(std::vector<StoredMessage> stored,
                   EnqueueInTransaction(tx, messages, {attachment}, now));
  report.recipients = 0;
  report.suppressed = 0;
  for (const StoredMessage& m : stored) {
    if (m.state == MessageState::kSuppressed) {
      ++report.suppressed;
    } else {
      ++report.recipients;
    }
  }
  RETURN_IF_ERROR(
      tx.Exec(kInsertReport,
              {report.id, report.app_id, report.workspace_id,
               pg::NullIfEmpty(report.idempotency_key), report.request_hash,
               report.title, report.filename, pg::Int(report.recipients),
               pg::Int(report.suppressed), pg::Time(now)})
          .status());
  RETURN_IF_ERROR(tx.Commit());
  return report;
}

}  // namespace guestlist::notification
