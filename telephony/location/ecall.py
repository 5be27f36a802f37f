"""eCall Minimum Set of Data (MSD) decoder, EN 15722, ASN.1 UPER, at most 140 bytes.

The MSD reaches the centre in band (the modem in the PSAP's gateway) or in SIP as a body part of type
``application/EmergencyCallData.eCall.MSD`` (RFC 8147). The first byte of every format version is the
format version itself (``ECallMessage.id``), which selects the ASN.1 module in ``asn1/``.

Decoded MSD fields: activation (automatic/manual), test call, whether the position can be trusted
(EN 15722: within 150 m with 95 % confidence), vehicle type, VIN, propulsion storage, timestamp (seconds
since 1970 UTC), position (milliarcseconds), direction (2-degree steps, 255 unknown), up to two recent
positions (deltas of 100 milliarcseconds, N-1 relative to the current position, N-2 relative to N-1),
number of occupants (255 unknown) and optional additional data (OID + octets, kept raw).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import asn1tools

from telephony.events import GeoFix
from telephony.location.errors import MsdError
from telephony.location.multipart import find_part

MSD_CONTENT_TYPE = "application/emergencycalldata.ecall.msd"
MAX_MSD_BYTES = 140
SUPPORTED_VERSIONS = (1, 2)
MAS_PER_DEGREE = 3_600_000
DELTA_MAS = 100  # one unit of a recent-position delta
UNKNOWN_POSITION = 0x7FFFFFFF
UNKNOWN_DIRECTION = 255
UNKNOWN_PASSENGERS = 255
TRUSTED_RADIUS_M = 150.0
TRUSTED_CONFIDENCE = 0.95

VEHICLE_TYPES = {
    "passengerVehicleClassM1": "M1 passenger vehicle",
    "busesAndCoachesClassM2": "M2 bus/coach",
    "busesAndCoachesClassM3": "M3 bus/coach",
    "lightCommercialVehiclesClassN1": "N1 light commercial vehicle",
    "heavyDutyVehiclesClassN2": "N2 heavy duty vehicle",
    "heavyDutyVehiclesClassN3": "N3 heavy duty vehicle",
    "motorcyclesClassL1e": "L1e motorcycle",
    "motorcyclesClassL2e": "L2e motorcycle",
    "motorcyclesClassL3e": "L3e motorcycle",
    "motorcyclesClassL4e": "L4e motorcycle",
    "motorcyclesClassL5e": "L5e motorcycle",
    "motorcyclesClassL6e": "L6e motorcycle",
    "motorcyclesClassL7e": "L7e motorcycle",
}

PROPULSION_FIELDS = (
    ("gasolineTankPresent", "gasoline"),
    ("dieselTankPresent", "diesel"),
    ("compressedNaturalGas", "CNG"),
    ("liquidPropaneGas", "LPG"),
    ("electricEnergyStorage", "electric"),
    ("hydrogenStorage", "hydrogen"),
    ("otherStorage", "other"),
)


@dataclass(frozen=True, slots=True)
class RecentPosition:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class EcallMsd:
    version: int
    message_id: int
    automatic_activation: bool
    test_call: bool
    position_trusted: bool
    vehicle_type: str  # the standard's enumeration name, e.g. passengerVehicleClassM1
    vin: str
    propulsion: tuple[str, ...]  # gasoline, diesel, CNG, LPG, electric, hydrogen, other
    timestamp: datetime
    lat: float | None  # None when the vehicle sent "unknown" or an impossible value
    lon: float | None
    direction_deg: int | None
    recent_positions: tuple[RecentPosition, ...]  # N-1 then N-2, absolute
    passengers: int | None
    additional_data_oid: bytes | None
    additional_data: bytes | None
    raw: bytes

    @property
    def vehicle_type_text(self) -> str:
        return VEHICLE_TYPES.get(self.vehicle_type, self.vehicle_type)

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None

    def to_geofix(self) -> GeoFix | None:
        """The vehicle position as a :class:`GeoFix`, or ``None`` when the MSD has no valid position."""
        if self.lat is None or self.lon is None:
            return None
        trusted = self.position_trusted
        return GeoFix(
            source="ecall",
            lat=self.lat,
            lon=self.lon,
            radius_m=TRUSTED_RADIUS_M if trusted else None,
            confidence=TRUSTED_CONFIDENCE if trusted else None,
            at=self.timestamp,
            raw=self.raw.hex(),
        )


# What asn1tools raises for corrupted input besides its own errors: ValueError/IndexError/KeyError/TypeError
# from its bit reader, NotImplementedError ("Normally small length number >64") and other RuntimeErrors for
# length forms it does not implement, ArithmeticError for absurd lengths; _build's KeyError/TypeError for a
# structure that decoded but is not an MSD. All of them mean "this MSD is not usable".
_ASN1_FAILURES = (
    asn1tools.Error,
    ValueError,
    LookupError,
    TypeError,
    RuntimeError,
    ArithmeticError,
    AttributeError,
)


@cache
def _codec(version: int) -> Any:
    text = resources.files("telephony.location.asn1").joinpath(f"msd_v{version}.asn").read_text("utf-8")
    return asn1tools.compile_string(text, "uper")


def decode_msd(data: bytes) -> EcallMsd:
    """Decode an ASN.1 UPER MSD (format version 1 or 2); raise :class:`MsdError` with the reason."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MsdError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise MsdError("empty MSD")
    if len(data) > MAX_MSD_BYTES:
        raise MsdError(f"MSD of {len(data)} bytes is longer than the {MAX_MSD_BYTES} bytes EN 15722 allows")
    version = data[0]
    if version not in SUPPORTED_VERSIONS:
        raise MsdError(
            f"MSD format version {version} is not supported (this decoder reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    codec = _codec(version)
    try:
        return _build(version, _decode_message(codec, version, data), data)
    except MsdError:
        raise
    except _ASN1_FAILURES as exc:
        # Version 2 units that write the MSD length as one octet even from 128 bytes on (UPER wants two):
        # the octet then equals the rest of the message exactly, which a corrupted MSD rarely does.
        if version >= 2 and len(data) >= 130 and data[1] == len(data) - 2:
            try:
                return _build(version, codec.decode("MSDMessage", data[2:]), data)
            except _ASN1_FAILURES:
                pass
        detail = str(exc) if isinstance(exc, asn1tools.Error) else f"{type(exc).__name__}: {exc}"
        raise MsdError(f"MSD version {version} does not decode: {detail}") from exc


def _decode_message(codec: Any, version: int, data: bytes) -> dict[str, Any]:
    envelope = codec.decode("ECallMessage", data)
    if version >= 2:
        return dict(codec.decode("MSDMessage", envelope["msd"]))
    return dict(envelope["msd"])


def _degrees(mas: int, limit_degrees: int) -> float | None:
    if mas == UNKNOWN_POSITION or abs(mas) > limit_degrees * MAS_PER_DEGREE:
        return None
    return mas / MAS_PER_DEGREE


def _build(version: int, message: dict[str, Any], raw: bytes) -> EcallMsd:
    structure = message["msdStructure"]
    control = structure["control"]
    vin_parts = structure["vehicleIdentificationNumber"]
    vin = "".join(vin_parts[key] for key in ("isowmi", "isovds", "isovisModelyear", "isovisSeqPlant"))
    storage = structure["vehiclePropulsionStorageType"]
    propulsion = tuple(label for key, label in PROPULSION_FIELDS if storage.get(key, False))

    location = structure["vehicleLocation"]
    lat = _degrees(location["positionLatitude"], 90)
    lon = _degrees(location["positionLongitude"], 180)
    if lat is None or lon is None or (lat == 0 and lon == 0):
        # 0, 0 is what a receiver without a fix leaves in the fields, never a vehicle in Europe.
        lat = lon = None

    recent: list[RecentPosition] = []
    previous_lat, previous_lon = lat, lon
    for key in ("recentVehicleLocationN1", "recentVehicleLocationN2"):
        delta = structure.get(key)
        if delta is None or previous_lat is None or previous_lon is None:
            break
        previous_lat += delta["latitudeDelta"] * DELTA_MAS / MAS_PER_DEGREE
        previous_lon += delta["longitudeDelta"] * DELTA_MAS / MAS_PER_DEGREE
        recent.append(RecentPosition(previous_lat, previous_lon))

    direction = structure["vehicleDirection"]
    passengers = structure.get("numberOfPassengers")
    additional = message.get("optionalAdditionalData")
    try:
        timestamp = datetime.fromtimestamp(structure["timestamp"], UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MsdError(f"timestamp {structure['timestamp']} is not a valid time") from exc
    vehicle_type = control["vehicleType"]
    return EcallMsd(
        version=version,
        message_id=structure["messageIdentifier"],
        automatic_activation=control["automaticActivation"],
        test_call=control["testCall"],
        position_trusted=control["positionCanBeTrusted"],
        # An enumeration value added after this module's version decodes as None: keep the MSD anyway.
        vehicle_type=vehicle_type if isinstance(vehicle_type, str) else "unknown",
        vin=vin,
        propulsion=propulsion,
        timestamp=timestamp,
        lat=lat,
        lon=lon,
        # 0..179 are 2-degree steps clockwise from north; anything else is "unknown".
        direction_deg=direction * 2 if direction < 180 else None,
        recent_positions=tuple(recent),
        passengers=None if passengers is None or passengers == UNKNOWN_PASSENGERS else passengers,
        additional_data_oid=None if additional is None else bytes(additional["oid"]),
        additional_data=None if additional is None else bytes(additional["data"]),
        raw=raw,
    )


def encode_msd(message: dict[str, Any], version: int = 2) -> bytes:
    """Encode an ``MSDMessage`` value (asn1tools dict form) as a complete ECallMessage of ``version``.

    Used to build test MSDs and by simulators; the decoder never needs it.
    """
    if version not in SUPPORTED_VERSIONS:
        raise MsdError(f"MSD format version {version} is not supported")
    codec = _codec(version)
    try:
        if version >= 2:
            inner = codec.encode("MSDMessage", message)
            return bytes(codec.encode("ECallMessage", {"id": version, "msd": inner}))
        return bytes(codec.encode("ECallMessage", {"id": version, "msd": message}))
    except asn1tools.Error as exc:
        raise MsdError(f"cannot encode MSD: {exc}") from exc


def extract_msd_from_multipart(body: bytes, content_type: str) -> bytes | None:
    """The MSD bytes of an RFC 8147 SIP body (``application/EmergencyCallData.eCall.MSD`` part), or None.

    Raises :class:`~telephony.location.errors.MultipartError` when the multipart body is malformed.
    """
    return find_part(body, content_type, MSD_CONTENT_TYPE)


def msd_from_hex(text: str) -> bytes:
    """Bytes of an MSD given as hex (how modems and logs print it), spaces allowed."""
    try:
        return bytes.fromhex("".join(text.split()))
    except (ValueError, binascii.Error) as exc:
        raise MsdError(f"MSD hex does not decode: {exc}") from exc
