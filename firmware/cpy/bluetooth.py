"""MicroPython `bluetooth.BLE` subset for advertising, on CircuitPython's _bleio (registered as `bluetooth`).

Only what firmware/bthome.py's Advertiser uses: active(), config("mac"), gap_advertise().
_bleio gives the address little-endian; MicroPython (and BTHome's nonce) use printed order.
Adapter errors become OSError, which the Advertiser counts.
"""

_EIO = 5


class BLE:
    """The BLE radio (advertising only)."""

    def __init__(self):
        import _bleio
        self._bleio = _bleio
        self.a = _bleio.adapter

    def active(self, on=None):
        """Radio on/off."""
        if on is not None:
            self.a.enabled = bool(on)
        return self.a.enabled

    def config(self, *args, **kw):
        """('mac') -> (addr type, 6 bytes most significant first); ('gap_name') -> name."""
        if "gap_name" in kw:
            self.a.name = kw["gap_name"]
        if not args:
            return None
        if args[0] == "mac":
            ad = self.a.address
            le = ad.address_bytes
            return (ad.type, bytes([le[5 - i] for i in range(6)]))
        if args[0] == "gap_name":
            return self.a.name
        raise ValueError("unknown config param")

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        """(Re)start advertising adv_data every interval_us; None stops."""
        a = self.a
        try:
            if a.advertising:
                a.stop_advertising()
            if interval_us is None:
                return
            iv = interval_us / 1000000
            iv = 0.02 if iv < 0.02 else (10.24 if iv > 10.24 else iv)
            a.start_advertising(bytes(adv_data or b""), scan_response=resp_data, connectable=connectable,
                                interval=iv)
        except self._bleio.BluetoothError as e:
            raise OSError(_EIO, "ble: " + str(e))
