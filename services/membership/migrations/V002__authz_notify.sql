-- Change notifications for the Check cache. After every statement that
-- changes an authorization table, a trigger sends
-- NOTIFY membership_authz '<kind>:<id>,<id>...' naming what changed
-- (u: users, also for their memberships and privileges; g: groups;
-- a: apps; w: workspaces), or '*' when more than 200 ids changed.
-- Notifications are delivered only on commit and take no row lock, so
-- writers do not serialize on them. Each replica LISTENs and drops exactly
-- those cache entries, so a suspension or a removed membership bites on
-- every replica within milliseconds.
CREATE FUNCTION membership.notify_authz_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  kind text := TG_ARGV[0];
  col text := TG_ARGV[1];
  source text;
  n integer;
  ids text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    source := format('SELECT %I AS k FROM new_rows', col);
  ELSIF TG_OP = 'DELETE' THEN
    source := format('SELECT %I AS k FROM old_rows', col);
  ELSE
    source := format('SELECT %I AS k FROM old_rows UNION SELECT %I FROM new_rows',
                     col, col);
  END IF;
  EXECUTE format('SELECT count(DISTINCT k), string_agg(DISTINCT k::text, '','') '
                 'FROM (%s) s', source) INTO n, ids;
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

CREATE TRIGGER users_authz_insert AFTER INSERT ON membership.users
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'id');
CREATE TRIGGER users_authz_update AFTER UPDATE ON membership.users
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'id');
CREATE TRIGGER users_authz_delete AFTER DELETE ON membership.users
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'id');

CREATE TRIGGER group_members_authz_insert AFTER INSERT
  ON membership.group_members
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'user_id');
CREATE TRIGGER group_members_authz_update AFTER UPDATE
  ON membership.group_members
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'user_id');
CREATE TRIGGER group_members_authz_delete AFTER DELETE
  ON membership.group_members
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'user_id');

CREATE TRIGGER app_privileges_authz_insert AFTER INSERT
  ON membership.app_privileges
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'user_id');
CREATE TRIGGER app_privileges_authz_update AFTER UPDATE
  ON membership.app_privileges
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'user_id');
CREATE TRIGGER app_privileges_authz_delete AFTER DELETE
  ON membership.app_privileges
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('u', 'user_id');

CREATE TRIGGER groups_authz_insert AFTER INSERT ON membership.groups
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('g', 'id');
CREATE TRIGGER groups_authz_update AFTER UPDATE ON membership.groups
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('g', 'id');
CREATE TRIGGER groups_authz_delete AFTER DELETE ON membership.groups
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('g', 'id');

CREATE TRIGGER apps_authz_insert AFTER INSERT ON membership.apps
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('a', 'id');
CREATE TRIGGER apps_authz_update AFTER UPDATE ON membership.apps
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('a', 'id');
CREATE TRIGGER apps_authz_delete AFTER DELETE ON membership.apps
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('a', 'id');

CREATE TRIGGER workspaces_authz_insert AFTER INSERT ON membership.workspaces
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('w', 'id');
CREATE TRIGGER workspaces_authz_update AFTER UPDATE ON membership.workspaces
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('w', 'id');
CREATE TRIGGER workspaces_authz_delete AFTER DELETE ON membership.workspaces
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change('w', 'id');
