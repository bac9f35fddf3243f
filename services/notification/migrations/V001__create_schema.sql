-- notification schema: the email outbox, attachments, dedupe windows,
-- unsubscribes and report publications.

CREATE TABLE notification.messages (
  id uuid PRIMARY KEY,
  workspace_id text NOT NULL DEFAULT '',
  recipient text NOT NULL,
  recipient_name text NOT NULL DEFAULT '',
  recipient_user_id text NOT NULL DEFAULT '',
  category text NOT NULL,
  template text NOT NULL,
  state text NOT NULL CHECK (state IN
    ('QUEUED', 'SENT', 'FAILED', 'SUPPRESSED', 'DEDUPLICATED')),
  subject text NOT NULL,
  text_body text NOT NULL,
  html_body text NOT NULL,
  message_id_header text NOT NULL,
  unsubscribe_url text NOT NULL DEFAULT '',
  attempts integer NOT NULL DEFAULT 0,
  last_error text NOT NULL DEFAULT '',
  next_attempt_time timestamptz NOT NULL,
  lease_owner text,
  lease_expire_time timestamptz,
  idempotency_key text,
  request_hash text NOT NULL DEFAULT '',
  dedupe_key text,
  report_id uuid,
  create_time timestamptz NOT NULL,
  update_time timestamptz NOT NULL,
  send_time timestamptz
);

-- A repeated SendEmail with the same key finds the first message.
CREATE UNIQUE INDEX messages_idempotency
  ON notification.messages (workspace_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- Delivery workers claim due messages in this order.
CREATE INDEX messages_due
  ON notification.messages (next_attempt_time)
  WHERE state = 'QUEUED';

-- ListMessages: newest first per workspace.
CREATE INDEX messages_by_workspace
  ON notification.messages (workspace_id, create_time DESC, id DESC);

-- Attachment bodies, shared by every message of one report publication.
CREATE TABLE notification.attachments (
  id uuid PRIMARY KEY,
  filename text NOT NULL,
  content_type text NOT NULL,
  content bytea NOT NULL,
  create_time timestamptz NOT NULL
);

CREATE TABLE notification.message_attachments (
  message_id uuid NOT NULL REFERENCES notification.messages (id)
    ON DELETE CASCADE,
  position integer NOT NULL,
  attachment_id uuid NOT NULL REFERENCES notification.attachments (id),
  PRIMARY KEY (message_id, position)
);

-- One live row per (workspace, dedupe_key): INSERT ... ON CONFLICT DO
-- UPDATE ... WHERE expired makes concurrent senders serialise on the row.
CREATE TABLE notification.dedupe_keys (
  workspace_id text NOT NULL,
  dedupe_key text NOT NULL,
  message_id uuid NOT NULL,
  expire_time timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, dedupe_key)
);

-- Who left which category (recipient lowercased).
CREATE TABLE notification.unsubscribes (
  workspace_id text NOT NULL,
  recipient text NOT NULL,
  category text NOT NULL,
  create_time timestamptz NOT NULL,
  PRIMARY KEY (workspace_id, recipient, category)
);

CREATE TABLE notification.reports (
  id uuid PRIMARY KEY,
  app_id text NOT NULL,
  workspace_id text NOT NULL,
  idempotency_key text,
  request_hash text NOT NULL,
  title text NOT NULL,
  filename text NOT NULL,
  recipients integer NOT NULL,
  suppressed integer NOT NULL,
  create_time timestamptz NOT NULL
);

CREATE UNIQUE INDEX reports_idempotency
  ON notification.reports (app_id, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
