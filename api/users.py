"""API users: create (``izs users add``), bootstrap the first admin, list and change.

A call taker's user name is their call-taker id (``settings.takers[].id``): that is how the console knows
which desks and which offered calls are theirs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from api.auth import Role, hash_password
from intake.errors import Conflict, ValidationFailed

BOOTSTRAP_ADMIN = "admin"


def _check(username: str, password: str, role: str) -> Role:
    problems = []
    if not username or len(username) > 128 or not all(c.isalnum() or c in "_.@-" for c in username):
        problems.append("user name: 1-128 letters, digits or _ . @ -")
    if len(password) < 8:
        problems.append("password: at least 8 characters")
    try:
        checked = Role(role)
    except ValueError:
        problems.append(f"role: one of {', '.join(r.value for r in Role)}")
        checked = Role.CALL_TAKER
    if problems:
        raise ValidationFailed("; ".join(problems), problems=problems)
    return checked


def create_user_sync(repo: Any, username: str, password: str, role: str) -> Any:
    """Create a user (Conflict when the name is taken). Synchronous, for the CLI."""
    checked = _check(username, password, role)
    return repo.create_user(username, hash_password(password), checked.value)


async def create_user(repo: Any, username: str, password: str, role: str) -> Any:
    checked = _check(username, password, role)
    password_hash = await asyncio.to_thread(hash_password, password)
    return await asyncio.to_thread(repo.create_user, username, password_hash, checked.value)


def add_user_cli(database_url: str, username: str, password: str, role: str) -> str:
    """``izs users add``: migrate the database if needed and create the user. Returns a one-line result."""
    from intake.storage.database import Database
    from intake.storage.repository import Repository

    database = Database(database_url)
    try:
        database.upgrade()
        user = create_user_sync(Repository(database), username, password, role)
        return f"user {user.username} created with role {user.role}"
    finally:
        database.dispose()


async def ensure_bootstrap_admin(repo: Any, password: str | None) -> bool:
    """Create user ``admin`` from ``settings.bootstrap_admin_password`` when no such user exists yet.
    Returns whether it was created (an existing admin is never overwritten)."""
    if not password:
        return False
    existing = await asyncio.to_thread(repo.get_user, BOOTSTRAP_ADMIN)
    if existing is not None:
        return False
    try:
        await create_user(repo, BOOTSTRAP_ADMIN, password, Role.ADMIN.value)
    except Conflict:
        return False  # another worker created it at the same moment
    return True
