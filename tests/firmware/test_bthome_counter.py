# The BTHome encryption counter persisted by reservation blocks (firmware/counter.py) on real LittleFS:
# it never repeats across reboots or power cuts, and writes the flash once per block, not per advert.
import os
import flashdev as fd
from firmware import bthome
from firmware.counter import ReservedCounter

_MNT = "/flash"
_PATH = "/flash/bthome.ctr"
KEY = "231d39c1d7cc1ab1aee224cd096db932"


def setup():
    fd.umount(_MNT)
    dev = fd.FlashDev(32)
    fd.mount(dev, _MNT, format=True)
    return dev


def val(b):
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)


def test_counter_rises_across_reboots_and_writes_once_per_block():
    dev = setup()
    c = ReservedCounter(_PATH, block_bits=10)
    got = [val(c.next_bytes()) for _ in range(3000)]
    assert got == list(range(3000))
    assert c.writes == 3  # the boot's reservation, then one per 1024 values
    dev = fd.remount(dev, _MNT)  # reboot (or power cut) mid-block
    c = ReservedCounter(_PATH, block_bits=10)
    nxt = val(c.next_bytes())
    assert nxt == 3072 and nxt > got[-1] and c.writes == 1
    for _ in range(5):  # reboots without a single advert still move forward (a value may have left)
        dev = fd.remount(dev, _MNT)
        c = ReservedCounter(_PATH, block_bits=10)
        v = val(c.next_bytes())
        assert v > nxt
        nxt = v


def test_torn_reservation_falls_back_to_the_previous_one():
    dev = setup()
    c = ReservedCounter(_PATH, block_bits=4)
    for _ in range(40):
        c.next_bytes()
    with open(_PATH + ".tmp", "wb") as f:  # a cut during the next reservation write
        f.write(b"\x05\x00garb")
    dev = fd.remount(dev, _MNT)
    c = ReservedCounter(_PATH, block_bits=4)
    assert val(c.next_bytes()) == 48  # the last complete reservation: nothing below it repeats
    with open(_PATH, "wb") as f:
        f.write(b"junk")
    c = ReservedCounter(_PATH, block_bits=4)
    assert val(c.next_bytes()) == 0  # unreadable: starts over (the gateway counts a restart)


def test_top_of_the_32_bit_space_without_long_ints():
    setup()
    c = ReservedCounter(_PATH, block_bits=10)
    c.hi = c.wrap - 1  # the last block: values 0xFFFFFC00..0xFFFFFFFF
    c.reserved = c.wrap
    first = c.next_bytes()
    assert first == b"\x00\xfc\xff\xff"
    for _ in range(1022):
        c.next_bytes()
    assert c.next_bytes() == b"\xff\xff\xff\xff"
    assert c.next_bytes() == b"\x00\x00\x00\x00" and c.hi == 0


def test_encrypted_adverts_carry_the_reserved_counter():
    import bluetooth
    dev = setup()
    ble = bluetooth.BLE()
    adv = bthome.Advertiser(ble, bind_key=KEY, counter=ReservedCounter(_PATH))
    a = [adv.update({"temperature": 20.0 + i}) for i in range(3)]
    assert [val(x[-8:-4]) for x in a] == [0, 1, 2]
    dev = fd.remount(dev, _MNT)
    adv = bthome.Advertiser(ble, bind_key=KEY, counter=ReservedCounter(_PATH))
    assert val(adv.update({"temperature": 21.0})[-8:-4]) == 1024  # not 0: the old adverts stay replays
    assert "bthome.ctr" in os.listdir(_MNT)
