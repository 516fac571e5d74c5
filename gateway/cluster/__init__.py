"""Multi-gateway sites: membership view, relay leases, failover takeover, the MQTT side of the cluster."""
