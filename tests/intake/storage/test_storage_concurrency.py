"""Concurrent writers — threads and separate processes, as several intake nodes would be — never get the
same incident id, never lose or duplicate a timeline entry, never claim one webhook delivery twice."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from support import workers
from support.databases import clean_database

from intake.storage.database import Database
from intake.storage.repository import Repository
from routing.vocabulary import Agency, IncidentType

THREADS = 6
PROCESSES = 2
PER_WORKER = 25
T0 = datetime(2026, 5, 1, tzinfo=UTC)

_create_incidents = partial(workers.create_incidents, count=PER_WORKER)
_update_incident = partial(workers.update_incident, count=PER_WORKER)


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def shared_url(request: pytest.FixtureRequest, make_database_url: Callable[..., str]) -> Iterator[str]:
    """A migrated database on each backend (PostgreSQL always: this is what several nodes share)."""
    url = make_database_url(request.param)
    database = Database(url)
    database.upgrade()
    clean_database(database)
    database.dispose()
    yield url


def run_concurrently(work: Callable[..., object], *args: object) -> None:
    """``work(*args, worker_name, start_at=...)`` in THREADS threads and PROCESSES spawned processes,
    all starting at the same moment (spawned processes need a few seconds to import)."""
    start_at = time.time() + 4.0
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(PROCESSES, mp_context=context) as processes,
        ThreadPoolExecutor(THREADS) as threads,
    ):
        futures = [processes.submit(work, *args, f"proc-{i}", start_at=start_at) for i in range(PROCESSES)]
        futures += [threads.submit(work, *args, f"thread-{i}", start_at=start_at) for i in range(THREADS)]
        for future in futures:
            future.result(timeout=240)


@pytest.mark.slow
def test_concurrent_incident_creation_gives_unique_consecutive_ids(shared_url: str) -> None:
    database = Database(shared_url)
    repository = Repository(database)
    try:
        run_concurrently(_create_incidents, shared_url)
        total = (THREADS + PROCESSES) * PER_WORKER
        incidents, count = repository.list_incidents(limit=1000, with_timeline=True)
        assert count == total
        year = incidents[0].created_at.year
        assert sorted(i.id for i in incidents) == [f"KVK-{year}-{n:06d}" for n in range(1, total + 1)]
        for incident in incidents:
            assert [(e.seq, e.action) for e in incident.timeline] == [(1, "created")]
        by_worker: dict[str, list[int]] = {}
        for incident in incidents:
            by_worker.setdefault(incident.created_by, []).append(incident.timeline[0].data["n"])
        assert len(by_worker) == THREADS + PROCESSES
        assert all(sorted(ns) == list(range(PER_WORKER)) for ns in by_worker.values())
    finally:
        database.dispose()


@pytest.mark.slow
def test_concurrent_updates_to_one_incident_lose_no_timeline_entry(shared_url: str) -> None:
    database = Database(shared_url)
    repository = Repository(database)
    try:
        incident = repository.create_incident(
            "KVK", IncidentType.TRAFFIC_ACCIDENT, 1, [Agency.HZS, Agency.ZZS], None, False, "triage"
        )
        run_concurrently(_update_incident, shared_url, incident.id)
        workers_total = THREADS + PROCESSES
        final = repository.get_incident(incident.id)
        assert [e.seq for e in final.timeline] == list(range(1, 1 + 1 + workers_total * PER_WORKER))
        marks = {e.data["mark"] for e in final.timeline if e.action == "observed"}
        notes = {e.data["after"]["note"] for e in final.timeline if e.action == "note_added"}
        names = [f"thread-{i}" for i in range(THREADS)] + [f"proc-{i}" for i in range(PROCESSES)]
        assert marks == {f"{w}/{n}" for w in names for n in range(0, PER_WORKER, 2)}
        assert notes == {f"{w} note {n}" for w in names for n in range(1, PER_WORKER, 2)}
        assert sorted(final.notes) == sorted(notes)
    finally:
        database.dispose()


def test_concurrent_pollers_never_claim_one_webhook_delivery_twice(shared_url: str) -> None:
    database = Database(shared_url)
    repository = Repository(database)
    try:
        repository.create_webhook("https://a.example/hook", "s", ["*"])
        for n in range(120):
            repository.enqueue_deliveries(f"{n}-0", "incident.created", {"n": n}, now=T0)
        barrier = threading.Barrier(4)

        def poll() -> list[int]:
            barrier.wait()
            got: list[int] = []
            while batch := repository.due_deliveries(T0 + timedelta(seconds=1), limit=7):
                got.extend(d.id for d in batch)
            return got

        with ThreadPoolExecutor(4) as pool:
            results = [f.result(timeout=120) for f in [pool.submit(poll) for _ in range(4)]]
        claimed = [d for r in results for d in r]
        assert len(claimed) == 120 and len(set(claimed)) == 120
    finally:
        database.dispose()
