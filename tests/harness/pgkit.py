"""Start and stop a real PostgreSQL (Debian's binaries) in a temp dir on a free loopback port.

PostgreSQL refuses to run as root, so as root the server runs as an unprivileged user (`fogline-pg`,
created with useradd when missing, else `nobody`) through runuser; as a normal user it runs as that
user. Used by tests/cloud (fixture `pg`) and tools/bench/cloud_ingest.py.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.broker import free_port

PG_USER = "fogline-pg"


def pg_bindir() -> Path:
    """Directory of initdb/pg_ctl (newest /usr/lib/postgresql/N/bin, or PATH); RuntimeError if none."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if cands:
        return Path(cands[-1])
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL not found: apt-get install postgresql")


def _run_as() -> tuple[list[str], str | None]:
    """Command prefix that drops root to an unprivileged user (empty when not root) and that user."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam(PG_USER)
        user = PG_USER
    except KeyError:
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                           capture_output=True)
        user = PG_USER if r.returncode == 0 else "nobody"
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user, "--"], user
    return [shutil.which("setpriv") or "setpriv", "--reuid", user, "--regid", user, "--init-groups"], user


class Postgres:
    """One PostgreSQL cluster in its own temp dir; stop/start/restart keep the data and the port."""

    def __init__(self, port: int | None = None, fsync: bool = False, dbname: str = "fogline"):
        self.port = port or free_port()
        self.fsync = fsync
        self.dbname = dbname
        self.bindir = pg_bindir()
        self.prefix, self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="fogline-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self.user:
            u = pwd.getpwnam(self.user)
            os.chown(self.root, u.pw_uid, u.pw_gid)

    def _cmd(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.prefix + list(args), cwd=self.root, capture_output=True, text=True,
                              check=check, timeout=timeout)

    def init(self) -> "Postgres":
        """initdb (trust auth on loopback only, superuser `fogline`)."""
        self._cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "fogline", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        conf = [f"port = {self.port}", "listen_addresses = '127.0.0.1'", f"unix_socket_directories = '{self.root}'",
                f"fsync = {'on' if self.fsync else 'off'}", "max_connections = 50", "shared_buffers = 64MB",
                "log_min_messages = warning"]
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n".join(conf) + "\n")
        return self

    def start(self, timeout: float = 60) -> "Postgres":
        """Start (initdb first if needed) and wait until it accepts connections; creates the database once."""
        if not self.data.exists():
            self.init()
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(int(timeout)), "start", timeout=timeout + 10)
        deadline = time.monotonic() + timeout
        while True:
            r = self._cmd(str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), check=False)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready: {self.log_text()}")
            time.sleep(0.1)
        r = self._cmd(str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "fogline",
                      "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{self.dbname}'")
        if r.stdout.strip() != "1":
            self._cmd(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "fogline",
                      self.dbname)
        return self

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (-m fast, or immediate: a crash without shutdown checkpoint)."""
        if (self.data / "postmaster.pid").exists():
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> "Postgres":
        self.stop(mode)
        return self.start()

    def destroy(self) -> None:
        """Stop and remove the data dir."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return ""

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=fogline dbname={self.dbname}"
