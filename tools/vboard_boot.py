# Boot script of a virtual board (runs inside `micropython -i`): mount the flash image as "/", then
# run main.py like a real board's boot when the relay asks for it. Settings come from the environment.
import os
import sys
import vfs


def _env(name, default=None):
    v = os.getenv(name)
    return default if v is None else v


class _FileFlash:
    """Minimal file-backed block device (used when tools/sim/flashdev.py is not available)."""

    def __init__(self, path, block_size, block_count):
        self.bs = block_size
        self.n = block_count
        try:
            self.f = open(path, "r+b")
        except OSError:
            self.f = open(path, "w+b")
            blank = b"\xff" * block_size
            for _ in range(block_count):
                self.f.write(blank)
            self.f.flush()

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=None):
        if off is None:
            off = 0
        self.f.seek(block * self.bs + off)
        self.f.write(buf)
        self.f.flush()

    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        if op == 6:
            # erase: littlefs programs whole blocks after erase; emulate NOR by filling 0xff
            self.f.seek(arg * self.bs)
            self.f.write(b"\xff" * self.bs)
            return 0
        return 0


def _open_device(path, bs, n):
    try:
        import flashdev  # the simulated NOR flash (tools/sim/flashdev.py): wear counters, power cuts
    except ImportError:
        return _FileFlash(path, bs, n)
    return flashdev.FlashDev(n, bs, path)


def mount_flash():
    """Mount the board's LittleFS image as the root filesystem, formatting it on first use."""
    path = _env("FOGLINE_VBOARD_FLASH")
    bs = int(_env("FOGLINE_VBOARD_BLOCK_SIZE", "4096"))
    n = int(_env("FOGLINE_VBOARD_BLOCKS", "212"))
    prog = int(_env("FOGLINE_VBOARD_PROGSIZE", "256"))
    host = _env("FOGLINE_VBOARD_HOSTLIB")
    bdev = _open_device(path, bs, n)
    try:
        fs = vfs.VfsLfs2(bdev, progsize=prog)
    except OSError:
        vfs.VfsLfs2.mkfs(bdev, progsize=prog)
        fs = vfs.VfsLfs2(bdev, progsize=prog)
    vfs.umount("/")
    vfs.mount(fs, "/")
    if host:
        # the simulated HAL (machine, network, bluetooth) stays on the host, like frozen modules
        vfs.mount(vfs.VfsPosix(host), "/_sim")
    hostdir = _env("FOGLINE_VBOARD_HOSTDIR")
    if hostdir:
        vfs.mount(vfs.VfsPosix(hostdir), "/_host")
    os.chdir("/")
    sys.path[:] = ["", "/lib", "/_sim", ".frozen"]
    return fs


HOST_MOUNTS = ("/_sim", "/_host")  # host folders the board sees; a real board's filesystem has neither


class _Without:
    """A built-in module seen without the host mounts: `fs ls` and `df` show what a real board would."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)


def _at_root(path):
    if isinstance(path, bytes):
        path = path.decode()
    return path == "/" or (path in ("", ".") and os.getcwd() == "/")


def _hide_host_mounts():
    names = [m[1:] for m in HOST_MOUNTS]
    real_os, real_vfs = os, vfs
    o, v = _Without(real_os), _Without(real_vfs)

    def ilistdir(path="."):
        it = real_os.ilistdir(path)
        if not _at_root(path):
            return it
        return (e for e in it if (e[0].decode() if isinstance(e[0], bytes) else e[0]) not in names)

    def listdir(path="."):
        return [e[0] for e in ilistdir(path)]

    def mount(*args, **kw):
        if args or kw:
            return real_vfs.mount(*args, **kw)
        return [m for m in real_vfs.mount() if m[1] not in HOST_MOUNTS]

    o.ilistdir, o.listdir, v.mount = ilistdir, listdir, mount
    sys.modules["os"], sys.modules["vfs"] = o, v


def _run_main():
    try:
        os.stat("/main.py")
    except OSError:
        return
    try:
        with open("/main.py") as f:
            src = f.read()
        exec(compile(src, "main.py", "exec"), {"__name__": "__main__"})
    except KeyboardInterrupt:
        print("main.py interrupted")
    except SystemExit:
        raise
    except Exception as e:
        sys.print_exception(e)


def _board_argv():
    # firmware.app sees the simulated HAL and takes its host-emulation path: point it at the board's
    # own files so it behaves like board_main (config, board file and log on the flash)
    args = _env("FOGLINE_VBOARD_ARGS")
    if args is not None:
        return ["main.py"] + args.split()
    return ["main.py", "--config", "/config.json", "--boards-dir", "/boards", "--data", "/log",
            "--scenario", _env("FOGLINE_SCENARIO", "normal")]


mount_flash()
_hide_host_mounts()
if _env("FOGLINE_VBOARD_RUN_MAIN") == "1":
    sys.argv[:] = _board_argv()
    _run_main()
