-- A real broker (SPEC §4, §5).

-- Executions of fractional size: shares become canonical decimal TEXT. `kind` is 'hedge' (an
-- order) or 'baseline' (an earlier hedge found at the broker, booked by `bot baseline
-- --as-hedged`: no order). `unknown_at`: the first attempt with an unknown outcome (after it,
-- only the broker's record ends the execution); `not_found_at`: since when lookups keep
-- answering "not found" (FAILED only after 5 minutes of that and the order list not showing it).
CREATE TABLE executions_v2 (
    id              INTEGER PRIMARY KEY,
    ticker          TEXT    NOT NULL,
    direction       TEXT    NOT NULL CHECK (direction IN ('BUY', 'SELL')),
    shares          TEXT    NOT NULL,
    client_order_id TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL CHECK (status IN ('PENDING', 'SUBMITTED', 'FILLED', 'FAILED')),
    broker_order_id TEXT,
    filled_shares   TEXT    NOT NULL,
    avg_price       TEXT,
    reason          TEXT,
    kind            TEXT    NOT NULL DEFAULT 'hedge' CHECK (kind IN ('hedge', 'baseline')),
    unknown_at      TEXT,
    not_found_at    TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
INSERT INTO executions_v2 (id, ticker, direction, shares, client_order_id, status,
                           broker_order_id, filled_shares, avg_price, reason, created_at, updated_at)
    SELECT id, ticker, direction, CAST(shares AS TEXT), client_order_id, status, broker_order_id,
           filled_shares, avg_price, reason, created_at, updated_at
    FROM executions;
-- execution_lots references executions: rebuild it too, so no foreign key ever dangles.
CREATE TABLE execution_lots_v2 (
    execution_id INTEGER NOT NULL REFERENCES executions_v2 (id),
    lot_id       INTEGER NOT NULL REFERENCES lots (trade_id),
    shares       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (execution_id, lot_id)
) WITHOUT ROWID;
INSERT INTO execution_lots_v2 (execution_id, lot_id, shares, seq)
    SELECT execution_id, lot_id, shares, seq FROM execution_lots;
DROP TABLE execution_lots;
DROP TABLE executions;
ALTER TABLE executions_v2 RENAME TO executions;
ALTER TABLE execution_lots_v2 RENAME TO execution_lots;
CREATE INDEX executions_by_status ON executions (status, id);

-- The broker this database hedges with (like the chain meta): another one is refused.
CREATE TABLE broker_meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    kind       TEXT NOT NULL,
    host       TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Per-ticker broker state. `awaiting_baseline`: a new database found a position or `bot-…`
-- orders at the broker for this ticker; orders wait for `bot baseline`. `baseline_request` /
-- `accept_drift_request` are marks the CLI writes and the running bot acts on.
CREATE TABLE ticker_broker (
    ticker                 TEXT PRIMARY KEY,
    awaiting_baseline      TEXT,
    baseline_request       TEXT CHECK (baseline_request IN ('as-hedged', 'as-outside')),
    baseline_shares        TEXT NOT NULL DEFAULT '0',
    accept_drift_request   INTEGER NOT NULL DEFAULT 0,
    broker_position_shares TEXT,
    drift_shares           TEXT,
    drift_checks           INTEGER NOT NULL DEFAULT 0,
    rejected_until         TEXT,
    rejection_backoff_s    REAL,
    updated_at             TEXT NOT NULL
);

-- What `run` last learned from the broker, for `status` (which makes no network call).
CREATE TABLE broker_runtime (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
