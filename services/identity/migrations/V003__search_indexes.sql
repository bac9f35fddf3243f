-- Prefix search in ListUsers unions five index range scans (email,
-- username, first, last and full name) into a set of ids; carrying the id
-- in every index makes each branch an index-only scan.
DROP INDEX identity.users_by_first;
DROP INDEX identity.users_by_last;
CREATE INDEX users_by_first ON identity.users (workspace_id, first_lc, id);
CREATE INDEX users_by_last ON identity.users (workspace_id, last_lc, id);
