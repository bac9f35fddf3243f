-- identity: workspaces, users, credentials, invitations, access requests and
-- rate limits. The outbox and idempotency tables come from
-- CommonTablesMigration("identity") (common/outbox.h).

CREATE TABLE identity.workspaces (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  display_name text NOT NULL,
  license_count integer NOT NULL DEFAULT 0,
  members_can_invite_guests boolean NOT NULL DEFAULT true,
  invitation_ttl_seconds bigint NOT NULL DEFAULT 604800,
  allowed_email_domains text[] NOT NULL DEFAULT '{}',
  blocked_email_domains text[] NOT NULL DEFAULT '{}',
  request_access_enabled boolean NOT NULL DEFAULT false,
  version bigint NOT NULL DEFAULT 1,
  create_time timestamptz NOT NULL,
  update_time timestamptz NOT NULL
);
CREATE UNIQUE INDEX workspaces_name_key ON identity.workspaces (lower(name));

CREATE TABLE identity.users (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES identity.workspaces (id),
  username text NOT NULL,
  email text NOT NULL DEFAULT '',
  first_name text NOT NULL DEFAULT '',
  last_name text NOT NULL DEFAULT '',
  kind text NOT NULL,
  status text NOT NULL,
  metadata jsonb,
  access_expire_time timestamptz,
  expiry_reminder_sent boolean NOT NULL DEFAULT false,
  password_hash text,
  version bigint NOT NULL DEFAULT 1,
  create_time timestamptz NOT NULL,
  update_time timestamptz NOT NULL,
  -- Sort / search keys: lower-cased, byte-ordered ("C") so one btree serves
  -- both ORDER BY and prefix range scans (key >= $q AND key < $q || max).
  username_lc text COLLATE "C" GENERATED ALWAYS AS (lower(username)) STORED,
  email_lc text COLLATE "C" GENERATED ALWAYS AS (lower(email)) STORED,
  first_lc text COLLATE "C" GENERATED ALWAYS AS (lower(first_name)) STORED,
  last_lc text COLLATE "C" GENERATED ALWAYS AS (lower(last_name)) STORED,
  name_lc text COLLATE "C" GENERATED ALWAYS AS
    (lower(btrim(first_name || ' ' || last_name))) STORED
);
CREATE UNIQUE INDEX users_workspace_username_key
  ON identity.users (workspace_id, lower(username));
CREATE INDEX users_by_email ON identity.users (workspace_id, email_lc, id);
CREATE INDEX users_by_username ON identity.users (workspace_id, username_lc, id);
CREATE INDEX users_by_name ON identity.users (workspace_id, name_lc, id);
CREATE INDEX users_by_first ON identity.users (workspace_id, first_lc);
CREATE INDEX users_by_last ON identity.users (workspace_id, last_lc);
CREATE INDEX users_by_create ON identity.users (workspace_id, create_time, id);
CREATE INDEX users_admins ON identity.users (workspace_id)
  WHERE kind = 'ADMIN' AND status = 'ACTIVE';
CREATE INDEX users_expiring ON identity.users (access_expire_time)
  WHERE access_expire_time IS NOT NULL AND status IN ('ACTIVE', 'INVITED');

CREATE TABLE identity.invitations (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES identity.workspaces (id),
  user_id uuid NOT NULL REFERENCES identity.users (id),
  inviter_id uuid,
  token_hash text NOT NULL,
  token_generation integer NOT NULL DEFAULT 1,
  state text NOT NULL,
  expire_time timestamptz NOT NULL,
  create_time timestamptz NOT NULL,
  accept_time timestamptz
);
CREATE UNIQUE INDEX invitations_token_hash_key ON identity.invitations (token_hash);
CREATE INDEX invitations_by_workspace
  ON identity.invitations (workspace_id, create_time DESC, id DESC);
CREATE INDEX invitations_by_user ON identity.invitations (user_id);

CREATE TABLE identity.sessions (
  id uuid PRIMARY KEY,
  token_hash text NOT NULL UNIQUE,
  user_id uuid NOT NULL REFERENCES identity.users (id),
  workspace_id uuid NOT NULL,
  create_time timestamptz NOT NULL,
  expire_time timestamptz NOT NULL
);
CREATE INDEX sessions_by_user ON identity.sessions (user_id);

CREATE TABLE identity.api_keys (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES identity.workspaces (id),
  display_name text NOT NULL,
  scopes text[] NOT NULL DEFAULT '{}',
  key_hash text NOT NULL UNIQUE,
  prefix text NOT NULL,
  creator_id uuid,
  create_time timestamptz NOT NULL,
  last_use_time timestamptz
);
CREATE INDEX api_keys_by_workspace
  ON identity.api_keys (workspace_id, create_time DESC, id DESC);

CREATE TABLE identity.access_requests (
  id uuid PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES identity.workspaces (id),
  user_id uuid NOT NULL REFERENCES identity.users (id),
  email text NOT NULL,
  first_name text NOT NULL DEFAULT '',
  last_name text NOT NULL DEFAULT '',
  message text NOT NULL DEFAULT '',
  state text NOT NULL,
  create_time timestamptz NOT NULL,
  decide_time timestamptz
);
CREATE INDEX access_requests_by_workspace
  ON identity.access_requests (workspace_id, create_time DESC, id DESC);
-- One PENDING request per user: a repeat reuses it.
CREATE UNIQUE INDEX access_requests_pending_user
  ON identity.access_requests (user_id) WHERE state = 'PENDING';

-- Fixed-window counters for login and request-access rate limits.
CREATE TABLE identity.rate_limits (
  bucket text PRIMARY KEY,
  window_start timestamptz NOT NULL,
  hits integer NOT NULL
);
