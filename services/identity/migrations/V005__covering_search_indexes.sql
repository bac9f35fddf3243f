-- ListUsers reads a page's ids from indexes alone, then fetches those rows:
-- - with few matches of a query, it unites one range scan per search key;
--   each search index carries the three sort keys, so the union can be
--   sorted without touching the table;
-- - with many matches (or none asked), it walks the sort index in order;
--   each sort index carries the search keys and the kind / status filters,
--   so non-matching entries are skipped without a heap fetch.
DROP INDEX identity.users_by_email;
CREATE INDEX users_by_email ON identity.users (workspace_id, email_lc, id)
  INCLUDE (username_lc, first_lc, last_lc, name_lc, create_time, kind, status);
DROP INDEX identity.users_by_name;
CREATE INDEX users_by_name ON identity.users (workspace_id, name_lc, id)
  INCLUDE (email_lc, username_lc, first_lc, last_lc, create_time, kind, status);
DROP INDEX identity.users_by_create;
CREATE INDEX users_by_create ON identity.users (workspace_id, create_time, id)
  INCLUDE (email_lc, username_lc, first_lc, last_lc, name_lc, kind, status);
DROP INDEX identity.users_by_username;
CREATE INDEX users_by_username ON identity.users (workspace_id, username_lc, id)
  INCLUDE (email_lc, name_lc, create_time, kind, status);
DROP INDEX identity.users_by_first;
CREATE INDEX users_by_first ON identity.users (workspace_id, first_lc, id)
  INCLUDE (email_lc, name_lc, create_time, kind, status);
DROP INDEX identity.users_by_last;
CREATE INDEX users_by_last ON identity.users (workspace_id, last_lc, id)
  INCLUDE (email_lc, name_lc, create_time, kind, status);
