"""The embedded Redis: when no Redis URL is configured, the app runs Debian's ``redis-server`` itself.

Persistence is on (AOF every second + RDB snapshots) in ``data_dir``, so restarting the app restarts
Redis on the same files and active calls, queues and the incident stream are still there. The server
listens on 127.0.0.1 only (or only on a unix socket, mode 0700), on a free port unless one is given, and
requires a password generated once into ``data_dir/password`` (mode 0600): another local user can reach
the port but cannot drive the centre. The password goes to redis-server on its standard input, never on a
command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from intake.errors import ConfigError, LiveStateError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1


def find_redis_server() -> str:
    path = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise ConfigError(
            [
                "redis-server is not installed and IZS_REDIS_URL is not set: "
                "install it (apt-get install redis-server) or point IZS_REDIS_URL at a Redis"
            ]
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _term_when_parent_dies() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _alive(pid: int) -> bool:
    """Running (a zombie has exited: its files are saved and closed, only its parent has not reaped it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class EmbeddedRedis:
    """A ``redis-server`` child process owned by this process.

    ``port=None`` (or 0) picks a free port; ``unix_socket=True`` listens on ``data_dir/redis.sock`` only
    (no TCP at all). Use :meth:`start`/:meth:`stop` or ``with EmbeddedRedis(dir) as server: server.url``.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        unix_socket: bool = False,
        stop_with_parent: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        # Test runs: if the test process is killed, its Redis gets SIGTERM (saves, exits) instead of
        # lingering. Linux ties this to the *thread* that started it, so the app (which may start Redis
        # from a worker thread) relies on the pid-file clean-up at the next start instead.
        self.stop_with_parent = stop_with_parent
        self.requested_port = port or None
        self.unix_socket = unix_socket
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._password: str | None = None

    @property
    def password_file(self) -> Path:
        return self.data_dir / "password"

    @property
    def password(self) -> str:
        """The server's password: read from ``password_file``, generated there (0600) the first time."""
        if self._password is None:
            if not self.password_file.exists():
                self.data_dir.mkdir(parents=True, exist_ok=True)
                tmp = self.password_file.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32))
                tmp.replace(self.password_file)
            self.password_file.chmod(0o600)
            self._password = self.password_file.read_text().strip()
        return self._password

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"unix://{self.socket_path}?db=0&password={self.password}"
        if self.port is None:
            raise LiveStateError("the embedded Redis is not running")
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> EmbeddedRedis:
        if self.running:
            return self
        binary = find_redis_server()
        if self.unix_socket and len(str(self.socket_path).encode()) > 100:
            raise ConfigError([f"unix socket path too long for Redis (max ~100 bytes): {self.socket_path}"])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        attempts = 1 if (self.requested_port or self.unix_socket) else 5
        last_error = ""
        for _ in range(attempts):
            port = 0 if self.unix_socket else (self.requested_port or free_port())
            self.process = subprocess.Popen(
                [binary, "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,  # a Ctrl-C to the app must not kill Redis before it saved
                preexec_fn=_term_when_parent_dies if self.stop_with_parent else None,
            )
            assert self.process.stdin is not None
            self.process.stdin.write(self._config(port).encode())
            self.process.stdin.close()
            self.port = port or None
            try:
                self._wait_until_ready()
                log.info(
                    "embedded Redis %s running (pid %d, data in %s, password in %s)",
                    self.socket_path if self.unix_socket else f"127.0.0.1:{self.port}",
                    self.process.pid,
                    self.data_dir,
                    self.password_file,
                )
                return self
            except LiveStateError as exc:
                last_error = str(exc)
                self._kill()
        raise LiveStateError(f"embedded Redis did not start: {last_error} (see {self.log_file})")

    def _config(self, port: int) -> str:
        lines = [
            "daemonize no",
            f"port {port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            f'dir "{self.data_dir}"',
            f'pidfile "{self.pid_file}"',
            f'logfile "{self.log_file}"',
            "appendonly yes",
            "appendfsync everysec",
            'appendfilename "appendonly.aof"',
            'dbfilename "dump.rdb"',
            "save 3600 1 300 100 60 10000",
            "stop-writes-on-bgsave-error yes",
            "databases 16",
            f"requirepass {self.password}",
        ]
        if self.unix_socket:
            lines += [f'unixsocket "{self.socket_path}"', "unixsocketperm 700"]
        return "\n".join(lines) + "\n"

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise LiveStateError(
                    f"redis-server exited with {self.process.returncode if self.process else '?'}"
                )
            try:
                with self._client(timeout=1.0) as client:
                    # PING answers LOADING while the AOF is replayed; wait until the data is all back.
                    info = client.info("persistence")
                    if int(info.get("loading", 0)) == 0 and client.ping():
                        return
            except (RedisConnectionError, OSError):
                pass
            except RedisError as exc:
                if "LOADING" not in str(exc):
                    raise LiveStateError(f"redis-server answered with an error: {exc}") from exc
            time.sleep(0.05)
        raise LiveStateError(f"redis-server did not answer within {START_TIMEOUT_S:.0f}s")

    def _client(self, timeout: float) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def stop(self) -> None:
        """Save and shut down (SHUTDOWN SAVE); terminate if it does not answer."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                with self._client(timeout=STOP_TIMEOUT_S) as client:
                    client.shutdown(save=True)
            except (RedisError, OSError) as exc:
                # redis-py reports the dropped connection after a successful SHUTDOWN as an error too
                log.debug("embedded Redis shutdown: %s", exc)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("embedded Redis did not stop in %.0fs; terminating it", STOP_TIMEOUT_S)
                self._kill()
        self.process = None
        self.port = None

    def _kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # redis-server saves on SIGTERM too
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _stop_leftover(self) -> None:
        """A previous run that died without stopping its Redis left it running on our files: stop it, so
        two servers never write one AOF."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return  # not running any more
        try:
            cwd = Path(f"/proc/{pid}/cwd").resolve()
        except OSError:
            return
        # the pid may have been reused by another process, even another Redis: only ours runs in our dir
        if b"redis-server" not in cmdline or cwd != self.data_dir:
            return
        log.warning("stopping a leftover embedded Redis (pid %d) on %s", pid, self.data_dir)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedRedis({str(self.data_dir)!r}, running={self.running})"
