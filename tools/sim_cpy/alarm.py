"""Simulated `alarm` (CircuitPython 9.2): time.TimeAlarm and exit_and_deep_sleep_until_alarms."""

import time as _t


class _TimeMod:
    class TimeAlarm:
        def __init__(self, *, monotonic_time=None, epoch_time=None):
            self.monotonic_time = monotonic_time
            self.epoch_time = epoch_time


time = _TimeMod()
wake_alarm = None


class DeepSleepSim(SystemExit):
    """A board would power down here and restart code.py when an alarm fires."""


def exit_and_deep_sleep_until_alarms(*alarms, preserve_dios=()):
    """Deep sleep until one of the alarms (the simulation raises DeepSleepSim)."""
    raise DeepSleepSim(alarms[0].monotonic_time - _t.monotonic() if alarms else None)
