"""What a verification found: its findings and report, and the facts the anchor check needs."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_FINDINGS = 1000
"""Findings beyond this many are not kept (the report is already a failure)."""


@dataclass(frozen=True)
class Finding:
    """One problem: what kind, where (file and line, when it has one), and why."""

    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    anchor: dict[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {
            "kind": self.kind,
            "file": self.file,
            "line": self.line,
            "message": self.message,
        }
        if self.anchor is not None:
            found["anchor"] = self.anchor
        return found


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of a verification. ``records`` counts the records that checked out.

    ``first_bad_line`` and ``problem`` describe the first finding (None when ok).
    """

    ok: bool
    records: int
    first_bad_line: int | None
    problem: str | None
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


@dataclass
class RecordSeen:
    """What a record an anchor names looked like in the trail."""

    chain: str
    file: str
    line: int


@dataclass
class TrailFacts:
    """What the anchor check tells the walk to watch for, and what the walk found.

    Inputs (from the anchors): ``wanted`` seqs to look up, the ``shutdown`` seq of each
    instance that shut down cleanly, the ``anchored`` instances and ``anchored_from``, the
    lowest anchored seq. Outputs: the records seen at wanted seqs, the trail's ends, each
    instance's first line and header pid, and the lines that break an anchor rule.
    """

    wanted: frozenset[int] = frozenset()
    shutdown: dict[str, int] = field(default_factory=dict)
    anchored: frozenset[str] = frozenset()
    anchored_from: int | None = None
    seen: dict[int, RecordSeen] = field(default_factory=dict)
    first_seq: int | None = None
    last_seq: int | None = None
    last_chain: str | None = None
    instances: dict[str, tuple[str, int]] = field(default_factory=dict)
    header_pids: dict[str, int] = field(default_factory=dict)
    after_shutdown: list[tuple[str, int, int, str]] = field(default_factory=list)  # file, line, seq, instance
    unanchored: dict[str, tuple[str, int]] = field(default_factory=dict)  # instance -> first file, line
    anchor_needed: list[tuple[str, int, int, str]] = field(default_factory=list)  # file, line, seq, chain

    @property
    def watching(self) -> bool:
        """Whether anchors are being checked (then every record is observed)."""
        return bool(self.wanted) or self.anchored_from is not None

    def observe(self, record: dict[str, object], seq: int, chain: str, where: tuple[str, int]) -> None:
        """Account one record that checked out (``where`` is its file and line)."""
        if self.first_seq is None:
            self.first_seq = seq
        self.last_seq, self.last_chain = seq, chain
        instance = record.get("instance_id")
        if not isinstance(instance, str):
            return
        self.instances.setdefault(instance, where)
        if record.get("kind") == "header" and isinstance(record.get("pid"), int):
            self.header_pids.setdefault(instance, as_int(record.get("pid")))
        if seq in self.wanted:
            self.seen[seq] = RecordSeen(chain, *where)
        if self.anchored_from is None:
            return
        ended = self.shutdown.get(instance)
        if ended is not None and seq > ended and len(self.after_shutdown) < MAX_FINDINGS:
            self.after_shutdown.append((*where, seq, instance))
        if seq > self.anchored_from and instance not in self.anchored:
            self.unanchored.setdefault(instance, where)
        if seq >= self.anchored_from and _anchored_when_written(record):
            self.anchor_needed.append((*where, seq, chain))


def _anchored_when_written(record: dict[str, object]) -> bool:
    """Records the writer anchors before going on: headers, and starts of tier-2+ or opaque calls."""
    if record.get("kind") == "header":
        return True
    needs_anchor = as_int(record.get("tier")) >= 2 or record.get("opaque") is True
    return record.get("phase") == "start" and needs_anchor


def as_int(value: object) -> int:
    """``value`` when it is a real integer (not a bool), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
