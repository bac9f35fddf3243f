-- Cheaper bulk writes for imports and invites.
--
-- Identity never deletes a user or a workspace (a user leaves by being
-- ARCHIVED), and every writer inserts an invitation in the transaction
-- that creates or reads its user under the caller's workspace. So these
-- three foreign keys guard nothing at run time, while each costs an index
-- probe and a row lock per inserted row: three per imported guest, about a
-- fifth of an import's identity writes. Sessions and access requests keep
-- theirs (written one at a time).
ALTER TABLE identity.invitations
  DROP CONSTRAINT invitations_user_id_fkey,
  DROP CONSTRAINT invitations_workspace_id_fkey;
ALTER TABLE identity.users DROP CONSTRAINT users_workspace_id_fkey;

-- Outbox payloads (an import's BatchSendEmail requests, ~200 KB each) were
-- compressed with pglz on insert: a third of the import's outbox writes.
-- LZ4 compresses them several times faster to a similar size.
ALTER TABLE identity.outbox ALTER COLUMN payload SET COMPRESSION lz4;
