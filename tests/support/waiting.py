"""Waiting for a condition with a deadline (tests synchronise on conditions, never on fixed sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """The first truthy result of ``check``, polled every 50 ms; AssertionError with the last result after
    ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")
