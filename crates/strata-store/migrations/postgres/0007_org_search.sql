-- The children list's filters (CONTRACT §2): `externalId` matches `metadata.externalId` exactly,
-- `search` a case-insensitive prefix of the name or of the external id. The store keeps each
-- value beside the row as written by the application (`external_id`, and the lower-cased
-- `name_key` / `external_id_key`), so each filter is one range read of an index under the
-- parent. The keys compare byte by byte (COLLATE "C"), the order the application's prefix
-- ranges assume. Rows older than this migration are filled in by the application when it
-- starts, with the same lower case as new rows.
ALTER TABLE organizations ADD COLUMN name_key TEXT COLLATE "C";
ALTER TABLE organizations ADD COLUMN external_id TEXT;
ALTER TABLE organizations ADD COLUMN external_id_key TEXT COLLATE "C";
CREATE INDEX organizations_by_external_id ON organizations (parent_id, external_id, seq);
CREATE INDEX organizations_by_name_key ON organizations (parent_id, name_key);
CREATE INDEX organizations_by_external_id_key ON organizations (parent_id, external_id_key);

-- Usage reports group a period's ledger entries by time: read them by org and time.
CREATE INDEX credit_events_by_org_time ON credit_events (org_id, created_at);
