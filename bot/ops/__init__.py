"""Operations: alert conditions, the alert sink (webhook) and the heartbeat (SPEC §10)."""
