"""Uplink task: drains FlashLog as SenML packs over MQTT; deletes only after the gateway's ack."""

import asyncio
from time import ticks_ms, ticks_diff
from micropython import const

from shared import auth, cbor, epoch as _epoch, senml, topics

_LANES = ("alert", "up")  # alerts always drain first
_IDLE_MS = const(20)


_UNIX_TIMES = const(1000000000)  # a body time this large is Unix seconds (written before node seconds)


def decode_body(body):
    """(name, unit, value, t) of a FlashLog record body [t, name, unit, value], t in node seconds; ValueError if bad."""
    r = cbor.loads(body)
    if (not isinstance(r, list) or len(r) != 4 or not isinstance(r[1], str)
            or not isinstance(r[0], (int, float)) or not (r[2] is None or isinstance(r[2], str))
            or not isinstance(r[3], (int, float, str, bytes))):
        raise ValueError("uplink: bad record body")
    t = r[0]
    if t >= _UNIX_TIMES:  # a log written by older firmware: Unix seconds
        t -= senml.NODE_EPOCH
    return r[1], r[2], r[3], t


def _base_time(records):
    t0 = records[0][3]
    return int(t0) if isinstance(t0, (int, float)) else 0


def build_payload(node_id, lane, first_seq, records, key=None, epoch=0):
    """CBOR [first_seq, pack(, tag)(, epoch)] for records (name, unit, value, t in node seconds) with seqs first_seq.."""
    pack = cbor.dumps(senml.build_pack(node_id + "/", _base_time(records), records, senml.NODE_EPOCH))
    return auth.seal_pack(key, node_id, lane, first_seq, pack, epoch)


class Uplink:
    """Publishes pending records, window-limited; resends the same seqs until the gateway acks."""

    def __init__(self, client, store, site, node_id, auth_key=None, min_pack=10, max_pack=50,
                 window=4, linger_ms=2000, ack_timeout_ms=5000, qos=1):
        self.client = client
        self.store = store
        self.node_id = node_id
        self.key = auth_key
        self.epoch = getattr(store, "epoch", 0)  # the log's flash generation (shared/epoch.py)
        self.min_pack = min_pack
        self.max_pack = max_pack
        self.window = window  # messages per lane published but not yet acked by the gateway
        self.linger_ms = linger_ms
        self.ack_timeout_ms = ack_timeout_ms
        self.qos = qos
        self.topic = {ln: topics.node(site, node_id, ln) for ln in _LANES}
        self.ack_topic = topics.node(site, node_id, "ack")
        # The store's persisted cursor: acks below it after a reboot are old news.
        self.acked = {ln: store.acked(ln) for ln in _LANES}
        self.sent = dict(self.acked)  # highest seq published since the last (re)start
        self.max_sent = dict(self.acked)
        self._out = {ln: [] for ln in _LANES}  # last seq of each message awaiting the gateway's ack
        self._replay = {ln: [] for ln in _LANES}  # boundaries to reuse when resending
        self._progress = {ln: ticks_ms() for ln in _LANES}
        self._first_wait = None
        self._connects = -1
        self._wake = asyncio.Event()
        self.stats = {"msgs": 0, "records": 0, "resent_records": 0, "restarts": 0, "bytes": 0, "acks": 0,
                      "bad_acks": 0, "foreign_acks": 0, "unsigned_acks": 0, "bad_records": 0, "timeouts": 0, "publish_errors": 0, "errors": 0}
        self.last_error = None

    def on_ack(self, topic, payload, retained):
        """MQTT callback for .../ack: {"up": n, "alert": m}; acks never go backwards."""
        try:
            if payload is None:
                raise ValueError("ack over the packet limit")
            m = cbor.loads(payload)
            if not isinstance(m, dict):
                raise ValueError("ack must be a map")
            ep = _epoch.ack_epoch(m)
        except ValueError as e:
            self.stats["bad_acks"] += 1
            self.last_error = "uplink: %s" % (e,)
            return
        try:
            auth.open_ack(self.key, self.node_id, m)  # with a key, only the gateway's signed acks count
        except ValueError as e:
            self.stats["unsigned_acks"] += 1
            self.last_error = "uplink: %s" % (e,)
            return
        if ep != self.epoch:
            # A cursor of another flash generation (sent before this log was erased): applying it
            # would delete readings the gateway never stored.
            self.stats["foreign_acks"] += 1
            return
        for ln in _LANES:
            n = m.get(ln)
            if n is None:
                continue
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                self.stats["bad_acks"] += 1
                continue
            # Never accept an ack for something we did not send in this boot.
            n = min(n, self.max_sent[ln])
            if n > self.acked[ln]:
                self.store.ack_upto(ln, n)
                self.acked[ln] = n
                self._progress[ln] = ticks_ms()
                if n > self.sent[ln]:
                    self.sent[ln] = n
                for out in (self._out[ln], self._replay[ln]):
                    while out and out[0] <= n:
                        out.pop(0)
                self.stats["acks"] += 1
        self._wake.set()

    def _rewind(self):
        # Restart from the gateway's cursor: the same seqs go out again (it de-duplicates).
        for ln in _LANES:
            if self.sent[ln] > self.acked[ln]:
                # A lane restart: the one event that sends a lower seq after a higher one.
                self.stats["restarts"] += 1
                self.stats["resent_records"] += self.sent[ln] - self.acked[ln]
            self.sent[ln] = self.acked[ln]
            # Resend with the old message boundaries: build_pack groups records by name, so the
            # gateway's position->seq mapping only matches a stored copy if the pack is identical.
            old = [x for x in self._out[ln] if x > self.acked[ln]]
            top = old[-1] if old else self.acked[ln]
            self._replay[ln] = old + [x for x in self._replay[ln] if x > top]
            self._out[ln] = []
            self._progress[ln] = ticks_ms()

    def _batch(self, lane, limit):
        # Records after self.sent, contiguous in seq.
        rows = self.store.pending(lane, limit, self.sent[lane])
        recs = []
        first = 0
        for seq, body in rows:
            if seq <= self.sent[lane]:
                continue
            if recs and seq != first + len(recs):
                break
            try:
                rec = decode_body(body)
            except ValueError:
                # Keep the seq slot so the gateway's contiguous ack can pass it.
                self.stats["bad_records"] += 1
                rec = (senml.BAD_RECORD, None, bytes(body), recs[-1][3] if recs else 0)
            if not recs:
                first = seq
            recs.append(rec)
            if len(recs) >= limit:
                break
        if recs:
            # The gateway maps records to seqs by time order: end the pack where that would break.
            del recs[senml.seq_prefix(recs, _base_time(recs)):]
        return first, recs

    async def _send_lane(self, lane):
        now = ticks_ms()
        if self._out[lane] and ticks_diff(now, self._progress[lane]) >= self.ack_timeout_ms:
            # The broker may have dropped a message silently (max_queued_messages): go again.
            self.stats["timeouts"] += 1
            self._rewind()
        if len(self._out[lane]) >= self.window:
            return False
        replay = self._replay[lane]
        while replay and replay[0] <= self.sent[lane]:
            replay.pop(0)
        if replay:
            limit = replay[0] - self.sent[lane]
        elif lane == "up":
            backlog = self.store.depth(lane) - (self.sent[lane] - self.acked[lane])
            if backlog <= 0:
                return False
            # Linger for a fuller pack unless the backlog already fills one.
            if backlog < self.min_pack:
                if self._first_wait is None:
                    self._first_wait = now
                if ticks_diff(now, self._first_wait) < self.linger_ms:
                    return False
            limit = self.max_pack
        else:
            limit = 1
        first, recs = self._batch(lane, limit)
        if not recs:
            return False
        payload = build_payload(self.node_id, lane, first, recs, self.key, self.epoch)
        await self.client.publish(self.topic[lane], payload, self.qos)
        if lane == "up":
            self._first_wait = None
        if not self._out[lane]:
            self._progress[lane] = ticks_ms()
        self.sent[lane] = first + len(recs) - 1
        self._out[lane].append(self.sent[lane])
        if self.sent[lane] > self.max_sent[lane]:
            self.max_sent[lane] = self.sent[lane]
        self.stats["msgs"] += 1
        self.stats["records"] += len(recs)
        self.stats["bytes"] += len(payload)
        return True

    def state_fields(self):
        """Extra `state` fields: oldest pending seq per lane (lets the gateway skip policy drops)."""
        oldest = {}
        for ln in _LANES:
            rows = self.store.pending(ln, 1)
            oldest[ln] = rows[0][0] if rows else self.store.durable_seq(ln) + 1
        return {"oldest": oldest, "epoch": self.epoch, "uplink": {"msgs": self.stats["msgs"], "resent": self.stats["resent_records"],
                                             "timeouts": self.stats["timeouts"]}}

    def kick(self):
        """Wake the task now (e.g. right after an alert was appended)."""
        self._wake.set()

    def backlog(self):
        """Records not yet acked, per lane."""
        return {ln: self.store.depth(ln) for ln in _LANES}

    async def run(self):
        """Forever: wait for the link, publish alerts then readings within the window."""
        await self.client.subscribe(self.ack_topic, 1, self.on_ack)
        while True:
            if not self.client.connected:
                await asyncio.sleep_ms(50)
                continue
            if self.client.stats["connects"] != self._connects:
                self._connects = self.client.stats["connects"]
                self._rewind()
            sent = False
            try:
                for ln in _LANES:
                    if await self._send_lane(ln):
                        sent = True
                        break
            except OSError as e:
                self.stats["publish_errors"] += 1
                self.last_error = "uplink: %r" % (e,)
                await asyncio.sleep_ms(50)
                continue
            except Exception as e:  # a bug or bad data must not end the task; retry later
                self.stats["errors"] += 1
                self.last_error = "uplink: %r" % (e,)
                await asyncio.sleep_ms(1000)
                continue
            if not sent:
                self._wake.clear()
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), _IDLE_MS * 5)
                except asyncio.TimeoutError:
                    pass


def reconfigure(client, up, cfg):
    """Apply cfg's broker and `uplink` settings to a running client and uplink (no reboot needed).

    A changed broker address, credentials or keepalive drops the connection; run() reconnects.
    cfg has passed shared.config.validate_config (which checks the `uplink` section).
    """
    m, u = cfg["mqtt"], cfg.get("uplink", {})
    new = (m["host"], m["port"], m["keepalive"], m.get("user"), m.get("password"))
    if new != (client.host, client.port, client.keepalive_s, client.user, client.password):
        client.host, client.port, client.keepalive_s, client.user, client.password = new
        client.drop()
    client.retry_ms = u.get("retry_ms", client.retry_ms)
    client.backoff_min_ms = u.get("backoff_min_ms", client.backoff_min_ms)
    client.backoff_max_ms = max(client.backoff_min_ms, u.get("backoff_max_ms", client.backoff_max_ms))
    if "max_packet" in u and u["max_packet"] != client.rx.max_packet:
        client.set_max_packet(u["max_packet"])
    for k in ("min_pack", "max_pack", "window", "linger_ms", "ack_timeout_ms"):
        if k in u:
            setattr(up, k, u[k])
