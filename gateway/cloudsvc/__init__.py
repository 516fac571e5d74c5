"""The cloud tier: `fogline cloud` consumes the gateways' relay from the cloud broker into PostgreSQL (or SQLite).

Modules: config (TOML sections), rows (messages -> keyed rows), schema (versioned migrations), db_sql (shared
SQL), db_pg / db_sqlite (backends), consumer (shared subscriptions, ack after commit), httpapi (query API),
service (composition), query_client (the gateway side of the query API).
"""
