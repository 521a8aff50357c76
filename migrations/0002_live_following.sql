-- Live following and reorgs (SPEC §7).

-- A processed event whose block left the canonical chain: the drain books a compensating trade
-- for each of its fill trades that has none yet, then clears the flag (in one transaction).
ALTER TABLE events ADD COLUMN compensate INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_to_compensate ON events (compensate) WHERE compensate = 1;

-- The canonical headers the checkpoint moved over (the last ~1024): a new head's parent hash,
-- and the walk back to a fork point, are checked against them.
CREATE TABLE recent_blocks (
    number      INTEGER PRIMARY KEY,
    hash        TEXT NOT NULL,
    parent_hash TEXT NOT NULL
);

-- Live messages that could not be parsed: kept with the reason, never dropped silently.
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    received_at TEXT NOT NULL
);
