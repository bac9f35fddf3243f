-- Crash safety of imports (services/identity/import):
-- failure_reason: why an import FAILED when no row is to blame (a peer was
--   down, or the process running it died). Shown as a line-0 report row.
-- intent_ids: the identity.outbox rows (topic identity.ReconcileInvite)
--   covering the users the import creates in membership before identity
--   commits. Whoever fails a dead job reconciles them first, so a FAILED
--   report never leaves users in membership that identity does not have.
ALTER TABLE identity.imports
  ADD COLUMN failure_reason text NOT NULL DEFAULT '',
  ADD COLUMN intent_ids bigint[] NOT NULL DEFAULT '{}';
