-- A fill whose event was found below the processed frontier (by a backfill job re-scanning a range
-- a provider once answered with []): booked after later ones, flagged, alerted (SPEC §10).
ALTER TABLE trades ADD COLUMN late INTEGER NOT NULL DEFAULT 0;
