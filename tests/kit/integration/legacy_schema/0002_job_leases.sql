-- Overlap guard for scheduled jobs that works through a transaction pooler (no session advisory locks):
-- a run takes the lease with one atomic upsert that only succeeds when the previous lease has lapsed, and
-- gives it back when done. A crashed run blocks others only until locked_until.
CREATE TABLE IF NOT EXISTS job_leases (
    name         text        PRIMARY KEY,
    holder       text        NOT NULL,
    locked_until timestamptz NOT NULL
);
