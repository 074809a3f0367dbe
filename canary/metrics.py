"""Prometheus metrics of one listener. One registry per runtime: no global state, tests stay isolated."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("canary_events_total", "Detection events submitted", ["source", "kind"], registry=r)
        self.rejects = Counter(
            "canary_rejects_total", "Inputs rejected (unparseable, forged, oversized...)", ["source", "reason"], registry=r
        )
        self.requests = Counter("canary_requests_total", "Requests answered by listener components", ["component", "code"], registry=r)
        self.deliveries = Counter("canary_deliveries_total", "Alert delivery attempts", ["sink", "outcome"], registry=r)
        self.lines = Counter("canary_log_lines_total", "Log lines read by log sources", ["source"], registry=r)
        self.outbox_pending = Gauge("canary_outbox_pending", "Notifications waiting for delivery", registry=r)
        self.outbox_dead = Gauge("canary_outbox_dead", "Notifications dead-lettered", registry=r)
        self.source_behind_bytes = Gauge("canary_source_behind_bytes", "Input a log source has not read yet", ["source"], registry=r)
        self.source_behind_seconds = Gauge(
            "canary_source_behind_seconds", "Seconds a log source has been behind its input without advancing", ["source"], registry=r)
        self.quiet = Counter(
            "canary_backstop_quiet_total", "Object-audit lines left quiet: why=tripwire (row security covers the session)"
            " or why=privileged_reads (the setting)", ["source", "why"], registry=r)
        self.connections_refused = Counter(
            "canary_connections_refused_total", "Connections to the listener's HTTP port closed at once: the peer held"
            " listener.max_connections_per_peer already", registry=r)
        self.leader = Gauge("canary_leader", "1 in the listener holding the leader lease (runs the once-per-cluster"
                            " jobs)", registry=r)
        self.up = Gauge("canary_component_up", "1 when a listener component is running", ["component"], registry=r)
        self.detect_latency = Histogram(
            "canary_detect_seconds", "Time from a signal being observed to its event being committed", ["source"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
