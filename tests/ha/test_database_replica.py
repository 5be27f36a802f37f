"""PostgreSQL in production form (issue 8, part 5): a streaming replica made with ``pg_basebackup -R`` from
the test run's private cluster receives the incidents the centre writes to the primary, and after a manual
promotion (``pg_promote()``, what docs/ha.md tells the operator to do) the centre can write to it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url
from support.servers import PostgresCluster, PostgresServer

from intake.storage.database import Database
from intake.storage.repository import Repository

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]


class StreamingReplica(PostgresCluster):
    """A hot standby of ``primary``: base backup over the replication protocol, then WAL streaming."""

    SETTINGS = (*PostgresCluster.SETTINGS, "hot_standby=on")  # max_connections: at least the primary's

    def __init__(self, primary: PostgresCluster) -> None:
        super().__init__()
        self.primary = primary

    def start(self) -> StreamingReplica:
        self._prepare_directories()
        self._run(
            str(self.bin / "pg_basebackup"),
            "-h",
            str(self.primary.socket_dir),
            "-p",
            str(self.primary.PORT),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",  # standby.signal + primary_conninfo: start as a streaming standby
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )
        self._launch()
        return self


@pytest.fixture
def primary_and_replica(
    postgres_server: PostgresServer,
) -> Iterator[tuple[PostgresCluster, StreamingReplica]]:
    if not isinstance(postgres_server, PostgresCluster) or (
        shutil.which("runuser") is None and os.geteuid() == 0
    ):
        pytest.skip("needs the test run's private PostgreSQL cluster (IZS_TEST_DATABASE_URL is set)")
    replica = StreamingReplica(postgres_server)
    try:
        replica.start()
        yield postgres_server, replica
    finally:
        replica.stop()


def _wait_replayed(
    replica: StreamingReplica, database: str, incident_id: str, timeout_s: float = 20
) -> float:
    started = time.monotonic()
    dsn = f"host={replica.socket_dir} port={replica.PORT} user=postgres dbname={database}"
    last = ""
    while time.monotonic() - started < timeout_s:
        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                if conn.execute("SELECT 1 FROM incidents WHERE id = %s", (incident_id,)).fetchone():
                    return time.monotonic() - started
        except (psycopg.OperationalError, psycopg.errors.UndefinedTable) as exc:
            last = str(exc)
        time.sleep(0.05)
    raise AssertionError(
        f"incident {incident_id} did not reach the replica in {timeout_s} s: {last}\n"
        f"{replica.log.read_text(errors='replace')[-2000:]}"
    )


def test_incidents_written_to_the_primary_stream_to_the_replica_which_takes_writes_once_promoted(
    primary_and_replica: tuple[PostgresCluster, StreamingReplica],
) -> None:
    primary, replica = primary_and_replica
    url = primary.create_database("izs_ha_repl")
    name = make_url(url).database
    assert name is not None
    database = Database(url)
    try:
        database.upgrade()
        repo = Repository(database)
        written = [
            repo.create_incident("KVK", "MED_CARDIAC_ARREST", 1, ["ZZS"], None, True, "ha-test"),
            repo.create_incident("KVK", "FIRE_BUILDING", 1, ["HZS", "ZZS"], None, False, "ha-test"),
        ]
    finally:
        database.dispose()
    lags = [_wait_replayed(replica, name, incident.id) for incident in written]

    replica_url = f"postgresql+psycopg://postgres@/{name}?host={replica.socket_dir}&port={replica.PORT}"
    standby = Database(replica_url)
    try:
        read = Repository(standby).get_incident(written[0].id)
        with psycopg.connect(replica.admin_dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            conn.execute("SELECT pg_promote(wait => true)")
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        standby.dispose()  # connections opened before the promotion are read-only sessions
        after = Repository(standby).create_incident(
            "KVK", "TRAFFIC_ACCIDENT", 2, ["PCR"], None, False, "ha-test-after-promotion"
        )
    finally:
        standby.dispose()
    print(f"\nreplication: incidents visible on the replica after {[round(x, 3) for x in lags]} s")
    assert read.incident_type == written[0].incident_type and read.tcpr
    # Numbering continues from the replicated state: no id is handed out twice.
    assert after.id not in {i.id for i in written}
