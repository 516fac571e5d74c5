"""Host-emulation `bluetooth` module: a BLE object that records what gap_advertise was given.

Set the environment variable FOGLINE_BLE_LOG to a file path to also append every advert
as a hex line ("<mac hex> <interval_us> <adv hex>") so a CPython test can decode them.
"""

import os

FLAG_READ = 0x0002
FLAG_WRITE = 0x0008
FLAG_NOTIFY = 0x0010

_DEFAULT_MAC = b"\x02\xf1\x00\x00\x00\x01"  # locally administered


class BLE:
    """Subset of MicroPython's bluetooth.BLE used by the firmware (one shared instance)."""

    _inst = None
    mac = _DEFAULT_MAC

    def __new__(cls):
        if BLE._inst is None:
            BLE._inst = object.__new__(cls)
            BLE._inst._init()
        return BLE._inst

    def __init__(self):
        pass

    def _init(self):
        self._active = False
        self.adverts = []  # (interval_us, adv_data, resp_data)
        self.max_kept = 64
        self.irq_handler = None
        self.gap_name = b"MPY BTSTACK"
        self._log = None
        try:
            self._log = os.getenv("FOGLINE_BLE_LOG")
        except AttributeError:
            pass

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def config(self, *args, **kw):
        if args:
            if args[0] == "mac":
                return (0, BLE.mac)
            if args[0] == "gap_name":
                return self.gap_name
            raise ValueError("unknown config param")
        if "gap_name" in kw:
            self.gap_name = kw["gap_name"]
        if "mac" in kw:
            BLE.mac = bytes(kw["mac"])

    def irq(self, handler):
        self.irq_handler = handler

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        if not self._active:
            raise OSError(19)  # ENODEV, as the real stack does when inactive
        if interval_us is None:
            return
        if adv_data is not None and len(adv_data) > 31:
            raise OSError(22)  # EINVAL: legacy advertising payload too long
        adv = bytes(adv_data) if adv_data is not None else b""
        self.adverts.append((interval_us, adv, resp_data))
        if len(self.adverts) > self.max_kept:
            self.adverts.pop(0)
        if self._log:
            with open(self._log, "a") as f:
                f.write("%s %d %s\n" % (BLE.mac.hex(), interval_us, adv.hex()))
