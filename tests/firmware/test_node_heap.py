# The whole node (every filter and rule type, FlashLog on a simulated flash image) inside a
# board-sized heap, with constant memory per sample (MicroPython unix port; source, not .mpy).
import os
import sys

MP_HEAPSIZE = "160wK"


def test_full_node_in_board_heap_constant_memory():
    sys.path.insert(0, os.getcwd() + "/tools/bench")
    import node_run
    img = "/tmp/fogline-heap-%d.img" % (os.urandom(1)[0] * 256 + os.urandom(1)[0])
    try:
        r = node_run.run_mem(3000, img)
    finally:
        try:
            os.remove(img)
        except OSError:
            pass
    assert r["store_errors"] == 0, r
    assert r["kept"] > 500 and r["alerts"] > 50, r
    # after_build is the live set right after wiring; 3000 samples later it has not grown
    assert r["live_peak"] - r["after_build"] < 2048, r
