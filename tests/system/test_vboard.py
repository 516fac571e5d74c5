"""Virtual board driven by the real mpremote (subprocess): fs cp/ls/cat/rm, exec, run, mount, resets."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fogline.tools import hostemu
from fogline.tools.vboard import VirtualBoard, board_info

pytestmark = pytest.mark.timeout(120)


def _mpremote() -> list[str]:
    exe = Path(sys.executable).parent / "mpremote"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpremote")
    if found:
        return [found]
    return [sys.executable, "-m", "mpremote"]


def mpr(port: str, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run the real mpremote against the virtual board's pty."""
    proc = subprocess.run([*_mpremote(), "connect", port, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mpremote {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class _Echo:
    """Collects what the board writes to the host: tests wait for its output instead of sleeping."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, b: bytes) -> None:
        self.data += b

    def flush(self) -> None:
        pass

    def wait(self, text: bytes, start: int = 0, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.data[start:] and time.monotonic() < deadline:
            time.sleep(0.05)
        return text in self.data[start:]


@pytest.fixture
def board(tmp_path):
    try:
        hostemu.find_micropython()
    except hostemu.NoMicroPython as e:
        pytest.skip(str(e))
    vb = VirtualBoard(tmp_path / "node1.img", board="pico_w", echo_to=_Echo())
    vb.start()
    yield vb
    vb.stop()


def _read_image(path: Path, info: dict) -> "object":
    """Open a flash image with littlefs-python (independent checker)."""
    from littlefs import LittleFS

    fs = LittleFS(block_size=info["block_size"], block_count=info["blocks"], mount=False,
                  prog_size=info["progsize"], read_size=32)
    fs.context.buffer = bytearray(path.read_bytes())
    fs.mount()
    return fs


def test_image_has_board_geometry(board):
    info = board_info("pico_w")
    assert info["blocks"] * info["block_size"] == board.flash.stat().st_size
    out = mpr(board.port, "exec", "import os; s = os.statvfs('/'); print(s[0] * s[2])").stdout
    assert int(out.strip().splitlines()[-1]) == info["fs_bytes"]
    # the interpreter gets the board's heap (boards/pico_w.json heap_bytes, scaled to 64-bit words)
    heap = mpr(board.port, "exec", "import gc; print(gc.mem_free() + gc.mem_alloc())").stdout
    assert 300_000 < int(heap.strip()) <= 2 * 190_000


def test_fs_cp_ls_cat_rm_and_image_readable_on_host(board, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello vboard\n" * 100)
    mpr(board.port, "fs", "cp", str(src), ":hello.txt")
    ls = mpr(board.port, "fs", "ls").stdout
    assert "1300 hello.txt" in ls
    assert mpr(board.port, "fs", "cat", ":hello.txt").stdout.count("hello vboard") == 100
    back = tmp_path / "back.txt"
    mpr(board.port, "fs", "cp", ":hello.txt", str(back))
    assert back.read_bytes() == src.read_bytes()
    # the same bytes sit in a real LittleFS image: littlefs-python reads them from CPython
    fs = _read_image(board.flash, board.info)
    with fs.open("hello.txt", "rb") as f:
        assert f.read() == src.read_bytes()
    mpr(board.port, "fs", "rm", ":hello.txt")
    assert "hello.txt" not in mpr(board.port, "fs", "ls").stdout
    bad = mpr(board.port, "fs", "cat", ":nope.txt", check=False)
    assert bad.returncode != 0


def test_fs_ls_and_df_show_only_the_boards_own_filesystem(board, tmp_path):
    src = tmp_path / "a.py"
    src.write_text("x = 1\n")
    mpr(board.port, "fs", "cp", str(src), ":a.py")
    ls = mpr(board.port, "fs", "ls").stdout
    assert "a.py" in ls and "_sim" not in ls and "_host" not in ls, ls  # host folders of the emulation
    df = [ln.split() for ln in mpr(board.port, "df").stdout.splitlines()[1:] if ln.strip()]
    assert len(df) == 1 and df[0][-1] == "/", df
    size, used, avail = (int(x) for x in df[0][1:4])
    assert size == board.info["fs_bytes"] and used + avail == size and 0 < used < size, df
    # the firmware still imports the simulated HAL from there, and the folders stay reachable by path
    out = mpr(board.port, "exec", "import os, machine; print(len(os.listdir('/_sim')) > 0, sorted(os.listdir(b'/')))")
    assert out.stdout.strip() == "True [b'a.py']" or out.stdout.strip() == "True ['a.py']", out.stdout


def test_exec_run_and_mount(board, tmp_path):
    assert mpr(board.port, "exec", "print(sum(range(10)))").stdout.strip() == "45"
    script = tmp_path / "script.py"
    script.write_text("import sys\nprint('ran on', sys.implementation.name)\n")
    assert "ran on micropython" in mpr(board.port, "run", str(script)).stdout
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "modx.py").write_text("X = 41 + 1\n")
    out = mpr(board.port, "mount", str(lib), "exec", "import modx; print('X', modx.X)").stdout
    assert "X 42" in out
    # an error on the board comes back as a traceback and a non-zero exit, the board stays usable
    bad = mpr(board.port, "exec", "raise ValueError('boom')", check=False)
    assert bad.returncode != 0 and "ValueError" in (bad.stdout + bad.stderr)
    assert mpr(board.port, "exec", "print('still here')").stdout.strip() == "still here"


def test_soft_reset_restarts_interpreter(board):
    # globals of the raw REPL live as long as the interpreter
    same = mpr(board.port, "exec", "MARK = 1", "+", "exec", "print('mark', 'MARK' in globals())").stdout
    assert "mark True" in same
    before = board.resets["soft"]
    after = mpr(board.port, "exec", "MARK = 1", "+", "soft-reset",
                "+", "exec", "print('mark', 'MARK' in globals())").stdout
    assert "mark False" in after
    assert board.resets["soft"] > before
    # machine.soft_reset() from the raw REPL is a soft reset too (stays in the raw REPL, no main.py)
    hard, soft = board.resets["hard"], board.resets["soft"]
    mpr(board.port, "exec", "--no-follow", "import machine, time; time.sleep_ms(50); machine.soft_reset()")
    deadline = time.monotonic() + 60
    while board.resets["soft"] < soft + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert board.resets["soft"] >= soft + 1 and board.resets["hard"] == hard
    assert mpr(board.port, "exec", "print(6 * 7)").stdout.strip() == "42"


def test_reset_boots_main_from_flash(board, tmp_path):
    main = tmp_path / "main.py"
    # main.py counts its boots in a file on the flash, then returns to the REPL
    main.write_text(
        "try:\n    n = int(open('boots').read())\nexcept OSError:\n    n = 0\n"
        "with open('boots', 'w') as f:\n    f.write(str(n + 1))\nprint('main.py booted', n + 1)\n")
    mpr(board.port, "fs", "cp", str(main), ":main.py")
    # soft reset from the raw REPL (what mpremote does on connect) does not run main.py, as on a real board
    mpr(board.port, "soft-reset")
    assert "boots" not in mpr(board.port, "fs", "ls").stdout
    import serial  # pyserial comes with mpremote

    hard = board.resets["hard"]
    with serial.Serial(board.port, timeout=0.2) as s:
        s.write(b"\r\x03\x03")
        time.sleep(0.3)
        s.read(4096)
        s.write(b"\x04")  # Ctrl-D at the friendly prompt: reboot, which runs main.py
        out = b""
        deadline = time.monotonic() + 60
        while b"main.py booted 1" not in out and time.monotonic() < deadline:
            out += s.read(4096)
    assert b"main.py booted 1" in out, out
    assert board.resets["hard"] == hard + 1
    assert mpr(board.port, "fs", "cat", ":boots").stdout.strip() == "1"
    # `mpremote reset` calls machine.reset(): a hard reset boots main.py again, reset_cause says so
    seen = len(board.echo_to.data)
    mpr(board.port, "reset")
    deadline = time.monotonic() + 60
    while board.resets["hard"] < hard + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert board.echo_to.wait(b"main.py booted 2", seen), board.echo_to.data[seen:]  # main.py ran to its end
    assert mpr(board.port, "fs", "cat", ":boots").stdout.strip() == "2"
    out = mpr(board.port, "exec", "import machine; print(machine.reset_cause() == machine.HARD_RESET)").stdout
    assert out.strip() == "True"


def test_flash_survives_board_restart(tmp_path):
    try:
        hostemu.find_micropython()
    except hostemu.NoMicroPython as e:
        pytest.skip(str(e))
    img = tmp_path / "persist.img"
    with VirtualBoard(img, board="pico_w") as vb:
        mpr(vb.port, "exec", "with open('keep.txt', 'w') as f: f.write('kept')")
    with VirtualBoard(img, board="pico_w") as vb:
        assert mpr(vb.port, "fs", "cat", ":keep.txt").stdout == "kept"


def test_cli_prints_the_pty_and_stops_on_sigterm(tmp_path):
    try:
        hostemu.find_micropython()
    except hostemu.NoMicroPython as e:
        pytest.skip(str(e))
    import signal

    exe = Path(sys.executable).parent / "fogline"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "fogline.tools.cli"]
    link = tmp_path / "ttyFOG0"
    proc = subprocess.Popen([*cmd, "vboard", "--board", "pico_w", "--flash", str(tmp_path / "n.img"),
                             "--link", str(link)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port == str(link) and link.is_symlink()
        assert mpr(port, "exec", "import os; print(len(os.listdir('/')) >= 0)").stdout.strip() == "True"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert not link.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
