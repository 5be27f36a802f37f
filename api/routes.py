"""The REST endpoints. Thin: check input, call the intake services, map the result to an output schema.

Role rules live in :mod:`api.roles`; every router here depends on :func:`api.deps.authorize`.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api import schemas as s
from api.auth import Principal, Role, login
from api.deps import ApiContext, authorize, authorize_public, ctx_of, require_user
from api.live import audience_for
from api.users import create_user
from intake.domain import DESKS, IncidentStatus, Location, TakerState, utc_now
from intake.errors import NotFound, PermissionDenied, ValidationFailed
from intake.exchange.cap import incident_to_cap
from intake.exchange.eido import incident_to_eido
from intake.incidents import taker_location
from intake.serialize import decision_json
from intake.storage.mapping import User as UserRecord
from intake.storage.mapping import Webhook
from routing.vocabulary import Agency, DeskCode

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorOut, "description": text}
    for code, text in (
        (401, "no valid token"),
        (403, "the role may not do this"),
        (404, "not found"),
        (409, "conflict with the current state, or Idempotency-Key reused"),
        (413, "request body too large"),
        (422, "the request is not valid"),
        (429, "too many failed logins (Retry-After says when to try again)"),
        (503, "storage or live state unavailable"),
    )
}

router = APIRouter(prefix="/api", dependencies=[Depends(authorize)], responses=ERRORS)
# Open endpoints live on a router of their own, so the OpenAPI document shows them without security.
public_router = APIRouter(prefix="/api", dependencies=[Depends(authorize_public)], responses=ERRORS)

User = Annotated[Principal, Depends(require_user)]
Ctx = Annotated[ApiContext, Depends(ctx_of)]
Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")]
Since = Annotated[datetime | None, Query(description="from this time (inclusive, ISO 8601)")]
Until = Annotated[datetime | None, Query(description="before this time (exclusive, ISO 8601)")]
Text = Annotated[str | None, Query(max_length=200, description="text search (case and accents ignored)")]

STREAM_ID = re.compile(r"^\d{1,15}(-\d{1,15})?$")


def _location(value: s.LocationIn | None) -> Location | None:
    return taker_location(value.model_dump()) if value is not None else None


# ------------------------------------------------------------------------------------------- auth


@public_router.post("/auth/token", response_model=s.TokenOut, tags=["auth"])
async def issue_token(body: s.TokenRequest, ctx: Ctx, request: Request) -> s.TokenOut:
    """Log in with user name and password; the token goes into ``Authorization: Bearer ...``.

    Too many wrong passwords for one user name or from one address hold further logins back with a
    growing delay: 429 ``too_many_requests`` with ``Retry-After``."""
    token, expires, role = await login(
        ctx.repo,
        ctx.signer,
        body.username,
        body.password,
        verifier=ctx.verifier,
        throttle=ctx.centre.logins,
        address=request.client.host if request.client else None,
    )
    return s.TokenOut(
        access_token=token,
        expires_at=datetime.fromtimestamp(expires).astimezone(),
        role=role.value,
        username=body.username,
    )


@router.post("/auth/logout", status_code=204, tags=["auth"], response_class=Response)
async def logout(principal: User, ctx: Ctx) -> Response:
    """Revoke every token of the calling user (on every device and node); open live sockets close."""
    await ctx.admin.revoke_tokens(principal.username)
    return Response(status_code=204)


@router.get("/me", response_model=s.MeOut, tags=["auth"])
async def me(principal: User, ctx: Ctx) -> s.MeOut:
    taker = (
        await ctx.taking.taker_of(principal.username)
        if principal.role in (Role.CALL_TAKER, Role.SUPERVISOR)
        else None
    )
    return s.MeOut(
        username=principal.username,
        role=principal.role.value,
        taker_id=taker.id if taker else None,
        desks=[d.value for d in taker.desks] if taker else [],
        expires_at=datetime.fromtimestamp(principal.expires_at).astimezone(),
    )


@router.get("/me/work", response_model=s.MyWorkOut, tags=["auth"])
async def my_work(principal: User, ctx: Ctx) -> s.MyWorkOut:
    """The caller's console state from the server: the call in hand (transcript so far, triage, incident
    with its timeline, recording), the pending offer, the taker's state. Consoles call it on load."""
    taker = await ctx.taking.taker_of(principal.username)
    if taker is None:
        return s.MyWorkOut(
            taker_id=None, state="offline", call=None, partial="", offer=None, incident=None, draft=None
        )
    work = await ctx.console.current_work(taker.id)
    call = None
    if work.call is not None:
        call = s.call_out(
            work.call,
            with_transcript=True,
            triage=work.triage,
            recording=await _recording_of(ctx, work.call.id, work.call.is_live),
        )
    return s.MyWorkOut(
        taker_id=taker.id,
        state=work.state,
        since=work.since,
        call=call,
        partial=work.partial,
        offer=s.call_out(work.offer) if work.offer is not None else None,
        incident=s.incident_out(work.incident, with_timeline=True) if work.incident else None,
        draft=work.draft,
        notes=work.notes,
    )


@router.put("/me/draft", status_code=204, response_class=Response, tags=["auth"])
async def my_draft(body: s.FormDraft, principal: User, ctx: Ctx) -> Response:
    """What the call taker typed into the incident form of their call, kept until saved: a console that
    reloads, or one opened on another PC, gets it back from ``/api/me/work``."""
    await ctx.console.keep_draft(principal.username, body.call_id, dict(body.values.items()))
    return Response(status_code=204)


async def _recording_of(ctx: ApiContext, call_id: str, is_live: bool) -> s.RecordingOut | None:
    recordings = ctx.centre.recordings
    if recordings is None:
        return None
    info = await asyncio.to_thread(recordings.get_recording, call_id)
    return s.recording_out(call_id, info, is_live)


@public_router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, bool]:
    """Liveness: the process answers."""
    return {"ok": True}


@public_router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}},
)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus metrics of this node: calls offered/answered/abandoned per desk, queue length and oldest
    wait (read from the shared queues), answer waits, triage latency, component health."""
    return Response(content=await ctx.centre.render_metrics(), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", response_model=list[s.HealthOut], tags=["health"])
async def health(ctx: Ctx) -> list[s.HealthOut]:
    """Every component's state; anything unhealthy is shown loudly on the consoles."""
    return [
        s.HealthOut(component=c.name, healthy=c.healthy, detail=c.detail, data=c.data)
        for c in await ctx.centre.health()
    ]


# ------------------------------------------------------------------------------------------- calls


@router.get("/calls", response_model=s.CallPage, tags=["calls"])
async def list_calls(
    ctx: Ctx,
    principal: User,
    limit: Limit = 50,
    offset: Offset = 0,
    state: Annotated[Literal["ringing", "queued", "connected", "ended", "abandoned"] | None, Query()] = None,
    desk: Annotated[DeskCode | None, Query()] = None,
    since: Since = None,
    until: Until = None,
    q: Text = None,
) -> s.CallPage:
    """Calls newest first. A call taker gets the calls they may read (see ``Audience.may_read_call``):
    their desks', their own, and those waiting for a call-back."""
    audience = await audience_for(ctx.taking, principal)
    scope: dict[str, Any] = {}
    if audience.role is Role.CALL_TAKER:
        scope = {"scope_desks": sorted(audience.desks), "scope_taker": audience.taker_id}
    calls, total = await ctx.taking.list_calls(
        state=state, desk=desk, since=since, until=until, text=q, limit=limit, offset=offset, **scope
    )
    return s.CallPage(items=[s.call_out(c) for c in calls], total=total, limit=limit, offset=offset)


@router.get("/calls/{call_id}", response_model=s.CallOut, tags=["calls"])
async def get_call(call_id: str, principal: User, ctx: Ctx) -> s.CallOut:
    call = await ctx.centre.calls.get(call_id)
    audience = await audience_for(ctx.taking, principal)
    awaiting_callback = call.state.value == "abandoned" and call.callback_done_at is None
    if not audience.may_read_call(call.desk.value if call.desk else None, call.taker_id, awaiting_callback):
        raise PermissionDenied("this call belongs to another desk", call_id=call_id)
    decision = ctx.centre.calls.current_decision(call_id)
    return s.call_out(
        call,
        with_transcript=True,
        triage=decision_json(decision) if decision else None,
        recording=await _recording_of(ctx, call.id, call.is_live),
    )


RECORDING_LEGS: dict[str, tuple[str, ...]] = {
    "caller": ("caller",),
    "taker": ("taker",),
    "both": ("caller", "taker"),
}


@router.get(
    "/calls/{call_id}/recording",
    tags=["calls"],
    response_class=Response,
    responses={200: {"content": {"audio/flac": {}}, "description": "FLAC; stereo for both legs"}},
)
async def call_recording(
    call_id: str,
    principal: User,
    ctx: Ctx,
    legs: Annotated[Literal["caller", "taker", "both"], Query(description="which side(s)")] = "both",
    last_s: Annotated[
        float | None, Query(gt=0, le=600, description="only the last seconds so far (instant replay)")
    ] = None,
) -> Response:
    """A call's voice recording (FLAC: caller left, call taker right), also while the call goes on. A call
    taker gets only calls they took; a supervisor any. Every fetch is logged on the incident timeline."""
    call = await ctx.centre.calls.get(call_id)
    if principal.role is Role.CALL_TAKER and call.taker_id != principal.username:
        raise PermissionDenied("a call taker may replay only their own calls", call_id=call_id)
    playable = await ctx.console.play_recording(call, principal.actor, RECORDING_LEGS[legs], last_s)
    return Response(
        content=playable.audio,
        media_type="audio/flac",
        headers={
            "Cache-Control": "no-store",
            "X-Recording-Seconds": f"{playable.seconds:.2f}",
            "X-Recording-From": f"{playable.from_s:.2f}",
            "X-Recording-Status": s.recording_out(call.id, playable.info, call.is_live).status,
        },
    )


@router.post("/calls/{call_id}/accept", response_model=s.CallOut, tags=["calls"])
async def accept_call(call_id: str, principal: User, ctx: Ctx, body: s.AcceptCall | None = None) -> s.CallOut:
    """The call taker takes the call (from the console); who may take which call: :mod:`intake.taking`."""
    call = await ctx.taking.accept(
        call_id,
        principal.username,
        supervisor=principal.role is not Role.CALL_TAKER,
        for_taker=body.taker_id if body is not None else None,
    )
    decision = ctx.centre.calls.current_decision(call_id)
    return s.call_out(call, with_transcript=True, triage=decision_json(decision) if decision else None)


@router.post("/calls/{call_id}/callback", response_model=s.CallOut, tags=["calls"])
async def called_back(call_id: str, principal: User, ctx: Ctx) -> s.CallOut:
    """Mark an abandoned call as called back."""
    call = await ctx.reports.mark_called_back(call_id, principal.actor)
    return s.call_out(call)


@router.get("/places", response_model=list[s.PlaceOut], tags=["location"])
async def places(ctx: Ctx) -> list[s.PlaceOut]:
    """The region's places with coordinates (GeoNames, CC BY 4.0): the consoles draw their offline map
    from these, no tile server needed."""
    gazetteer = ctx.centre.places
    if gazetteer is None:
        return []
    return [
        s.PlaceOut(
            municipality=p.municipality,
            part=p.part if p.part != p.municipality else None,
            lat=p.lat,
            lon=p.lon,
        )
        for p in gazetteer.places
    ]


@router.post("/location/aml", response_model=s.AmlOut, tags=["location"])
async def aml_sms(body: s.AmlIn, ctx: Ctx) -> s.AmlOut:
    """An AML SMS from the operator's gateway: decoded, matched to the caller's live or recent call by number
    and time, fused into its location. A malformed message is rejected with its reason (logged, and
    `accepted: false` in a 200 answer: resending it would never make it parse, so the gateway must not retry).
    """
    try:
        result = await ctx.centre.calls.report_aml(body.sender, body.text, body.received_at)
    except ValidationFailed as exc:
        return s.AmlOut(accepted=False, reason=str(exc.details.get("reason", exc.message)))
    return s.AmlOut.model_validate({**result, "accepted": True})


# ---------------------------------------------------------------------------------------- incidents


@router.get("/incidents", response_model=s.IncidentPage, tags=["incidents"])
async def list_incidents(
    ctx: Ctx,
    limit: Limit = 50,
    offset: Offset = 0,
    status: Annotated[Literal["new", "active", "closed", "open"] | None, Query()] = None,
    agency: Annotated[Agency | None, Query()] = None,
    since: Since = None,
    until: Until = None,
    q: Text = None,
) -> s.IncidentPage:
    statuses: Any = [IncidentStatus.NEW.value, IncidentStatus.ACTIVE.value] if status == "open" else status
    incidents, total = await ctx.centre.incidents.search(
        status=statuses, agency=agency, since=since, until=until, text=q, limit=limit, offset=offset
    )
    return s.IncidentPage(
        items=[s.incident_out(i) for i in incidents], total=total, limit=limit, offset=offset
    )


@router.post("/incidents", response_model=s.IncidentOut, status_code=201, tags=["incidents"])
async def create_incident(body: s.IncidentCreate, principal: User, ctx: Ctx) -> s.IncidentOut:
    incident = await ctx.centre.incidents.create(
        principal.actor,
        body.incident_type,
        body.priority,
        list(body.agencies),
        location=_location(body.location),
        note=body.note.strip() if body.note and body.note.strip() else None,
        call_id=body.call_id,
    )
    return s.incident_out(incident, with_timeline=True)


@router.get("/incidents/{incident_id}", response_model=s.IncidentOut, tags=["incidents"])
async def get_incident(incident_id: str, ctx: Ctx) -> s.IncidentOut:
    incident = await ctx.centre.incidents.get(incident_id)
    recordings = None
    if ctx.centre.recordings is not None:
        infos = await asyncio.to_thread(ctx.centre.recordings.recordings_of, incident.call_ids)
        live = {c.id for c in ctx.centre.calls.live_calls()}
        recordings = [s.recording_out(c, infos.get(c), c in live) for c in incident.call_ids]
    return s.incident_out(incident, with_timeline=True, recordings=recordings)


@router.patch("/incidents/{incident_id}", response_model=s.IncidentOut, tags=["incidents"])
async def update_incident(
    incident_id: str, body: s.IncidentUpdate, principal: User, ctx: Ctx
) -> s.IncidentOut:
    """Change an incident; every change lands on its timeline with the acting user."""
    changes = body.changes()
    if "location" in changes and taker_location(changes["location"]) is None:
        del changes["location"]  # an empty place changes nothing
    if not changes:  # only nulls given: nothing to change
        return s.incident_out(await ctx.centre.incidents.get(incident_id), with_timeline=True)
    incident = await ctx.centre.incidents.update(incident_id, principal.actor, changes)
    return s.incident_out(await ctx.centre.incidents.get(incident.id), with_timeline=True)


@router.post("/incidents/{incident_id}/confirm", response_model=s.IncidentOut, tags=["incidents"])
async def confirm_incident(
    incident_id: str, principal: User, ctx: Ctx, body: s.IncidentConfirm | None = None
) -> s.IncidentOut:
    """Accept triage's proposal, with corrections if given (both are kept on the timeline)."""
    corrections = body.model_dump(exclude_none=True, mode="json") if body else {}
    if "incident_type" not in corrections:
        current = await ctx.centre.incidents.get(incident_id)
        if current.incident_type.value == s.NOT_YET_HEARD:
            raise ValidationFailed(
                "choose the incident type: nothing was heard yet, the proposal has none",
                field="incident_type",
            )
    if "location" in corrections and taker_location(corrections["location"]) is None:
        corrections.pop("location")  # an empty place changes nothing
    incident = await ctx.centre.incidents.confirm(incident_id, principal.actor, corrections)
    return s.incident_out(incident, with_timeline=True)


@router.post("/incidents/{incident_id}/calls", response_model=s.IncidentOut, tags=["incidents"])
async def link_call(incident_id: str, body: s.LinkCall, principal: User, ctx: Ctx) -> s.IncidentOut:
    """Link a call to this incident (e.g. a duplicate the call taker recognised)."""
    incident = await ctx.centre.incidents.link_call(incident_id, body.call_id, principal.actor, body.reason)
    return s.incident_out(incident, with_timeline=True)


@router.post("/incidents/{incident_id}/tcpr", response_model=s.IncidentOut, tags=["incidents"])
async def tcpr_milestone(incident_id: str, body: s.TcprMilestone, principal: User, ctx: Ctx) -> s.IncidentOut:
    """Record a telephone-CPR milestone (the console's "first compression" button) on the timeline."""
    incident = await ctx.reports.record_tcpr_milestone(
        incident_id, principal.actor, body.milestone, body.at, body.call_id
    )
    return s.incident_out(incident, with_timeline=True)


@router.get("/incidents/{incident_id}/timeline", response_model=list[s.TimelineEntryOut], tags=["incidents"])
async def incident_timeline(incident_id: str, ctx: Ctx) -> list[s.TimelineEntryOut]:
    incident = await ctx.centre.incidents.get(incident_id)
    return s.incident_out(incident, with_timeline=True).timeline or []


@router.get("/incidents/{incident_id}/duplicates", response_model=list[s.DuplicateOut], tags=["incidents"])
async def incident_duplicates(incident_id: str, ctx: Ctx) -> list[s.DuplicateOut]:
    """Open incidents that may report the same event (compatible type, same place, close in time), by the
    rule that links calls automatically."""
    return [
        s.DuplicateOut(
            incident=s.incident_out(other), score=proposal.score, reason="; ".join(proposal.reasons)
        )
        for other, proposal in await ctx.centre.incidents.duplicates_of(incident_id)
    ]


def _domain(ctx: ApiContext) -> str:
    return f"{ctx.centre.settings.region.lower()}.izs.cz"


@router.get("/incidents/{incident_id}/eido", tags=["exchange"], response_model=dict[str, Any])
async def incident_eido(incident_id: str, ctx: Ctx) -> dict[str, Any]:
    """The incident as a NENA EIDO JSON document (NENA-STA-021.1, EIDO 1.0)."""
    incident = await ctx.centre.incidents.get(incident_id)
    calls = []
    for call_id in incident.call_ids:
        try:
            calls.append(await ctx.centre.calls.get(call_id))
        except NotFound:
            continue
    return incident_to_eido(
        incident, calls, domain=_domain(ctx), issuer=f"izs-intake:{ctx.centre.settings.node_id}"
    )


@router.get(
    "/incidents/{incident_id}/cap",
    tags=["exchange"],
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {"schema": {"type": "string"}}}, "description": "CAP 1.2"}
    },
)
async def incident_cap(incident_id: str, ctx: Ctx) -> Response:
    """The incident as an OASIS CAP 1.2 alert (scope Restricted to the IZS agencies)."""
    incident = await ctx.centre.incidents.get(incident_id)
    return Response(
        incident_to_cap(incident, sender=f"izs-intake@{_domain(ctx)}"), media_type="application/xml"
    )


@router.get("/stream/incidents", response_model=s.StreamPage, tags=["exchange"])
async def incident_stream(
    ctx: Ctx,
    after: Annotated[
        str | None,
        Query(max_length=42, pattern=STREAM_ID.pattern, description="last stream id you processed"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> s.StreamPage:
    """Replay the incident event stream after a stream id (oldest first); for live consumption use a
    Redis consumer group on the same stream (see docs/api.md)."""
    if after is not None and not STREAM_ID.match(after):
        raise ValidationFailed("after: a stream id like 1700000000000-0", field="after")
    messages = await ctx.centre.live.replay(from_id=after or "-", count=limit, exclusive=after is not None)
    items = [s.StreamEventOut(id=m.id, event=m.event) for m in messages]
    return s.StreamPage(items=items, last_id=items[-1].id if items else after)


# ------------------------------------------------------------------------------ desks, queues, takers


@router.get("/desks", response_model=list[s.DeskOut], tags=["desks"])
async def list_desks() -> list[s.DeskOut]:
    return [
        s.DeskOut(
            code=d.code.value,
            name=d.name,
            agencies=[a.value for a in d.agencies],
            dialled=list(d.dialled),
        )
        for d in DESKS
    ]


@router.get("/queues", response_model=s.QueuesOut, tags=["desks"])
async def list_queues(ctx: Ctx) -> s.QueuesOut:
    queues = await ctx.centre.desks.queues()
    return s.QueuesOut(
        desks={desk: [s.QueueEntryOut.model_validate(e) for e in entries] for desk, entries in queues.items()}
    )


@router.post("/queues/{desk}/{call_id}/priority", response_model=s.QueuesOut, tags=["desks"])
async def reprioritise(
    desk: DeskCode, call_id: str, body: s.Reprioritise, principal: User, ctx: Ctx
) -> s.QueuesOut:
    await _queued_on(ctx, desk, call_id)
    await ctx.centre.desks.reprioritise(call_id, desk, body.priority, body.front, principal.actor)
    return await list_queues(ctx)


@router.post("/queues/{desk}/{call_id}/move", response_model=s.QueuesOut, tags=["desks"])
async def move_call(desk: DeskCode, call_id: str, body: s.MoveCall, principal: User, ctx: Ctx) -> s.QueuesOut:
    """Reassign a waiting call to another desk."""
    await _queued_on(ctx, desk, call_id)
    if body.to_desk is desk:
        raise ValidationFailed("the call already waits on that desk", field="to_desk")
    await ctx.centre.desks.move(call_id, desk, body.to_desk, principal.actor, body.reason)
    return await list_queues(ctx)


async def _queued_on(ctx: ApiContext, desk: DeskCode, call_id: str) -> None:
    queues = await ctx.centre.desks.queues()
    if not any(e["call_id"] == call_id for e in queues.get(desk.value, [])):
        raise NotFound(
            f"call {call_id} is not waiting on desk {desk.value}", call_id=call_id, desk=desk.value
        )


@router.get("/takers", response_model=list[s.TakerOut], tags=["desks"])
async def list_takers(ctx: Ctx) -> list[s.TakerOut]:
    return [
        s.TakerOut.model_validate({k: v for k, v in t.items() if k in s.TakerOut.model_fields})
        for t in await ctx.centre.desks.takers()
    ]


@router.put("/takers/{taker_id}/state", response_model=list[s.TakerOut], tags=["desks"])
async def set_taker_state(
    taker_id: str, body: s.TakerStateChange, principal: User, ctx: Ctx
) -> list[s.TakerOut]:
    """Log in / pause / log out. A call taker may change only their own state."""
    if principal.role is Role.CALL_TAKER and taker_id != principal.username:
        raise PermissionDenied("a call taker may change only their own state")
    await ctx.centre.set_taker_state(taker_id, TakerState(body.state), principal.actor, body.reason)
    return await list_takers(ctx)


# ----------------------------------------------------------------------------------------- reports


@router.get("/reports/summary", response_model=s.SummaryOut, tags=["reports"])
async def summary(
    ctx: Ctx,
    since: Since = None,
    until: Until = None,
    threshold_s: Annotated[float, Query(gt=0, le=600)] = 10.0,
) -> s.SummaryOut:
    """Service level (answered within ``threshold_s``), waits, abandoned calls, open incidents per agency,
    callers waiting now. Default period: the last 24 hours."""
    now = utc_now()
    since = since or now - timedelta(hours=24)
    until = until or now
    if since.tzinfo is None or until.tzinfo is None:
        raise ValidationFailed("since / until need a time zone offset", field="since")
    overall, per_desk = await ctx.reports.service_levels(since, until, threshold_s)
    _, abandoned_total = await ctx.reports.abandoned_to_call_back(limit=0)
    queues = await ctx.centre.desks.queues()
    return s.SummaryOut(
        service_level=s.ServiceLevelOut.model_validate(overall.to_json()),
        per_desk={
            desk: s.ServiceLevelOut.model_validate(level.to_json()) for desk, level in per_desk.items()
        },
        open_incidents_by_agency=await ctx.reports.open_incidents_by_agency(),
        abandoned_to_call_back=abandoned_total,
        waiting_now={desk: len(entries) for desk, entries in queues.items()},
    )


@router.get("/reports/abandoned", response_model=s.CallPage, tags=["reports"])
async def abandoned(ctx: Ctx, limit: Limit = 50, offset: Offset = 0) -> s.CallPage:
    """Abandoned calls nobody has called back yet, newest first."""
    calls, total = await ctx.reports.abandoned_to_call_back(limit=limit, offset=offset)
    return s.CallPage(items=[s.call_out(c) for c in calls], total=total, limit=limit, offset=offset)


# ------------------------------------------------------------------------------------------- admin


def _user_out(user: UserRecord) -> s.UserOut:
    # The stored role is checked against the published names here (a stored role nobody knows is an error).
    return s.UserOut.model_validate(
        {"username": user.username, "role": user.role, "active": user.active, "created_at": user.created_at}
    )


@router.get("/admin/users", response_model=list[s.UserOut], tags=["admin"])
async def list_users(ctx: Ctx) -> list[s.UserOut]:
    return [_user_out(u) for u in await ctx.admin.list_users()]


@router.post("/admin/users", response_model=s.UserOut, status_code=201, tags=["admin"])
async def add_user(body: s.UserCreate, ctx: Ctx) -> s.UserOut:
    return _user_out(await create_user(ctx.admin, body.username, body.password, body.role))


@router.patch("/admin/users/{username}", response_model=s.UserOut, tags=["admin"])
async def change_user(username: str, body: s.UserUpdate, principal: User, ctx: Ctx) -> s.UserOut:
    """A new password, a new role or disabling revokes the user's tokens (open live sockets close)."""
    password_hash = await ctx.verifier.hash(body.password) if body.password else None
    user = await ctx.admin.update_user(
        username, principal.username, password_hash=password_hash, role=body.role, active=body.active
    )
    return _user_out(user)


def _webhook_out(hook: Webhook) -> s.WebhookOut:
    return s.WebhookOut(
        id=hook.id, url=hook.url, events=list(hook.events), active=hook.active, created_at=hook.created_at
    )


@router.get("/admin/webhooks", response_model=list[s.WebhookOut], tags=["admin"])
async def list_webhooks(ctx: Ctx) -> list[s.WebhookOut]:
    return [_webhook_out(h) for h in await ctx.admin.list_webhooks()]


@router.post("/admin/webhooks", response_model=s.WebhookOut, status_code=201, tags=["admin"])
async def add_webhook(body: s.WebhookCreate, ctx: Ctx) -> s.WebhookOut:
    """Register a webhook. Internal targets (loopback, link-local, private ranges) are refused (403
    ``webhook_target_refused``) unless ``IZS_WEBHOOK_ALLOW_PRIVATE_TARGETS`` is set."""
    return _webhook_out(await ctx.admin.add_webhook(body.url, body.secret, body.events))


@router.delete("/admin/webhooks/{webhook_id}", status_code=204, tags=["admin"], response_class=Response)
async def delete_webhook(webhook_id: Annotated[int, Path(ge=1, le=2**31 - 1)], ctx: Ctx) -> Response:
    await ctx.admin.delete_webhook(webhook_id)
    return Response(status_code=204)


@router.get("/admin/webhooks/deliveries", response_model=list[s.DeliveryOut], tags=["admin"])
async def list_deliveries(
    ctx: Ctx,
    webhook_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[s.DeliveryOut]:
    """Webhook deliveries, newest first; ``status=failed`` is the dead-letter list."""
    deliveries = await ctx.admin.list_deliveries(
        webhook_id=webhook_id, status=status, limit=limit, offset=offset
    )
    return [
        s.DeliveryOut(
            id=d.id,
            webhook_id=d.webhook_id,
            url=d.url,
            event_id=d.event_id,
            event_type=d.event_type,
            attempts=d.attempts,
            status=str(d.status),
            next_attempt_at=d.next_attempt_at,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
        )
        for d in deliveries
    ]
