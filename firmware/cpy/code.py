"""CircuitPython /code.py for a Fogline node: MicroPython-API shims, then the same app as MicroPython.

In USB edit mode (boot.py left the drive to the computer) CircuitPython cannot write the
log or configs, so the node does not start; reset without the escape pin to run it.
"""
import storage

if getattr(storage.getmount("/"), "readonly", False):
    print("fogline: CIRCUITPY belongs to the USB host (edit mode); node not started")
else:
    from firmware.cpy import compat

    compat.install()
    from firmware import app

    app.main()
