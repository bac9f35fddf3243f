-- Per-workspace user counts by kind and status, kept by triggers, so
-- ListUsers' totalSize needs no count(*) over a large workspace. Every path
-- that writes identity.users (handlers, bulk import) is covered.

CREATE TABLE identity.user_counts (
  workspace_id uuid NOT NULL,
  kind text NOT NULL,
  status text NOT NULL,
  n bigint NOT NULL,
  PRIMARY KEY (workspace_id, kind, status)
);

INSERT INTO identity.user_counts (workspace_id, kind, status, n)
SELECT workspace_id, kind, status, count(*) FROM identity.users
GROUP BY workspace_id, kind, status;

CREATE FUNCTION identity.bump_user_count(ws uuid, k text, s text, d bigint)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO identity.user_counts AS c (workspace_id, kind, status, n)
  VALUES (ws, k, s, d)
  ON CONFLICT (workspace_id, kind, status) DO UPDATE SET n = c.n + d;
$$;

CREATE FUNCTION identity.count_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM identity.bump_user_count(NEW.workspace_id, NEW.kind, NEW.status, 1);
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM identity.bump_user_count(OLD.workspace_id, OLD.kind, OLD.status, -1);
  ELSE
    -- Lock the two counter rows in one fixed order so concurrent opposite
    -- transitions (suspend / reactivate) cannot deadlock.
    IF (OLD.kind, OLD.status) < (NEW.kind, NEW.status) THEN
      PERFORM identity.bump_user_count(OLD.workspace_id, OLD.kind, OLD.status, -1);
      PERFORM identity.bump_user_count(NEW.workspace_id, NEW.kind, NEW.status, 1);
    ELSE
      PERFORM identity.bump_user_count(NEW.workspace_id, NEW.kind, NEW.status, 1);
      PERFORM identity.bump_user_count(OLD.workspace_id, OLD.kind, OLD.status, -1);
    END IF;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER users_count_insert_delete
AFTER INSERT OR DELETE ON identity.users
FOR EACH ROW EXECUTE FUNCTION identity.count_users();

CREATE TRIGGER users_count_update
AFTER UPDATE OF kind, status ON identity.users
FOR EACH ROW
WHEN (OLD.kind IS DISTINCT FROM NEW.kind OR OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION identity.count_users();
