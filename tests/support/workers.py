"""Work done by separate processes in concurrency tests (importable, so ``spawn`` can run it)."""

from __future__ import annotations

import time

from intake.storage.database import Database
from intake.storage.repository import Repository
from routing.vocabulary import Agency, IncidentType


def wait_until(start_at: float) -> None:
    """Threads and freshly spawned processes all begin at the same moment, so they really overlap."""
    time.sleep(max(0.0, start_at - time.time()))


def create_incidents(url: str, worker: str, count: int, start_at: float = 0.0) -> list[str]:
    database = Database(url)
    database.ping()
    wait_until(start_at)
    try:
        repository = Repository(database)
        return [
            repository.create_incident(
                "KVK", IncidentType.FIRE_BUILDING, 2, [Agency.HZS], None, False, worker, {"n": n}
            ).id
            for n in range(count)
        ]
    finally:
        database.dispose()


def update_incident(url: str, incident_id: str, worker: str, count: int, start_at: float = 0.0) -> int:
    database = Database(url)
    database.ping()
    wait_until(start_at)
    try:
        repository = Repository(database)
        for n in range(count):
            if n % 2:
                repository.update_incident(incident_id, worker, "note_added", {"note": f"{worker} note {n}"})
            else:
                repository.append_timeline(incident_id, worker, "observed", {"mark": f"{worker}/{n}"})
        return count
    finally:
        database.dispose()
