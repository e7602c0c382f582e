"""The plan of ``ssh_upload`` with ``hosts``: one local file or tree pushed to a host pattern.

Each host is resolved with the call's connection overrides and passes the deny list on its
own (a refused host is ``denied``, the others still run); the hosts then run under the
call's rollout (``batch``, ``max_fail``, ``canary``). The result has one row per host
(status, destination, files, bytes, SHA-256) and a ``fanout_id`` whose hosts later calls
can select (``failed:<id>`` retries the hosts that failed).
"""

from __future__ import annotations

from pathlib import Path

from relay_shell.app import Services
from relay_shell.errors import InvalidInput
from relay_shell.governance.bounds import Clamped
from relay_shell.governance.pipeline import Call, Outcome, Plan
from relay_shell.ssh.fleet import plan_rollout
from relay_shell.ssh.hostpatterns import split_terms
from relay_shell.ssh.inventory import ConnectOverrides
from relay_shell.tools.fleet import history_of, notes_room, record_history, rollout_outcome
from relay_shell.tools.local import timeout_notes
from relay_shell.tools.ssh import pool_of, screen_hosts, select_names


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


def fleet_upload_plan(
    svc: Services,
    *,
    source: Path,
    destination: str,
    recursive: bool,
    hosts: str | list[str],
    rollout_arguments: tuple[int | str | None, int | str | None, int],
    width: Clamped[int],
    wait: Clamped[float],
    overrides: ConnectOverrides,
) -> Plan:
    """The plan of a multi-host upload: at least tier 2, every host screened, one row per host."""
    text = f"upload {source} to {destination}"
    names = select_names(svc, hosts)
    targets, allowed_targets = screen_hosts(svc, "ssh_upload", text, names, overrides, min_tier=2)
    runnable = sum(1 for _, spec, _ in targets if spec is not None)
    rollout = plan_rollout(*rollout_arguments, runnable)
    history = history_of(svc)
    fanout_id = history.new_id()
    notes = timeout_notes(wait) + ([f"concurrency clamped to {width.value}"] if width.clamped else [])

    async def work(call: Call) -> Outcome:
        from relay_shell.ssh.fleet_upload import UploadHostResult, upload_detail, upload_many

        async def progress(done: int, total: int) -> None:
            await call.report(done, total, f"{done}/{total} hosts done")

        report = await upload_many(
            pool_of(svc), targets, source, destination, recursive=recursive, timeout_s=wait.value,
            concurrency=width.value, rollout=rollout, on_progress=progress,
        )  # fmt: skip
        record_history(history, fanout_id, report.results)
        outcome = rollout_outcome(
            fanout_id=fanout_id, rows=report.results, batches=report.batches, rollout=rollout,
            abort_reason=report.reason, detail=upload_detail, fields=UploadHostResult.fields,
            budget=svc.settings.max_output - notes_room(notes),
        )  # fmt: skip
        outcome.data.update(direction="upload", source=str(source), timeout_s=wait.value)
        outcome.data["bytes"] = sum(row.bytes for row in report.results)
        return outcome

    return Plan(
        work=work,
        text=text,
        targets=allowed_targets,
        min_tier=2,
        timeout_s=wait.value * rollout.rounds(runnable, width.value),
        notes=notes,
        confirm_summary=f"{text} on {len(names)} hosts",
    )
