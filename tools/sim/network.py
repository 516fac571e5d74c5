"""Simulated `network` for host emulation: WLAN whose link can be switched off.

Outage control (tests, demo scenarios):
    set_link(False) / set_link(True)      drop / restore the simulated AP
    schedule_outage(start_ms, end_ms)     outage window on the machine clock
    link_up(now_ms=None) -> bool

Sockets are the host's real ones; an outage is visible through
WLAN.isconnected()/status(). Firmware must check isconnected() before
opening connections (as on a board, where sockets fail while the link is down).
"""

import time

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_WRONG_PASSWORD = -3
STAT_NO_AP_FOUND = -2
STAT_CONNECT_FAIL = -1
STAT_GOT_IP = 3

_link = True
_outages = []
stats = {"connects": 0, "disconnects": 0}


def _now():
    try:
        import machine
        return machine.now_ms()
    except (ImportError, AttributeError):
        return time.ticks_ms()


def set_link(up):
    """Switch the simulated access point on or off."""
    global _link
    _link = bool(up)


def schedule_outage(start_ms, end_ms):
    """Link down while start_ms <= now < end_ms (machine clock)."""
    _outages.append((start_ms, end_ms))


def clear_outages():
    """Forget scheduled outages and bring the link up."""
    global _link
    del _outages[:]
    _link = True


def link_up(now=None):
    """True when the simulated AP is reachable now."""
    if not _link:
        return False
    if _outages:
        if now is None:
            now = _now()
        for a, b in _outages:
            if a <= now < b:
                return False
    return True


def hostname(name=None):
    return "fogline-sim"


class WLAN:
    """Station or AP interface."""

    IF_STA = STA_IF
    IF_AP = AP_IF

    def __init__(self, interface=STA_IF):
        self.interface = interface
        self._active = False
        self._ssid = None
        self._want = False
        self._was = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if not on:
            self._want = False

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("WLAN not active")
        self._ssid = ssid
        self._want = True
        stats["connects"] += 1

    def disconnect(self):
        self._want = False
        stats["disconnects"] += 1

    def isconnected(self):
        up = self._active and self._want and link_up()
        self._was = up
        return up

    def status(self, param=None):
        if param == "rssi":
            return -55 if self.isconnected() else -127
        if not self._active or not self._want:
            return STAT_IDLE
        return STAT_GOT_IP if link_up() else STAT_NO_AP_FOUND

    def ifconfig(self, cfg=None):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def ipconfig(self, key=None):
        return "127.0.0.1"

    def config(self, key=None, **kw):
        if key == "mac":
            try:
                import machine
                return machine.unique_id()
            except ImportError:
                return b"\x24\x0a\xc4\x00\x00\x01"
        if key == "ssid" or key == "essid":
            return self._ssid
        return None

    def scan(self):
        return [(b"fogline-sim", b"\x00" * 6, 6, -55, 3, False)] if link_up() else []
