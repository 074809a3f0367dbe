"""A PostgreSQL server that canary owns: the embedded default (pgserver's binaries) or any local
PostgreSQL installation (e.g. Debian's ``/usr/lib/postgresql/15/bin`` with contrib and pgaudit).

canary runs the server itself (initdb, pg_ctl) instead of through ``pgserver.get_server`` because it
needs settings pgserver does not expose: TCP on loopback (client addresses in events), password
authentication (login-failure detection), and ``jsonlog`` written by the logging collector (read
detection). pgserver still provides the binaries and its helpers for running as root.

When run as root, PostgreSQL refuses to start, so the server runs as an unprivileged system user
(``postgres`` if it exists, else ``pgserver``, as pgserver itself does).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from canary.errors import EmbeddedPostgresError

SUPERUSER = "postgres"
_PASSWORD_FILE = "canary-superuser.password"


def pgserver_bin_dir() -> Path:
    """The bin directory of the PostgreSQL build shipped inside the ``pgserver`` wheel."""
    import warnings

    with warnings.catch_warnings():  # pgserver computes a runtime dir at import (XDG_RUNTIME_DIR unset)
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: only the embedded mode needs it
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _run_as_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pgserver_bin_dir()
    from pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


class PostgresServer:
    """One PostgreSQL cluster in ``data_dir`` listening on 127.0.0.1:``port``.

    ``settings`` are written to ``canary.conf`` (included from postgresql.conf) on every start, so a
    restart with different settings takes effect. Logs go to ``data_dir/log`` as jsonlog.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bin_dir: Path | None = None,
        port: int | None = None,
        settings: Mapping[str, str | int | bool] | None = None,
        hba_extra: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_dir = self.data_dir / "log"
        self.bin_dir = Path(bin_dir) if bin_dir else pgserver_bin_dir()
        self.port = port
        self.settings = dict(settings or {})
        self.hba_extra = hba_extra
        self.run_as = _run_as_user()

    # -- paths and connection strings -------------------------------------------------------
    @property
    def password(self) -> str:
        path = self.data_dir / _PASSWORD_FILE
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot read superuser password file {path}: {exc.strerror}") from exc

    def dsn(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        if self.port is None:
            raise EmbeddedPostgresError("server has no port yet: start it first")
        pw = self.password if user == SUPERUSER and password is None else password
        auth = quote(user, safe="") + (":" + quote(pw, safe="") if pw else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def is_running(self) -> bool:
        return self._ctl_status() == 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Initialise the cluster if needed and start it; a running cluster is left as it is."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            self.port = self._running_port()
            return
        if self.port is None:
            self.port = free_port()
        self._write_conf()
        self._chown(self.log_dir)
        self._pg_ctl(["-w", "-t", str(int(timeout)), "-l", str(self.data_dir / "startup.log"), "start"], timeout)

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        if not (self.pgdata / "PG_VERSION").exists() or not self.is_running():
            return
        self._pg_ctl(["-w", "-t", str(int(timeout)), "-m", mode, "stop"], timeout)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop(timeout=timeout)
        self.start(timeout=timeout)

    def destroy(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def jsonlog_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.json"))

    # -- internals ----------------------------------------------------------------------------
    def _initdb(self) -> None:
        if self.run_as:
            pgserver_bin_dir()
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(self.bin_dir)
            ensure_folder_permissions(self.bin_dir, 0o055)
            lib = self.bin_dir.parent / "lib"
            if lib.exists():
                ensure_folder_permissions(lib, 0o044)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir / _PASSWORD_FILE
        if not pwfile.exists():
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        self._chown(self.data_dir)
        self._chown(pwfile)  # initdb reads it as the server user
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            timeout=120,
        )
        if os.geteuid() == 0:
            os.chown(pwfile, 0, 0)
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write("\ninclude_if_exists = 'canary.conf'\n")
        if self.hba_extra:
            with (self.pgdata / "pg_hba.conf").open("a") as fh:
                fh.write("\n" + "\n".join(self.hba_extra) + "\n")

    def _write_conf(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        sock = self.data_dir / "sock"
        sock.mkdir(exist_ok=True)
        self._chown(sock)
        base: dict[str, str | int | bool] = {
            "listen_addresses": "127.0.0.1",
            "port": int(self.port or 0),
            "unix_socket_directories": str(sock),
            "logging_collector": True,
            "log_destination": "jsonlog",
            "log_directory": str(self.log_dir),
            "log_filename": "postgresql-%Y%m%d-%H%M%S.log",
            "log_file_mode": "0640",
            "log_rotation_size": "100MB",
            "log_rotation_age": 0,
            "max_connections": 100,
            "shared_buffers": "128MB",
            "fsync": True,
        }
        base.update(self.settings)
        lines = [f"{k} = {_conf_value(v)}" for k, v in base.items()]
        (self.pgdata / "canary.conf").write_text("\n".join(lines) + "\n")
        self._chown(self.pgdata / "canary.conf")

    def _running_port(self) -> int:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[3])
        except (OSError, IndexError, ValueError) as exc:
            raise EmbeddedPostgresError(f"cannot read port from {pid_file}") from exc

    def _ctl_status(self) -> int:
        if not (self.pgdata / "PG_VERSION").exists():
            return 4
        proc = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True,
            user=self.run_as,
            timeout=30,
            check=False,
        )
        return proc.returncode

    def _pg_ctl(self, args: list[str], timeout: float) -> None:
        try:
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), *args], timeout=timeout + 10)
        except EmbeddedPostgresError as exc:
            startup = self.data_dir / "startup.log"
            tail = startup.read_text(errors="replace")[-2000:] if startup.exists() else ""
            raise EmbeddedPostgresError(f"{exc.message}\n{tail}") from exc

    def _run(self, cmd: list[str], timeout: float) -> None:
        # stdout/stderr to files: pg_ctl start leaves the postmaster holding inherited pipes.
        with open(os.devnull, "rb") as devnull:
            log = self.data_dir / "ctl.out"
            with open(log, "wb") as out:
                try:
                    proc = subprocess.run(
                        cmd, stdin=devnull, stdout=out, stderr=subprocess.STDOUT, user=self.run_as,
                        timeout=timeout, check=False, cwd=self.data_dir,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise EmbeddedPostgresError(f"{Path(cmd[0]).name} timed out after {timeout:.0f}s") from exc
                except OSError as exc:
                    raise EmbeddedPostgresError(f"cannot run {cmd[0]}: {exc.strerror}") from exc
        if proc.returncode != 0:
            output = log.read_text(errors="replace")[-2000:]
            raise EmbeddedPostgresError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {output.strip()}")

    def _chown(self, path: Path) -> None:
        if self.run_as is None or not path.exists():
            return
        entry = pwd.getpwnam(self.run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _conf_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedPostgresError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")
