"""Sensor drivers: the bus is passed into each constructor."""
