"""A throwaway PostgreSQL server for tests: Debian's `postgresql` package, in a temporary
directory, on a free localhost port.

The server refuses to run as root, so as root (CI) it runs as the `postgres` user the package
creates. `start()` raises `Unavailable` (with the reason) where no server can start here;
the tests skip on it unless `QUARCH_REQUIRE_POSTGRES=1` (set by `.ci/run`), which makes it a
failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

REQUIRE_ENV = "QUARCH_REQUIRE_POSTGRES"


class Unavailable(RuntimeError):
    """No PostgreSQL server can be started on this machine (the message says why)."""


def _bindir() -> Path:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""

    def major(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise Unavailable("no PostgreSQL server binaries (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server; `url(db)` is an SQLAlchemy URL of one of its databases."""

    bindir: Path
    root: Path
    port: int
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "-w", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise Unavailable(f"{what} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def start() -> Server:
    """Initialise and start a server in a new temporary directory (about 1 s)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable(
            "the psycopg driver is not installed (pip install quarch[postgres])"
        ) from None
    bindir = _bindir()
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="quarch-pg-"))
    if os.geteuid() == 0:  # the server refuses root: run it as the package's `postgres` user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable("running as root and there is no `postgres` user") from None
        os.chown(root, pw.pw_uid, pw.pw_gid)
        runuser = shutil.which("runuser")  # util-linux
        if not runuser:
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable("running as root and there is no runuser to drop to `postgres`")
        as_user = [runuser, "-u", "postgres", "--"]
    server = Server(bindir, root, _free_port(), as_user)
    try:
        _run(
            [*as_user, str(bindir / "initdb"), "-D", str(server.data), "-U", "postgres",
             "-A", "trust", "-E", "UTF8", "--no-sync"],
            "initdb",
        )  # fmt: skip
        # fsync off: these tests kill clients, never the server or the machine
        options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(server.data), "-o", options,
             "-l", str(root / "server.log"), "-w", "-t", "60", "start"],
            "pg_ctl start",
        )  # fmt: skip
    except BaseException:
        server.stop()
        raise
    return server
