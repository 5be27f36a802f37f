"""The role rule of every endpoint, in one table (a test fails when a route has no rule).

``PUBLIC`` routes need no token; every other route lists the roles that may call it. A route missing from
the table is refused to everyone (fail closed).
"""

from __future__ import annotations

from api.auth import Role

PUBLIC: frozenset[Role] = frozenset()

ANY = frozenset(Role)
STAFF = frozenset({Role.CALL_TAKER, Role.SUPERVISOR, Role.ADMIN})
TAKING = frozenset({Role.CALL_TAKER, Role.SUPERVISOR})
SUPERVISING = frozenset({Role.SUPERVISOR, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})
INCIDENT_READERS = ANY
STREAM_READERS = frozenset({Role.INTEGRATION, Role.SUPERVISOR, Role.ADMIN})

# (method, path template) -> roles allowed; "WS" is the WebSocket route.
ROLE_RULES: dict[tuple[str, str], frozenset[Role]] = {
    ("POST", "/api/auth/token"): PUBLIC,
    ("GET", "/api/healthz"): PUBLIC,
    ("GET", "/api/metrics"): PUBLIC,  # scraped by Prometheus inside the centre's network
    ("GET", "/"): PUBLIC,
    ("GET", "/console"): PUBLIC,
    ("GET", "/supervisor"): PUBLIC,
    ("POST", "/api/auth/logout"): ANY,
    ("GET", "/api/me"): ANY,
    ("GET", "/api/me/work"): TAKING,
    ("PUT", "/api/me/draft"): TAKING,
    ("GET", "/api/health"): STAFF,
    # calls
    ("GET", "/api/calls"): STAFF,
    ("GET", "/api/calls/{call_id}"): STAFF,
    ("POST", "/api/calls/{call_id}/accept"): TAKING,
    # voice logging: a call taker their own calls (checked in the route), a supervisor every call
    ("GET", "/api/calls/{call_id}/recording"): TAKING,
    ("POST", "/api/calls/{call_id}/callback"): SUPERVISING | {Role.CALL_TAKER},
    ("GET", "/api/places"): STAFF,
    # caller location from operators' gateways (AML SMS)
    ("POST", "/api/location/aml"): frozenset({Role.INTEGRATION, Role.ADMIN}),
    # incidents
    ("GET", "/api/incidents"): INCIDENT_READERS,
    ("POST", "/api/incidents"): TAKING,
    ("GET", "/api/incidents/{incident_id}"): INCIDENT_READERS,
    ("PATCH", "/api/incidents/{incident_id}"): TAKING,
    ("POST", "/api/incidents/{incident_id}/confirm"): TAKING,
    ("POST", "/api/incidents/{incident_id}/calls"): TAKING,
    ("POST", "/api/incidents/{incident_id}/tcpr"): TAKING,
    ("GET", "/api/incidents/{incident_id}/timeline"): INCIDENT_READERS,
    ("GET", "/api/incidents/{incident_id}/eido"): INCIDENT_READERS,
    ("GET", "/api/incidents/{incident_id}/cap"): INCIDENT_READERS,
    ("GET", "/api/incidents/{incident_id}/duplicates"): TAKING,
    ("GET", "/api/stream/incidents"): STREAM_READERS,
    # desks, queues, call takers
    ("GET", "/api/desks"): STAFF,
    ("GET", "/api/queues"): STAFF,
    ("POST", "/api/queues/{desk}/{call_id}/priority"): SUPERVISING,
    ("POST", "/api/queues/{desk}/{call_id}/move"): SUPERVISING,
    ("GET", "/api/takers"): STAFF,
    ("PUT", "/api/takers/{taker_id}/state"): TAKING | {Role.ADMIN},
    # supervisor statistics
    ("GET", "/api/reports/summary"): SUPERVISING,
    ("GET", "/api/reports/abandoned"): SUPERVISING | {Role.CALL_TAKER},
    # administration
    ("GET", "/api/admin/users"): ADMIN,
    ("POST", "/api/admin/users"): ADMIN,
    ("PATCH", "/api/admin/users/{username}"): ADMIN,
    ("GET", "/api/admin/webhooks"): ADMIN,
    ("POST", "/api/admin/webhooks"): ADMIN,
    ("DELETE", "/api/admin/webhooks/{webhook_id}"): ADMIN,
    ("GET", "/api/admin/webhooks/deliveries"): ADMIN,
    # live events
    ("WS", "/api/live"): ANY,
}


def rule_for(method: str, path: str) -> frozenset[Role] | None:
    """The roles allowed on a route, ``PUBLIC`` for open routes, None when the route has no rule."""
    return ROLE_RULES.get((method.upper(), path))
