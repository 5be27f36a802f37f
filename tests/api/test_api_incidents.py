"""Incidents over the API: create, change (always on the timeline with the acting user), search and
page, idempotent writes, stable error ids, EIDO / CAP export, and the replayable incident stream."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from intake.exchange.validation import cap_errors, eido_errors

Headers = Callable[[str], dict[str, str]]

FIRE = {
    "incident_type": "FIRE_BUILDING",
    "priority": 1,
    "agencies": ["HZS"],
    "location": {"municipality": "Sokolov", "street": "Husitská", "house_number": "12"},
    "note": "Hoří ve druhém patře, uvnitř děti",
}


async def create(client: httpx.AsyncClient, headers: dict[str, str], body: dict | None = None) -> dict:
    response = await client.post("/api/incidents", json=body or FIRE, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_incident_changes_are_on_the_timeline_with_the_acting_user(
    client: httpx.AsyncClient, as_user: Headers
):
    incident = await create(client, as_user("jana"))
    assert incident["id"].startswith("KVK-")
    assert incident["created_by"] == "jana"
    assert incident["location"]["source"] == "call-taker"
    patched = await client.patch(
        f"/api/incidents/{incident['id']}",
        json={"priority": 2, "agencies_add": ["ZZS"], "note": "Jedna osoba nadýchaná kouřem"},
        headers=as_user("vedouci"),
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["priority"] == 2
    assert [a["agency"] for a in body["agencies"]] == ["HZS", "ZZS"]
    actors = {(e["actor"], e["action"]) for e in body["timeline"]}
    assert ("jana", "created") in actors
    assert any(actor == "vedouci" for actor, _ in actors)
    confirmed = await client.post(
        f"/api/incidents/{incident['id']}/confirm", json={}, headers=as_user("jana")
    )
    assert confirmed.json()["confirmed_by"] == "jana"
    assert confirmed.json()["status"] == "active"
    timeline = await client.get(f"/api/incidents/{incident['id']}/timeline", headers=as_user("zzs-dispatch"))
    assert [e["seq"] for e in timeline.json()] == list(range(1, len(timeline.json()) + 1))


async def test_incidents_are_filtered_searched_and_paged(client: httpx.AsyncClient, as_user: Headers):
    fire = await create(client, as_user("jana"))
    await create(
        client,
        as_user("jana"),
        {
            "incident_type": "MED_STROKE",
            "priority": 1,
            "agencies": ["ZZS"],
            "location": {"municipality": "Cheb"},
        },
    )
    await create(
        client, as_user("petr"), {"incident_type": "POLICE_THEFT", "priority": 3, "agencies": ["PCR"]}
    )
    headers = as_user("zzs-dispatch")
    page = (await client.get("/api/incidents?limit=2", headers=headers)).json()
    assert (page["total"], len(page["items"]), page["limit"]) == (3, 2, 2)
    rest = (await client.get("/api/incidents?limit=2&offset=2", headers=headers)).json()
    assert len(rest["items"]) == 1
    assert {i["id"] for i in page["items"] + rest["items"]} >= {fire["id"]}
    zzs = (await client.get("/api/incidents?agency=ZZS", headers=headers)).json()
    assert [i["incident_type"] for i in zzs["items"]] == ["MED_STROKE"]
    husitska = (await client.get("/api/incidents", params={"q": "husitska"}, headers=headers)).json()
    assert [i["id"] for i in husitska["items"]] == [fire["id"]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await client.get("/api/incidents", params={"since": future}, headers=headers)).json()[
        "total"
    ] == 0
    assert (await client.get("/api/incidents", params={"until": future}, headers=headers)).json()[
        "total"
    ] == 3
    assert (await client.get("/api/incidents?status=open", headers=headers)).json()["total"] == 3
    assert (await client.get("/api/incidents?status=closed", headers=headers)).json()["total"] == 0


async def test_errors_carry_a_stable_error_id_and_details(client: httpx.AsyncClient, as_user: Headers):
    missing = await client.get("/api/incidents/KVK-2026-999999", headers=as_user("jana"))
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    invalid = await client.post(
        "/api/incidents", json={"incident_type": "ALIENS", "priority": 7}, headers=as_user("jana")
    )
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["error"] == "validation_failed"
    assert {tuple(e["loc"]) for e in body["details"]["errors"]} >= {
        ("body", "incident_type"),
        ("body", "priority"),
    }
    empty = await client.patch(
        f"/api/incidents/{(await create(client, as_user('jana')))['id']}", json={}, headers=as_user("jana")
    )
    assert empty.status_code == 422 and empty.json()["error"] == "validation_failed"
    unknown_route = await client.get("/api/nothing-here", headers=as_user("jana"))
    assert unknown_route.status_code == 404 and unknown_route.json()["error"] == "not_found"


async def test_same_idempotency_key_replays_and_a_different_body_conflicts(
    client: httpx.AsyncClient, as_user: Headers
):
    headers = {**as_user("jana"), "Idempotency-Key": "integration-7f3a"}
    first = await client.post("/api/incidents", json=FIRE, headers=headers)
    again = await client.post("/api/incidents", json=FIRE, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    total = (await client.get("/api/incidents", headers=as_user("jana"))).json()["total"]
    assert total == 1
    different = await client.post("/api/incidents", json={**FIRE, "priority": 2}, headers=headers)
    assert different.status_code == 409
    assert different.json()["error"] == "idempotency_conflict"
    # keys are per user: another user may use the same key for their own request
    other = await client.post(
        "/api/incidents", json=FIRE, headers={**as_user("petr"), "Idempotency-Key": "integration-7f3a"}
    )
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


async def test_incident_exports_validate_against_the_eido_and_cap_schemas(
    client: httpx.AsyncClient, as_user: Headers
):
    incident = await create(client, as_user("jana"))
    eido = await client.get(f"/api/incidents/{incident['id']}/eido", headers=as_user("zzs-dispatch"))
    assert eido.status_code == 200
    assert eido_errors(eido.json()) == []
    cap = await client.get(f"/api/incidents/{incident['id']}/cap", headers=as_user("zzs-dispatch"))
    assert cap.status_code == 200
    assert cap.headers["content-type"].startswith("application/xml")
    assert cap_errors(cap.content) == []


async def test_incident_stream_replays_after_a_given_id(client: httpx.AsyncClient, as_user: Headers):
    headers = as_user("zzs-dispatch")
    first = await create(client, as_user("jana"))
    everything = (await client.get("/api/stream/incidents", headers=headers)).json()
    assert [e["event"]["incident"]["id"] for e in everything["items"]][-1] == first["id"]
    cursor = everything["last_id"]
    second = await create(client, as_user("jana"))
    newer = (await client.get("/api/stream/incidents", params={"after": cursor}, headers=headers)).json()
    assert [(e["event"]["type"], e["event"]["incident"]["id"]) for e in newer["items"]] == [
        ("incident.created", second["id"])
    ]
    bad = await client.get("/api/stream/incidents", params={"after": "not-an-id"}, headers=headers)
    assert bad.status_code == 422


async def test_duplicates_of_an_incident_follow_the_auto_link_rule(
    client: httpx.AsyncClient, as_user: Headers
):
    """One rule for duplicates: the console's list is routing's rule, so a fire in another town is never
    proposed (the old list scored "same type, shared agency, within the hour" in any town)."""
    headers = as_user("jana")
    first = await create(client, headers)
    same_place = await create(client, headers, {**FIRE, "note": "druhý volající"})
    other_town = await create(
        client, headers, {**FIRE, "location": {"municipality": "Cheb", "street": "Husitská"}, "note": "Cheb"}
    )
    response = await client.get(f"/api/incidents/{first['id']}/duplicates", headers=headers)
    assert response.status_code == 200, response.text
    proposed = [d["incident"]["id"] for d in response.json()]
    assert same_place["id"] in proposed
    assert other_town["id"] not in proposed
    assert "same municipality Sokolov" in response.json()[0]["reason"]
