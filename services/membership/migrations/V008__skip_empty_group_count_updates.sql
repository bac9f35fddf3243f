-- Do not run the group counter's UPDATE when it has no user to change.
--
-- A new user's memberships are inserted before the user (V005), so the
-- UPDATE of V004's count_user_groups() finds no row on every invite. A
-- statement-level trigger fires even for an UPDATE of no rows, so that
-- empty UPDATE still ran the users' two UPDATE triggers (authorization
-- notice, licence counters), whose empty UPDATE of the workspaces fired
-- the workspace trigger in turn: four trigger calls per invite for
-- nothing. The UPDATE now runs only when one of the changed memberships
-- belongs to an existing user; the counters move exactly as before
-- (license_counters_test recounts after every kind of change).
CREATE OR REPLACE FUNCTION membership.count_user_groups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Users deleted by the same statement (FK cascade) are simply not found.
  IF TG_OP = 'INSERT' THEN
    IF EXISTS (SELECT 1 FROM new_rows n
               JOIN membership.users u ON u.id = n.user_id) THEN
      UPDATE membership.users u SET group_count = u.group_count + c.d
        FROM (SELECT user_id, count(*)::integer AS d FROM new_rows
              GROUP BY user_id) c
        WHERE u.id = c.user_id;
    END IF;
  ELSIF TG_OP = 'DELETE' THEN
    IF EXISTS (SELECT 1 FROM old_rows o
               JOIN membership.users u ON u.id = o.user_id) THEN
      UPDATE membership.users u SET group_count = u.group_count - c.d
        FROM (SELECT user_id, count(*)::integer AS d FROM old_rows
              GROUP BY user_id) c
        WHERE u.id = c.user_id;
    END IF;
  ELSE
    -- Memberships are updated for their role only: the same users before
    -- and after, so no count moves (the UPDATE below would match nothing).
    IF EXISTS (SELECT user_id FROM new_rows
               EXCEPT ALL SELECT user_id FROM old_rows) THEN
      UPDATE membership.users u SET group_count = u.group_count + c.d
        FROM (SELECT user_id, sum(d)::integer AS d
              FROM (SELECT user_id, 1 AS d FROM new_rows
                    UNION ALL SELECT user_id, -1 FROM old_rows) s
              GROUP BY user_id) c
        WHERE u.id = c.user_id AND c.d <> 0;
    END IF;
  END IF;
  RETURN NULL;
END;
$$;
