"""Prometheus metrics of one intake node, in a registry owned by the Centre (no global registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls_offered = Counter(
            "izs_calls_offered_total",
            "Calls offered to the centre",
            ["desk", "dialled"],
            registry=self.registry,
        )
        self.calls_answered = Counter(
            "izs_calls_answered_total", "Calls answered by a call taker", ["desk"], registry=self.registry
        )
        self.calls_abandoned = Counter(
            "izs_calls_abandoned_total",
            "Calls the caller left before a call taker answered",
            ["desk"],
            registry=self.registry,
        )
        self.answer_wait = Histogram(
            "izs_answer_wait_seconds",
            "From offer to a call taker answering",
            ["desk"],
            buckets=(2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300),
            registry=self.registry,
        )
        self.queue_length = Gauge(
            "izs_queue_length", "Calls waiting per desk", ["desk"], registry=self.registry
        )
        self.queue_oldest_wait = Gauge(
            "izs_queue_oldest_wait_seconds",
            "Wait of the longest-waiting call per desk",
            ["desk"],
            registry=self.registry,
        )
        self.transcription_lag = Histogram(
            "izs_transcription_lag_seconds",
            "Audio time to transcript event delay",
            buckets=(0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.triage_latency = Histogram(
            "izs_triage_latency_seconds",
            "Time to run triage on one transcript update",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
            registry=self.registry,
        )
        self.component_up = Gauge(
            "izs_component_up",
            "1 when a component is healthy, 0 when degraded",
            ["component"],
            registry=self.registry,
        )
        self.events_dropped = Counter(
            "izs_events_dropped_total",
            "Adapter events that could not be attributed to a call",
            ["kind"],
            registry=self.registry,
        )

        self.recognition_behind = Gauge(
            "izs_recognition_behind_seconds",
            "Longest time a call leg has waited for the recognizer (0 = keeping up)",
            registry=self.registry,
        )
        self.recognition_health = Gauge(
            "izs_recognition_health",
            "1 for the recognition state the node is in (ok / behind / down)",
            ["state"],
            registry=self.registry,
        )
        self.recognition_slots_busy = Gauge(
            "izs_recognition_slots_busy", "Decoding slots in use", registry=self.registry
        )
        self.recognition_legs_waiting = Gauge(
            "izs_recognition_legs_waiting",
            "Call legs with audio waiting for a decoding slot",
            registry=self.registry,
        )
        self.recognition_not_transcribed = Gauge(
            "izs_recognition_not_transcribed_seconds",
            "Audio of open legs not transcribed (marked in the transcript, kept in the recording)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
