"""Getting the chain into the queue: backfill, live subscriptions, reorgs, and `bot run`."""
