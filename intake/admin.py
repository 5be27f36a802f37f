"""Administration: API users and their tokens, webhooks and their deliveries.

The rules live here: changing a user's password or role, or disabling them, revokes their tokens on every
node (the ``user.revoked`` bus event closes their open live sockets at once); an admin never disables or
demotes themselves (someone must stay able to administer); a webhook target is checked when it is
registered. Password hashing stays with the API's authentication (it owns the algorithm); this service
receives hashes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from intake.bus import LiveEvent
from intake.errors import IllegalTransition
from intake.exchange.targets import check_webhook_url
from intake.ports import AdminRecords, Publisher
from intake.storage.mapping import User, Webhook, WebhookDelivery

ADMIN_ROLE = "admin"


class AdminService:
    """Users, tokens, webhooks and deliveries, with the rules that guard them."""

    def __init__(
        self, records: AdminRecords, bus: Publisher, allow_private_webhook_targets: Callable[[], bool]
    ) -> None:
        """``allow_private_webhook_targets`` is asked at each registration: the setting may change."""
        self._records = records
        self._bus = bus
        self._allow_private = allow_private_webhook_targets

    # ------------------------------------------------------------------------------------------ users

    async def list_users(self) -> list[User]:
        return await asyncio.to_thread(self._records.list_users)

    def create_user(self, username: str, password_hash: str, role: str, active: bool = True) -> User:
        """Store a new user (Conflict when the name is taken); synchronous like the store it fronts."""
        return self._records.create_user(username, password_hash, role, active)

    async def update_user(
        self,
        username: str,
        by: str,
        *,
        password_hash: str | None = None,
        role: str | None = None,
        active: bool | None = None,
    ) -> User:
        """Change a user; a change that revokes their tokens is announced to every node."""
        if username == by and (active is False or (role and role != ADMIN_ROLE)):
            raise IllegalTransition("an admin cannot disable or demote themselves", username=username)
        before = await asyncio.to_thread(self._records.get_user, username)
        user = await asyncio.to_thread(
            self._records.update_user, username, password_hash=password_hash, role=role, active=active
        )
        if before is not None and user.token_version != before.token_version:
            await self._announce_revoked(username)
        return user

    async def revoke_tokens(self, username: str) -> None:
        """Invalidate every token of ``username`` so far (logout) and tell every node, so open live sockets
        of that user are re-checked and closed at once."""
        await asyncio.to_thread(self._records.revoke_tokens, username)
        await self._announce_revoked(username)

    async def _announce_revoked(self, username: str) -> None:
        await self._bus.publish(LiveEvent("user.revoked", {"username": username}))

    # --------------------------------------------------------------------------------------- webhooks

    async def list_webhooks(self) -> list[Webhook]:
        return await asyncio.to_thread(self._records.list_webhooks)

    async def add_webhook(self, url: str, secret: str, events: Iterable[str]) -> Webhook:
        """Register a webhook; internal targets are refused (TargetRefused) unless the settings allow them."""
        await check_webhook_url(url, self._allow_private())
        return await asyncio.to_thread(self._records.create_webhook, url, secret, list(events))

    async def delete_webhook(self, webhook_id: int) -> None:
        await asyncio.to_thread(self._records.delete_webhook, webhook_id)

    async def list_deliveries(
        self, webhook_id: int | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[WebhookDelivery]:
        return await asyncio.to_thread(
            self._records.list_deliveries, webhook_id=webhook_id, status=status, limit=limit, offset=offset
        )
