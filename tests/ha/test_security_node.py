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
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
import websockets
from ha_support import ADMIN_PASSWORD, IntakeNode
from support.tls import CertificateAuthority

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
