"""Real database and Redis servers for the test run, private to it (temp dirs, no fixed TCP ports).

* PostgreSQL: ``IZS_TEST_DATABASE_URL`` (a server you run; each session creates its own databases in it)
  or a private PostgreSQL 15 cluster from Debian's binaries, listening on a unix socket in a temp dir only.
  As root, the cluster runs as the ``postgres`` user (PostgreSQL refuses to run as root).
* Redis: ``IZS_TEST_REDIS_URL`` or an :class:`~intake.redis_server.EmbeddedRedis` in a temp dir.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

PG_BIN_DIRS = (
    Path("/usr/lib/postgresql/15/bin"),
    Path("/usr/lib/postgresql/16/bin"),
    Path("/usr/lib/postgresql/17/bin"),
)
_names = itertools.count(1)
PR_SET_PDEATHSIG = 1


def _pg_bin() -> Path:
    for candidate in PG_BIN_DIRS:
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")


class PostgresServer:
    """Where test databases are created. ``url(name)`` is the SQLAlchemy URL of database ``name``."""

    def create_database(self, prefix: str = "izs_test") -> str:
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        return self.url(name)

    def drop_created(self) -> None:
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            for name in self._created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._created.clear()

    _created: list[str]

    def admin_dsn(self) -> str:
        raise NotImplementedError

    def url(self, database: str) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class ExternalPostgres(PostgresServer):
    """A PostgreSQL someone else runs (CI service): we only create and drop our own databases in it."""

    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        if self._url.get_backend_name() != "postgresql":
            raise RuntimeError(f"IZS_TEST_DATABASE_URL must be a PostgreSQL URL, not {url!r}")
        self._created = []

    def admin_dsn(self) -> str:
        return self._url.set(drivername="postgresql").render_as_string(hide_password=False)

    def url(self, database: str) -> str:
        return self._url.set(drivername="postgresql+psycopg", database=database).render_as_string(
            hide_password=False
        )

    def stop(self) -> None:
        self.drop_created()


class PostgresCluster(PostgresServer):
    """A private PostgreSQL cluster: initdb into a temp dir, listen on a unix socket there only."""

    PORT = 5432  # only names the socket file, inside our private directory: no TCP port is bound

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="izs-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.as_root = os.geteuid() == 0
        self._created = []
        self.started = False
        self.process: subprocess.Popen[bytes] | None = None

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}{log}")

    # Settings every test server runs with. fsync off: a test cluster need not survive a power cut, and it
    # makes the suite much faster.
    SETTINGS: tuple[str, ...] = (
        "listen_addresses=",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=200",
    )

    def start(self) -> PostgresCluster:
        _remove_abandoned_clusters()
        self._prepare_directories()
        self._create_data()
        self._launch()
        return self

    def _prepare_directories(self) -> None:
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.socket_dir.mkdir()
        if self.as_root:
            postgres = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)

    def _create_data(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )

    def _launch(self) -> None:
        """The postmaster runs as our direct child (not daemonised by pg_ctl) and gets SIGQUIT (immediate
        shutdown) if this test process dies, so a killed test run leaves no server behind. Returns once it
        accepts connections."""
        command = [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir)]
        command += ["-p", str(self.PORT)]
        for setting in self.SETTINGS:
            command += ["-c", setting]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=self._become_postgres,
            )
        self.started = True
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(self.admin_dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log_text = self.log.read_text(errors="replace") if self.log.exists() else ""
                    raise RuntimeError(f"PostgreSQL did not start: {exc}\n{log_text}") from exc
                time.sleep(0.1)

    def _become_postgres(self) -> None:
        # Runs in the child between fork and exec. Credentials first: changing them clears the
        # parent-death signal, so it is set last.
        if self.as_root:
            postgres = pwd.getpwnam("postgres")
            os.setgid(postgres.pw_gid)
            os.setgroups([])
            os.setuid(postgres.pw_uid)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)

    def admin_dsn(self) -> str:
        return f"host={self.socket_dir} port={self.PORT} user=postgres dbname=postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={self.PORT}"

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _remove_abandoned_clusters() -> None:
    """Delete the data directories of test clusters whose test run was killed (their server already died
    with it, see PostgresCluster._become_postgres); a cluster whose owner still runs is left alone."""
    for root in Path(tempfile.gettempdir()).glob("izs-pg-*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{owner}").exists():
            continue
        try:
            postmaster = int((root / "data" / "postmaster.pid").read_text().split()[0])
            if Path(f"/proc/{postmaster}").exists():
                continue
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    external = os.environ.get("IZS_TEST_DATABASE_URL")
    if external:
        return ExternalPostgres(external)
    return PostgresCluster().start()
