"""Live, shared state on Redis: active calls, desk queues, call-taker states, console presence, node health,
the incident event stream, pub/sub for consoles and nodes, and leases for one-node-only duties.

Several intake nodes share one Redis, so everything that must not happen twice is one atomic step in
Redis (a Lua script or MULTI): two nodes never claim the same queued call, a lease has one holder.
Redis errors surface as :class:`~intake.errors.LiveStateError` (the cause chained) through the one
mapping in :class:`~intake.live.connection.LiveRedis`; callers degrade (the database holds the truth,
queues can be rebuilt from it with :func:`queue_entries_from_calls`).

One module per concept, all over one :class:`~intake.live.connection.LiveRedis` (client + namespace):

- :mod:`intake.live.queues` — :class:`DeskQueues` (Lua-atomic claim, move, reprioritise, rebuild);
- :mod:`intake.live.presence` — :class:`ActiveCalls`, :class:`TakerStates`, :class:`ConsolePresence`,
  :class:`NodeHealth`;
- :mod:`intake.live.streams` — :class:`IncidentStream` (consumer groups, replay), :class:`PubSub`,
  :class:`NodeReplies` (replies to commands between nodes);
- :mod:`intake.live.leases` — :class:`Leases`;
- :mod:`intake.live.state` — :class:`LiveState`, all of them on one connection (the composition root's
  object), plus namespace upkeep (epoch, snapshot, clear).

Each module documents its keys (``ns`` = namespace, default ``izs``); one Redis (not Cluster) is assumed,
the queue scripts touch keys of several desks.
"""

from intake.live.connection import LiveRedis, LiveStore, connect_redis
from intake.live.leases import Leases
from intake.live.presence import ActiveCalls, ConsolePresence, LiveTaker, NodeHealth, TakerStates
from intake.live.queues import (
    MAX_PRIORITY,
    RANK_STEP,
    DeskQueues,
    QueueEntry,
    QueueRebuild,
    queue_entries_from_calls,
    queue_rank,
    queue_score,
)
from intake.live.state import LiveState
from intake.live.streams import DEFAULT_STREAM_MAXLEN, IncidentStream, NodeReplies, PubSub, StreamMessage

__all__ = [
    "DEFAULT_STREAM_MAXLEN",
    "MAX_PRIORITY",
    "RANK_STEP",
    "ActiveCalls",
    "ConsolePresence",
    "DeskQueues",
    "IncidentStream",
    "Leases",
    "LiveRedis",
    "LiveState",
    "LiveStore",
    "LiveTaker",
    "NodeHealth",
    "NodeReplies",
    "PubSub",
    "QueueEntry",
    "QueueRebuild",
    "StreamMessage",
    "TakerStates",
    "connect_redis",
    "queue_entries_from_calls",
    "queue_rank",
    "queue_score",
]
