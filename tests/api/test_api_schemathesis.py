"""Property-based conformance of the API to its own OpenAPI document (schemathesis): no 500s, responses
match their schemas and documented status codes. The centre and uvicorn run in a thread of their own, so
schemathesis' synchronous client can call them over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from api.app import create_app
from api.auth import Role, hash_password
from api.roles import rule_for
from api.server import RunningServer
from intake.app import Centre
from intake.settings import TakerConfig, load_settings

PASSWORD = "correct horse battery"
MAX_EXAMPLES = 25
USER_OF_ROLE = {
    Role.SUPERVISOR: "vedouci",
    Role.CALL_TAKER: "jana",
    Role.ADMIN: "admin",
    Role.INTEGRATION: "ext",
}
PREFERENCE = (Role.SUPERVISOR, Role.CALL_TAKER, Role.ADMIN, Role.INTEGRATION)


class ThreadedCentre:
    """A centre and its API on a real port, in a thread with its own event loop."""

    def __init__(self, var_dir: Path, database_url: str, redis_url: str) -> None:
        self.settings = load_settings(
            var_dir=var_dir,
            database_url=database_url,
            redis_url=redis_url,
            node_id="schemathesis",
            secret_key="schemathesis-secret-0123456789abcdef-TESTONLY-KvK",
            sip_enabled=False,
            transcription_enabled=False,
            takers=[TakerConfig(id="jana", name="Jana", desks=["ZZS", "112"])],
        )
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="schemathesis-centre", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test thread by __enter__)
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        centre = await Centre.start(self.settings, with_telephony=False)
        try:
            for role, username in USER_OF_ROLE.items():
                await asyncio.to_thread(
                    centre.repo.create_user, username, hash_password(PASSWORD), role.value
                )
            async with RunningServer(create_app(centre)) as server:
                self.url = server.url
                self._ready.set()
                await self._stop.wait()
        finally:
            await centre.stop()

    def __enter__(self) -> ThreadedCentre:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def api_server(
    make_database_url: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedCentre]:
    url = redis_url.rsplit("/", 1)[0] + "/8" if redis_url.startswith("redis://") else redis_url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    with ThreadedCentre(tmp_path_factory.mktemp("schemathesis"), make_database_url(), url) as server:
        yield server


@pytest.fixture(scope="module")
def tokens(api_server: ThreadedCentre) -> dict[Role, str]:
    out = {}
    for role, username in USER_OF_ROLE.items():
        response = requests.post(
            api_server.url + "/api/auth/token", json={"username": username, "password": PASSWORD}, timeout=10
        )
        response.raise_for_status()
        out[role] = response.json()["access_token"]
    return out


def conformance_check(operation: Any, base_url: str, headers: dict[str, str]) -> Any:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, timeout=30)

    return check


@pytest.mark.slow
def test_api_conforms_to_its_openapi_document(api_server: ThreadedCentre, tokens: dict[Role, str]):
    """Every operation, a bounded number of generated requests each (schemathesis' pytest plugin does not
    run under pytest 9, so operations are driven through hypothesis here)."""
    api_schema = schemathesis.openapi.from_url(api_server.url + "/openapi.json")
    failures: list[str] = []
    operations = 0
    # Logging out revokes the role's token: that operation goes last, the others run with live tokens.
    all_operations = sorted(
        (result.ok() for result in api_schema.get_all_operations()),
        key=lambda op: op.path == "/api/auth/logout",
    )
    for operation in all_operations:
        operations += 1
        allowed = rule_for(operation.method.upper(), operation.path) or frozenset()
        role = next((r for r in PREFERENCE if r in allowed), Role.SUPERVISOR)
        headers = {"Authorization": f"Bearer {tokens[role]}"}

        check = conformance_check(operation, api_server.url, headers)
        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001  (one report of every failing operation)
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
