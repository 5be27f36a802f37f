"""The life of one call in the centre: telephony events in, the call record, transcript, triage, queue and
incident kept current, and every change announced.

Collaborators, one seam each (the facade :class:`CallService` wires them):

- :mod:`.router` — events from adapter threads to each call's ordered stream; :mod:`.session` — the
  per-call state and the registry of calls this node holds;
- :mod:`.worker` — the per-call worker (offered, queued, connected, ended); :mod:`.transcript` — audio,
  partial and final segments, late finals; :mod:`.triage` — retriage and the call's incident;
- :mod:`.offers` — queueing and offers to call takers; :mod:`.commands` — accept and commands between nodes
  (answered on a reply list);
- :mod:`.cluster` — heartbeat, media leases, reaping calls of lost nodes;
- :mod:`.recovery` and :mod:`.records` — the journal, retries, the record written and announced.

Location fusion and AML SMS live in :class:`intake.location.CallLocations`.
"""

from intake.calls.cluster import MEDIA_LEASE_MS, MEDIA_RECENT_S
from intake.calls.service import CallService
from intake.calls.session import (
    CallSession,
    call_triage_from_decision,
    media_lease,
    new_call_id,
    sticky_decision_from_record,
    urgent_front,
    wait_flushed,
)

__all__ = [
    "MEDIA_LEASE_MS",
    "MEDIA_RECENT_S",
    "CallService",
    "CallSession",
    "call_triage_from_decision",
    "media_lease",
    "new_call_id",
    "sticky_decision_from_record",
    "urgent_front",
    "wait_flushed",
]
