"""Security of a real ``izs serve`` process (issue 16): bodies refused before they are read (the node's
peak memory does not grow under three concurrent 200 MB uploads), HTTPS and WSS with a certificate from a
test CA made here, and the embedded Redis behind a password."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import ssl
import stat
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
import websockets
from ha_support import ADMIN_PASSWORD, IntakeNode
from support.tls import CertificateAuthority

from intake.bus import LiveEvent
from intake.redis_server import EmbeddedRedis

BIG = 200 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def upload(host: str, port: int, chunked: bool, results: list[tuple[int | None, int]]) -> None:
    """POST a 200 MB body to the anonymous login route, stopping as soon as the server answers."""
    sock = socket.create_connection((host, port), timeout=60)
    sent = 0
    status: int | None = None
    try:
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}"
        sock.sendall(
            f"POST /api/auth/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"{length}\r\n\r\n".encode()
        )
        frame = (f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n") if chunked else CHUNK
        try:
            while sent < BIG:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered: stop sending
                sock.sendall(frame)
                sent += len(CHUNK)
            if chunked and sent >= BIG:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            head = sock.recv(4096)
            if head.startswith(b"HTTP/1.1 "):
                status = int(head.split()[1])
        except (ConnectionResetError, TimeoutError):
            pass
    finally:
        sock.close()
        results.append((status, sent))


def test_concurrent_200_mb_bodies_are_refused_without_the_node_growing(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", stop_with_parent=True) as redis_server:
        node = IntakeNode(
            "body-limit",
            "127.0.0.1",
            tmp_path / "node",
            f"sqlite:///{tmp_path / 'izs.db'}",
            redis_server.url,
            takers=[],
            extra_env={"IZS_SIP_ENABLED": "false"},
        )
        node.start()
        try:
            node.wait_ready()
            assert node.process is not None
            before = peak_rss_kib(node.process.pid)
            results: list[tuple[int | None, int]] = []
            threads = [
                threading.Thread(target=upload, args=(node.host, node.http_port, chunked, results))
                for chunked in (False, False, False, True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            after = peak_rss_kib(node.process.pid)
            # the node still answers
            assert httpx.get(f"{node.base_url}/api/healthz", timeout=5).status_code == 200
        finally:
            node.stop()
    growth_mb = (after - before) / 1024
    print(f"peak RSS before {before / 1024:.0f} MB, after {after / 1024:.0f} MB, uploads {results}")
    assert [status for status, _ in results] == [413] * 4, results
    assert all(sent < BIG for _, sent in results), "a whole 200 MB body was accepted onto the wire"
    assert growth_mb < 32, f"peak memory grew by {growth_mb:.0f} MB"


def test_api_consoles_and_live_socket_over_tls_with_a_test_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    cert, key = ca.issue("node")
    with EmbeddedRedis(tmp_path / "redis", stop_with_parent=True) as redis_server:
        node = IntakeNode(
            "tls",
            "127.0.0.1",
            tmp_path / "node",
            f"sqlite:///{tmp_path / 'izs.db'}",
            redis_server.url,
            takers=[],
            extra_env={
                "IZS_SIP_ENABLED": "false",
                "IZS_TLS_CERTFILE": str(cert),
                "IZS_TLS_KEYFILE": str(key),
            },
        )
        node.start()
        try:
            base = f"https://127.0.0.1:{node.http_port}"
            context = ca.client_context()
            deadline = time.monotonic() + 90
            while True:
                assert node.process is not None and node.process.poll() is None, node.log_tail()
                try:
                    if httpx.get(f"{base}/api/healthz", verify=context, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, node.log_tail()
                    time.sleep(0.2)
            with httpx.Client(base_url=base, verify=context, timeout=10) as client:
                console = client.get("/console")
                assert console.status_code == 200
                assert console.headers["strict-transport-security"].startswith("max-age=")
                login = client.post("/api/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
                assert login.status_code == 200, login.text
                token = login.json()["access_token"]

            async def live() -> dict:
                async with websockets.connect(
                    f"wss://127.0.0.1:{node.http_port}/api/live", ssl=context
                ) as ws:
                    await ws.send(json.dumps({"type": "auth", "token": token}))
                    return dict(json.loads(await ws.recv()))

            assert asyncio.run(live())["type"] == "hello"
            # Plain HTTP to the TLS port gets no API answer; a client that does not trust the CA refuses.
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{node.http_port}/api/healthz", timeout=5).raise_for_status()
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                httpx.get(f"{base}/api/healthz", verify=ssl.create_default_context(), timeout=5)
        finally:
            node.stop()


def test_the_embedded_redis_requires_its_generated_password(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", stop_with_parent=True) as server:
        assert server.port is not None
        mode = stat.S_IMODE(os.stat(server.password_file).st_mode)
        assert mode == 0o600, oct(mode)
        assert len(server.password) >= 32
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("izs:takeover", "1")
        anonymous.close()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="guess", socket_timeout=5).ping()
        with redis.Redis.from_url(server.url, socket_timeout=5) as client:
            assert client.ping()
        password = server.password
    # Restarted on the same directory: the same password (persisted data stays reachable).
    with EmbeddedRedis(tmp_path / "redis", stop_with_parent=True) as again:
        assert again.password == password
        with redis.Redis.from_url(again.url, socket_timeout=5) as client:
            assert client.ping()
    with EmbeddedRedis(tmp_path / "redis-unix", unix_socket=True, stop_with_parent=True) as unix:
        assert stat.S_IMODE(os.stat(unix.socket_path).st_mode) & 0o077 == 0
        anonymous = redis.Redis(unix_socket_path=str(unix.socket_path), socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        with redis.Redis.from_url(unix.url, socket_timeout=5) as client:
            assert client.ping()


def test_a_shared_redis_over_tls_with_a_password(tmp_path: Path) -> None:
    """``rediss://:password@host:port/0?ssl_ca_certs=...``: Debian's redis-server with TLS only (no plain
    port), a certificate from a test CA; a centre runs its live state and event bus over it."""
    from intake.app import Centre
    from intake.redis_server import find_redis_server, free_port
    from intake.settings import load_settings

    ca = CertificateAuthority.create(tmp_path / "ca")
    cert, key = ca.issue("redis")
    port = free_port()
    password = "shared-redis-password-0123456789"
    config = "\n".join(
        [
            "port 0",
            f"tls-port {port}",
            "bind 127.0.0.1",
            f"tls-cert-file {cert}",
            f"tls-key-file {key}",
            f"tls-ca-cert-file {ca.cert}",
            "tls-auth-clients no",
            f"requirepass {password}",
            f'dir "{tmp_path}"',
            "save ''",
            "appendonly no",
        ]
    )
    process = subprocess.Popen(
        [find_redis_server(), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert process.stdin is not None
    process.stdin.write(config.encode())
    process.stdin.close()
    url = f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={ca.cert}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with redis.Redis.from_url(url, socket_timeout=2) as client:
                    assert client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, (
                    "redis-server with TLS did not start"
                )
                time.sleep(0.1)
        # Plain text or a wrong password get nothing.
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(url.replace(password, "guess"), socket_timeout=2).ping()

        async def centre_over_tls() -> list[str]:
            settings = load_settings(
                var_dir=tmp_path / "var",
                database_url=f"sqlite:///{tmp_path / 'izs.db'}",
                redis_url=url,
                sip_enabled=False,
                transcription_enabled=False,
            )
            centre = await Centre.start(settings, with_telephony=False)
            try:
                events = centre.bus.subscribe()
                first = asyncio.ensure_future(events.__anext__())
                await asyncio.sleep(0)
                await centre.bus.publish(LiveEvent("component.health", {"component": "test"}))
                event = await asyncio.wait_for(first, 10)
                await events.aclose()
                return [h.name for h in await centre.health() if h.healthy] + [event.type]
            finally:
                await centre.stop()

        healthy = asyncio.run(centre_over_tls())
        assert "component.health" in healthy and any("redis" in name for name in healthy), healthy
    finally:
        process.terminate()
        process.wait(10)
