"""``ssh_upload`` with ``hosts``: one local file or tree pushed to a host pattern.

Each host is resolved with the call's connection overrides and is admitted or refused on its
own by the pipeline (a refused host is ``denied``, the others still run); the hosts then run
under the call's rollout (``batch``, ``max_fail``, ``canary``). The result has one row per
host (status, destination, files, bytes, SHA-256) and a ``fanout_id`` whose hosts later calls
can select (``failed:<id>`` retries the hosts that failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relay_shell.errors import InvalidInput
from relay_shell.governance.bounds import Clamped, clamp_count
from relay_shell.governance.call import Call, Identity, Outcome, Plan, TargetGroup
from relay_shell.policy.model import CallText
from relay_shell.services import LazyPool, Services
from relay_shell.ssh.fleet import FanoutHistory, plan_rollout
from relay_shell.ssh.hostpatterns import split_terms
from relay_shell.ssh.inventory import ConnectOverrides
from relay_shell.ssh.selection import resolve_selected
from relay_shell.ssh.targets import HostSpec
from relay_shell.tools.fleet import notes_room, record_history, rollout_outcome
from relay_shell.tools.hosts import host_targets, resolve_many
from relay_shell.tools.shape import timeout_notes
from relay_shell.vocabulary import Tier

RolloutArguments = tuple[int | str | None, int | str | None, int]
"""``batch``, ``max_fail`` and ``canary`` as the client gave them."""
NO_ROLLOUT: RolloutArguments = (None, None, 0)


def check_host_choice(host: str, hosts: str | list[str], rollout_given: bool) -> bool:
    """Exactly one of ``host`` and ``hosts``; rollout arguments only with ``hosts``. True for many.

    Raises:
        InvalidInput: both, neither, or ``batch``/``max_fail``/``canary`` with a single ``host``.
    """
    many = bool(split_terms(hosts))
    if host.strip() and many:
        raise InvalidInput("hosts", "give either host (one host) or hosts (a host pattern), not both")
    if not host.strip() and not many:
        raise InvalidInput("host", "required: a host, or hosts (a host pattern) to upload to many")
    if rollout_given and not many:
        raise InvalidInput("batch", "batch, max_fail and canary apply to uploads with hosts")
    return many


@dataclass(frozen=True)
class FleetUpload:
    """A validated multi-host upload: the hosts in input order, both ends, bounds and rollout."""

    pool: LazyPool
    hosts: list[tuple[str, HostSpec]]
    source: Path
    destination: str
    recursive: bool
    timeout: Clamped[float]
    concurrency: int
    rollout: RolloutArguments
    history: FanoutHistory
    fanout_id: str
    text_budget: int


async def execute_fleet_upload(upload: FleetUpload, call: Call) -> Outcome:
    """Push to every admitted host under the rollout; hosts the pipeline refused are ``denied``."""
    from relay_shell.ssh.fleet_upload import UploadHostResult, upload_detail, upload_many

    async def progress(done: int, total: int) -> None:
        await call.report(done, total, f"{done}/{total} hosts done")

    targets = [
        (name, None, call.denied_targets[name]) if name in call.denied_targets else (name, spec, None)
        for name, spec in upload.hosts
    ]
    rollout = plan_rollout(*upload.rollout, sum(1 for _, spec, _ in targets if spec is not None))
    report = await upload_many(
        upload.pool.get(), targets, upload.source, upload.destination, recursive=upload.recursive,
        timeout_s=upload.timeout.value, concurrency=upload.concurrency, rollout=rollout, on_progress=progress,
    )  # fmt: skip
    record_history(upload.history, upload.fanout_id, report.results, call.identity.subject)
    outcome = rollout_outcome(
        fanout_id=upload.fanout_id, rows=report.results, batches=report.batches, rollout=rollout,
        abort_reason=report.reason, detail=upload_detail, fields=UploadHostResult.fields,
        budget=upload.text_budget,
    )  # fmt: skip
    outcome.data.update(direction="upload", source=str(upload.source), timeout_s=upload.timeout.value)
    outcome.data["bytes"] = sum(row.bytes for row in report.results)
    return outcome


def plan_fleet_upload(
    svc: Services,
    *,
    source: Path,
    destination: str,
    recursive: bool,
    hosts: str | list[str],
    caller: Identity,
    rollout: RolloutArguments,
    concurrency: int,
    wait: Clamped[float],
    overrides: ConnectOverrides,
) -> Plan[FleetUpload]:
    """At least tier 2; each host is a target group of its own; the rollout is validated now."""
    text = f"upload {source} to {destination}"
    names = resolve_many(svc, hosts, caller)
    specs = [(name, resolve_selected(svc.inventory, name, overrides)) for name in names]
    width = clamp_count(concurrency, 16, svc.settings.fanout_max_concurrency, argument="concurrency")
    checked = plan_rollout(*rollout, len(specs))
    notes = timeout_notes(wait) + ([f"concurrency clamped to {width.value}"] if width.clamped else [])
    upload = FleetUpload(
        svc.pool, specs, source, destination, recursive, wait, width.value, rollout, svc.fanout_history,
        svc.fanout_history.new_id(), svc.settings.max_output - notes_room(notes),
    )  # fmt: skip
    return Plan(
        execute_fleet_upload,
        upload,
        text=text,
        call=CallText(paths=(str(source),)),  # a local path naming the relay's own files is refused
        per_target=[TargetGroup(name, host_targets(name, spec)) for name, spec in specs],
        min_tier=Tier.STATEFUL,
        timeout_s=wait.value * checked.rounds(len(specs), width.value),
        notes=notes,
        confirm_summary=f"{text} on {len(names)} hosts",
    )
