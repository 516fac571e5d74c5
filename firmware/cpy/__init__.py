"""CircuitPython adapter: MicroPython-API shims (machine, network, bluetooth, ...) on CircuitPython modules."""
