"""Database unavailable: the call's state waits in the local journal and reaches the database later."""

from __future__ import annotations

import socket
from pathlib import Path

from intake.domain import Call, CallerNumber, CallState, TranscriptSegment
from intake.journal import CallJournal
from intake.storage.database import Database
from intake.storage.repository import Repository


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_call(call_id: str) -> Call:
    call = Call(
        id=call_id, call_ref=f"ref-{call_id}", source="sip", dialled="155", caller=CallerNumber(raw="x")
    )
    call.transition(CallState.QUEUED)
    call.transcript.append(TranscriptSegment(leg="caller", text="nedýchá", start_s=0.0, end_s=1.2))
    return call


def test_journaled_calls_reach_the_database_once_it_is_back(tmp_path: Path):
    db_path = tmp_path / "izs.db"
    database = Database(f"sqlite:///{db_path}")
    database.upgrade()
    repo = Repository(database)
    journal = CallJournal(tmp_path / "journal")
    journal.record(make_call("a1"))
    journal.record(make_call("a2"))
    assert len(journal) == 2

    # The production database is unreachable (nothing listens on its port): everything stays journaled.
    unreachable = Database(f"postgresql+psycopg://izs@127.0.0.1:{free_port()}/izs")
    written, pending = journal.drain(Repository(unreachable))
    unreachable.dispose()
    assert (written, pending) == (0, 2)

    written, pending = journal.drain(repo)
    assert (written, pending) == (2, 0)
    stored = repo.get_call("a1")
    assert stored.state is CallState.QUEUED
    assert [s.text for s in stored.transcript] == ["nedýchá"]
    database.dispose()


def test_unreadable_journal_entry_is_set_aside_not_lost(tmp_path: Path):
    journal = CallJournal(tmp_path)
    (tmp_path / "broken.call").write_bytes(b"not a pickle")
    journal.record(make_call("ok"))
    assert [c.id for c in journal.pending()] == ["ok"]
    assert (tmp_path / "broken.bad").exists()
