"""`deployer local`: the real server on one machine, private by default.

Everything lives in one data folder: the SQLite tracking database, the artifacts, MLflow's
basic-auth user database and two secrets (the admin password and the Flask secret key), each
generated on first start and kept with mode 0600. The server itself is started through the very
same entrypoint the container runs (`deployer.server.entrypoint`), configured by environment.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from deployer.errors import DeployerError

# The server modules (MLflow's server, SQLAlchemy) are imported where the server starts, so the
# client-only install (`pip install '.[client]'`) can still print `deployer env --local`.

ADMIN_USERNAME = "admin"
DEFAULT_DATA_DIR = Path(".mlflow-local")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
HEALTH_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
_SECRET_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class LocalError(DeployerError, RuntimeError):
    """A one-line, user-facing problem with the local setup (and how to fix it)."""


@dataclass(frozen=True)
class LocalPaths:
    root: Path

    @property
    def tracking_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def auth_db(self) -> Path:
        return self.root / "auth.db"

    @property
    def auth_config(self) -> Path:
        return self.root / "basic_auth.ini"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def admin_password(self) -> Path:
        return self.secrets / "admin-password"

    @property
    def flask_secret_key(self) -> Path:
        return self.secrets / "flask-secret-key"


@dataclass(frozen=True)
class LocalSetup:
    paths: LocalPaths
    admin_password: str
    flask_secret_key: str
    first_start: bool


def _check_writable(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise LocalError(f"data folder {root} is a file, not a folder: pick another --data-dir")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise LocalError(
            f"data folder {root} is not writable ({e.strerror}): pick another --data-dir "
            "or fix its permissions"
        ) from None


def _read_secret(path: Path) -> str | None:
    """The secret kept in path, None if there is none yet; a corrupt one is an error."""
    if not path.exists():
        return None
    try:
        value = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        value = ""
    if len(value) < 12 or not value.isalnum():
        raise LocalError(
            f"{path} is empty or corrupt: restore it from a backup, or move the data folder "
            "away to start afresh"
        )
    return value


def _create_secret(path: Path, length: int) -> str:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(length))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    return value


def _check_sqlite(path: Path) -> None:
    if not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            ok = conn.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as e:
        raise LocalError(
            f"{path} is not a readable SQLite database ({e}): restore it from a backup, or "
            "move the data folder away to start afresh"
        ) from None
    if not ok or ok[0] != "ok":
        raise LocalError(f"{path} failed SQLite's integrity check: restore it from a backup")


def _write_auth_config(paths: LocalPaths) -> None:
    text = (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{paths.auth_db.resolve()}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    if not paths.auth_config.exists() or paths.auth_config.read_text() != text:
        paths.auth_config.write_text(text)


def prepare_data_dir(root: Path) -> LocalSetup:
    """Create or check the data folder; never overwrites anything the user already has."""
    paths = LocalPaths(root.resolve())
    _check_writable(paths.root)
    _check_sqlite(paths.tracking_db)
    _check_sqlite(paths.auth_db)
    # The admin user is created on the first start that reaches the auth database; until then
    # the one-time password hint is still owed.
    first_start = not paths.auth_db.exists()
    # Check everything that exists before creating anything, so bad input leaves no half-made
    # folder behind.
    password = _read_secret(paths.admin_password)
    key = _read_secret(paths.flask_secret_key)
    private = (paths.root, paths.secrets, paths.admin_password, paths.flask_secret_key)
    databases = (paths.tracking_db, paths.auth_db)
    for path in (*private, *databases):
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o700 if path.is_dir() else 0o600)
    password = password or _create_secret(paths.admin_password, 24)
    key = key or _create_secret(paths.flask_secret_key, 48)
    paths.artifacts.mkdir(exist_ok=True)
    _write_auth_config(paths)
    return LocalSetup(paths, password, key, first_start=first_start)


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise LocalError(
                    f"port {port} on {host} is already in use: stop what is using it, "
                    "or pick another with --port"
                ) from None
            raise LocalError(f"cannot listen on {host}:{port} ({e.strerror})") from None


def server_env(
    setup: LocalSetup, host: str, port: int, allowed_hosts: str | None = None
) -> dict[str, str]:
    """The environment for the shared entrypoint, exactly as a container would get it."""
    from deployer.server.settings import Env

    paths = setup.paths
    # Start from the caller's environment minus anything that would point the server elsewhere.
    server_names = {e.value for e in Env}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in server_names and not k.startswith("MLFLOW_TRACKING_")
    }
    env.update(
        {
            Env.PORT.value: str(port),
            Env.HOST.value: host,
            Env.BACKEND_STORE_URI.value: f"sqlite:///{paths.tracking_db}",
            Env.ARTIFACTS_DESTINATION.value: str(paths.artifacts),
            Env.AUTH_MODE.value: "basic",
            "MLFLOW_AUTH_CONFIG_PATH": str(paths.auth_config),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": setup.flask_secret_key,
            # Only read on the first start, to create the admin user.
            "MLFLOW_AUTH_ADMIN_PASSWORD": setup.admin_password,
        }
    )
    if allowed_hosts:
        env[Env.ALLOWED_HOSTS.value] = allowed_hosts
    return env


def tracking_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def client_exports(paths: LocalPaths, url: str) -> list[str]:
    """Lines a person can paste into a shell to point MLflow clients at this server.

    The password is read from its 0600 file by the shell, so it never lands in a log.
    """
    return [
        f"export MLFLOW_TRACKING_URI={url}",
        f"export MLFLOW_TRACKING_USERNAME={ADMIN_USERNAME}",
        f'export MLFLOW_TRACKING_PASSWORD="$(cat {paths.admin_password})"',
    ]


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise LocalError(f"the server exited during start (exit code {code}); its log is above")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise LocalError(f"the server did not answer {url}/health within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """SIGTERM the server's process group (graceful), then SIGKILL if it does not stop."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(parent: int, server_group: int, interval: float = 0.25) -> None:
    """The watchdog's body: when `deployer local` (parent) is gone, however it went (SIGKILL
    included), take the server's process group down, gracefully first.

    A dead parent shows as a changed parent pid (the orphan is re-parented to init or a
    subreaper), on any POSIX system, within `interval` seconds.
    """
    while os.getppid() == parent and _group_alive(server_group):
        time.sleep(interval)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server_group, signum)
        while _group_alive(server_group) and time.monotonic() < deadline:
            time.sleep(0.1)
        deadline = time.monotonic() + 5


def start_watchdog(server: subprocess.Popen) -> subprocess.Popen:
    """A small process, in its own session (terminal signals do not reach it), that stops the
    server if this process dies without doing so itself."""
    code = f"from deployer.local import watch; watch({os.getpid()}, {server.pid})"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start(
    data_dir: Path,
    host: str,
    port: int,
    allowed_hosts: str | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[LocalSetup, subprocess.Popen, str]:
    """Prepare the folder, migrate, start the server and wait until it is healthy."""
    from deployer.server import entrypoint

    check_port_free(host, port)
    setup = prepare_data_dir(data_dir)
    env = server_env(setup, host, port, allowed_hosts)
    echo(f"Preparing the tracking database in {setup.paths.root} ...")
    # Runs, artifacts and the password database are the user's alone: everything the migration
    # and the server create is 0600/0700 (the server inherits the umask).
    previous_umask = os.umask(0o077)
    try:
        code = entrypoint.migrate(env)
        if code != 0:
            raise LocalError("the tracking database could not be migrated; see the line above")
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer.server", "serve"], env=env, start_new_session=True
        )
    finally:
        os.umask(previous_umask)
    url = tracking_url(host, port)
    try:
        wait_for_health(url, proc, HEALTH_TIMEOUT_SECONDS)
    except BaseException:
        stop(proc)
        raise
    return setup, proc, url


def banner(setup: LocalSetup, url: str, host: str) -> str:
    lines = [
        "",
        f"MLflow is running at {url}  (data: {setup.paths.root})",
    ]
    if host in ("0.0.0.0", "::"):
        lines.append(
            "Listening on every interface: teammates use this machine's name instead of "
            "127.0.0.1 (add it with --allowed-hosts). Basic auth stays on."
        )
    if setup.first_start:
        lines += [
            f"First start: the UI login is {ADMIN_USERNAME} / {setup.admin_password}",
            f"  (shown only this once; kept in {setup.paths.admin_password}, mode 0600)",
        ]
    else:
        lines.append(f"UI login: {ADMIN_USERNAME}, password in {setup.paths.admin_password}")
    lines += ["", "To log to it from another shell, paste:"]
    lines += [f"  {line}" for line in client_exports(setup.paths, url)]
    example = Path("examples") / "track_experiment.py"
    if example.exists():  # started from a checkout (make local): the README's example
        python = (
            os.path.relpath(sys.executable)
            if Path(sys.prefix).is_relative_to(Path.cwd())
            else sys.executable
        )
        lines.append(f"  {python} {example}")
    lines += ["", "Press Ctrl-C to stop; your runs stay in the data folder.", ""]
    return "\n".join(lines)


def wait_while_parent_lives(proc: subprocess.Popen, interval: float = 0.5) -> int | None:
    """The server's exit code, or None as soon as our own parent (make, a shell) is gone: an
    orphaned `deployer local` would keep a server nobody can stop with Ctrl-C any more."""
    parent = os.getppid()
    while True:
        try:
            return proc.wait(timeout=interval)
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                return None


def _quiet(echo: Callable[[str], None]) -> Callable[[str], None]:
    """echo that survives a closed stdout (`| tee` whose tee died with Ctrl-C): stopping the
    server must never fail because a message could not be printed."""

    def safe(text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            echo(text)

    return safe


@contextlib.contextmanager
def _stop_signals():
    """SIGTERM and SIGHUP (terminal closed) stop the server like Ctrl-C does."""

    def interrupt(signum, _frame):
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(
    data_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allowed_hosts: str | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Start the server and keep it running until Ctrl-C, SIGTERM or SIGHUP, then stop it.

    The server always goes down with this process: on those signals, when printing fails
    (a closed pipe), when the process that started this one dies, and - through the watchdog -
    when this process is killed outright.
    """
    echo = _quiet(echo)
    with _stop_signals():
        setup, proc, url = start(data_dir, host, port, allowed_hosts, echo)
        watchdog = start_watchdog(proc)
        try:
            echo(banner(setup, url, host))
            code = wait_while_parent_lives(proc)
            if code is None:
                echo("The process that started deployer local is gone: stopping the server ...")
                return 0
            echo(f"The server stopped by itself (exit code {code}).")
            return code or 1
        except KeyboardInterrupt:
            echo("Stopping the server ...")
            return 0
        finally:
            stop(proc)
            watchdog.kill()
            watchdog.wait()
            echo("Stopped. Data kept in " + str(setup.paths.root))
