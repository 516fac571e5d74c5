"""Relay to the cloud: disk-backed priority outbox, bandwidth policy, circuit breaker, MQTT/TLS cloud link, store-fed relay feed and backfill."""
