-- V002's and V003's trigger functions built their queries at run time
-- (EXECUTE format(...)), which PostgreSQL parses and plans on every call:
-- about a dozen times per invite, half of membership's database CPU in the
-- InviteUser benchmark. The same logic in static SQL is planned once per
-- connection (PL/pgSQL caches the plans; transition tables are visible to
-- static SQL). Only the function bodies change; the triggers stay.

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
      SELECT count(DISTINCT user_id), string_agg(DISTINCT user_id::text, ',')
        INTO n, ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
      SELECT count(DISTINCT user_id), string_agg(DISTINCT user_id::text, ',')
        INTO n, ids FROM old_rows;
    ELSE
      SELECT count(DISTINCT k), string_agg(DISTINCT k::text, ',') INTO n, ids
        FROM (SELECT user_id AS k FROM old_rows
              UNION SELECT user_id FROM new_rows) s;
    END IF;
  ELSE
    IF TG_OP = 'INSERT' THEN
      SELECT count(DISTINCT id), string_agg(DISTINCT id::text, ',')
        INTO n, ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
      SELECT count(DISTINCT id), string_agg(DISTINCT id::text, ',')
        INTO n, ids FROM old_rows;
    ELSE
      SELECT count(DISTINCT k), string_agg(DISTINCT k::text, ',') INTO n, ids
        FROM (SELECT id AS k FROM old_rows UNION SELECT id FROM new_rows) s;
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

CREATE OR REPLACE FUNCTION membership.count_user_groups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Users deleted by the same statement (FK cascade) are simply not found.
  IF TG_OP = 'INSERT' THEN
    UPDATE membership.users u SET group_count = u.group_count + c.d
      FROM (SELECT user_id, count(*)::integer AS d FROM new_rows
            GROUP BY user_id) c
      WHERE u.id = c.user_id;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE membership.users u SET group_count = u.group_count - c.d
      FROM (SELECT user_id, count(*)::integer AS d FROM old_rows
            GROUP BY user_id) c
      WHERE u.id = c.user_id;
  ELSE
    UPDATE membership.users u SET group_count = u.group_count + c.d
      FROM (SELECT user_id, sum(d)::integer AS d
            FROM (SELECT user_id, 1 AS d FROM new_rows
                  UNION ALL SELECT user_id, -1 FROM old_rows) s
            GROUP BY user_id) c
      WHERE u.id = c.user_id AND c.d <> 0;
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION membership.count_licenses() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE membership.workspaces w SET
        used_by_members = w.used_by_members + c.members,
        used_by_multi_group_guests = w.used_by_multi_group_guests + c.multi,
        single_group_guests = w.single_group_guests + c.single
      FROM (SELECT workspace_id,
                   count(*) FILTER (WHERE license_class = 1) AS members,
                   count(*) FILTER (WHERE license_class = 2) AS multi,
                   count(*) FILTER (WHERE license_class = 3) AS single
            FROM new_rows WHERE license_class <> 0
            GROUP BY workspace_id) c
      WHERE w.id = c.workspace_id;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE membership.workspaces w SET
        used_by_members = w.used_by_members - c.members,
        used_by_multi_group_guests = w.used_by_multi_group_guests - c.multi,
        single_group_guests = w.single_group_guests - c.single
      FROM (SELECT workspace_id,
                   count(*) FILTER (WHERE license_class = 1) AS members,
                   count(*) FILTER (WHERE license_class = 2) AS multi,
                   count(*) FILTER (WHERE license_class = 3) AS single
            FROM old_rows WHERE license_class <> 0
            GROUP BY workspace_id) c
      WHERE w.id = c.workspace_id;
  ELSE
    UPDATE membership.workspaces w SET
        used_by_members = w.used_by_members + c.members,
        used_by_multi_group_guests = w.used_by_multi_group_guests + c.multi,
        single_group_guests = w.single_group_guests + c.single
      FROM (SELECT workspace_id,
                   coalesce(sum(d) FILTER (WHERE license_class = 1), 0)
                     AS members,
                   coalesce(sum(d) FILTER (WHERE license_class = 2), 0)
                     AS multi,
                   coalesce(sum(d) FILTER (WHERE license_class = 3), 0)
                     AS single
            FROM (SELECT workspace_id, license_class, 1 AS d FROM new_rows
                  UNION ALL
                  SELECT workspace_id, license_class, -1 FROM old_rows) s
            WHERE license_class <> 0
            GROUP BY workspace_id) c
      WHERE w.id = c.workspace_id
        AND (c.members <> 0 OR c.multi <> 0 OR c.single <> 0);
  END IF;
  RETURN NULL;
END;
$$;
