"""The HTTP API, backfill jobs and status page served beside ``/metrics`` (SPEC §10)."""
