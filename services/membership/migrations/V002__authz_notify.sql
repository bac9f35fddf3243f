-- Change notifications for the Check cache: every statement that changes
-- users, workspaces, groups, memberships, apps or privileges sends
-- NOTIFY membership_authz (statement-level triggers, so a 1000-row batch
-- notifies once; notifications are delivered only on commit and need no
-- row lock, so writers do not serialize on them). Each replica LISTENs and
-- drops its Check cache when one arrives, so a suspension or a removed
-- membership bites on every replica within milliseconds.
CREATE FUNCTION membership.notify_authz_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('membership_authz', '');
  RETURN NULL;
END;
$$;

CREATE TRIGGER users_authz_change AFTER INSERT OR UPDATE OR DELETE
  ON membership.users FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change();
CREATE TRIGGER workspaces_authz_change AFTER INSERT OR UPDATE OR DELETE
  ON membership.workspaces FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change();
CREATE TRIGGER groups_authz_change AFTER INSERT OR UPDATE OR DELETE
  ON membership.groups FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change();
CREATE TRIGGER group_members_authz_change AFTER INSERT OR UPDATE OR DELETE
  ON membership.group_members FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change();
CREATE TRIGGER apps_authz_change AFTER INSERT OR UPDATE OR DELETE
  ON membership.apps FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change();
CREATE TRIGGER app_privileges_authz_change AFTER INSERT OR UPDATE OR DELETE
  ON membership.app_privileges FOR EACH STATEMENT
  EXECUTE FUNCTION membership.notify_authz_change();
