"""Structured logs: one JSON object per line, with the call and incident a line is about.

Code logs with ``log.info("...", extra={"call_id": ..., "incident_id": ...})`` or inside
:func:`call_context`, which tags every line logged in that task with the call's ids.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)
_incident_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("incident_id", default=None)


@contextmanager
def call_context(call_id: str | None, incident_id: str | None = None) -> Iterator[None]:
    t1 = _call_id.set(call_id)
    t2 = _incident_id.set(incident_id)
    try:
        yield
    finally:
        _call_id.reset(t1)
        _incident_id.reset(t2)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "call_id": getattr(record, "call_id", None) or _call_id.get(),
            "incident_id": getattr(record, "incident_id", None) or _incident_id.get(),
        }
        node = getattr(record, "node", None)
        if node:
            out["node"] = node
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        call = getattr(record, "call_id", None) or _call_id.get()
        incident = getattr(record, "incident_id", None) or _incident_id.get()
        tags = " ".join(
            t for t in (f"call={call}" if call else "", f"incident={incident}" if incident else "") if t
        )
        base = f"{datetime.now(UTC):%H:%M:%S} {record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{base} [{tags}]" if tags else base


def configure_logging(
    level: str = "INFO", json_lines: bool = True, file: Path | None = None, to_stderr: bool = True
) -> None:
    """Logs to stderr (JSON or text), and/or as JSON lines to ``file`` (the demo keeps its terminal for
    people: logs go to the file, ``--verbose`` adds them to the terminal as text)."""
    handlers: list[logging.Handler] = []
    if to_stderr:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if json_lines and file is None else TextFormatter())
        handlers.append(handler)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(JsonFormatter())
        handlers.append(to_file)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
