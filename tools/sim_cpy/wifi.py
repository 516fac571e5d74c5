"""Simulated `wifi` (CircuitPython 9.2): wifi.radio with connect(), connected, ap_info, ipv4_address.

The simulated access point can be switched off (simctl.set_link): the station drops,
`connected` turns False and socketpool sockets fail until a new connect() succeeds.
"""


class _Network:
    def __init__(self, ssid, rssi):
        self.ssid = ssid
        self.rssi = rssi
        self.channel = 6
        self.bssid = b"\x02\x00\x00\x00\x00\x01"


class Radio:
    """The station interface."""

    def __init__(self):
        self.enabled = True
        self.hostname = "cpy-sim"
        self.mac_address = b"\x7c\xdf\xa1\x00\x00\x01"
        self._ap = True  # the simulated access point is on the air
        self._ssid = None
        self.connects = 0

    def connect(self, ssid, password="", *, channel=0, bssid=None, timeout=None):
        """Join ssid; ConnectionError when no such network answers."""
        if not self.enabled:
            raise RuntimeError("Wifi is not enabled")
        if not self._ap:
            raise ConnectionError("No network with that ssid")
        self._ssid = ssid
        self.connects += 1

    def stop_station(self):
        """Leave the network."""
        self._ssid = None

    @property
    def connected(self):
        return self._ap and self._ssid is not None

    @property
    def ipv4_address(self):
        return "127.0.0.1" if self.connected else None

    @property
    def ap_info(self):
        return _Network(self._ssid, -58) if self.connected else None

    def _set_ap(self, up):
        self._ap = bool(up)
        if not up:
            self._ssid = None  # the station lost its association


radio = Radio()
