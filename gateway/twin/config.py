"""[twin] where the desired node configs come from and how they are pushed (the twin is `fogline.gateway.twin.core`)."""

from __future__ import annotations

from dataclasses import dataclass

from fogline.shared import config as node_config


@dataclass
class TwinConfig:
    """[twin] desired node configs (device twin)."""

    file: str = ""  # TOML file of desired configs; "" = twin off
    poll_s: float = 2.0  # how often the file's mtime/size is checked
    state_file: str = ""  # published versions; "" = <site.data_dir>/twin_state.json
    sign: bool = True  # seal pushes with the node's auth key when one is known (shared/auth.py)
    max_push_bytes: int = node_config.MAX_PUSH_BYTES  # larger pushes are refused here: a node would reject them
    accept_cloud: bool = False  # also take whole desired documents (CBOR map shaped like the file) from
                                # fogline/<site>/twin on the cloud link; the latest document (file or cloud) wins

    def validate(self) -> None:
        if self.poll_s <= 0:
            raise ValueError("twin.poll_s: must be > 0")
        if self.max_push_bytes < 64:
            raise ValueError("twin.max_push_bytes: must be >= 64")
