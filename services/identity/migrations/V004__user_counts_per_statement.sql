-- V002 kept the per-workspace counts with a row-level trigger, which
-- upserts the same counter row once per inserted user: a 100,000-row import
-- spent most of its time there. Statement-level triggers with transition
-- tables update each counter once per statement instead. Counter rows are
-- touched in (workspace, kind, status) order so concurrent statements
-- cannot deadlock.

DROP TRIGGER IF EXISTS users_count_insert_delete ON identity.users;
DROP TRIGGER IF EXISTS users_count_update ON identity.users;

CREATE FUNCTION identity.count_users_per_statement() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO identity.user_counts AS c (workspace_id, kind, status, n)
    SELECT workspace_id, kind, status, count(*) FROM new_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (workspace_id, kind, status) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO identity.user_counts AS c (workspace_id, kind, status, n)
    SELECT workspace_id, kind, status, -count(*) FROM old_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (workspace_id, kind, status) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSE
    INSERT INTO identity.user_counts AS c (workspace_id, kind, status, n)
    SELECT workspace_id, kind, status, sum(d) FROM (
      SELECT workspace_id, kind, status, 1 AS d FROM new_rows
      UNION ALL
      SELECT workspace_id, kind, status, -1 AS d FROM old_rows) changes
    GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (workspace_id, kind, status) DO UPDATE SET n = c.n + EXCLUDED.n;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER users_count_insert
AFTER INSERT ON identity.users
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION identity.count_users_per_statement();

CREATE TRIGGER users_count_delete
AFTER DELETE ON identity.users
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION identity.count_users_per_statement();

CREATE TRIGGER users_count_update
AFTER UPDATE ON identity.users
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION identity.count_users_per_statement();
