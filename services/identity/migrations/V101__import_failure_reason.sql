-- Why an import FAILED when no row is to blame (a peer was down, or the
-- process running it died: services/identity/import reaps such jobs when it
-- finds their advisory lock free). Shown as a line-0 row of the report.
ALTER TABLE identity.imports ADD COLUMN failure_reason text NOT NULL DEFAULT '';
