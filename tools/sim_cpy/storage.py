"""Simulated `storage` (CircuitPython 9.2): remount, getmount, disable_usb_drive, erase_filesystem.

CircuitPython allows remount() from boot.py only (before USB enumerates); afterwards it raises
RuntimeError while the drive is visible over USB. `readonly` is from CircuitPython's point of
view: readonly=False lets code.py write and makes the USB drive read-only for the host.
"""


class _Mount:
    def __init__(self):
        self.readonly = True  # default: the USB host writes, CircuitPython only reads
        self.label = "CIRCUITPY"


_root = _Mount()
in_boot = True  # simulation: are we running boot.py?
usb_drive = True
remounts = []


def remount(mount_path, readonly=False, *, disable_concurrent_write_protection=False):
    """Change who may write the filesystem."""
    if mount_path != "/":
        raise OSError(22, "EINVAL")
    if usb_drive and not in_boot and not disable_concurrent_write_protection:
        raise RuntimeError("Cannot remount path when visible via USB.")
    _root.readonly = bool(readonly)
    remounts.append((mount_path, bool(readonly)))


def getmount(mount_path):
    """The mounted filesystem object."""
    if mount_path != "/":
        raise OSError(22, "EINVAL")
    return _root


def disable_usb_drive():
    """Hide CIRCUITPY from the USB host (boot.py only)."""
    global usb_drive
    usb_drive = False


def enable_usb_drive():
    """Show CIRCUITPY to the USB host (boot.py only)."""
    global usb_drive
    usb_drive = True


def erase_filesystem(extended=None):
    """Wipe and reformat (the simulation only records it)."""
    remounts.append(("erase", None))


def _reset_sim():
    global in_boot, usb_drive
    _root.readonly = True
    in_boot = True
    usb_drive = True
    del remounts[:]
