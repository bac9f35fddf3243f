-- membership schema: copies of identity's users and workspace settings,
-- apps, groups, group memberships and app privileges.
-- Enum columns hold the proto enum numbers (kind: 1 admin, 2 member,
-- 3 guest; status: 1 requested .. 6 archived; visibility: 1 open,
-- 2 private, 3 secret; role: 1 member, 2 group admin; privilege: 1 guest,
-- 2 viewer, 3 editor).

CREATE TABLE membership.workspaces (
  id uuid PRIMARY KEY,
  license_count integer NOT NULL CHECK (license_count >= 0),
  members_can_invite_guests boolean NOT NULL DEFAULT true,
  -- Identity's version of the workspace; older syncs are ignored.
  version bigint NOT NULL,
  update_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE membership.users (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL,
  username text NOT NULL,
  email text NOT NULL DEFAULT '',
  first_name text NOT NULL DEFAULT '',
  last_name text NOT NULL DEFAULT '',
  kind smallint NOT NULL CHECK (kind BETWEEN 1 AND 3),
  status smallint NOT NULL CHECK (status BETWEEN 1 AND 6),
  access_expire_time timestamptz,
  create_time timestamptz NOT NULL DEFAULT now(),
  -- Identity's version of the user; older syncs are ignored.
  version bigint NOT NULL,
  -- Sort / search keys exactly as identity's ListUsers defines them:
  -- lower-cased, byte-ordered ("C"), so one btree serves ORDER BY, keyset
  -- paging and prefix range scans (key >= q AND key < q || max).
  username_lc text COLLATE "C" GENERATED ALWAYS AS (lower(username)) STORED,
  email_lc text COLLATE "C" GENERATED ALWAYS AS (lower(email)) STORED,
  first_lc text COLLATE "C" GENERATED ALWAYS AS (lower(first_name)) STORED,
  last_lc text COLLATE "C" GENERATED ALWAYS AS (lower(last_name)) STORED,
  name_lc text COLLATE "C" GENERATED ALWAYS AS
    (lower(btrim(first_name || ' ' || last_name))) STORED
);

-- ListAppAccess / ListDirectory / ListGroupMembers: keyset paging per
-- order within a workspace, and prefix search on each searchable column.
CREATE INDEX users_by_email ON membership.users (workspace_id, email_lc, id);
CREATE INDEX users_by_name ON membership.users (workspace_id, name_lc, id);
CREATE INDEX users_by_create ON membership.users (workspace_id, create_time, id);
CREATE INDEX users_by_username
  ON membership.users (workspace_id, username_lc, id);
CREATE INDEX users_by_first ON membership.users (workspace_id, first_lc);
CREATE INDEX users_by_last ON membership.users (workspace_id, last_lc);
-- Licence accounting scans a workspace's users by kind.
CREATE INDEX users_ws_kind_idx ON membership.users (workspace_id, kind, status);

CREATE TABLE membership.apps (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES membership.workspaces (id),
  slug text NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
  name text NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, slug)
);

CREATE TABLE membership.groups (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES membership.workspaces (id),
  name text NOT NULL,
  description text NOT NULL DEFAULT '',
  visibility smallint NOT NULL CHECK (visibility BETWEEN 1 AND 3),
  members_can_invite boolean NOT NULL DEFAULT false,
  members_can_publish boolean NOT NULL DEFAULT true,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX groups_ws_name_idx
  ON membership.groups (workspace_id, lower(name));
CREATE INDEX groups_ws_order_idx
  ON membership.groups (workspace_id, lower(name), id);

CREATE TABLE membership.group_members (
  group_id uuid NOT NULL REFERENCES membership.groups (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES membership.users (id) ON DELETE CASCADE,
  role smallint NOT NULL DEFAULT 1 CHECK (role BETWEEN 1 AND 2),
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, user_id)
);
-- Check (user, group) uses the primary key; "groups of a user", shared
-- groups and licence counts use this one.
CREATE INDEX group_members_user_idx
  ON membership.group_members (user_id, group_id);

CREATE TABLE membership.app_privileges (
  app_id uuid NOT NULL REFERENCES membership.apps (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES membership.users (id) ON DELETE CASCADE,
  privilege smallint NOT NULL CHECK (privilege BETWEEN 1 AND 3),
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (app_id, user_id)
);
CREATE INDEX app_privileges_user_idx
  ON membership.app_privileges (user_id, app_id);
