-- Memberships and app privileges without foreign keys.
--
-- Each FK cost one index probe and one row lock per inserted row (and
-- V005's deferred user check a second pass): for an import's batch of
-- 1,000 guests with 2 groups and 1 app, 6,000 checks, about a quarter of
-- the batch's database time. MembershipStore keeps what they guaranteed,
-- once per statement (storage/store.cc, LockParents / DeleteChildren):
-- - a writer locks the group, app and user rows it attaches rows to FOR
--   KEY SHARE in the same transaction (the lock the FK check took), and
--   checks they belong to the workspace;
-- - a delete of a user, group or app deletes the parent row first and its
--   memberships / privileges after, in one transaction (the cascade).
-- A writer racing a delete either commits first, and its rows are deleted
-- with the rest, or waits for the delete and then finds the parent gone.
-- Deleting the children with their own DELETE fires V003's counter
-- triggers exactly as the cascade did. storage/license_counters_test
-- checks the counters and the absence of orphans after every change.
ALTER TABLE membership.group_members
  DROP CONSTRAINT group_members_group_id_fkey,
  DROP CONSTRAINT group_members_user_id_fkey;
ALTER TABLE membership.app_privileges
  DROP CONSTRAINT app_privileges_app_id_fkey,
  DROP CONSTRAINT app_privileges_user_id_fkey;
