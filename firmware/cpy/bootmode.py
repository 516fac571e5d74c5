"""CircuitPython boot.py logic: who may write CIRCUITPY, the node or the USB host.

CircuitPython lets only one side write the FAT filesystem. The node needs it (FlashLog,
pushed configs), so boot() remounts it writable for CircuitPython, which makes the USB
drive read-only for the computer. The way back to editing/deploying from the computer:
  * hold the escape pin low while resetting (board.BUTTON = BOOT on the ESP32-S3 Feather;
    on boards without a user button, jumper board.D12 to GND), or
  * create the marker file /usb_edit from the REPL (`open('/usb_edit', 'w').close()`)
    and reset; delete it from the computer (or `fogline deploy` does) to hand the drive back;
  * safe mode (CircuitPython skips boot.py) always leaves the drive writable over USB.
"""

import os

MARKER = "/usb_edit"
PINS = ("BUTTON", "D12")


def escape_held(board, digitalio):
    """True if the first existing escape pin reads low (pull-up on)."""
    for name in PINS:
        p = getattr(board, name, None)
        if p is None:
            continue
        io = digitalio.DigitalInOut(p)
        try:
            io.switch_to_input(pull=digitalio.Pull.UP)
            return not io.value
        finally:
            io.deinit()
    return False


def marker_present(path=MARKER):
    """The /usb_edit file exists."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def node_writes(board, digitalio, marker=MARKER):
    """True: CircuitPython (the node) gets the filesystem; False: the USB host keeps it."""
    return not (escape_held(board, digitalio) or marker_present(marker))


def boot(marker=MARKER):
    """Run from /boot.py; returns True if the node got write access."""
    import board
    import digitalio
    import storage
    rw = node_writes(board, digitalio, marker)
    if rw:
        storage.remount("/", readonly=False)
    print("fogline boot:", "node writes CIRCUITPY" if rw else "USB host writes CIRCUITPY (node log disabled)")
    return rw
