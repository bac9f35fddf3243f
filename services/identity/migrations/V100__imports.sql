-- Bulk CSV imports (services/identity/import): one row per import job, with
-- its progress while RUNNING and, once finished, the report (serialized
-- guestlist.identity.v1.ImportReport) and the failed rows as CSV.
CREATE TABLE identity.imports (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES identity.workspaces (id),
  idempotency_key text NOT NULL DEFAULT '',
  creator text NOT NULL DEFAULT '',
  dry_run boolean NOT NULL,
  mode text NOT NULL,
  state text NOT NULL,
  rows_total integer NOT NULL DEFAULT 0,
  rows_processed integer NOT NULL DEFAULT 0,
  created integer NOT NULL DEFAULT 0,
  updated integer NOT NULL DEFAULT 0,
  deleted integer NOT NULL DEFAULT 0,
  unchanged integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  report bytea,
  error_csv text NOT NULL DEFAULT '',
  create_time timestamptz NOT NULL,
  finish_time timestamptz
);
-- Same key + same workspace returns the first import's report.
CREATE UNIQUE INDEX imports_idempotency_key
  ON identity.imports (workspace_id, idempotency_key)
  WHERE idempotency_key <> '';
CREATE INDEX imports_by_workspace
  ON identity.imports (workspace_id, create_time DESC);
