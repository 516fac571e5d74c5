"""Durable store: SQLite readings with group commit and ack cursors, dead letters, gap tracking, hot/warm/cold tiers, late-data recompute."""
