"""Helpers for the gateway ingest tests: a simulated node publisher and gateway configs."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from fogline.gateway import config
from fogline.shared import cbor, senml, topics

SITE = "site1"


def gw_config(tmp_path: Path, port: int, **sections: dict[str, Any]) -> config.Config:
    """Config for a test gateway on broker port with data under tmp_path/data."""
    raw: dict[str, Any] = {"site": {"id": SITE, "data_dir": str(tmp_path / "data")},
                           "mqtt": {"port": port, "client_id": f"gw-test-{port}"},
                           "metrics": {"snapshot_s": 1.0}}
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return config.from_dict(raw)


def payload(node: str, first_seq: int, values: list[float], t0: float | None = None, metric: str = "temp",
            unit: str = "Cel", dt: float = 1.0) -> bytes:
    """`[first_seq, senml_pack]` with one reading per value, dt seconds apart."""
    t0 = time.time() - 60 if t0 is None else t0
    recs = [(metric, unit, v, t0 + i * dt) for i, v in enumerate(values)]
    return cbor.dumps([first_seq, senml.build_pack(node + "/", t0, recs)])


class SimNode:
    """A node simulated by a paho client: publishes up/alert, records acks like firmware would."""

    def __init__(self, port: int, node: str, site: str = SITE):
        self.node, self.site = node, site
        self.acks: list[dict[str, int]] = []
        self.high = {"up": 0, "alert": 0}
        self.got_ack = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-{node}-{port}")
        self.c.on_message = self._on_msg
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topics.node(site, node, "ack"), 1)
        self.c.loop_start()
        time.sleep(0.1)

    def _on_msg(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        a = cbor2.loads(m.payload)
        with self.got_ack:
            self.acks.append(a)
            for k, v in a.items():
                if k in self.high:  # lanes ("e" and "tag" are the epoch and the signature)
                    self.high[k] = max(self.high[k], v)
            self.got_ack.notify_all()

    def send(self, lane: str, data: bytes, qos: int = 1) -> None:
        self.c.publish(topics.node(self.site, self.node, lane), data, qos=qos).wait_for_publish(10)

    def up(self, first_seq: int, values: list[float], **kw: Any) -> bytes:
        data = payload(self.node, first_seq, values, **kw)
        self.send("up", data)
        return data

    def wait_ack(self, lane: str, seq: int, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        with self.got_ack:
            while self.high[lane] < seq:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.got_ack.wait(left)
        return True

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def db_rows(data_dir: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """Query the gateway's ingest database read-only."""
    con = sqlite3.connect(f"file:{data_dir / 'ingest.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def stored_seqs(data_dir: Path, node: str, lane: int = 0) -> list[int]:
    return [r[0] for r in db_rows(data_dir, "SELECT r.seq FROM readings r JOIN nodes n ON n.nid=r.nid "
                                            "WHERE n.name=? AND r.lane=? ORDER BY r.seq", (node, lane))]


def dead_letters(data_dir: Path) -> list[tuple[str, str, str]]:
    return db_rows(data_dir, "SELECT reason, source, detail FROM dead_letters ORDER BY id")


async def until(pred: Any, timeout: float = 60.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(step)
    return bool(pred())


class GatewayThread:
    """A Gateway running on its own event loop in a thread, so tests can block on MQTT freely."""

    def __init__(self, cfg: config.Config, **kw: Any):
        from fogline.gateway.app import Gateway
        self.loop = asyncio.new_event_loop()
        self.gw = Gateway(cfg, **kw)
        self.t = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.t.start()

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "GatewayThread":
        self.call(self.gw.start())
        assert self.call(self.gw.wait_connected(10)), "gateway did not connect"
        return self

    def flush(self, timeout: float = 300.0) -> None:
        """Wait until everything received is committed and acked (a loaded host may take long: a deadline, not a bound)."""
        assert self.call(self.gw.flush(timeout), timeout + 10), f"gateway did not flush within {timeout} s"

    def stop(self) -> None:
        try:
            self.call(self.gw.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.t.join(10)
            self.loop.close()

    def __enter__(self) -> "GatewayThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_for(pred: Any, timeout: float = 60.0, step: float = 0.02) -> bool:
    """pred() came true within timeout s: generous, a loaded host is slow, not wrong (it returns at once)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def shared_ref_bomb(levels: int = 5, width: int = 20) -> bytes:
    """CBOR array of `levels` shareables (tag 28), each `width` refs (tag 29) to the one before: width**levels leaves.

    Shallow enough for cbor2's max_depth of 8; 5 levels of 20 are 260 bytes and 168,000 leaves."""
    b = bytearray([0x98, levels, 0xD8, 0x1C, 0x81, 0x01])
    for i in range(1, levels):
        ref = bytes([0xD8, 0x1D]) + cbor2.dumps(i - 1)
        b += bytes([0xD8, 0x1C, 0x98, width]) + ref * width
    return bytes(b)
