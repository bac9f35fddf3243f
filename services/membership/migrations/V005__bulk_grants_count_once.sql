-- Bulk ApplyGrants without writing every new user's row twice.
--
-- V003's counter trigger on group_members adds each new membership to
-- users.group_count with an UPDATE of the user's row (and all of its
-- indexes, and the users triggers again). For a user created by the same
-- ApplyGrants that second write is pure overhead: the final group count is
-- known before the row is written. With this constraint deferrable, a bulk
-- ApplyGrants that holds the workspace lock inserts the new users'
-- memberships first (the counter trigger finds no such users and writes
-- nothing), then the users with their group_count already set, then sets
-- the constraint back to IMMEDIATE (which checks those rows at once).
-- Everyone else keeps the immediate check (INITIALLY IMMEDIATE); cascades
-- are never deferred. The counters stay exact: license_counters_test
-- compares them with a full recount after every kind of change.
ALTER TABLE membership.group_members
  ALTER CONSTRAINT group_members_user_id_fkey DEFERRABLE INITIALLY IMMEDIATE;

-- V004's notification trigger built the id list (a sort of every changed
-- row's id as text) even when it then sent '*' for more than 200 ids: a
-- bulk statement paid for a list it threw away. Count first; build the
-- list only when it is sent. Same notifications as before.
CREATE OR REPLACE FUNCTION membership.notify_authz_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  kind text := TG_ARGV[0];
  n bigint;
  ids text;
BEGIN
  -- TG_ARGV[1] names the id column: 'id' or 'user_id'.
  IF TG_ARGV[1] = 'user_id' THEN
    IF TG_OP = 'INSERT' THEN
      SELECT count(DISTINCT user_id) INTO n FROM new_rows;
      IF n BETWEEN 1 AND 200 THEN
        SELECT string_agg(DISTINCT user_id::text, ',') INTO ids FROM new_rows;
      END IF;
    ELSIF TG_OP = 'DELETE' THEN
      SELECT count(DISTINCT user_id) INTO n FROM old_rows;
      IF n BETWEEN 1 AND 200 THEN
        SELECT string_agg(DISTINCT user_id::text, ',') INTO ids FROM old_rows;
      END IF;
    ELSE
      SELECT count(DISTINCT k) INTO n
        FROM (SELECT user_id AS k FROM old_rows
              UNION ALL SELECT user_id FROM new_rows) s;
      IF n BETWEEN 1 AND 200 THEN
        SELECT string_agg(DISTINCT k::text, ',') INTO ids
          FROM (SELECT user_id AS k FROM old_rows
                UNION ALL SELECT user_id FROM new_rows) s;
      END IF;
    END IF;
  ELSE
    IF TG_OP = 'INSERT' THEN
      SELECT count(DISTINCT id) INTO n FROM new_rows;
      IF n BETWEEN 1 AND 200 THEN
        SELECT string_agg(DISTINCT id::text, ',') INTO ids FROM new_rows;
      END IF;
    ELSIF TG_OP = 'DELETE' THEN
      SELECT count(DISTINCT id) INTO n FROM old_rows;
      IF n BETWEEN 1 AND 200 THEN
        SELECT string_agg(DISTINCT id::text, ',') INTO ids FROM old_rows;
      END IF;
    ELSE
      SELECT count(DISTINCT k) INTO n
        FROM (SELECT id AS k FROM old_rows UNION ALL SELECT id FROM new_rows) s;
      IF n BETWEEN 1 AND 200 THEN
        SELECT string_agg(DISTINCT k::text, ',') INTO ids
          FROM (SELECT id AS k FROM old_rows
                UNION ALL SELECT id FROM new_rows) s;
      END IF;
    END IF;
  END IF;
  IF n = 0 THEN
    RETURN NULL;
  ELSIF n > 200 THEN
    PERFORM pg_notify('membership_authz', '*');
  ELSE
    PERFORM pg_notify('membership_authz', kind || ':' || ids);
  END IF;
  RETURN NULL;
END;
$$;
