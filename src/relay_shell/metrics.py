"""Prometheus metrics (docs/deployment.md), in a registry of relay-shell's own.

The pipeline records every call here whatever the transport; ``GET /metrics`` on the
HTTP transport renders the registry. Gauges for live objects are read at scrape time
through callbacks the services register (:meth:`Metrics.bind_gauges`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

type GaugeReader = Callable[[], float]

MAX_CACHED_CHILDREN = 1024
"""How many label combinations :meth:`Metrics.record_call` keeps at hand (it starts over when full)."""


class _Families:
    """The registry and its metric families (prometheus_client is imported here)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self.tool_calls: Counter = Counter(
            "relay_shell_tool_calls",
            "Tool calls, resource reads and prompt fetches by outcome.",
            ["tool", "tier", "mode", "outcome"],
            registry=self.registry,
        )
        self.tool_duration: Histogram = Histogram(
            "relay_shell_tool_duration_seconds",
            "Wall time of tool calls from admission to result.",
            ["tool"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.truncations: Counter = Counter(
            "relay_shell_truncations",
            "Results whose output exceeded the budget.",
            ["tool"],
            registry=self.registry,
        )
        self.denials: Counter = Counter(
            "relay_shell_denials",
            "Calls refused by policy: deny list, mode or token scope.",
            ["tool", "reason"],
            registry=self.registry,
        )
        self.active_sessions: Gauge = Gauge(
            "relay_shell_active_sessions", "Live PTY sessions.", registry=self.registry
        )
        self.active_forwards: Gauge = Gauge(
            "relay_shell_active_forwards", "Live SSH port forwards.", registry=self.registry
        )
        self.ssh_connections: Gauge = Gauge(
            "relay_shell_ssh_connections", "Pooled SSH connections.", registry=self.registry
        )
        self.audit_degraded: Gauge = Gauge(
            "relay_shell_audit_degraded", "1 when the audit sink cannot be written.", registry=self.registry
        )

    def bind(self, readers: dict[str, GaugeReader]) -> None:
        self.active_sessions.set_function(readers["sessions"])
        self.active_forwards.set_function(readers["forwards"])
        self.ssh_connections.set_function(readers["connections"])
        self.audit_degraded.set_function(readers["audit_degraded"])


class Metrics:
    """The metric families of one server instance.

    The families (and prometheus_client) are created at the first call recorded or the
    first scrape, not when the server is built: answering ``initialize`` and ``tools/list``
    does without them. A scrape before any call shows every family, the counters empty.
    """

    def __init__(self) -> None:
        self._created: _Families | None = None
        self._readers: dict[str, GaugeReader] | None = None
        self._call_children: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}
        """The labelled children a call updates, by their labels: looked up once, not per call."""

    @property
    def _families(self) -> _Families:
        if self._created is None:
            self._created = _Families()
            if self._readers is not None:
                self._created.bind(self._readers)
        return self._created

    def bind_gauges(
        self,
        *,
        sessions: GaugeReader,
        forwards: GaugeReader,
        connections: GaugeReader,
        audit_degraded: GaugeReader,
    ) -> None:
        """Read live counts at scrape time instead of tracking increments."""
        self._readers = {
            "sessions": sessions,
            "forwards": forwards,
            "connections": connections,
            "audit_degraded": audit_degraded,
        }
        if self._created is not None:
            self._created.bind(self._readers)

    def record_call(
        self, *, tool: str, tier: int | None, mode: str, outcome: str, duration_s: float, truncated: bool
    ) -> None:
        key = (tool, str(tier if tier is not None else ""), mode, outcome)
        children = self._call_children.get(key)
        if children is None:
            families = self._families
            children = (
                families.tool_calls.labels(tool=tool, tier=key[1], mode=mode, outcome=outcome),
                families.tool_duration.labels(tool=tool),
            )
            if len(self._call_children) >= MAX_CACHED_CHILDREN:
                self._call_children.clear()  # bounded: tool names of refused calls come from clients
            self._call_children[key] = children
        calls, duration = children
        calls.inc()
        duration.observe(duration_s)
        if truncated:
            self._families.truncations.labels(tool=tool).inc()

    def record_denial(self, *, tool: str, reason: str) -> None:
        self._families.denials.labels(tool=tool, reason=reason).inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self._families.registry)
