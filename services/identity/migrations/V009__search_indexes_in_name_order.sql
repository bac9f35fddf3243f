-- A prefix query with many matches in name order is answered as a merge of
-- sorted runs too (see ListUsers and storage/merge_search.cc), as V008 did
-- for email order: the full-name range of users_by_name is in name order;
-- the last names below are in name order within a name, so a range of last
-- names is read as one short run per distinct name.
CREATE INDEX users_by_last_in_name_order
  ON identity.users (workspace_id, last_lc, name_lc, id)
  INCLUDE (kind, status);
-- Users whose email the full-name run does not already cover, read whole
-- (usually few): an email that does not start with the first name ("jdoe@"
-- for Jane Doe). An email that does start with it matches a query either
-- through the first name or, past it, from V008's users_by_first (first
-- name, email). (A first name that starts with a query without edge spaces
-- always has the full name start with it: the full name is the first name,
-- a space and the last name, trimmed of spaces at both ends.)
CREATE INDEX users_by_own_email
  ON identity.users (workspace_id, email_lc, id)
  INCLUDE (name_lc, kind, status)
  WHERE email_lc <> '' AND NOT (coalesce(first_lc, '') <> ''
                                AND starts_with(email_lc, first_lc));
-- ListUsers' ranges of a query are disjoint (each leaves out the users of
-- the email, first-name, last-name and own-username ranges before it), so
-- each index carries the keys those exclusions test, and every sort key:
-- - V008's last-name index gains the first name;
-- - V008's partial indexes of the users with a username or a full name of
--   their own gain the other keys. (Without name_lc the name-order merge's
--   run of own usernames was no index-only scan, and the planner read the
--   whole username range of the full index instead: 47 ms for "mar" among
--   1,000,000 users.)
DROP INDEX identity.users_by_last;
CREATE INDEX users_by_last ON identity.users (workspace_id, last_lc, email_lc, id)
  INCLUDE (first_lc, name_lc, create_time, kind, status);
DROP INDEX identity.users_by_own_username;
CREATE INDEX users_by_own_username ON identity.users (workspace_id, username_lc, id)
  INCLUDE (email_lc, first_lc, last_lc, name_lc, create_time, kind, status)
  WHERE username_lc IS DISTINCT FROM email_lc;
DROP INDEX identity.users_by_own_name;
CREATE INDEX users_by_own_name ON identity.users (workspace_id, name_lc, id)
  INCLUDE (email_lc, username_lc, first_lc, last_lc, create_time, kind, status)
  WHERE NOT (CASE WHEN coalesce(first_lc, '') = ''
                  THEN name_lc IS NOT DISTINCT FROM last_lc
                  ELSE name_lc = first_lc
                       OR starts_with(name_lc, first_lc || ' ') END);
