"""What ``server_info`` reports: the server's policy, limits and state, as data and as readable lines.

:func:`describe` builds both from the same values, so the text a model reads says what the
structured content says: version and transport, the policy (mode, tier-3 confirmation,
whether deny and allow lists are set), every limit a call can meet (time, output, input,
sessions, jobs, fan-out, forwards, connections), the audit trail and its mechanisms, SSH
defaults, the identity commands run as and what is live. The deny and allow regexes
themselves are shown only to an admin principal (no OAuth, or a token whose scopes allow
tier 3): to anyone else they would be a map of what to rephrase.

Mechanisms that other parts of the server decide at start (process containment, the
audit anchor, the MCP task protocols served) come from ``Services.facts()`` when it
reports them; otherwise the configured value is shown and marked as configured.
"""

from __future__ import annotations

import functools
import getpass
import os
import shutil
from dataclasses import dataclass

import relay_shell
from relay_shell.config import Settings
from relay_shell.governance.audit.wiring import anchor_spec, kind_of
from relay_shell.governance.call import Identity, Outcome
from relay_shell.governance.patterns import PATTERNS_VERSION
from relay_shell.services import Services
from relay_shell.vocabulary import Tier


def is_admin(identity: Identity) -> bool:
    """An admin principal: no OAuth (the operator's own client) or scopes that allow tier 3."""
    return identity.max_tier is None or identity.max_tier >= Tier.IRREVERSIBLE


@dataclass(frozen=True)
class Mechanisms:
    """The mechanisms in effect, or the configured choice while nothing reports one."""

    containment: str
    anchor: str
    tasks: list[str]
    known: frozenset[str]

    @classmethod
    def of(cls, settings: Settings, facts: dict[str, str]) -> Mechanisms:
        tasks = [name.strip() for name in facts.get("tasks", "").split(",") if name.strip()]
        return cls(
            containment=facts.get("containment") or settings.containment.value,
            anchor=facts.get("anchor") or settings.audit_anchor,
            tasks=tasks,
            known=frozenset(name for name in ("containment", "anchor", "tasks") if facts.get(name)),
        )

    def shown(self, name: str, value: str) -> str:
        return value if name in self.known else f"{value} (configured)"


def describe(svc: Services, identity: Identity) -> Outcome:
    """The server_info result: structured fields and the same facts as readable lines.

    What the frozen settings decide is built once per settings and principal kind
    (:func:`_fixed`); the live state (counts, the audit sink, the mechanisms) is read now.
    """
    settings, audit = svc.settings, svc.audit
    audit.check()
    counts = svc.counts()
    mechanisms = Mechanisms.of(settings, svc.facts())
    fixed = _fixed(settings, is_admin(identity), Runner.current())
    anchor = anchor_spec(settings)  # once: "auto" probes journald
    inventory_hosts = svc.inventory_size()
    data: dict[str, object] = {
        "version": relay_shell.__version__,
        "transport": settings.transport.value,
        "patterns_version": PATTERNS_VERSION,
        "policy": dict(fixed.policy),
        "limits": dict(fixed.limits),
        "jobs": {"count": counts.get("jobs", 0), "max": settings.max_jobs},
        "containment": mechanisms.containment,
        "tasks": mechanisms.tasks,
        "audit": _audit(svc, anchor),
        "ssh": {
            **fixed.ssh,
            "inventory_hosts": inventory_hosts,
            "connect_timeout": settings.ssh_connect_timeout,
        },
        "identity": dict(fixed.identity),
        "counts": counts,
    }
    lines = _lines(svc, counts, fixed, mechanisms, anchor, inventory_hosts)
    return Outcome(text="\n".join(lines), data=data)


@dataclass(frozen=True)
class _Fixed:
    """What server_info says that cannot change while the server runs with ``settings``."""

    settings: Settings
    runner: Runner
    policy: dict[str, object]
    limits: dict[str, float | int]
    ssh: dict[str, object]
    identity: dict[str, object]
    head: tuple[str, ...]
    """The text's first lines: the server, the policy (and patterns), time and output."""
    fanout: str


_FIXED: dict[bool, _Fixed] = {}
"""The fixed part by principal kind (admin or not), for the settings it was built from."""


def _fixed(settings: Settings, admin: bool, runner: Runner) -> _Fixed:
    """The fixed part for these settings, principal kind and runner (rebuilt when they differ)."""
    known = _FIXED.get(admin)
    if known is not None and known.settings is settings and known.runner == runner:
        return known
    s = settings
    sudo = "sudo available" if runner.sudo else "no sudo"
    head = (
        f"relay-shell {relay_shell.__version__} · {s.transport.value} · "
        f"running as {runner.user} (uid {runner.uid}), {sudo}",
        f"policy: mode {s.policy_mode.value}; tier-3 confirmation {s.confirm_tier3.value}; "
        f"deny list {_set(s.policy_deny is not None)}; allow list {_set(s.policy_allow is not None)}; "
        f"protected paths {'allowed' if s.policy_allow_protected else 'refused'}; patterns {PATTERNS_VERSION}",
        *_patterns(s, admin),
        f"time: {s.default_timeout:g} s by default, at most {s.max_timeout:g} s (timeout)",
        f"output: {s.max_output} bytes by default, at most {s.max_output_hard} bytes (max_output); "
        f"input: at most {s.max_input_bytes} bytes per argument",
    )
    known = _FIXED[admin] = _Fixed(
        settings=s,
        runner=runner,
        policy=_policy(s, admin),
        limits=_limits(s),
        ssh={
            "known_hosts": s.ssh_known_hosts.value,
            "known_hosts_file": str(s.ssh_known_hosts_file),
            "ssh_config": str(s.ssh_config),
            "inventory": str(s.inventory) if s.inventory else None,
        },
        identity={
            "uid": runner.uid,
            "user": runner.user,
            "root": runner.uid == 0,
            "sudo_available": runner.sudo,
        },
        head=head,
        fanout=f"fan-out: at most {s.fanout_max_hosts} hosts per call, {s.fanout_max_concurrency} at once; "
        f"last {s.fanout_history} fan-outs remembered",
    )
    return known


def _audit(svc: Services, effective_anchor: tuple[str, str | None]) -> dict[str, object]:
    """The sink's state: health (``state``: healthy, unwritable or tampered), chain head, the
    instance writing, and the anchor (``journald``, ``syslog`` or ``off``: ``effective_anchor``,
    as :func:`anchor_spec` found it) and ship channels."""
    settings, audit = svc.settings, svc.audit
    anchor, warning = effective_anchor
    status = audit.status()
    return {
        "path": str(audit.path),
        "format": settings.audit_format.value,
        "healthy": not audit.degraded,
        "state": status["state"],
        "last_error": audit.last_error,
        "chain": settings.audit_chain,
        "chain_head": audit.chain_head,
        "seq": audit.seq,
        "instance_id": status["instance_id"],
        "required": settings.audit_required,
        "anchor": kind_of(anchor),
        "anchor_status": status.get("anchor"),
        "ship": settings.audit_ship,
        "ship_status": status.get("ship"),
        "warning": warning,
    }


@dataclass(frozen=True)
class Runner:
    """The identity commands run as."""

    uid: int
    user: str
    sudo: bool

    @classmethod
    def current(cls) -> Runner:
        """The server's user, and whether ``sudo`` is on its PATH, as found at the first call:
        neither changes while it serves (the user never does, and a PATH scan per call is
        most of what ``server_info`` costs)."""
        return _runner()


@functools.cache
def _runner() -> Runner:
    return Runner(os.geteuid(), getpass.getuser(), shutil.which("sudo") is not None)


def _policy(settings: Settings, admin: bool) -> dict[str, object]:
    policy: dict[str, object] = {
        "mode": settings.policy_mode.value,
        "confirm_tier3": settings.confirm_tier3.value,
        "deny_list": settings.policy_deny is not None,
        "allow_list": settings.policy_allow is not None,
        "allow_protected": settings.policy_allow_protected,
    }
    if admin:
        for name, pattern in (("deny", settings.policy_deny), ("allow", settings.policy_allow)):
            if pattern is not None:
                policy[name] = pattern
    return policy


def _limits(settings: Settings) -> dict[str, float | int]:
    return {
        "default_timeout": settings.default_timeout,
        "max_timeout": settings.max_timeout,
        "max_output": settings.max_output,
        "max_output_hard": settings.max_output_hard,
        "max_input_bytes": settings.max_input_bytes,
        "max_sessions": settings.max_sessions,
        "session_idle_timeout": settings.session_idle_timeout,
        "session_max_lifetime": settings.session_max_lifetime,
        "session_buffer_bytes": settings.session_buffer_bytes,
        "max_jobs": settings.max_jobs,
        "yield_after": settings.yield_after,
        "job_retention": settings.job_retention,
        "max_conns": settings.max_conns,
        "max_forwards": settings.max_forwards,
        "fanout_max_hosts": settings.fanout_max_hosts,
        "fanout_max_concurrency": settings.fanout_max_concurrency,
        "fanout_history": settings.fanout_history,
    }


def _set(present: bool) -> str:
    return "set" if present else "not set"


def _lines(
    svc: Services,
    counts: dict[str, int],
    fixed: _Fixed,
    mechanisms: Mechanisms,
    effective_anchor: tuple[str, str | None],
    inventory_hosts: int,
) -> list[str]:
    """server_info's text: one topic per line, each naming its numbers and units."""
    s = svc.settings
    return [
        *fixed.head,
        f"sessions: {counts.get('sessions', 0)} live of {s.max_sessions}; closed after "
        f"{s.session_idle_timeout:g} s idle or {s.session_max_lifetime:g} s in all; "
        f"{s.session_buffer_bytes} bytes of output buffered each; {_recording(s)}",
        f"jobs: {counts.get('jobs', 0)} of {s.max_jobs}; a command still running after {s.yield_after:g} s "
        f"becomes a job (yield_after); ended jobs kept {s.job_retention:g} s; "
        f"tasks: {', '.join(mechanisms.tasks) or 'none'}",
        fixed.fanout,
        f"forwards: {counts.get('forwards', 0)} open of {s.max_forwards}; "
        f"SSH connections: {counts.get('ssh_connections', 0)} open of {s.max_conns}, "
        f"closed after {s.ssh_idle_timeout:g} s idle",
        f"ssh: known_hosts {s.ssh_known_hosts.value} ({s.ssh_known_hosts_file}); ssh_config {s.ssh_config}; "
        f"inventory {inventory_hosts} hosts ({s.inventory or 'none'}); "
        f"connect timeout {s.ssh_connect_timeout:g} s",
        _audit_line(svc, effective_anchor),
        f"containment: {mechanisms.shown('containment', mechanisms.containment)}"
        + (" (whatever a call leaves running is killed)" if "containment" in mechanisms.known else ""),
    ]


def _patterns(settings: Settings, admin: bool) -> list[str]:
    lists = [(name, p) for name, p in (("deny", settings.policy_deny), ("allow", settings.policy_allow)) if p]
    if not lists:
        return []
    if not admin:
        return ["  (the deny and allow patterns are shown to admin principals only)"]
    return [f"  {name}: {pattern}" for name, pattern in lists]


def _recording(settings: Settings) -> str:
    if settings.session_record_dir is None:
        return "not recorded"
    typed = ", input too" if settings.session_record_input else ""
    return f"recorded to {settings.session_record_dir}{typed}, at most {settings.session_record_max_bytes} bytes each"


def _audit_line(svc: Services, effective_anchor: tuple[str, str | None]) -> str:
    s, audit = svc.settings, svc.audit
    health = "ok" if not audit.degraded else f"DEGRADED, {audit.state.value} ({audit.last_error})"
    traits = [s.audit_format.value, "hash-chained" if s.audit_chain else "not chained"]
    if s.audit_required:
        traits.append("required: calls above tier 0 are refused while it cannot be written")
    anchor, warning = effective_anchor
    return (
        f"audit: {audit.path} {health}, record {audit.seq}; {', '.join(traits)}; "
        f"anchor {kind_of(anchor)}; shipped to {s.audit_ship}" + (f"; warning: {warning}" if warning else "")
    )
