"""The metric families (SPEC §10.2): what ``Metrics`` records comes back through the Prometheus parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from relay_shell.metrics import DURATION_BUCKETS, Metrics


def parse(metrics: Metrics) -> dict[str, list[Sample]]:
    """Samples of every family in the rendered exposition, keyed by family name and type."""
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(metrics.render().decode("utf-8")):
        families[f"{family.name}:{family.type}"] = list(family.samples)
    return families


def values(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Value of each sample called ``name``, keyed by its sorted labels."""
    return {tuple(sorted(s.labels.items())): s.value for s in samples if s.name == name}


def test_record_call_counts_by_tool_tier_mode_outcome() -> None:
    metrics = Metrics()
    metrics.record_call(tool="shell_exec", tier=1, mode="open", outcome="ok", duration_s=0.2, truncated=False)
    metrics.record_call(tool="shell_exec", tier=1, mode="open", outcome="ok", duration_s=0.3, truncated=True)
    metrics.record_call(
        tool="shell_exec", tier=3, mode="guarded", outcome="denied", duration_s=0.001, truncated=False
    )
    metrics.record_call(
        tool="shell_exec", tier=None, mode="open", outcome="error", duration_s=0, truncated=False
    )
    calls = values(parse(metrics)["relay_shell_tool_calls:counter"], "relay_shell_tool_calls_total")
    assert calls == {
        (("mode", "open"), ("outcome", "ok"), ("tier", "1"), ("tool", "shell_exec")): 2.0,
        (("mode", "guarded"), ("outcome", "denied"), ("tier", "3"), ("tool", "shell_exec")): 1.0,
        (("mode", "open"), ("outcome", "error"), ("tier", ""), ("tool", "shell_exec")): 1.0,
    }
    truncations = values(parse(metrics)["relay_shell_truncations:counter"], "relay_shell_truncations_total")
    assert truncations == {(("tool", "shell_exec"),): 1.0}


def test_duration_histogram_buckets_count_and_sum() -> None:
    metrics = Metrics()
    for duration_s in (0.004, 0.2, 0.2, 7.0):
        metrics.record_call(
            tool="shell_exec", tier=1, mode="open", outcome="ok", duration_s=duration_s, truncated=False
        )
    metrics.record_call(
        tool="server_info", tier=0, mode="open", outcome="ok", duration_s=0.001, truncated=False
    )
    samples = parse(metrics)["relay_shell_tool_duration_seconds:histogram"]
    exec_buckets = {
        s.labels["le"]: s.value
        for s in samples
        if s.name == "relay_shell_tool_duration_seconds_bucket" and s.labels["tool"] == "shell_exec"
    }
    assert len(exec_buckets) == len(DURATION_BUCKETS) + 1  # every bound plus +Inf
    assert (exec_buckets["0.005"], exec_buckets["0.1"], exec_buckets["0.25"]) == (1.0, 1.0, 3.0)
    assert (exec_buckets["5.0"], exec_buckets["10.0"], exec_buckets["+Inf"]) == (3.0, 4.0, 4.0)
    counts = values(samples, "relay_shell_tool_duration_seconds_count")
    assert counts == {(("tool", "shell_exec"),): 4.0, (("tool", "server_info"),): 1.0}
    sums = values(samples, "relay_shell_tool_duration_seconds_sum")
    assert abs(sums[(("tool", "shell_exec"),)] - 7.404) < 1e-9


def test_denials_counted_by_reason() -> None:
    metrics = Metrics()
    metrics.record_denial(tool="shell_exec", reason="readonly")
    metrics.record_denial(tool="shell_exec", reason="readonly")
    metrics.record_denial(tool="ssh_exec", reason="deny")
    denials = values(parse(metrics)["relay_shell_denials:counter"], "relay_shell_denials_total")
    assert denials == {
        (("reason", "readonly"), ("tool", "shell_exec")): 2.0,
        (("reason", "deny"), ("tool", "ssh_exec")): 1.0,
    }


def test_gauges_read_their_callbacks_at_every_scrape() -> None:
    metrics = Metrics()
    live = {"sessions": 0.0, "forwards": 0.0, "connections": 0.0, "degraded": 0.0}
    metrics.bind_gauges(
        sessions=lambda: live["sessions"],
        forwards=lambda: live["forwards"],
        connections=lambda: live["connections"],
        audit_degraded=lambda: live["degraded"],
    )
    gauges = (
        "relay_shell_active_sessions",
        "relay_shell_active_forwards",
        "relay_shell_ssh_connections",
        "relay_shell_audit_degraded",
    )

    def scrape() -> tuple[float, ...]:
        families = parse(metrics)
        return tuple(values(families[f"{name}:gauge"], name)[()] for name in gauges)

    assert scrape() == (0.0, 0.0, 0.0, 0.0)
    live.update(sessions=3.0, forwards=2.0, connections=5.0, degraded=1.0)
    assert scrape() == (3.0, 2.0, 5.0, 1.0)
    live.update(sessions=1.0, degraded=0.0)
    assert scrape() == (1.0, 2.0, 5.0, 0.0)


def test_instances_have_separate_registries() -> None:
    first, second = Metrics(), Metrics()
    first.record_call(tool="shell_exec", tier=1, mode="open", outcome="ok", duration_s=0.1, truncated=False)
    assert values(parse(second)["relay_shell_tool_calls:counter"], "relay_shell_tool_calls_total") == {}
    assert values(parse(first)["relay_shell_tool_calls:counter"], "relay_shell_tool_calls_total") != {}
