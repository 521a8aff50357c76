-- Initial schema (SPEC §4, §5, §8). Amounts are canonical decimal TEXT (bot.core.amounts.to_text),
-- added in Python Decimal: never SUM() them in SQL (SQLite would return a float).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- The ordered event queue: raw orderbook logs, decoded only by the drain.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    tx_hash      TEXT    NOT NULL,
    log_index    INTEGER NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   TEXT    NOT NULL,
    tx_index     INTEGER NOT NULL,
    address      TEXT    NOT NULL,
    topic0       TEXT    NOT NULL,
    data         BLOB    NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'processed', 'removed', 'failed', 'skipped')),
    inclusion    INTEGER NOT NULL DEFAULT 0,   -- times the row was revived after a reorg (§7)
    is_ours      INTEGER,                      -- 1 / 0 once the owner was read; NULL = unknown
    reason       TEXT,                         -- why it failed or was skipped
    attempts     INTEGER NOT NULL DEFAULT 0,   -- failed processing attempts
    enqueued_at  TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    UNIQUE (tx_hash, log_index)
);
CREATE INDEX events_by_status_order ON events (status, block_number, log_index);

-- A (tx_hash, log_index) delivered again with another block hash, or with removed=true: a reorg
-- signal kept for the reorg handling (§7) instead of being dropped silently.
CREATE TABLE event_sightings (
    id           INTEGER PRIMARY KEY,
    tx_hash      TEXT    NOT NULL,
    log_index    INTEGER NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   TEXT    NOT NULL,
    removed      INTEGER NOT NULL,
    seen_at      TEXT    NOT NULL,
    UNIQUE (tx_hash, log_index, block_hash, removed)
);

CREATE TABLE checkpoint (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    block_number INTEGER NOT NULL,
    block_hash   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);

CREATE TABLE tokens (
    address    TEXT PRIMARY KEY,   -- checksummed
    symbol     TEXT    NOT NULL,
    decimals   INTEGER NOT NULL,
    fetched_at TEXT    NOT NULL
) WITHOUT ROWID;

CREATE TABLE trades (
    id                INTEGER PRIMARY KEY,
    event_id          INTEGER REFERENCES events (id),
    tx_hash           TEXT    NOT NULL,
    log_index         INTEGER NOT NULL,
    side              TEXT    NOT NULL CHECK (side IN ('alice', 'bob', 'take')),
    inclusion         INTEGER NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('fill', 'compensation')),
    block_number      INTEGER NOT NULL,
    block_hash        TEXT    NOT NULL,
    ticker            TEXT    NOT NULL,
    shares            TEXT    NOT NULL,
    direction         TEXT    NOT NULL CHECK (direction IN ('BUY', 'SELL')),
    price_usdc        TEXT    NOT NULL,
    usdc_amount       TEXT    NOT NULL,
    equity_token      TEXT    NOT NULL,
    stable_token      TEXT    NOT NULL,
    reverses_trade_id INTEGER REFERENCES trades (id),
    created_at        TEXT    NOT NULL,
    UNIQUE (tx_hash, log_index, side, inclusion, kind)
);
CREATE INDEX trades_by_ticker ON trades (ticker, id);

CREATE TABLE skipped_fills (
    id         INTEGER PRIMARY KEY,
    event_id   INTEGER REFERENCES events (id),
    tx_hash    TEXT    NOT NULL,
    log_index  INTEGER NOT NULL,
    side       TEXT    NOT NULL,
    inclusion  INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    UNIQUE (tx_hash, log_index, side, inclusion)
);

-- A token whose decimals() differs from the IO's decimals (the IO wins; status flags it).
CREATE TABLE decimals_mismatches (
    id         INTEGER PRIMARY KEY,
    event_id   INTEGER REFERENCES events (id),
    token      TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    UNIQUE (event_id, token, detail)
);

CREATE TABLE positions (
    ticker                 TEXT PRIMARY KEY,
    onchain_net            TEXT    NOT NULL,
    hedged                 TEXT    NOT NULL,
    in_flight              TEXT    NOT NULL,
    consecutive_rejections INTEGER NOT NULL DEFAULT 0,
    parked                 INTEGER NOT NULL DEFAULT 0,
    updated_at             TEXT    NOT NULL
) WITHOUT ROWID;

-- One lot per fill that opened quantity; lot id == trade id.
CREATE TABLE lots (
    trade_id   INTEGER PRIMARY KEY REFERENCES trades (id),
    ticker     TEXT    NOT NULL,
    direction  TEXT    NOT NULL CHECK (direction IN ('BUY', 'SELL')),
    size       TEXT    NOT NULL,
    price_usdc TEXT    NOT NULL,
    closed     TEXT    NOT NULL,
    linked     TEXT    NOT NULL,
    is_open    INTEGER NOT NULL   -- size - closed - linked > 0, computed in Python
);
CREATE INDEX lots_open ON lots (is_open, ticker, trade_id);

CREATE TABLE executions (
    id              INTEGER PRIMARY KEY,
    ticker          TEXT    NOT NULL,
    direction       TEXT    NOT NULL CHECK (direction IN ('BUY', 'SELL')),
    shares          INTEGER NOT NULL CHECK (shares >= 1),
    client_order_id TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL CHECK (status IN ('PENDING', 'SUBMITTED', 'FILLED', 'FAILED')),
    broker_order_id TEXT,
    filled_shares   TEXT    NOT NULL,
    avg_price       TEXT,
    reason          TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX executions_by_status ON executions (status, id);

CREATE TABLE execution_lots (
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    lot_id       INTEGER NOT NULL REFERENCES lots (trade_id),
    shares       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (execution_id, lot_id)
) WITHOUT ROWID;

-- Events that need attention (failed, or re-queued after failing): read at every drain batch to
-- know whether executions are paused, without scanning the pending backlog.
CREATE INDEX events_attention ON events (id)
    WHERE status = 'failed' OR (status = 'pending' AND attempts > 0);
