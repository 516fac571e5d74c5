"""Simulated `board` (CircuitPython 9.2) for an Adafruit Feather: ESP32-S3 (default) or RP2040.

Environment FOGLINE_CPY_BOARD=adafruit_feather_rp2040 picks the RP2040 Feather pin map.
Pin names alias microcontroller.pin.GPIOn objects, as on the real boards.
"""

import os

import microcontroller as _mc

_MAPS = {
    # Adafruit Feather ESP32-S3 (4 MB flash / 2 MB PSRAM): STEMMA QT on GPIO3/4, D10 on GPIO10
    "adafruit_feather_esp32s3_4mbflash_2mbpsram": {
        "SDA": 3, "SCL": 4, "A0": 18, "A1": 17, "A2": 16, "A3": 15, "A4": 14, "A5": 8,
        "D5": 5, "D6": 6, "D9": 9, "D10": 10, "D11": 11, "D12": 12, "D13": 13, "LED": 13,
        "BUTTON": 0, "BOOT0": 0, "NEOPIXEL": 33, "I2C_POWER": 7, "TX": 39, "RX": 38,
    },
    # Adafruit Feather RP2040: STEMMA QT on GPIO2/3, A0..A3 = GPIO26..29
    "adafruit_feather_rp2040": {
        "SDA": 2, "SCL": 3, "A0": 26, "A1": 27, "A2": 28, "A3": 29,
        "D4": 6, "D5": 7, "D6": 8, "D9": 9, "D10": 10, "D11": 11, "D12": 12, "D13": 13, "LED": 13,
        "NEOPIXEL": 16, "TX": 0, "RX": 1,
    },
}

board_id = os.environ.get("FOGLINE_CPY_BOARD", "adafruit_feather_esp32s3_4mbflash_2mbpsram")
if board_id not in _MAPS:
    board_id = "adafruit_feather_esp32s3_4mbflash_2mbpsram"
for _name, _n in _MAPS[board_id].items():
    globals()[_name] = getattr(_mc.pin, "GPIO%d" % _n)

_i2c = None


def I2C():
    """The board's default I2C bus (singleton), as CircuitPython's board.I2C()."""
    global _i2c
    if _i2c is None:
        import busio
        _i2c = busio.I2C(SCL, SDA)  # noqa: F821 (set from the pin map above)
    return _i2c
