"""Simulated `aesio` (CircuitPython 9.2): AES(key, mode=MODE_ECB, IV=None).encrypt_into(src, dest).

The block cipher is `cryptography`'s AES (host side only).
"""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MODE_ECB = 1
MODE_CBC = 2
MODE_CTR = 6


class AES:
    """AES-128/192/256; this simulation implements ECB (what Fogline's CCM needs)."""

    def __init__(self, key, mode=MODE_ECB, IV=None, segment_size=8):
        if len(key) not in (16, 24, 32):
            raise ValueError("Key length must be 16, 24, or 32 bytes")
        if mode != MODE_ECB:
            raise NotImplementedError("only MODE_ECB is simulated")
        self._c = Cipher(algorithms.AES(bytes(key)), modes.ECB())

    def encrypt_into(self, src, dest):
        """Encrypt 16-byte src into dest."""
        if len(src) != 16 or len(dest) != 16:
            raise ValueError("ECB mode requires 16-byte buffers")
        e = self._c.encryptor()
        dest[:] = e.update(bytes(src)) + e.finalize()

    def decrypt_into(self, src, dest):
        """Decrypt 16-byte src into dest."""
        d = self._c.decryptor()
        dest[:] = d.update(bytes(src)) + d.finalize()
