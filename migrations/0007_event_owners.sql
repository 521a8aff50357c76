-- The order owner(s) of each queued log, read once when the log is stored (issue 9), so a drain
-- pass selects only the logs that may be ours and marks every other one processed in one UPDATE
-- instead of reading each back.
--
-- owners: the lowercase 0x addresses, comma-separated: one for TakeOrderV2, alice's then bob's
-- for ClearV2, '' for AfterClear (it names no order). NULL: not read at store time (a row queued
-- before this migration, or a head the owner check could not read): the drain reads the row and
-- checks it itself, so such a row is never marked without a look.
ALTER TABLE events ADD COLUMN owners TEXT;

-- Rows of other owners are stored processed (bot.store.queue), so the processed frontier of
-- SPEC §10 (an event of ours found below it is booked late) is the highest block of a processed
-- event of ours: where booking it now would reorder our FIFO lots. Kept O(1) per drain pass.
CREATE INDEX events_ours_processed ON events (block_number)
    WHERE status = 'processed' AND is_ours = 1;
