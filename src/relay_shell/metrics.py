"""Prometheus metrics (docs/deployment.md), in a registry of relay-shell's own.

The pipeline records every call here whatever the transport; ``GET /metrics`` on the
HTTP transport renders the registry. Gauges for live objects are read at scrape time
through callbacks the services register (:meth:`Metrics.bind_gauges`).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class Metrics:
    """The metric families of one server instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tool_calls = Counter(
            "relay_shell_tool_calls",
            "Tool calls, resource reads and prompt fetches by outcome.",
            ["tool", "tier", "mode", "outcome"],
            registry=self.registry,
        )
        self.tool_duration = Histogram(
            "relay_shell_tool_duration_seconds",
            "Wall time of tool calls from admission to result.",
            ["tool"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.truncations = Counter(
            "relay_shell_truncations",
            "Results whose output exceeded the budget.",
            ["tool"],
            registry=self.registry,
        )
        self.denials = Counter(
            "relay_shell_denials",
            "Calls refused by policy: deny list, mode or token scope.",
            ["tool", "reason"],
            registry=self.registry,
        )
        self.active_sessions = Gauge(
            "relay_shell_active_sessions", "Live PTY sessions.", registry=self.registry
        )
        self.active_forwards = Gauge(
            "relay_shell_active_forwards", "Live SSH port forwards.", registry=self.registry
        )
        self.ssh_connections = Gauge(
            "relay_shell_ssh_connections", "Pooled SSH connections.", registry=self.registry
        )
        self.audit_degraded = Gauge(
            "relay_shell_audit_degraded", "1 when the audit sink cannot be written.", registry=self.registry
        )

    def bind_gauges(
        self,
        *,
        sessions: Callable[[], float],
        forwards: Callable[[], float],
        connections: Callable[[], float],
        audit_degraded: Callable[[], float],
    ) -> None:
        """Read live counts at scrape time instead of tracking increments."""
        self.active_sessions.set_function(sessions)
        self.active_forwards.set_function(forwards)
        self.ssh_connections.set_function(connections)
        self.audit_degraded.set_function(audit_degraded)

    def record_call(
        self, *, tool: str, tier: int | None, mode: str, outcome: str, duration_s: float, truncated: bool
    ) -> None:
        self.tool_calls.labels(
            tool=tool, tier=str(tier if tier is not None else ""), mode=mode, outcome=outcome
        ).inc()
        self.tool_duration.labels(tool=tool).observe(duration_s)
        if truncated:
            self.truncations.labels(tool=tool).inc()

    def record_denial(self, *, tool: str, reason: str) -> None:
        self.denials.labels(tool=tool, reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
