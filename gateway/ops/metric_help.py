"""HELP text of every metric the gateway and the cloud tier export (names without the `fogline_` prefix)."""

from __future__ import annotations

HELP: dict[str, str] = {
    # ingest (MQTT and the commit loop)
    "messages_in": "MQTT messages received, by link",
    "readings_in": "readings offered to the store, by lane",
    "readings_stored": "readings newly committed",
    "readings_refused": "readings refused by validation, by lane",
    "records_refused": "records refused and dead-lettered, by lane",
    "duplicates": "readings already stored (re-deliveries absorbed), by lane",
    "duplicate_messages": "messages whose readings were all already stored, by lane",
    "dead_letters": "records kept as dead letters, by reason",
    "alerts_in": "alerts received from nodes",
    "state_messages": "node state messages received",
    "seq_gaps_skipped": "sequence holes given up on after the gap timeout, by lane",
    "epoch_resets": "node sequence epochs restarted (node lost its flash), by lane",
    "commits": "store transactions committed",
    "commit_errors": "store transactions that failed",
    "commit_loop_errors": "errors caught in the commit loop",
    "commit_seconds_last": "duration of the last store commit (seconds)",
    "acks_sent": "acknowledgements published to nodes",
    "acks_announced": "acknowledgements re-published to every known node when the site broker (re)connects",
    "ack_publish_errors": "acknowledgements that could not be published",
    "ingest_backpressure_waits": "times the MQTT worker pipe was paused because the gateway loop was behind",
    "hook_errors": "errors raised by reading/alert hooks",
    "series": "distinct (node, sensor) series held",
    "devices": "devices known to the registry",
    "node_backlog": "records a node reports still unsent, by node and lane",
    "mqtt_connected": "1 while the gateway is connected to its MQTT broker",
    "mqtt_connects": "MQTT connections established",
    "mqtt_disconnects": "MQTT connections lost",
    "mqtt_connect_failures": "MQTT connection attempts that failed",
    "mqtt_worker_restarts": "MQTT ingest worker processes restarted after dying on their own",
    "uptime_s": "seconds since the gateway started",
    # BLE
    "ble_adverts": "BTHome adverts received",
    "ble_accepted": "BTHome adverts stored",
    "ble_ignored": "BLE adverts that are not BTHome",
    "ble_refused": "BTHome adverts refused, by reason",
    "ble_duplicates": "BTHome adverts already seen (same packet id or counter)",
    "ble_plaintext_refused": "unencrypted adverts from a node that must encrypt",
    "ble_decrypt_failures": "encrypted adverts that failed to decrypt",
    "ble_counter_restarts": "encryption counters that restarted (node rebooted)",
    "ble_counter_save_errors": "failures saving the encryption counters",
    "ble_non_finite": "BTHome values that were NaN or infinite",
    "ble_unknown_refused": "adverts from unprovisioned devices refused",
    "ble_unknown_evicted": "unknown devices evicted from the bounded table",
    "ble_scanner_restarts": "BLE scanner restarts",
    "ble_scanner_start_failures": "BLE scanner starts that failed",
    # windows, aggregation, late data, tiers
    "open_windows": "aggregation windows open",
    "windows_closed": "aggregation windows closed",
    "windows_kept_for_corrections": "closed windows kept for late corrections",
    "windows_reopened": "closed windows reopened by late readings",
    "windows_corrected_from_store": "windows recomputed from the store after late data",
    "window_corrections": "window revisions published",
    "window_reopen_dropped": "late readings too old to reopen their window",
    "window_queue_overflow": "closed windows dropped from a full subscriber queue (oldest first)",
    "windows_not_leased": "windows skipped because another gateway holds the node's lease, by part",
    "windows_not_scored": "windows the inference engine did not score, by why",
    "late_readings": "readings that arrived after their window closed",
    "hot_tier_bytes": "memory used by the hot tier (bytes)",
    # inference
    "inference_window_mismatch": "1 when the model's window differs from the aggregation window",
    "model_version": "version of the model in use, by model",
    # relay to the cloud
    "cloud_connected": "1 while the cloud link is connected",
    "cloud_breaker_state": "cloud circuit breaker: 0 closed, 1 half-open, 2 open",
    "cloud_breaker_opened": "times the cloud circuit breaker opened",
    "cloud_mode": "bandwidth mode: 0 low, 1 middle, 2 high",
    "cloud_kbps": "measured uplink bandwidth (kbit/s)",
    "cloud_bytes": "bytes sent to the cloud, by bandwidth mode",
    "outbox_rows": "rows waiting in the outbox, by lane",
    "outbox_bytes": "bytes waiting in the outbox, by lane",
    # twin, cluster, placement
    "twin_nodes": "nodes by twin status",
    "twin_file_error": "1 while the twin file cannot be read",
    "cluster_live_gateways": "gateways of the cluster seen alive",
    "cluster_leases": "node leases held by this gateway",
    "cluster_primary_nodes": "nodes this gateway is primary for",
    "placement_workloads": "workloads placed, by where they run",
    "placement_moves": "workloads moved between node and gateway",
    # cloud tier
    "cloud_messages": "MQTT messages received",
    "cloud_rows": "rows written (new), by kind",
    "cloud_duplicates": "rows already stored (absorbed re-deliveries), by kind",
    "cloud_dead_letters": "undecodable messages or envelopes stored as dead letters",
    "cloud_batches": "transactions committed",
    "cloud_db_retries": "batches retried after a database error",
    "cloud_alert_latency_s": "delay from an alert's time on the node to its commit in the cloud (seconds)",
    "cloud_http_requests": "query API requests by endpoint and status",
    "cloud_http_unavailable": "query API that could not start (e.g. port in use; ingest goes on)",
    "http_requests": "requests served by the metrics endpoint",
}

# names built from a prefix and a component's own counter key
PREFIX_HELP: tuple[tuple[str, str], ...] = (
    ("tiers_", "tier maintenance"), ("cluster_", "cluster"), ("inference_", "inference engine"),
    ("relay_feed_", "relay feed"), ("relay_", "relay"), ("outbox_", "outbox"),
)


def help_for(name: str) -> str:
    """The HELP text of a metric: its own entry, else one naming the component that exports it."""
    text = HELP.get(name)
    if text is not None:
        return text
    for prefix, part in PREFIX_HELP:
        if name.startswith(prefix):
            return f"{part}: {name[len(prefix):].replace('_', ' ')}"
    return name.replace("_", " ")
