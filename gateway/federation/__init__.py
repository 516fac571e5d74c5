"""Federated learning across gateways: local training, averaging, coordination, wire format and bus."""
