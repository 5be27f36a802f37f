"""Running the API with uvicorn: ``izs serve`` calls :func:`serve`; tests use :class:`RunningServer`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

import uvicorn

from api.app import create_app

if TYPE_CHECKING:
    from intake.app import Centre

log = logging.getLogger(__name__)


def uvicorn_config(app: Any, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,  # the centre configures logging (JSON lines)
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "timeout_graceful_shutdown": 10,
        "proxy_headers": True,
        # Clients send only their auth message and pings on the live socket.
        "ws_max_size": 64 * 1024,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def tls_options(settings: Any) -> dict[str, Any]:
    """uvicorn options for HTTPS/WSS when the settings name a certificate and key, else none."""
    if not settings.serves_tls:
        return {}
    return {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)}


async def serve(centre: Centre, host: str | None = None, port: int | None = None) -> None:
    """Serve the centre's API and consoles until cancelled (one worker per process: run several
    processes / nodes behind a proxy for more; they share state through the database and Redis)."""
    settings = centre.settings
    server = uvicorn.Server(
        uvicorn_config(
            create_app(centre),
            host or settings.http_host,
            settings.http_port if port is None else port,
            **tls_options(settings),
        )
    )
    # uvicorn traps SIGINT/SIGTERM while serving, drains connections, then re-raises the signal to the
    # handlers installed before (the centre's), so shutdown stays the centre's decision.
    await server.serve()


class RunningServer:
    """A uvicorn server on an ephemeral 127.0.0.1 port inside the current event loop (tests, embedding)."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", self.port, log_level="warning"))
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RunningServer:
        self._task = asyncio.create_task(self.server.serve(sockets=[self._sock]))
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close()
