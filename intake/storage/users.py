"""Storage of API users: password hashes, roles, and the token version that revokes tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.domain import utc_now
from intake.errors import Conflict, NotFound
from intake.storage.core import StoreCore
from intake.storage.mapping import User, user_from_row
from intake.storage.tables import UserRow


class UserStore(StoreCore):
    """API users by username."""

    def create_user(self, username: str, password_hash: str, role: str, active: bool = True) -> User:
        """Conflict when the username is taken."""

        def work(session: Session) -> User:
            row = UserRow(
                username=username, password_hash=password_hash, role=role, active=active, created_at=utc_now()
            )
            session.add(row)
            session.flush()
            return user_from_row(row)

        return self._write(
            f"create user {username}",
            work,
            on_integrity_error=lambda exc: Conflict(f"user {username} already exists", username=username),
        )

    def get_user(self, username: str) -> User | None:
        if "\x00" in username:
            return None  # no stored name holds a NUL byte (PostgreSQL text cannot)

        def work(session: Session) -> User | None:
            row = session.scalars(select(UserRow).where(UserRow.username == username)).first()
            return user_from_row(row) if row is not None else None

        return self._read(f"get user {username}", work)

    def list_users(self) -> list[User]:
        def work(session: Session) -> list[User]:
            return [user_from_row(r) for r in session.scalars(select(UserRow).order_by(UserRow.username))]

        return self._read("list users", work)

    def update_user(
        self,
        username: str,
        *,
        password_hash: str | None = None,
        role: str | None = None,
        active: bool | None = None,
    ) -> User:
        """Change a user; a new password, a new role or disabling revokes the user's tokens."""

        def work(session: Session) -> User:
            row = session.scalars(
                select(UserRow).where(UserRow.username == username).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"user {username} does not exist", username=username)
            revoke = password_hash is not None or (role is not None and role != row.role) or active is False
            if password_hash is not None:
                row.password_hash = password_hash
            if role is not None:
                row.role = role
            if active is not None:
                row.active = active
            if revoke:
                row.token_version = (row.token_version or 0) + 1
            session.flush()
            return user_from_row(row)

        return self._write(f"update user {username}", work)

    def revoke_tokens(self, username: str) -> User:
        """Invalidate every token issued to ``username`` so far (logout). NotFound for an unknown user."""

        def work(session: Session) -> User:
            row = session.scalars(
                select(UserRow).where(UserRow.username == username).with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"user {username} does not exist", username=username)
            row.token_version = (row.token_version or 0) + 1
            session.flush()
            return user_from_row(row)

        return self._write(f"revoke tokens of {username}", work)
