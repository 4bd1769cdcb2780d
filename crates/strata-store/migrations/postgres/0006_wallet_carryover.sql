-- Included credits of an ended period kept only to back in-flight reservations: they can be
-- consumed by those reservations and expire as soon as the reservations no longer need them;
-- they are never spendable. Never more than the included balance or what is reserved.
ALTER TABLE wallets ADD COLUMN included_carryover BIGINT NOT NULL DEFAULT 0 CHECK (included_carryover >= 0);
