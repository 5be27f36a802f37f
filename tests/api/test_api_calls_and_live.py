"""Calls over the API and live events over WebSocket: a call offered to a call taker, accepted, the
abandoned-call follow-up, supervisor statistics, role-filtered live events, and events crossing from one
node to another node's WebSocket clients through Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from support.waiting import eventually
from websockets.asyncio.client import ClientConnection, connect

from api.app import create_app
from api.server import RunningServer
from telephony.events import CallEnded, CallOffered, CallSource, EndReason
from transcription.events import TranscriptFinal

Headers = Callable[[str], dict[str, str]]

STROKE = "Dobrý den, mamince visí koutek, nemůže mluvit a nehýbe pravou rukou. Jsme v Chebu, Svobody osm."


def offer(ref: str, dialled: str = "155", caller: str = "+420603224590") -> CallOffered:
    return CallOffered(call_ref=ref, dialled=dialled, caller=caller, source=CallSource.SIP)


async def calls_by_ref(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict]:
    page = (await client.get("/api/calls", headers=headers)).json()
    return {c["id"]: c for c in page["items"]}


async def test_offered_call_is_accepted_by_the_call_taker_it_was_offered_to(
    centre: Any, client: httpx.AsyncClient, as_user: Headers
):
    jana = as_user("jana")
    assert (
        await client.put("/api/takers/jana/state", json={"state": "available"}, headers=jana)
    ).status_code == 200
    centre.calls.submit(offer("sip-stroke-1"))

    async def offered_to_jana() -> dict | None:
        calls = (await client.get("/api/calls", headers=jana)).json()["items"]
        return next((c for c in calls if c["taker_id"] == "jana"), None)

    call = await eventually(offered_to_jana)
    assert call["desk"] == "ZZS" and call["caller"]["e164"] == "+420603224590"
    accepted = await client.post(f"/api/calls/{call['id']}/accept", json={}, headers=jana)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "connected"
    centre.calls.submit(
        TranscriptFinal(call_ref="sip-stroke-1", leg="caller", text=STROKE, start_s=0.0, end_s=6.0)
    )

    async def with_incident() -> dict | None:
        body = (await client.get(f"/api/calls/{call['id']}", headers=jana)).json()
        return body if body["incident_id"] and body["transcript"] else None

    detail = await eventually(with_incident)
    assert detail["transcript"][0]["text"] == STROKE
    assert detail["triage"] is not None
    not_his = await client.post(f"/api/calls/{call['id']}/accept", json={}, headers=as_user("petr"))
    assert not_his.status_code == 403  # offered to Jana, and not on Petr's desks
    twice = await client.post(
        f"/api/calls/{call['id']}/accept", json={"taker_id": "petr"}, headers=as_user("vedouci")
    )
    assert twice.status_code == 409 and twice.json()["error"] == "illegal_transition"


async def test_abandoned_call_is_listed_for_call_back_until_marked(
    centre: Any, client: httpx.AsyncClient, as_user: Headers
):
    supervisor = as_user("vedouci")
    centre.calls.submit(offer("sip-gone-1", dialled="158", caller="+420777123456"))

    async def queued() -> bool:
        return any(c["state"] == "queued" for c in (await calls_by_ref(client, supervisor)).values())

    await eventually(queued)
    centre.calls.submit(CallEnded(call_ref="sip-gone-1", reason=EndReason.ABANDONED))

    async def abandoned() -> list:
        return (await client.get("/api/reports/abandoned", headers=supervisor)).json()["items"]

    [call] = await eventually(abandoned)
    assert call["caller"]["e164"] == "+420777123456"
    summary = (await client.get("/api/reports/summary", headers=supervisor)).json()
    assert summary["abandoned_to_call_back"] == 1
    assert summary["service_level"]["offered"] == 1
    marked = await client.post(
        f"/api/calls/{call['id']}/callback", headers={**supervisor, "Idempotency-Key": "cb-1"}
    )
    assert marked.status_code == 200 and marked.json()["callback_by"] == "vedouci"
    assert await abandoned() == []


async def test_supervisor_reprioritises_and_moves_a_waiting_call(
    centre: Any, client: httpx.AsyncClient, as_user: Headers
):
    supervisor = as_user("vedouci")
    centre.calls.submit(offer("sip-wait-1", dialled="150"))

    async def waiting_on_hzs() -> list:
        return (await client.get("/api/queues", headers=supervisor)).json()["desks"]["HZS"]

    [entry] = await eventually(waiting_on_hzs)
    changed = await client.post(
        f"/api/queues/HZS/{entry['call_id']}/priority",
        json={"priority": 1, "front": True},
        headers=supervisor,
    )
    assert changed.status_code == 200
    assert changed.json()["desks"]["HZS"][0]["priority"] == 1
    moved = await client.post(
        f"/api/queues/HZS/{entry['call_id']}/move",
        json={"to_desk": "112", "reason": "jazyk"},
        headers=supervisor,
    )
    assert moved.status_code == 200
    assert [e["call_id"] for e in moved.json()["desks"]["112"]] == [entry["call_id"]]
    assert moved.json()["desks"]["HZS"] == []
    missing = await client.post(
        f"/api/queues/HZS/{entry['call_id']}/move", json={"to_desk": "ZZS"}, headers=supervisor
    )
    assert missing.status_code == 404


async def receive_until(
    ws: ClientConnection, wanted: Callable[[dict], bool], timeout: float = 10.0
) -> list[dict]:
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            seen.append(event)
            if wanted(event):
                return seen


async def test_live_events_are_filtered_by_role(
    centre: Any, app: Any, tokens: dict[str, str], as_user: Headers
):
    async with RunningServer(app) as server:
        base = server.url.replace("http://", "ws://") + "/api/live"
        async with (
            connect(base) as supervisor,
            connect(base) as jana,  # desks ZZS, 112
            connect(base) as petr,  # desks PCR, HZS
            connect(base) as integration,
        ):
            for ws, user in (
                (supervisor, "vedouci"),
                (jana, "jana"),
                (petr, "petr"),
                (integration, "zzs-dispatch"),
            ):
                await ws.send(json.dumps({"type": "auth", "token": tokens[user]}))
                assert json.loads(await ws.recv())["type"] == "hello"
            centre.calls.submit(offer("sip-live-1", dialled="155"))
            centre.calls.submit(
                TranscriptFinal(call_ref="sip-live-1", leg="caller", text=STROKE, start_s=0.0, end_s=6.0)
            )
            by_supervisor = await receive_until(supervisor, lambda e: e["type"] == "transcript.final")
            by_jana = await receive_until(jana, lambda e: e["type"] == "transcript.final")
            # Now an incident: every role sees it, and nothing of the ZZS call reached Petr or the integration.
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://a"
            ) as client:
                created = await client.post(
                    "/api/incidents",
                    json={"incident_type": "FIRE_OTHER", "priority": 3, "agencies": ["HZS"]},
                    headers=as_user("petr"),
                )
            incident_id = created.json()["id"]

            def is_it(event: dict) -> bool:
                return event["type"] == "incident.created" and event["incident_id"] == incident_id

            by_petr = await receive_until(petr, is_it)
            by_integration = await receive_until(integration, is_it)
            await receive_until(supervisor, is_it)
            await receive_until(jana, is_it)
            assert {"call.offered", "call.queued", "triage.updated"} <= {e["type"] for e in by_supervisor}
            assert {"call.offered", "triage.updated"} <= {e["type"] for e in by_jana}
            assert all(e["call_id"] is None or e["type"].startswith("incident.") for e in by_petr), by_petr
            assert all(e["type"].startswith("incident.") for e in by_integration), by_integration


async def test_event_published_on_one_node_reaches_a_websocket_client_of_another(
    centre: Any, start_centre: Callable[[str], Awaitable[Any]], tokens: dict[str, str], as_user: Headers
):
    other_node = await start_centre("node-b")
    async with RunningServer(create_app(other_node)) as server:
        url = server.url.replace("http://", "ws://") + "/api/live"
        async with connect(url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": tokens["vedouci"]}))
            assert json.loads(await ws.recv())["type"] == "hello"
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(centre)), base_url="http://a"
            ) as a:
                created = await a.post(
                    "/api/incidents",
                    json={"incident_type": "TECH_RESCUE", "priority": 2, "agencies": ["HZS"]},
                    headers=as_user("jana"),
                )
            incident_id = created.json()["id"]
            seen = await receive_until(ws, lambda e: e.get("incident_id") == incident_id)
            assert seen[-1]["type"] == "incident.created"
            assert seen[-1]["node"] == "node-a"
