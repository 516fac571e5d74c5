"""Ingest: MQTT (in-process or worker process) and BLE uplinks validated into readings, device registry, node epochs, pack signatures."""
