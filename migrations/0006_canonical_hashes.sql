-- Canonical hashes for reorg-safe checkpoint moves (SPEC §7, issue 8 findings 4-6).

-- recent_blocks (0002) now holds the canonical hash of every block within 256 of the checkpoint
-- (and, briefly, of the blocks a backfill window is about to move it over); a row whose
-- parent_hash is '' records a hash only (a block a window's logs named). Moving the checkpoint
-- over a block removes the queue rows of that height with another hash, and a rollback removes
-- rows by height: both look events up by block.
CREATE INDEX events_by_block ON events (block_number, block_hash);
