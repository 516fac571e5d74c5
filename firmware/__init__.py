"""Fogline node firmware (MicroPython)."""
