"""Where is the caller? Fusion of every location source of a call, and the nearest known place.

All functions are pure over :class:`intake.domain.Location` values; the integrator keeps the history (all
locations ever reported for a call, in arrival order) on the incident and asks :func:`fuse` for the best.

Ranking (best first), each step explained in :attr:`RankedLocation.reason`:

1. a call taker's own entry (``LocationSource.CALL_TAKER``) beats everything, the newest one first;
2. usable locations (coordinates or an address) before unusable ones;
3. fresh before stale: a fix older than :attr:`FusionPolicy.max_age` loses to any fresh fix;
4. source: AML GNSS > eCall > PIDF-LO > AML cell / Wi-Fi > spoken address > caller number's country;
5. ties: smaller accuracy radius first (unknown radius last), then the more recent.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple, Protocol

from intake.domain import Call, Location, LocationSource
from intake.errors import ValidationFailed
from intake.numbers import parse_caller_number
from intake.ports import Clock, IncidentLocations, RecentCalls
from intake.views import location_json
from routing.types import SpokenLocation
from telephony.events import GeoFix, LocationReported
from telephony.location import AmlError, decode_aml

log = logging.getLogger(__name__)

DEFAULT_PLACES_CSV = Path(__file__).parent / "data" / "geo" / "places.csv"
EARTH_RADIUS_M = 6_371_008.8

DEFAULT_SOURCE_ORDER: tuple[tuple[LocationSource, ...], ...] = (
    (LocationSource.AML_GNSS,),
    (LocationSource.ECALL,),
    (LocationSource.PIDF_LO,),
    (LocationSource.AML_CELL, LocationSource.AML_WIFI),
    (LocationSource.SPOKEN,),
    (LocationSource.CALLER_COUNTRY,),
)

GEOFIX_SOURCES: dict[str, LocationSource] = {
    "aml-gnss": LocationSource.AML_GNSS,
    "aml-cell": LocationSource.AML_CELL,
    "aml-wifi": LocationSource.AML_WIFI,
    "ecall": LocationSource.ECALL,
    "pidf-lo": LocationSource.PIDF_LO,
}


@dataclass(frozen=True, slots=True)
class FusionPolicy:
    max_age: timedelta = timedelta(minutes=15)
    source_order: tuple[tuple[LocationSource, ...], ...] = DEFAULT_SOURCE_ORDER
    # A fix is labelled with the nearest known place's municipality only this close to it.
    place_label_max_distance_m: float = 1500.0

    def source_rank(self, source: LocationSource) -> int:
        for rank, group in enumerate(self.source_order):
            if source in group:
                return rank
        return len(self.source_order)


@dataclass(frozen=True, slots=True)
class RankedLocation:
    location: Location
    rank: int  # 0 = best
    stale: bool
    usable: bool
    age_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class FusedLocation:
    best: Location | None
    ranking: tuple[RankedLocation, ...]
    history: tuple[Location, ...] = field(default_factory=tuple)

    @property
    def explanation(self) -> str:
        return self.ranking[0].reason if self.ranking else "no location reported"


def is_usable(location: Location) -> bool:
    has_position = location.lat is not None and location.lon is not None
    has_text = any(
        (
            location.municipality,
            location.part,
            location.street,
            location.landmark,
            location.road,
            location.country,
        )
    )
    return has_position or has_text


def rank_locations(
    locations: Iterable[Location], now: datetime, policy: FusionPolicy | None = None
) -> list[RankedLocation]:
    """All locations ranked best first, each with the reason for its place (see the module docstring)."""
    policy = policy or FusionPolicy()
    entries = []
    for index, location in enumerate(locations):
        age_s = (now - location.at).total_seconds()
        usable = is_usable(location)
        stale = age_s > policy.max_age.total_seconds()
        taker = location.source is LocationSource.CALL_TAKER
        radius = location.radius_m if location.radius_m is not None else math.inf
        key = (
            0 if taker else 1,
            0 if usable else 1,
            0 if taker or not stale else 1,
            0 if taker else policy.source_rank(location.source),
            0.0 if taker else radius,
            -location.at.timestamp(),
            -index,  # the later report of two identical ones
        )
        entries.append((key, location, stale, usable, age_s))
    entries.sort(key=lambda entry: entry[0])
    ranked = []
    for rank, (_key, location, stale, usable, age_s) in enumerate(entries):
        ranked.append(
            RankedLocation(
                location=location,
                rank=rank,
                stale=stale,
                usable=usable,
                age_s=age_s,
                reason=_reason(location, stale, usable, age_s, policy),
            )
        )
    return ranked


def _reason(location: Location, stale: bool, usable: bool, age_s: float, policy: FusionPolicy) -> str:
    if location.source is LocationSource.CALL_TAKER:
        return "entered by the call taker: overrides every automatic source"
    if not usable:
        return f"{location.source.value}: neither coordinates nor an address"
    bits = [f"source {location.source.value} (preference {policy.source_rank(location.source) + 1})"]
    bits.append(
        f"accuracy {location.radius_m:.0f} m" if location.radius_m is not None else "accuracy unknown"
    )
    if location.confidence is not None:
        bits.append(f"confidence {location.confidence:.0%}")
    bits.append(f"{age_s:.0f} s old")
    if stale:
        bits.append(f"stale (older than {policy.max_age.total_seconds():.0f} s)")
    return ", ".join(bits)


def best_location(
    locations: Iterable[Location], now: datetime, policy: FusionPolicy | None = None
) -> Location | None:
    ranked = rank_locations(locations, now, policy)
    if not ranked or not ranked[0].usable:
        return None
    return ranked[0].location


def fuse(history: Sequence[Location], now: datetime, policy: FusionPolicy | None = None) -> FusedLocation:
    """The best location of a call given its whole location history (kept unchanged in the result)."""
    ranking = tuple(rank_locations(history, now, policy))
    best = ranking[0].location if ranking and ranking[0].usable else None
    return FusedLocation(best=best, ranking=ranking, history=tuple(history))


# ----------------------------------------------------------------------------- converting sources


def location_from_geofix(
    fix: GeoFix,
    places: PlaceGazetteer | None = None,
    policy: FusionPolicy | None = None,
) -> Location:
    """A decoder's :class:`GeoFix` as a domain :class:`Location`, labelled with the nearest known place.

    RFC 5139 civic elements map as used in Czechia: A3 obec -> municipality, A4 část obce -> part, RD (with
    STS) or A6 -> street, HNO (with HNS) -> house number, LMK -> landmark, country -> country.
    """
    source = GEOFIX_SOURCES.get(fix.source)
    if source is None:
        raise ValidationFailed(f"unknown location source {fix.source!r}", source=fix.source)
    civic = fix.civic
    street = " ".join(b for b in (civic.get("RD") or civic.get("A6"), civic.get("STS")) if b) or None
    house = "".join(b for b in (civic.get("HNO"), civic.get("HNS")) if b) or None
    location = Location(
        source=source,
        lat=fix.lat,
        lon=fix.lon,
        radius_m=fix.radius_m,
        confidence=fix.confidence,
        municipality=civic.get("A3"),
        part=civic.get("A4"),
        street=street,
        house_number=house,
        landmark=civic.get("LMK"),
        country=civic.get("country"),
        at=fix.at,
    )
    return label_with_place(location, places, policy) if places is not None else location


def location_from_spoken(
    spoken: SpokenLocation, at: datetime, places: PlaceGazetteer | None = None
) -> Location | None:
    """A spoken address (resolved by routing's gazetteer) as a location, with the coordinates of the
    named place when the place gazetteer knows it (no radius: a village centre is not a position)."""
    if not any((spoken.municipality, spoken.part, spoken.street, spoken.landmark, spoken.road)):
        return None
    place = places.find(spoken.municipality, spoken.part) if places is not None else None
    road = " km ".join(b for b in (spoken.road, spoken.road_km) if b) or None
    return Location(
        source=LocationSource.SPOKEN,
        lat=place.lat if place else None,
        lon=place.lon if place else None,
        confidence=spoken.confidence or None,
        municipality=spoken.municipality,
        part=spoken.part,
        street=spoken.street,
        house_number=spoken.house_number,
        landmark=spoken.landmark,
        road=road,
        at=at,
    )


def location_from_caller_country(country: str | None, at: datetime) -> Location | None:
    """The weakest hint: the country of the caller's number (ISO 3166-1 alpha-2), if known."""
    if not country:
        return None
    return Location(source=LocationSource.CALLER_COUNTRY, country=country.upper(), at=at)


def label_with_place(
    location: Location, places: PlaceGazetteer, policy: FusionPolicy | None = None
) -> Location:
    """Fill municipality/part from the nearest known place when the fix lies close to it."""
    policy = policy or FusionPolicy()
    if location.municipality or location.lat is None or location.lon is None:
        return location
    nearest = places.nearest_place(location.lat, location.lon, policy.place_label_max_distance_m)
    if nearest is None:
        return location
    return replace(location, municipality=nearest.municipality, part=nearest.part)


# ----------------------------------------------------------------------------- AML SMS to call


def match_call_for_sms(
    sender: str,
    received_at: datetime,
    calls: Iterable[Call],
    *,
    before: timedelta = timedelta(seconds=60),
    after_end: timedelta = timedelta(minutes=10),
    default_region: str = "CZ",
) -> Call | None:
    """The call an AML SMS belongs to: same caller number (compared as E.164), offered at most ``before``
    after the SMS arrived (the handset sends it as the call starts) and not ended more than ``after_end``
    before it (late SMS for an abandoned call still locate the caller for the call-back). The most recently
    offered live call wins, then the most recently offered ended one; None when nothing matches."""
    number = parse_caller_number(sender, default_region)
    if number.e164 is None:
        return None
    candidates = [
        call
        for call in calls
        if call.caller.e164 == number.e164
        and call.offered_at - before <= received_at
        and (call.ended_at is None or received_at <= call.ended_at + after_end)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda call: (call.is_live, call.offered_at))


# ----------------------------------------------------------------------------- nearest place


class NearestPlace(NamedTuple):
    municipality: str
    part: str
    distance_m: float


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    lat: float
    lon: float
    municipality: str
    part: str
    municipality_code: str = ""
    part_code: str = ""


class PlaceGazetteer:
    """Known places with coordinates (``intake/data/geo/places.csv``), queried by nearest distance."""

    def __init__(self, places: Sequence[Place]) -> None:
        if not places:
            raise ValidationFailed("the place gazetteer is empty")
        self._places = tuple(places)

    @classmethod
    def from_csv(cls, path: Path = DEFAULT_PLACES_CSV) -> PlaceGazetteer:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        try:
            places = [
                Place(
                    name=row["name"],
                    lat=float(row["lat"]),
                    lon=float(row["lon"]),
                    municipality=row["municipality"],
                    part=row["part"],
                    municipality_code=row.get("municipality_code", ""),
                    part_code=row.get("part_code", ""),
                )
                for row in rows
            ]
        except (KeyError, ValueError) as exc:
            raise ValidationFailed(f"place gazetteer {path} is malformed: {exc}", path=str(path)) from exc
        return cls(places)

    @property
    def places(self) -> tuple[Place, ...]:
        return self._places

    def find(self, municipality: str | None, part: str | None = None) -> Place | None:
        """The known place of a municipality (and part), matched case-insensitively; None if unknown."""
        if not municipality:
            return None
        wanted_municipality = municipality.casefold()
        candidates = [p for p in self._places if p.municipality.casefold() == wanted_municipality]
        if part:
            exact = [p for p in candidates if p.part.casefold() == part.casefold()]
            if exact:
                return exact[0]
        # The part named like its municipality is the municipality's centre.
        centre = [p for p in candidates if p.part.casefold() == wanted_municipality]
        best = centre or candidates
        return best[0] if best else None

    def nearest_place(
        self, lat: float, lon: float, max_distance_m: float | None = None
    ) -> NearestPlace | None:
        """The nearest known place's municipality and part, and its distance; None beyond max_distance_m."""
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValidationFailed(f"not a position: {lat}, {lon}", lat=lat, lon=lon)
        # A linear scan: the region has under a thousand places and this runs once per fix.
        best = min(self._places, key=lambda place: haversine_m(lat, lon, place.lat, place.lon))
        distance = haversine_m(lat, lon, best.lat, best.lon)
        if max_distance_m is not None and distance > max_distance_m:
            return None
        return NearestPlace(best.municipality, best.part, distance)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


# ----------------------------------------------------------------------------- the location service


class LocatedCall(Protocol):
    """A live call as the location service sees it (:class:`intake.calls.session.CallSession`)."""

    call: Call
    locations: list[Location]

    def deliver(self, event: LocationReported) -> None: ...


class LiveCallDirectory(Protocol):
    def located(self, call_id: str) -> LocatedCall | None: ...

    def live_calls(self) -> list[Call]: ...


SaveCall = Callable[[Call], Awaitable[None]]
PublishCall = Callable[[Call, str, dict[str, object]], Awaitable[None]]


class CallLocations:
    """Every position reported for a live call (INVITE PIDF-LO, eCall, AML SMS, spoken address, the caller
    number's country), fused into the call's best location; the incident keeps the history."""

    def __init__(
        self,
        calls: RecentCalls,
        incidents: IncidentLocations,
        save: SaveCall,
        publish: PublishCall,
        clock: Clock,
        places: PlaceGazetteer | None = None,
    ) -> None:
        self._calls = calls
        self._incidents = incidents
        self._save = save
        self._publish = publish
        self._clock = clock
        self._places = places
        self.directory: LiveCallDirectory | None = None

    def start(self, session: LocatedCall, fix: GeoFix | None) -> None:
        """A new call's first positions: its number's country and the fix its signalling carried."""
        call = session.call
        country = location_from_caller_country(call.caller.country, call.offered_at)
        if country is not None:
            session.locations.append(country)
        if fix is not None:
            self.add_fix(session, fix)
        call.location = fuse(session.locations, self._clock.now()).best

    def add_fix(self, session: LocatedCall, fix: GeoFix) -> bool:
        try:
            session.locations.append(location_from_geofix(fix, self._places))
        except ValidationFailed as exc:
            log.warning("call %s: location from %s ignored: %s", session.call.id, fix.source, exc.message)
            return False
        return True

    async def on_fix(self, session: LocatedCall, fix: GeoFix) -> None:
        if self.add_fix(session, fix):
            await self.changed(session)

    async def on_spoken(self, session: LocatedCall, spoken: SpokenLocation) -> None:
        """Triage heard an address: it replaces the address heard before."""
        location = location_from_spoken(spoken, self._clock.now(), self._places)
        if location is None:
            return
        session.locations = [loc for loc in session.locations if loc.source is not LocationSource.SPOKEN]
        session.locations.append(location)
        await self.changed(session)

    async def changed(self, session: LocatedCall) -> None:
        call = session.call
        fused = fuse(session.locations, self._clock.now())
        best = fused.best
        if best is None or best == call.location:
            return
        call.location = best
        await self._save(call)
        await self._publish(
            call,
            "location.updated",
            {
                "location": location_json(call.location),
                "explanation": fused.explanation,
                "history": [location_json(loc) for loc in fused.history],
            },
        )
        if call.incident_id and best.source is not LocationSource.SPOKEN:
            await self._incidents.add_location(call.incident_id, best, actor=f"location:{best.source.value}")

    async def report_aml(
        self, sender: str, text: str, received_at: datetime | None = None
    ) -> dict[str, object]:
        """An AML SMS (ETSI TS 103 625) forwarded by an operator's gateway: decoded, matched to the live or
        recent call from the same number, and fused into that call's location. A malformed message is
        rejected with its reason; one that matches no call is logged and answered as unmatched."""
        received_at = received_at or self._clock.now()
        try:
            message = decode_aml(text, received_at)
        except AmlError as exc:
            log.warning("AML SMS from %s rejected: %s", sender, exc)
            raise ValidationFailed(f"AML message rejected: {exc}", reason=str(exc)) from exc
        recent, _ = await asyncio.to_thread(
            self._calls.list_calls, since=received_at - timedelta(hours=1), limit=500
        )
        calls = {c.id: c for c in recent}
        if self.directory is not None:
            calls.update({c.id: c for c in self.directory.live_calls()})
        call = match_call_for_sms(sender, received_at, calls.values())
        fix = message.to_geofix()
        result: dict[str, object] = {
            "matched": call is not None,
            "call_id": call.id if call else None,
            "position": fix is not None,
            "method": message.method.value if hasattr(message.method, "value") else str(message.method),
            "warnings": list(message.warnings),
        }
        if call is None:
            log.error(
                "AML SMS from %s matches no call in the last hour (position kept in this log: %s)",
                sender,
                text,
            )
            return result
        if fix is None:
            log.info("call %s: AML from %s without a position fix", call.id, sender)
            return result
        await self.report_location(call.id, fix)
        return result

    async def report_location(self, call_id: str, fix: GeoFix) -> Call:
        """A position that arrived outside the call's signalling (AML SMS, eCall data) for a known call."""
        session = self.directory.located(call_id) if self.directory is not None else None
        if session is None:
            # The call has ended (or lives on another node): keep the fix on its incident's history.
            call = await asyncio.to_thread(self._calls.get_call, call_id)
            location = location_from_geofix(fix, self._places)
            if call.incident_id:
                await self._incidents.add_location(call.incident_id, location, actor=f"location:{fix.source}")
            return call
        session.deliver(LocationReported(call_ref=session.call.call_ref, fix=fix))
        return session.call
