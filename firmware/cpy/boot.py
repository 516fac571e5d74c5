"""CircuitPython /boot.py for a Fogline node (see firmware/cpy/bootmode.py for the way back)."""
from firmware.cpy import bootmode

bootmode.boot()
