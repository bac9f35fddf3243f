-- The licence check of optimistic grants, inside the counter trigger.
--
-- An optimistic ApplyGrants (MembershipStore::TryApplyGrantsOptimistically)
-- plans against counters read without the workspace lock, writes, and used
-- to read the counters again (now under the lock its writes took) to see
-- whether a concurrent request had used the licences meanwhile: a round
-- trip while holding the lock that every grant of the workspace queues on.
-- The trigger that moves the counters now makes that check itself, when
-- the transaction asks for it (SET LOCAL membership.enforce_licences = on):
-- a statement that raises a workspace's usage past its licence count fails
-- with SQLSTATE GL001, and the optimistic request falls back to the careful
-- path, which words the refusal. The rule is CheckLicenseChange's
-- (services/membership/domain/licenses.cc): over the count AND up.
-- Other writers (SyncUsers, the careful path) do not set it: unchanged.
CREATE OR REPLACE FUNCTION membership.count_licenses() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  enforce boolean :=
    coalesce(current_setting('membership.enforce_licences', true), '') = 'on';
  over bigint := 0;
BEGIN
  IF TG_OP = 'INSERT' THEN
    WITH c AS (
      SELECT workspace_id,
             count(*) FILTER (WHERE license_class = 1) AS members,
             count(*) FILTER (WHERE license_class = 2) AS multi,
             count(*) FILTER (WHERE license_class = 3) AS single
      FROM new_rows WHERE license_class <> 0
      GROUP BY workspace_id),
    u AS (
      UPDATE membership.workspaces w SET
          used_by_members = w.used_by_members + c.members,
          used_by_multi_group_guests = w.used_by_multi_group_guests + c.multi,
          single_group_guests = w.single_group_guests + c.single
        FROM c WHERE w.id = c.workspace_id
        RETURNING w.license_count,
                  w.used_by_members + w.used_by_multi_group_guests AS used,
                  w.single_group_guests AS single,
                  c.members + c.multi AS used_delta, c.single AS single_delta)
    SELECT count(*) INTO over FROM u
      WHERE enforce
        AND ((used > license_count AND used_delta > 0)
             OR (single > license_count AND single_delta > 0));
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
    WITH c AS (
      SELECT workspace_id,
             coalesce(sum(d) FILTER (WHERE license_class = 1), 0) AS members,
             coalesce(sum(d) FILTER (WHERE license_class = 2), 0) AS multi,
             coalesce(sum(d) FILTER (WHERE license_class = 3), 0) AS single
      FROM (SELECT workspace_id, license_class, 1 AS d FROM new_rows
            UNION ALL
            SELECT workspace_id, license_class, -1 FROM old_rows) s
      WHERE license_class <> 0
      GROUP BY workspace_id),
    u AS (
      UPDATE membership.workspaces w SET
          used_by_members = w.used_by_members + c.members,
          used_by_multi_group_guests = w.used_by_multi_group_guests + c.multi,
          single_group_guests = w.single_group_guests + c.single
        FROM c
        WHERE w.id = c.workspace_id
          AND (c.members <> 0 OR c.multi <> 0 OR c.single <> 0)
        RETURNING w.license_count,
                  w.used_by_members + w.used_by_multi_group_guests AS used,
                  w.single_group_guests AS single,
                  c.members + c.multi AS used_delta, c.single AS single_delta)
    SELECT count(*) INTO over FROM u
      WHERE enforce
        AND ((used > license_count AND used_delta > 0)
             OR (single > license_count AND single_delta > 0));
  END IF;
  IF over > 0 THEN
    RAISE EXCEPTION 'a concurrent request used the licences this one needs'
      USING ERRCODE = 'GL001';
  END IF;
  RETURN NULL;
END;
$$;
