"""Check an audit trail against its anchors (``relay-shell --verify-audit --anchors``).

Anchors are read as :class:`AnchorEntry` values from journald (``journalctl -o json``, or
a file of that output) or from a syslog collector's file (RFC 5424 lines carrying the
``[audit@32473 ...]`` element). The rules, each reported with the line and the anchor it
contradicts (exit 2):

- **Forged entries.** With journald, an instance's entries are accepted only from the
  ``_PID`` of its first ``header`` anchor, which journald itself stamps (a client cannot
  set ``_``-fields); any other entry with the identifier, an entry of an instance without
  a header anchor, or one whose fields do not parse, is forged. The file header's own
  ``pid`` must be that pid too, and all the writers of one trail must have run in the same
  systemd unit (``_SYSTEMD_UNIT``: a fake instance run from cron while the service was
  stopped is not in it). Syslog carries no trusted pid: there only conflicting entries
  (one number, two contents) are forged.
- **Gaps.** Each instance numbers its entries per destination (1, 2, 3...); a number
  missing between two present ones is a lost or suppressed anchor.
- **Contradictions.** An anchor's ``seq`` must be in the trail with its ``chain``: a
  different chain is an edited record; a seq past the trail's end is a missing head
  (records cut from the end, a truncation); a seq inside the trail's range without a
  record is a removal. Anchors older than the oldest file given are only counted.
- **Forged tail.** A record of an instance after that instance's ``shutdown`` anchor, or of
  an instance that was never anchored although anchoring covers it, was not written by
  the writer it names.
- **Unanchored starts.** Every ``phase: start`` record of a tier-2+ or opaque call must
  have its own anchor (it is anchored before the call runs).

Records after the newest anchor cannot be confirmed (a crash loses at most one anchor
interval of them); they are noted, not reported.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from relay_shell.governance.audit.chain import is_chain_value
from relay_shell.governance.audit.verify import Finding, TrailFacts, VerifyReport, verify_trail

IDENTIFIER = "relay-shell-audit"
_SD_ELEMENT = re.compile(r'\[audit@32473((?: [a-z_]{1,32}="(?:[^"\\\]]|\\.)*")*)\]')
_SD_PARAM = re.compile(r'([a-z_]{1,32})="((?:[^"\\\]]|\\.)*)"')
_SD_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class AnchorEntry:
    """One entry found in an anchor source; ``problem`` is set when it does not parse."""

    source: str  # where it was found, for messages ("journal entry 12", "line 4 of FILE")
    destination: str  # what numbers it (one journal, or one collector file)
    kind: str = ""
    seq: int | None = None
    chain: str = ""
    instance: str = ""
    file: str = ""
    anchor_seq: int | None = None
    pid: int | None = None  # trusted (journald _PID); None for syslog
    unit: str | None = None  # trusted (journald _SYSTEMD_UNIT) when the sender ran in one
    problem: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "seq": self.seq,
            "chain": self.chain,
            "instance": self.instance,
            "anchor_seq": self.anchor_seq,
            "pid": self.pid,
            "unit": self.unit,
            "source": self.source,
        }


def entry_from_fields(
    fields: Mapping[str, str], *, source: str, destination: str, pid: int | None
) -> AnchorEntry:
    """An entry from its ``RELAY_AUDIT_*`` fields (journald names or syslog parameter names)."""

    def get(name: str) -> str:
        return fields.get(f"RELAY_AUDIT_{name.upper()}", fields.get(name, ""))

    seq, anchor_seq = _int_or_none(get("seq")), _int_or_none(get("anchor_seq"))
    chain, instance, kind = get("chain"), get("instance"), get("kind")
    problem = None
    if not kind or not instance or anchor_seq is None:
        problem = "missing kind, instance or anchor number"
    elif kind != "record" and (seq is None or not is_chain_value(chain)):
        problem = "missing seq or chain"
    return AnchorEntry(
        source=source,
        destination=destination,
        kind=kind,
        seq=seq,
        chain=chain,
        instance=instance,
        file=get("file"),
        anchor_seq=anchor_seq,
        pid=pid,
        problem=problem,
    )


def journal_entry(entry: Mapping[str, object], *, index: int, destination: str) -> AnchorEntry:
    """An entry from one object of ``journalctl -o json`` output (its ``_PID`` is trusted)."""
    fields = {key: value for key, value in entry.items() if isinstance(value, str)}
    cursor = fields.get("__CURSOR", "")
    source = f"journal entry {index}" + (f" ({cursor[:60]})" if cursor else "")
    parsed = entry_from_fields(
        fields, source=source, destination=destination, pid=_int_or_none(fields.get("_PID", ""))
    )
    return dataclasses.replace(parsed, unit=fields.get("_SYSTEMD_UNIT") or None)


def syslog_entry(line: str, *, source: str, destination: str) -> AnchorEntry | None:
    """An entry from one line of a collector's file; None when the line carries no anchor."""
    if IDENTIFIER not in line:
        return None
    element = _SD_ELEMENT.search(line)
    if element is None:
        return AnchorEntry(source=source, destination=destination, problem="no audit@32473 element")
    fields = {name: _SD_UNESCAPE.sub(r"\1", value) for name, value in _SD_PARAM.findall(element.group(1))}
    return entry_from_fields(fields, source=source, destination=destination, pid=None)


def read_anchor_file(path: Path) -> list[AnchorEntry]:
    """Entries from a file: ``journalctl -o json`` output, or a syslog collector's lines."""
    entries: list[AnchorEntry] = []
    destination = str(path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if text.startswith("{"):
                try:
                    value = json.loads(text)
                except ValueError:
                    continue
                if isinstance(value, dict) and value.get("SYSLOG_IDENTIFIER") == IDENTIFIER:
                    entries.append(journal_entry(value, index=number, destination=destination))
            else:
                found = syslog_entry(text, source=f"line {number} of {path}", destination=destination)
                if found is not None:
                    entries.append(found)
    return entries


@dataclass
class _Screened:
    accepted: list[AnchorEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_anchors(
    paths: Sequence[Path], entries: Iterable[AnchorEntry], live_paths: Iterable[str]
) -> VerifyReport:
    """Verify the trail in ``paths`` and check it against the entries anchoring ``live_paths``."""
    wanted_files = {str(path) for path in live_paths}
    relevant = [entry for entry in entries if entry.problem is not None or entry.file in wanted_files]
    screened = _screen(relevant)
    anchors = [entry for entry in screened.accepted if entry.kind != "record" or entry.seq is not None]
    facts = TrailFacts(
        wanted=frozenset(entry.seq for entry in anchors if entry.seq is not None),
        shutdown={entry.instance: entry.seq for entry in anchors if entry.kind == "shutdown" and entry.seq},
        anchored=frozenset(entry.instance for entry in anchors),
        anchored_from=min((entry.seq for entry in anchors if entry.seq is not None), default=None),
    )
    report = verify_trail(paths, facts)
    contradictions, older = _contradictions(anchors, facts)
    findings = list(report.findings) + screened.findings + contradictions
    notes = list(report.notes) + screened.notes
    if older:
        notes.append(f"{older} anchor(s) name records older than the files given")
    if not anchors:
        findings.append(Finding("anchors", f"no anchors found for {', '.join(sorted(wanted_files))}"))
    elif facts.last_seq is not None:
        newest = max(entry.seq or 0 for entry in anchors)
        if facts.last_seq > newest:
            notes.append(
                f"{facts.last_seq - newest} record(s) after the newest anchor cannot be confirmed yet"
            )
    notes.append(f"{len(anchors)} anchor(s) accepted")
    first = findings[0] if findings else None
    return VerifyReport(
        ok=not findings,
        records=report.records,
        first_bad_line=first.line if first else None,
        problem=first.message if first else None,
        findings=tuple(findings),
        notes=tuple(notes),
        files=report.files,
    )


def _screen(entries: Sequence[AnchorEntry]) -> _Screened:
    """Accept the entries the rules allow; report forged ones and gaps."""
    screened = _Screened()
    by_instance: dict[str, list[AnchorEntry]] = {}
    for entry in entries:
        if entry.problem is not None:
            why = f"an entry with the audit identifier that is not an anchor ({entry.problem})"
            screened.findings.append(_forged(entry, why))
        else:
            by_instance.setdefault(entry.instance, []).append(entry)
    for instance, found in by_instance.items():
        found.sort(key=lambda entry: entry.anchor_seq or 0)
        screened.accepted.extend(_numbered(_from_the_writer(instance, found, screened), screened))
    _one_unit(screened)
    return screened


def _one_unit(screened: _Screened) -> None:
    """Every writer of one trail ran in the same systemd unit (journald's trusted _SYSTEMD_UNIT).

    A process of the service account that runs outside the service (cron, at) while the
    server is stopped could append a whole fake instance with anchors from its own pid; it
    cannot send them from the service's unit, which systemd empties when the service stops.
    """
    units = {
        entry.instance: entry.unit
        for entry in screened.accepted
        if entry.kind == "header" and entry.pid is not None
    }
    if len(set(units.values())) > 1:
        listed = ", ".join(f"{instance} from {unit or 'no unit'}" for instance, unit in sorted(units.items()))
        screened.findings.append(
            Finding("foreign-unit", f"the writers of this trail ran in different systemd units: {listed}")
        )


def _from_the_writer(instance: str, found: list[AnchorEntry], screened: _Screened) -> list[AnchorEntry]:
    """With trusted pids: only the entries sent by the pid of the instance's first header."""
    if not any(entry.pid is not None for entry in found):
        return found
    headers = [entry for entry in found if entry.kind == "header" and entry.pid is not None]
    if not headers:
        screened.findings.extend(
            _forged(entry, f"instance {instance} has no header anchor") for entry in found
        )
        return []
    writer_pid = headers[0].pid
    for entry in found:
        if entry.pid != writer_pid:
            why = f"sent by pid {entry.pid}, not by the writer (pid {writer_pid})"
            screened.findings.append(_forged(entry, why))
    return [entry for entry in found if entry.pid == writer_pid]


def _numbered(found: list[AnchorEntry], screened: _Screened) -> list[AnchorEntry]:
    """Entries whose numbers are unique per destination; gaps and conflicts reported."""
    kept: list[AnchorEntry] = []
    by_destination: dict[str, dict[int, AnchorEntry]] = {}
    for entry in found:
        numbers = by_destination.setdefault(entry.destination, {})
        assert entry.anchor_seq is not None
        earlier = numbers.get(entry.anchor_seq)
        if earlier is None:
            numbers[entry.anchor_seq] = entry
            kept.append(entry)
        elif (earlier.kind, earlier.seq, earlier.chain) != (entry.kind, entry.seq, entry.chain):
            screened.findings.append(
                _forged(entry, f"conflicts with {earlier.source}, which has the same number")
            )
    for destination, numbers in by_destination.items():
        present = sorted(numbers)
        for before, after in itertools.pairwise(present):
            if after - before > 1:
                missing = f"{before + 1}" if after - before == 2 else f"{before + 1}..{after - 1}"
                entry = numbers[after]
                screened.findings.append(
                    Finding(
                        "gap",
                        f"anchor number(s) {missing} of instance {entry.instance} missing in {destination}",
                        anchor=entry.as_dict(),
                    )
                )
        if present and present[0] > 1:
            screened.notes.append(
                f"{destination}: the first {present[0] - 1} anchor(s) are no longer kept there"
            )
    return kept


def _contradictions(anchors: Sequence[AnchorEntry], facts: TrailFacts) -> tuple[list[Finding], int]:
    """Anchors against the records the walk saw, and the walk's anchor-rule lines; also how many
    anchors name records older than the files given."""
    findings: list[Finding] = []
    anchored = {(entry.seq, entry.chain) for entry in anchors}
    older = 0
    for entry in anchors:
        if entry.seq is None:
            continue
        seen = facts.seen.get(entry.seq)
        if seen is not None:
            if seen.chain != entry.chain:
                findings.append(
                    Finding(
                        "edited",
                        f"seq {entry.seq} differs from its anchor (the record was changed)",
                        seen.file,
                        seen.line,
                        entry.as_dict(),
                    )
                )
        elif facts.last_seq is None or entry.seq > facts.last_seq:
            findings.append(
                Finding(
                    "missing-head",
                    f"the anchor names seq {entry.seq} but the trail ends at seq "
                    f"{facts.last_seq} (records cut from the end, or the file truncated)",
                    anchor=entry.as_dict(),
                )
            )
        elif facts.first_seq is not None and entry.seq < facts.first_seq:
            older += 1
        else:
            findings.append(
                Finding("removed", f"no record with seq {entry.seq} (it was removed)", anchor=entry.as_dict())
            )
    findings.extend(_tail_findings(anchors, facts, anchored))
    return findings, older


def _tail_findings(
    anchors: Sequence[AnchorEntry], facts: TrailFacts, anchored: set[tuple[int | None, str]]
) -> list[Finding]:
    findings: list[Finding] = []
    shutdown = {entry.instance: entry for entry in anchors if entry.kind == "shutdown"}
    for file, line, seq, instance in facts.after_shutdown:
        findings.append(
            Finding(
                "forged-tail",
                f"record seq {seq} of instance {instance} comes after that instance shut down",
                file,
                line,
                shutdown[instance].as_dict(),
            )
        )
    for instance, (file, line) in facts.unanchored.items():
        findings.append(
            Finding(
                "forged-tail",
                f"instance {instance} was never anchored although anchoring covers "
                "this part of the trail (records not written by a relay-shell writer)",
                file,
                line,
            )
        )
    for file, line, seq, chain in facts.anchor_needed:
        if (seq, chain) not in anchored:
            findings.append(
                Finding(
                    "unanchored",
                    f"record seq {seq} (a header, or the start of a tier-2+ or opaque call) has no anchor, "
                    "though the writer anchors it before going on (forged, or its anchor was suppressed)",
                    file,
                    line,
                )
            )
    pids = {
        entry.instance: entry.pid for entry in anchors if entry.kind == "header" and entry.pid is not None
    }
    for instance, claimed in facts.header_pids.items():
        trusted = pids.get(instance)
        if trusted is not None and trusted != claimed:
            where = facts.instances.get(instance, (None, None))
            findings.append(
                Finding(
                    "forged",
                    f"the header of instance {instance} claims pid {claimed} but its anchors "
                    f"come from pid {trusted}",
                    where[0],
                    where[1],
                )
            )
    return findings


def _forged(entry: AnchorEntry, why: str) -> Finding:
    return Finding("forged-anchor", f"{entry.source}: {why}", anchor=entry.as_dict())


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 20 else None
