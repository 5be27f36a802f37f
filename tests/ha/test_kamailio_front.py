"""Kamailio in front of intake nodes (issue 8, part 2), started with ``deploy/kamailio/izs-kamailio.sh``:
its OPTIONS probes take a node that does not answer out of the dispatcher set before any call is sent
there, and put it back once it answers again; calls go only to nodes that are up.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest
from ha_support import (
    START_SCRIPT,
    IntakeNode,
    KamailioFront,
    free_port,
    needs_two_loopback_nodes,
)
from support.servers import PostgresServer

from intake.redis_server import EmbeddedRedis
from intake.redis_server import free_port as free_tcp_port
from intake.storage.database import Database
from intake.storage.repository import Repository
from izs.demo.callers import CallerFleet, PlannedCall
from izs.demo.speech import SpeechSynthesizer

TAKERS = [{"id": "zzs1", "name": "ZZS 1", "desks": ["ZZS"], "languages": ["cs"]}]


def test_start_script_refuses_a_node_without_a_port(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(START_SCRIPT), "-r", str(tmp_path), "127.0.0.1:5060", "127.0.0.2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and "NODE must be host:port" in result.stderr


def test_start_script_writes_a_config_that_kamailio_accepts(tmp_path: Path) -> None:
    """Foreground mode is what the drills use; here the generated files are checked without running."""
    port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    front = KamailioFront(tmp_path, ["127.0.0.2:5070", "127.0.0.3:5070"], port=port).start()
    try:
        listing = (tmp_path / "run" / "izs-dispatcher.list").read_text()
        config = (tmp_path / "run" / "kamailio.cfg").read_text()
    finally:
        front.stop()
    assert "1 sip:127.0.0.2:5070 0 0 duid=node-1" in listing
    assert "1 sip:127.0.0.3:5070 0 0 duid=node-2" in listing
    assert f'#!substdef "!IZS_LISTEN!udp:127.0.0.1:{port}!"' in config


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(180)
@needs_two_loopback_nodes
async def test_probes_take_a_silent_node_out_before_calls_and_put_it_back_when_it_answers(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    voice = await asyncio.to_thread(
        lambda: (
            SpeechSynthesizer(tmp_path / "voices")
            .synthesize("Dobrý den, hoří.", "cs", voice="espeak", tail_silence_s=30.0)
            .path
        )
    )
    redis = await asyncio.to_thread(EmbeddedRedis(tmp_path / "redis", port=free_tcp_port()).start)
    database_url = await asyncio.to_thread(postgres_server.create_database, "izs_ha_k")
    a = IntakeNode("node-a", "127.0.0.2", tmp_path / "node-a", database_url, redis.url, TAKERS)
    # Node B's address is in the dispatcher list from the start, but nothing listens there yet.
    b = IntakeNode("node-b", "127.0.0.3", tmp_path / "node-b", database_url, redis.url, TAKERS)
    b.sip_port = free_port(b.host, socket.SOCK_DGRAM)
    database = Database(database_url)
    kamailio: KamailioFront | None = None
    try:
        a.start()
        await asyncio.to_thread(a.wait_ready)
        a_address = a.sip_address
        kamailio = KamailioFront(
            tmp_path / "kamailio", [a_address, b.sip_address], probe_interval_s=1
        ).start()
        started = time.monotonic()
        down_after = None
        while time.monotonic() - started < 20 and down_after is None:
            if any(n == b.sip_address and v == "DOWN" for _, n, v in kamailio.probe_events()):
                down_after = time.monotonic() - started
            await asyncio.sleep(0.1)
        assert down_after is not None, kamailio.log_tail()

        async with CallerFleet(work_dir=tmp_path / "callers", keep_dir=True) as fleet:
            first = [
                PlannedCall(f"c{i}", voice, kamailio.target("150"), f"+42060377{i:04d}", at_s=i * 0.3)
                for i in range(3)
            ]
            fleet.start(first)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(fleet.outcome(p.label).answered for p in first):
                await asyncio.sleep(0.1)
            answered_first = [fleet.outcome(p.label).answered for p in first]
            refs_first = [fleet.outcome(p.label).sip_call_id for p in first]

            b.start()
            await asyncio.to_thread(b.wait_ready)
            back = time.monotonic()
            up_after = None
            while time.monotonic() - back < 20 and up_after is None:
                if any(n == b.sip_address and v == "UP" for _, n, v in kamailio.probe_events()):
                    up_after = time.monotonic() - back
                await asyncio.sleep(0.1)
            second = [
                PlannedCall(f"d{i}", voice, kamailio.target("150"), f"+42060378{i:04d}", at_s=i * 0.3)
                for i in range(4)
            ]
            fleet.start(second)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(fleet.outcome(p.label).answered for p in second):
                await asyncio.sleep(0.1)
            answered_second = [fleet.outcome(p.label).answered for p in second]
            refs_second = [fleet.outcome(p.label).sip_call_id for p in second]
            for plan in first + second:
                await fleet.hangup(plan.label)
        repo = Repository(database)
        nodes_first = [
            getattr(await asyncio.to_thread(repo.find_call_by_ref, ref), "node", None)
            for ref in refs_first
            if ref
        ]
        nodes_second = [
            getattr(await asyncio.to_thread(repo.find_call_by_ref, ref), "node", None)
            for ref in refs_second
            if ref
        ]
    finally:
        if kamailio is not None:
            await asyncio.to_thread(kamailio.stop)
        await asyncio.to_thread(b.stop)
        await asyncio.to_thread(a.stop)
        database.dispose()
        await asyncio.to_thread(redis.stop)

    print(
        f"\nsilent node marked down {down_after:.1f} s after Kamailio started, up {up_after} s after it answered"
    )
    assert all(answered_first), answered_first
    assert nodes_first == ["node-a"] * 3, nodes_first
    assert up_after is not None and up_after < 15, up_after
    assert all(answered_second), answered_second
    assert set(nodes_second) == {"node-a", "node-b"}, nodes_second
