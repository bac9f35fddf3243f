-- Licence usage kept as counters, so a licence check under the workspace
-- lock reads one row instead of recounting every user of the workspace
-- (that recount made every InviteUser O(users) while holding the lock).
--
-- membership.users.group_count: the user's number of group_members rows.
-- membership.users.license_class: how the user counts, exactly as
--   domain/licenses.cc Classify does: 0 none (requested, archived),
--   1 member licence (admins and members), 2 multi-group guest (>= 2
--   groups), 3 single-group guest (0 or 1 group).
-- membership.workspaces.used_by_members / used_by_multi_group_guests /
--   single_group_guests: the number of the workspace's users per class.
--
-- All triggers are statement-level with transition tables and aggregate
-- per user / per workspace: a bulk statement (an import of 100,000 users)
-- costs one trigger call, not one per row. FK cascades (deleting a group
-- or a user) run DELETE statements on group_members, so they are counted
-- too. The workspace row is written only when one of its counts changes.

-- Nothing may change the tables while they are backfilled.
LOCK TABLE membership.workspaces, membership.users, membership.group_members
  IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE membership.users ADD COLUMN group_count integer NOT NULL DEFAULT 0;
UPDATE membership.users u SET group_count = c.n
  FROM (SELECT user_id, count(*)::integer AS n
        FROM membership.group_members GROUP BY user_id) c
  WHERE u.id = c.user_id;
ALTER TABLE membership.users ADD COLUMN license_class smallint
  GENERATED ALWAYS AS (
    CASE WHEN status IN (1, 6) THEN 0
         WHEN kind IN (1, 2) THEN 1
         WHEN kind = 3 AND group_count >= 2 THEN 2
         WHEN kind = 3 THEN 3
         ELSE 0 END) STORED;

ALTER TABLE membership.workspaces
  ADD COLUMN used_by_members integer NOT NULL DEFAULT 0,
  ADD COLUMN used_by_multi_group_guests integer NOT NULL DEFAULT 0,
  ADD COLUMN single_group_guests integer NOT NULL DEFAULT 0;
UPDATE membership.workspaces w SET
    used_by_members = c.members,
    used_by_multi_group_guests = c.multi,
    single_group_guests = c.single
  FROM (SELECT workspace_id,
               count(*) FILTER (WHERE license_class = 1)::integer AS members,
               count(*) FILTER (WHERE license_class = 2)::integer AS multi,
               count(*) FILTER (WHERE license_class = 3)::integer AS single
        FROM membership.users GROUP BY workspace_id) c
  WHERE w.id = c.workspace_id;

-- group_members -> users.group_count. Each changed row contributes +1 for
-- its new user and -1 for its old one; users whose sum is 0 (a role change)
-- are not written.
CREATE FUNCTION membership.count_user_groups() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  source text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    source := 'SELECT user_id, 1 AS d FROM new_rows';
  ELSIF TG_OP = 'DELETE' THEN
    source := 'SELECT user_id, -1 AS d FROM old_rows';
  ELSE
    source := 'SELECT user_id, 1 AS d FROM new_rows '
              'UNION ALL SELECT user_id, -1 FROM old_rows';
  END IF;
  -- Users deleted by the same statement (FK cascade) are simply not found.
  EXECUTE format(
    'UPDATE membership.users u SET group_count = u.group_count + c.d '
    'FROM (SELECT user_id, sum(d)::integer AS d FROM (%s) s '
    '      GROUP BY user_id) c '
    'WHERE u.id = c.user_id AND c.d <> 0', source);
  RETURN NULL;
END;
$$;

CREATE TRIGGER group_members_count_insert AFTER INSERT
  ON membership.group_members
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.count_user_groups();
CREATE TRIGGER group_members_count_update AFTER UPDATE
  ON membership.group_members
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.count_user_groups();
CREATE TRIGGER group_members_count_delete AFTER DELETE
  ON membership.group_members
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.count_user_groups();

-- users -> workspaces counters: +1 per new row's class, -1 per old row's,
-- summed per workspace; only workspaces with a non-zero delta are written.
CREATE FUNCTION membership.count_licenses() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  source text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    source := 'SELECT workspace_id, license_class, 1 AS d FROM new_rows';
  ELSIF TG_OP = 'DELETE' THEN
    source := 'SELECT workspace_id, license_class, -1 AS d FROM old_rows';
  ELSE
    source := 'SELECT workspace_id, license_class, 1 AS d FROM new_rows '
              'UNION ALL SELECT workspace_id, license_class, -1 FROM old_rows';
  END IF;
  EXECUTE format(
    'UPDATE membership.workspaces w SET '
    '  used_by_members = w.used_by_members + c.members, '
    '  used_by_multi_group_guests = w.used_by_multi_group_guests + c.multi, '
    '  single_group_guests = w.single_group_guests + c.single '
    'FROM (SELECT workspace_id, '
    '        coalesce(sum(d) FILTER (WHERE license_class = 1), 0) AS members, '
    '        coalesce(sum(d) FILTER (WHERE license_class = 2), 0) AS multi, '
    '        coalesce(sum(d) FILTER (WHERE license_class = 3), 0) AS single '
    '      FROM (%s) s WHERE license_class <> 0 GROUP BY workspace_id) c '
    'WHERE w.id = c.workspace_id '
    '  AND (c.members <> 0 OR c.multi <> 0 OR c.single <> 0)', source);
  RETURN NULL;
END;
$$;

CREATE TRIGGER users_count_insert AFTER INSERT ON membership.users
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.count_licenses();
CREATE TRIGGER users_count_update AFTER UPDATE ON membership.users
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.count_licenses();
CREATE TRIGGER users_count_delete AFTER DELETE ON membership.users
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.count_licenses();

-- A counter change is not an authorization change: V002's workspace
-- trigger would make every replica drop its cached groups of the
-- workspace on every invite. Notify only when a column other than the
-- counters changed.
CREATE FUNCTION membership.notify_workspace_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  counters text[] := ARRAY['used_by_members', 'used_by_multi_group_guests',
                           'single_group_guests'];
  n integer;
  ids text;
BEGIN
  SELECT count(*), string_agg(nr.id::text, ',') INTO n, ids
  FROM new_rows nr JOIN old_rows o ON o.id = nr.id
  WHERE (to_jsonb(nr) - counters) IS DISTINCT FROM (to_jsonb(o) - counters);
  IF n = 0 THEN
    RETURN NULL;
  ELSIF n > 200 THEN
    PERFORM pg_notify('membership_authz', '*');
  ELSE
    PERFORM pg_notify('membership_authz', 'w:' || ids);
  END IF;
  RETURN NULL;
END;
$$;

DROP TRIGGER workspaces_authz_update ON membership.workspaces;
CREATE TRIGGER workspaces_authz_update AFTER UPDATE ON membership.workspaces
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_workspace_update();
