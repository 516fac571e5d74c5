"""[federation] federated learning across gateways: who takes part, keys, aggregation, local round bounds.

Standard library only (rounds, with numpy and onnx, are `fogline.gateway.federation.core`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

AGGREGATORS = ("fedavg", "median", "trimmed_mean")  # fogline.gateway.federation.avg implements each
UPDATE_DTYPES = {"float32": "<f4", "float16": "<f2"}  # delta encoding -> numpy dtype code on the wire


@dataclass
class FederationConfig:
    """[federation] federated learning across gateways: only weight deltas leave the gateway."""
    enabled: bool = False               # allow `fogline federate --schedule` (on-demand rounds work regardless)
    gateway_id: str = ""                # id in the federation; "" = [site] gateway_id
    key: str = ""                       # this gateway's HMAC key (hex, >= 16 bytes): signs its updates/models
    peer_keys: dict[str, str] = field(default_factory=dict)  # gateway id -> hex key of every other participant
    signing_key: str = ""               # Ed25519 private key (PEM file): signs instead of `key`
    peer_public_keys: dict[str, str] = field(default_factory=dict)  # gateway id -> Ed25519 public key (PEM file)
    coordinator: str = ""               # id of the aggregating participant ("" = this gateway coordinates)
    member: bool = True                 # train locally and send updates
    broker: str = ""                    # exchange broker host:port; "" = the [cloud] broker
    topic_prefix: str = "fogline/fed"
    aggregator: str = "trimmed_mean"    # fedavg | median | trimmed_mean
    trim: float = 0.2                   # trimmed_mean: share cut at each end per coordinate
    max_norm_ratio: float = 5.0         # drop updates with delta norm > this x median (3+ updates); 0 = off
    min_updates: int = 2                # aggregate once this many updates arrived (all expected: earlier)
    expected_updates: int = 0           # aggregate as soon as this many arrived; 0 = wait for the timeout
    round_timeout_s: float = 120.0
    max_steps: int = 200                # local round bounds: optimiser steps,
    max_train_s: float = 30.0           #   wall seconds,
    max_samples: int = 20000            #   newest windows used (memory cap)
    update_dtype: str = "float32"       # delta encoding: float32, or float16 (half the update bytes)
    batch: int = 64
    lr: float = 0.0005                  # Adam step; small, so fine-tuning the shipped model does not forget
    history_hours: float = 24.0         # local windows from the store this far back
    holdout_ratio: float = 0.25         # share of local windows held back for the adoption gate
    adopt_margin: float = 0.02          # adopt unless the candidate scores worse by more than this
    schedule_s: float = 0.0             # `fogline federate --schedule`: a round every this many seconds; 0 = on demand
    state_dir: str = "federation"       # global model lineage (relative to site.data_dir)

    def validate(self) -> None:
        """ValueError naming the bad field (called by fogline.gateway.config when loading)."""
        if self.update_dtype not in UPDATE_DTYPES:
            raise ValueError(f"federation.update_dtype: one of {', '.join(UPDATE_DTYPES)}")
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"federation.aggregator: one of {', '.join(AGGREGATORS)}")
        if not 0 <= self.trim < 0.5 or not 0 <= self.holdout_ratio < 1 or self.adopt_margin < 0:
            raise ValueError("federation.trim/holdout_ratio/adopt_margin: "
                             "trim in [0, 0.5), holdout in [0, 1), margin >= 0")
        if self.max_steps < 1 or self.max_train_s <= 0 or self.max_samples < 1 or self.batch < 1 or self.lr <= 0:
            raise ValueError("federation.max_steps/max_train_s/max_samples/batch/lr: must be positive")
        if self.min_updates < 1 or self.round_timeout_s <= 0 or self.schedule_s < 0:
            raise ValueError("federation.min_updates/round_timeout_s/schedule_s: out of range")
