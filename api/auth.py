"""Who is calling: users with argon2-hashed passwords, signed expiring bearer tokens, and the role rule
table every endpoint is checked against.

A token is ``base64url(json claims) + "." + base64url(HMAC-SHA256(secret, claims))``; claims are the user
name, role, expiry and the user's token version. Each request also checks the user still exists, is active
and still has that token version, so disabling a user, changing their password or logging out revokes
every token issued before, at once and on every node.

Passwords are verified on a small executor of their own (:class:`PasswordVerifier`): a login flood waits
there (and is refused when too many wait) instead of taking the threads the call-handling API uses.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import enum
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from api.errors import Unauthenticated
from intake.errors import TooManyAttempts

TOKEN_TTL_S = 12 * 3600  # one shift


class Role(enum.StrEnum):
    CALL_TAKER = "call_taker"
    SUPERVISOR = "supervisor"
    INTEGRATION = "integration"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: Role
    expires_at: int
    token_version: int = 0

    @property
    def actor(self) -> str:
        """The name written into incident timelines."""
        return self.username


# argon2id, 64 MiB, 3 passes, one lane: a verification occupies one core, so the password executor's
# worker count bounds the CPU a login flood can take (existing hashes keep verifying with their own
# parameters, which the hash string carries).
_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(secret_key: str | None, var_dir: Path) -> bytes:
    """The settings' secret, or one generated once into ``var_dir/api-secret`` (shared by every worker of
    the node; several nodes must be given the same ``IZS_SECRET_KEY``)."""
    if secret_key:
        return secret_key.encode()
    path = var_dir / "api-secret"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text().strip().encode()


class TokenSigner:
    def __init__(self, secret: bytes, ttl_s: int = TOKEN_TTL_S) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(
        self, username: str, role: Role, now: float | None = None, token_version: int = 0
    ) -> tuple[str, int]:
        expires = int((now or time.time()) + self.ttl_s)
        claims = _b64(
            json.dumps({"sub": username, "role": role.value, "exp": expires, "ver": token_version}).encode()
        )
        mac = _b64(hmac.new(self._secret, claims.encode(), hashlib.sha256).digest())
        return f"{claims}.{mac}", expires

    def verify(self, token: str, now: float | None = None) -> Principal:
        try:
            claims_part, mac_part = token.split(".", 1)
            expected = hmac.new(self._secret, claims_part.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(mac_part)):
                raise Unauthenticated("token signature is not valid")
            claims: dict[str, Any] = json.loads(_unb64(claims_part))
            principal = Principal(
                str(claims["sub"]), Role(claims["role"]), int(claims["exp"]), int(claims.get("ver", 0))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise Unauthenticated("token is malformed") from exc
        if principal.expires_at < (now or time.time()):
            raise Unauthenticated("token has expired")
        return principal


async def authenticate(repo: Any, signer: TokenSigner, token: str | None) -> Principal:
    if not token:
        raise Unauthenticated("a bearer token is required (POST /api/auth/token)")
    principal = signer.verify(token)
    user = await asyncio.to_thread(repo.get_user, principal.username)
    if user is None or not user.active:
        raise Unauthenticated("the user no longer exists or is disabled")
    if user.role != principal.role.value:
        raise Unauthenticated("the user's role changed: log in again")
    if getattr(user, "token_version", 0) != principal.token_version:
        raise Unauthenticated("the token was revoked (logout, password change or disabled user)")
    return principal


PASSWORD_THREAD_NICENESS = 10


def _lower_thread_priority() -> None:
    """Password threads run at a lower CPU priority than the event loop (Linux: niceness is per thread and
    inherited by argon2's own lanes), so a login flood cannot starve the call-handling API of CPU."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_THREAD_NICENESS)


class PasswordVerifier:
    """argon2 on ``workers`` threads of its own; more than ``max_waiting`` logins waiting are refused
    (429) at once rather than queued behind each other."""

    def __init__(self, workers: int = 1, max_waiting: int | None = None) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            workers, thread_name_prefix="izs-password", initializer=_lower_thread_priority
        )
        self._max_waiting = max_waiting if max_waiting is not None else 8 * workers
        self._waiting = 0

    async def verify(self, password_hash: str, password: str) -> bool:
        if self._waiting >= self._max_waiting:
            raise TooManyAttempts("too many logins at once: try again in a moment", retry_after_s=1)
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, verify_password, password_hash, password)
        finally:
            self._waiting -= 1

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._executor, hash_password, password)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def login(
    repo: Any,
    signer: TokenSigner,
    username: str,
    password: str,
    *,
    verifier: PasswordVerifier,
    throttle: Any | None = None,
    address: str | None = None,
) -> tuple[str, int, Role]:
    """A token for a right password. ``throttle`` (:class:`intake.logins.LoginThrottle`) holds back user
    names and addresses with too many failures before any password is hashed."""
    if throttle is not None:
        await throttle.check(username, address)
    user = await asyncio.to_thread(repo.get_user, username)
    # Hash anyway for unknown users, so timing does not tell which user names exist.
    # argon2 takes a noticeable fraction of a second by design: never on the event loop.
    valid = await verifier.verify(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not valid or not user.active:
        if throttle is not None:
            await throttle.failed(username, address)
        raise Unauthenticated("wrong user name or password")
    if throttle is not None:
        await throttle.succeeded(username)
    role = Role(user.role)
    token, expires = signer.issue(username, role, token_version=user.token_version)
    return token, expires, role


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
