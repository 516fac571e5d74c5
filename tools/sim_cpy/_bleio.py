"""Simulated `_bleio` (CircuitPython 9.2): adapter.start_advertising/stop_advertising, Address.

adapter.address.address_bytes is little-endian (least significant byte first), as in
CircuitPython; the printed form reverses it. Adverts handed to the radio are recorded in
adapter.adverts as (interval_s, data bytes, connectable).
"""


class BluetoothError(Exception):
    """Adapter error (CircuitPython's _bleio.BluetoothError)."""


class Address:
    PUBLIC = 0
    RANDOM_STATIC = 1

    def __init__(self, address, address_type):
        if len(address) != 6:
            raise ValueError("Address must be 6 bytes long")
        self.address_bytes = bytes(address)
        self.type = address_type

    def __repr__(self):
        return "<Address %s>" % ":".join("%02x" % b for b in reversed(self.address_bytes))


class Adapter:
    """The BLE radio."""

    def __init__(self):
        self.enabled = True
        self.address = Address(bytes((0x56, 0x34, 0x12, 0x00, 0xCF, 0xC0)), Address.RANDOM_STATIC)
        self.name = "CIRCUITPY3412"
        self._adv = False
        self.adverts = []

    @property
    def advertising(self):
        return self._adv

    def start_advertising(self, data, *, scan_response=None, connectable=True, anonymous=False, timeout=0,
                          interval=0.1, tx_power=0, directed_to=None):
        """Start advertising data (legacy PDU: at most 31 bytes)."""
        if not self.enabled:
            raise BluetoothError("Adapter not enabled")
        if self._adv:
            raise BluetoothError("Already advertising.")
        if not 0.02 <= interval <= 10.24:
            raise ValueError("interval must be in range 0.0200-10.2400")
        if len(data) > 31:
            raise BluetoothError("Data too large for advertisement packet")
        self._adv = True
        self.adverts.append((interval, bytes(data), connectable))
        if len(self.adverts) > 64:
            self.adverts.pop(0)

    def stop_advertising(self):
        """Stop."""
        self._adv = False


adapter = Adapter()
