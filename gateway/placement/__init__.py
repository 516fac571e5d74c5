"""Placement of model fragments between node and gateway: host health, scoring, rollout."""
