"""MicroPython `cryptolib.aes` (ECB only) on CircuitPython's aesio (registered as `cryptolib`).

firmware/bthome.py builds AES-CCM on it: aes(key, 1).encrypt(src, dst), in place allowed.
"""

MODE_ECB = 1


class aes:
    """AES block cipher in ECB mode."""

    def __init__(self, key, mode, IV=None):
        import aesio
        if mode != MODE_ECB:
            raise ValueError("cryptolib (CircuitPython adapter): only ECB")
        self._a = aesio.AES(bytes(key), aesio.MODE_ECB)
        self._t = bytearray(16)

    def encrypt(self, in_buf, out_buf=None):
        """Encrypt one or more 16-byte blocks; into out_buf (may be in_buf) or a new bytes."""
        n = len(in_buf)
        if n % 16:
            raise ValueError("cryptolib: length must be a multiple of 16")
        out = bytearray(n) if out_buf is None else out_buf
        t = self._t
        blk = bytearray(16)
        for off in range(0, n, 16):
            t[0:16] = in_buf[off:off + 16]  # copy first: out may alias in
            self._a.encrypt_into(t, blk)
            out[off:off + 16] = blk
        return bytes(out) if out_buf is None else None
