"""MicroPython `network.WLAN` subset on CircuitPython's wifi.radio (registered as `network`).

MicroPython's station keeps reconnecting by itself; CircuitPython's connect() is one
blocking attempt. isconnected() therefore retries the last credentials, at most every
RETRY_S seconds and with a short timeout, so a lost AP comes back without blocking
sensing for long (the sampler's watchdog is at least 2 sample periods).
"""

import time

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_NO_AP_FOUND = -2
STAT_GOT_IP = 3
RETRY_S = 15
CONNECT_TIMEOUT_S = 3

_creds = [None]  # (ssid, password) of the last connect()
_last_try = [None]
last_error = [None]


def _radio():
    import wifi
    return wifi.radio


class WLAN:
    """The station interface."""

    def __init__(self, interface=STA_IF):
        self.interface = interface

    def active(self, on=None):
        """Radio on/off."""
        r = _radio()
        if on is not None:
            r.enabled = bool(on)
        return r.enabled

    def _try(self):
        ssid, pw = _creds[0]
        _last_try[0] = time.monotonic()
        try:
            _radio().connect(ssid, pw or "", timeout=CONNECT_TIMEOUT_S)
            last_error[0] = None
        except (ConnectionError, OSError, RuntimeError) as e:  # no AP, wrong password, radio off
            last_error[0] = "wifi: " + str(e)

    def connect(self, ssid=None, key=None, bssid=None):
        """Join ssid (one attempt now; isconnected() retries later)."""
        _creds[0] = (ssid, key)
        self._try()

    def disconnect(self):
        """Leave the network and stop retrying."""
        _creds[0] = None
        _radio().stop_station()

    def isconnected(self):
        """Associated with an IP; retries the last credentials now and then when not."""
        r = _radio()
        if r.connected:
            return True
        if _creds[0] is not None and (_last_try[0] is None or time.monotonic() - _last_try[0] >= RETRY_S):
            self._try()
        return r.connected

    def status(self, param=None):
        """'rssi' of the AP, or a STAT_* code."""
        r = _radio()
        if param == "rssi":
            ap = r.ap_info
            return ap.rssi if ap is not None else None
        return STAT_GOT_IP if r.connected else (STAT_IDLE if _creds[0] is None else STAT_NO_AP_FOUND)

    def ifconfig(self, cfg=None):
        """(ip, netmask, gateway, dns)."""
        r = _radio()
        ip = r.ipv4_address
        return (str(ip) if ip is not None else "0.0.0.0", "255.255.255.0", "0.0.0.0", "0.0.0.0")

    def config(self, key=None, **kw):
        """'mac' / 'hostname'."""
        r = _radio()
        if "hostname" in kw:
            r.hostname = kw["hostname"]
        if key == "mac":
            return bytes(r.mac_address)
        if key == "hostname":
            return r.hostname
        return None
