-- Backfill jobs started over the HTTP API (SPEC §10). A job re-scans [from_block, to_block] into
-- the queue; its row is its whole status, kept after it ends so a restart still shows it. A row
-- left 'running' by a process that died is marked 'interrupted' when the next one starts.
CREATE TABLE backfill_jobs (
    job_id       INTEGER PRIMARY KEY,
    state        TEXT    NOT NULL
                 CHECK (state IN ('running', 'done', 'failed', 'cancelled', 'interrupted')),
    from_block   INTEGER NOT NULL CHECK (from_block >= 0),
    to_block     INTEGER NOT NULL CHECK (to_block >= from_block),
    blocks_done  INTEGER NOT NULL DEFAULT 0,
    events_found INTEGER NOT NULL DEFAULT 0,
    events_added INTEGER NOT NULL DEFAULT 0,
    started_at   TEXT    NOT NULL,
    finished_at  TEXT,
    error        TEXT
);
CREATE INDEX backfill_jobs_by_state ON backfill_jobs (state);
