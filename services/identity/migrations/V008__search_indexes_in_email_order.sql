-- A prefix query with many matches, in email order (the default), is
-- answered as a merge of sorted runs (see ListUsers): the email range of
-- users_by_email is already in email order; each first or last name value
-- below is too, so a range of names is read as one short run per distinct
-- name instead of all its entries.
DROP INDEX identity.users_by_first;
CREATE INDEX users_by_first ON identity.users (workspace_id, first_lc, email_lc, id)
  INCLUDE (name_lc, create_time, kind, status);
DROP INDEX identity.users_by_last;
CREATE INDEX users_by_last ON identity.users (workspace_id, last_lc, email_lc, id)
  INCLUDE (name_lc, create_time, kind, status);
-- Users whose username or full name another key does not already cover:
-- a username other than the email, a full name that does not start with
-- the first name and a space (or, without a first name, equal the last
-- name). Usually none; the merge reads these ranges whole.
CREATE INDEX users_by_own_username ON identity.users (workspace_id, username_lc, id)
  INCLUDE (email_lc, kind, status)
  WHERE username_lc IS DISTINCT FROM email_lc;
CREATE INDEX users_by_own_name ON identity.users (workspace_id, name_lc, id)
  INCLUDE (email_lc, kind, status)
  WHERE NOT (CASE WHEN coalesce(first_lc, '') = ''
                  THEN name_lc IS NOT DISTINCT FROM last_lc
                  ELSE name_lc = first_lc
                       OR starts_with(name_lc, first_lc || ' ') END);
