"""``relay-shell --verify-audit [--anchors journald[:SOCKET]|FILE] [--json] [PATH...]``.

Without PATH the trail is ``RELAY_SHELL_AUDIT_PATH`` and its rotated files (``<name>.N``,
``<name>-SUFFIX``, compressed or not). Exit 0 when every check passes, 2 otherwise
(a broken chain, a problem the writer recorded, an unfinished call, a contradicted or
forged anchor, or no audit file).

The settings are loaded only when needed (no PATH, or anchors to filter by the configured
audit path), so verifying given files does not pay for the settings model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from relay_shell.errors import ConfigError
from relay_shell.governance.audit.anchor_check import (
    IDENTIFIER,
    AnchorEntry,
    check_anchors,
    journal_entry,
    read_anchor_file,
)
from relay_shell.governance.audit.verify import VerifyReport, verify_trail

EXIT_OK = 0
EXIT_FAILED = 2
_ROTATED_SEPARATORS = (".", "-")


def main_verify_audit(paths: Sequence[Path], anchors: str | None, as_json: bool) -> int:
    """Verify and print the report; the exit code."""
    live: set[str] = {str(_live_name(path).absolute()) for path in paths}
    if not paths or anchors is not None:
        configured = _configured_path(required=not paths)
        if configured is not None:
            live.add(str(configured.absolute()))
            if not paths:
                paths = trail_files(configured)
    missing = [path for path in paths if not path.is_file()]
    if missing or not paths:
        print(
            f"relay-shell: no audit file at {missing[0] if missing else 'RELAY_SHELL_AUDIT_PATH'}", flush=True
        )
        return EXIT_FAILED
    report = verify_trail(paths) if anchors is None else check_anchors(paths, _anchor_entries(anchors), live)
    _print(report, as_json)
    return EXIT_OK if report.ok else EXIT_FAILED


def trail_files(path: Path) -> list[Path]:
    """``path`` and its rotated siblings (``audit.jsonl.1``, ``audit.jsonl-20250101.gz``...)."""
    found = [path] if path.is_file() else []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return found
    for entry in entries:
        name = entry.name
        rotated = len(name) > len(path.name) and name.startswith(path.name)
        if rotated and name[len(path.name)] in _ROTATED_SEPARATORS and entry.is_file(follow_symlinks=False):
            found.append(Path(entry.path))
    return found


def _live_name(path: Path) -> Path:
    """The name a rotated file had while it was written (``audit.jsonl-20250101.gz`` -> ``audit.jsonl``)."""
    for suffix in (".jsonl", ".log", ".cef", ".leef"):
        index = path.name.find(suffix)
        if index > 0 and len(path.name) > index + len(suffix):
            return path.with_name(path.name[: index + len(suffix)])
    return path


def _configured_path(*, required: bool) -> Path | None:
    from relay_shell.config import load_settings

    try:
        settings = load_settings()
    except ConfigError:
        if required:
            raise
        return None
    return settings.expand(settings.audit_path)


def _anchor_entries(spec: str) -> list[AnchorEntry]:
    if spec == "journald" or spec.startswith("journald:"):
        from relay_shell.local.journal import journal_entries, namespace_of

        socket_path = spec.partition(":")[2] or None
        namespace = namespace_of(socket_path)
        destination = f"journal{'.' + namespace if namespace else ''}"
        return [
            journal_entry(entry, index=index, destination=destination)
            for index, entry in enumerate(journal_entries(IDENTIFIER, namespace), start=1)
        ]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--anchors {spec}: not journald[:SOCKET] and no such file")
    return read_anchor_file(path)


def _print(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        unfinished = [finding.as_dict() for finding in report.findings if finding.kind == "unfinished"]
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "path": report.files[-1] if report.files else None,
                    "files": list(report.files),
                    "records": report.records,
                    "first_bad_line": report.first_bad_line,
                    "problem": report.problem,
                    "findings": [finding.as_dict() for finding in report.findings],
                    "unfinished": unfinished,
                    "notes": list(report.notes),
                }
            )
        )
        return
    files = ", ".join(report.files)
    if report.ok:
        print(f"OK {files}: {report.records} records, chain intact")
    else:
        print(f"BROKEN {files}: {len(report.findings)} problem(s) in {report.records} records")
        for finding in report.findings:
            where = (
                f"line {finding.line} of {finding.file}"
                if finding.line is not None
                else (finding.file or "trail")
            )
            anchor = f" [anchor: {json.dumps(finding.anchor, sort_keys=True)}]" if finding.anchor else ""
            print(f"  {where}: {finding.kind}: {finding.message}{anchor}")
    for note in report.notes:
        print(f"  note: {note}")
