"""Test and bench harness: brokers, PostgreSQL, clouds, sites of virtual nodes, network emulation, hostile clients."""
