"""Code shared unchanged by the MicroPython firmware and the CPython gateway."""
