# BTHome v2 encoder and AES-CCM on cryptolib, on the MicroPython unix port.
# CCM vectors were generated with cryptography's AESCCM on CPython (tag 4 and 8 bytes).
from firmware import bthome

CCM_VECTORS = [
    ('52f22665a60c12d289185d950ee88136', '09166f6b113d178d6c0fd3901f', '', 'fff35083'),
    ('f239a1a095f20f9395650cf9380b8edb', '224a6b248a1e924e8fd0ae2e1a', '94', 'a2c5f97f9f'),
    ('92a3305f188cb610900f9e347fae886d', 'c6507795ec745c4c3fcb2eb2c7', '3e14934c86', 'ab80fdd7940c58ca93'),
    ('7ee057ba72499bfa121e836b2ac15726', 'ee7d6b0af6ab13c38e92cae0d1', '5057b159987f94cc7411d717f14579',
     '6a4143b2c4fd7136de4c1372c88376066b6e7d'),
    ('b2aa100fbbb34fa593feaed27248b762', 'e3ab5805f0765a2b9c1d7e0f37', 'c44921bd3f6564eadf7f142a72668c47',
     'cce524cc7e2acb9b45a5ebef59c047e1fcab2c85'),
    ('e223d16edd8c47b46afc5baee261f53b', '26152d263ba83b037cd4962e43', '4801256b885e9c9051f320b0db83f39ea7',
     'e17a0a36c99afb2e33ec74cbb3f1b5a1d1a478942f'),
    ('adbd0d74e6dec7f3dfaecc8f64656664', '1a7ba2660f3011fc3570291c57',
     '990d1a0091268919f25d9d0612df359d6026a240f4589a5d791f1dd97cfefa',
     '2617c655391dabf8e564223518fdc5bb3d5f1a712820c06a5c5154014457b9d81472bb'),
    ('777a7b4f15241abf57bd437ad4b12984', '0534f3f3875c25b08bea06c287',
     '4cfaa4dd17b2d842845de82a5bc539888ac78054a2399ccfc9fcc2da31ce3dd166',
     '272090a8e5ae7267e919d4d2bc5aa7339297af9588d240cce092c6aeee05340d3f5c3450b1'),
]
CCM8 = ('000102030405060708090a0b0c0d0e0f', '000102030405060708090a0b',
        '666f676c696e652063636d2074657374206461746121',
        '557a940bb5eea1911270a4c0768ff6f44c327846aa25e1b2ab2c72bedd29')


def _h(s):
    return bytes.fromhex(s)


def test_ccm_matches_cryptography_vectors():
    for key, nonce, data, want in CCM_VECTORS:
        got = bthome.CCM(_h(key)).encrypt(_h(nonce), _h(data))
        assert got == _h(want), (data, got.hex(), want)
    key, nonce, data, want = CCM8
    assert bthome.CCM(_h(key), mic_len=8).encrypt(_h(nonce), _h(data)) == _h(want)


def test_ccm_rejects_bad_key_and_nonce():
    for bad in (b"", bytes(15), bytes(17)):
        try:
            bthome.CCM(bad)
            raise AssertionError("accepted a %d-byte key" % len(bad))
        except ValueError:
            pass
    try:
        bthome.CCM(bytes(16)).encrypt(bytes(14), b"x")
        raise AssertionError("accepted a 14-byte nonce")
    except ValueError:
        pass


def test_bthome_reference_encrypted_example():
    # The worked example shipped with bthome-ble (bthome_v2_encryption.py).
    objs = _h("02CA0903BF13")
    ccm = bthome.CCM(_h("231d39c1d7cc1ab1aee224cd096db932"))
    sd = bthome.service_data(objs, _h("5448E68F80A5"), ccm, 1122867)
    assert sd == _h("d2fc41e445f3c9962b332211006c7c4519"), sd.hex()


def test_objects_encoding_order_and_scaling():
    b = bthome.encode_objects({"pressure": 1008.83, "temperature": -12.34, "humidity": 55.5,
                               "battery": 97, "packet_id": 3})
    assert b == _h("0003") + _h("0161") + _h("02" + "2efb") + _h("03" + "ae15") + _h("04" + "138a01"), b.hex()


def test_objects_out_of_range_raise():
    for vals in ({"temperature": 400.0}, {"humidity": -1}, {"battery": 256}, {"pressure": 1e6}):
        try:
            bthome.encode_objects(vals)
            raise AssertionError("accepted %r" % (vals,))
        except ValueError:
            pass


def test_advert_layout_and_legacy_limit():
    sd = bthome.service_data(bthome.encode_objects({"temperature": 21.5, "packet_id": 1}))
    adv = bthome.advert(sd)
    assert adv[:3] == b"\x02\x01\x06"
    assert adv[3] == len(sd) + 1 and adv[4] == 0x16 and adv[5:7] == b"\xd2\xfc" and adv[7] == 0x40
    named = bthome.advert(sd, "fogline-node-with-a-long-name")
    assert len(named) == 31 and named[len(adv) + 1] == 0x08  # shortened name
    try:
        bthome.advert(b"\xd2\xfc\x40" + bytes(30))
        raise AssertionError("accepted an advert over 31 bytes")
    except ValueError:
        pass


def test_advertiser_on_sim_ble_plain_and_encrypted():
    import bluetooth
    ble = bluetooth.BLE()
    adv = bthome.Advertiser(ble, interval_ms=500)
    out = adv.update_readings({"t": ("Cel", 21.37), "h": ("%RH", 45.0), "p": ("Pa", 101325.0),
                               "x": ("m", 3.0)})
    assert out is not None and ble.adverts[-1] == (500000, out, None)
    assert len(out) <= 31
    enc = bthome.Advertiser(ble, bind_key="231d39c1d7cc1ab1aee224cd096db932", counter_start=7)
    e1 = enc.update({"temperature": 20.0, "humidity": 50.0, "pressure": 1000.0, "battery": 90})
    e2 = enc.update({"temperature": 20.0, "humidity": 50.0, "pressure": 1000.0, "battery": 90})
    assert e1[7] == 0x41 and e1 != e2 and len(e1) <= 31, len(e1)
    assert e1[-8:-4] == b"\x07\x00\x00\x00" and e2[-8:-4] == b"\x08\x00\x00\x00"
    bad = enc.update({"temperature": 1000.0})
    assert bad is None and enc.stats["errors"] == 1 and enc.stats["adverts"] == 2
