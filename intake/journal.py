"""A local write-behind journal for call records the database could not take.

When the database is unavailable the call goes on; its latest snapshot is written here (one file per
call, replaced atomically) and retried until the database accepts it. A node that dies before that
replays the journal at its next start, so nothing is dropped. Files are pickles of our own domain
dataclasses, written and read only by this program's same version (the journal is drained at start).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

from intake.domain import Call
from intake.errors import StorageError

log = logging.getLogger(__name__)

_FORMAT = 1


class CallJournal:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)

    def record(self, call: Call) -> None:
        path = self._dir / f"{call.id}.call"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            pickle.dump((_FORMAT, call), handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    def pending(self) -> list[Call]:
        calls: list[Call] = []
        for path in sorted(self._dir.glob("*.call")):
            try:
                with path.open("rb") as handle:
                    version, call = pickle.load(handle)
            except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
                log.error("journal entry %s unreadable, kept for inspection: %s", path.name, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            if version != _FORMAT or not isinstance(call, Call):
                log.error("journal entry %s has an unknown format, kept for inspection", path.name)
                path.rename(path.with_suffix(".bad"))
                continue
            calls.append(call)
        return calls

    def forget(self, call_id: str) -> None:
        (self._dir / f"{call_id}.call").unlink(missing_ok=True)

    def __len__(self) -> int:
        return sum(1 for _ in self._dir.glob("*.call"))

    def drain(self, repo: Any) -> tuple[int, int]:
        """Write every journaled call to the database; returns (written, still pending)."""
        written = 0
        for call in self.pending():
            try:
                repo.save_call(call)
                for segment in call.transcript:
                    repo.append_transcript(call.id, segment)
            except StorageError as exc:
                log.warning("journal: database still unavailable (%s); %d calls pending", exc, len(self))
                break
            self.forget(call.id)
            written += 1
        return written, len(self)
