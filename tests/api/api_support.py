"""Shared values and helpers of the API tests, in a module of their own (not conftest) so test modules
import them by a name no other test directory uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intake.settings import TakerConfig, load_settings

SECRET = "test-secret-key-for-api-tests-0123456789-TESTONLY-KvK"
PASSWORD = "correct horse battery"
# user name -> role; call takers' user names are their call-taker ids
USERS = {
    "admin": "admin",
    "vedouci": "supervisor",
    "jana": "call_taker",
    "petr": "call_taker",
    "zzs-dispatch": "integration",
}
ROLE_USER = {"admin": "admin", "supervisor": "vedouci", "call_taker": "jana", "integration": "zzs-dispatch"}


def api_redis_url(redis_url: str) -> str:
    """A database index of the session's Redis of its own, so the API tests can wipe it freely."""
    if redis_url.startswith("redis://"):
        return redis_url.rsplit("/", 1)[0] + "/7"
    return redis_url


def centre_settings(var_dir: Path, database_url: str, redis_url: str, node: str) -> Any:
    return load_settings(
        var_dir=var_dir,
        database_url=database_url,
        redis_url=redis_url,
        node_id=node,
        secret_key=SECRET,
        sip_enabled=False,
        transcription_enabled=False,
        wrap_up_s=0.2,
        takers=[
            TakerConfig(id="jana", name="Jana Nováková", desks=["ZZS", "112"], languages=["cs", "de"]),
            TakerConfig(id="petr", name="Petr Svoboda", desks=["PCR", "HZS"], languages=["cs"]),
        ],
    )
