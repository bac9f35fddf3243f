-- Message bodies are compressed when a row is written (an invitation's
-- HTML body passes PostgreSQL's 2 KB threshold). LZ4 does it several times
-- faster than the default pglz, to a similar size: cheaper BatchSendEmail
-- inserts of an import's 100,000 invitations.
ALTER TABLE notification.messages
  ALTER COLUMN text_body SET COMPRESSION lz4,
  ALTER COLUMN html_body SET COMPRESSION lz4;
