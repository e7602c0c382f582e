"""Where a new writer continues: the last record of its file, or of the previous generation.

A sink that opens a file continues the sequence and the chain from the file's last
readable record. A sink that finds the file empty (logrotate created it while no server
ran) continues from the newest rotated sibling, ``<name>.N`` or ``<name>-SUFFIX`` (not
compressed: logrotate's ``delaycompress`` leaves the newest one plain), so the chain runs
on across the rotation. Neither is trusted beyond that: ``--verify-audit`` and the anchors
judge whether those records are genuine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from relay_shell.governance.audit.chain import CHAIN_FIELD, is_chain_value
from relay_shell.governance.audit.formats import parse_line
from relay_shell.governance.audit.guard import GuardedFile
from relay_shell.governance.audit.tail import lines_backwards

MAX_LINE_BYTES = 16 * 1024 * 1024
RESUME_SCAN_BYTES = 2 * MAX_LINE_BYTES
"""How far back from the end a writer looks for the last readable record."""
_SIBLING_SEPARATORS = (".", "-")


@dataclass(frozen=True)
class Resumed:
    """The record a writer continues from: its ``seq`` and ``chain`` (None when not chained)."""

    seq: int
    chain: str | None


def last_record_of(guarded: GuardedFile) -> Resumed | None:
    """The last readable record of an open audit file, or None when it has none."""
    return _last_record(guarded.fd, guarded.size)


def previous_generation(path: Path) -> Resumed | None:
    """The last record of the newest uncompressed rotated sibling of ``path``, if any."""
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return None
    candidates: list[tuple[int, str]] = []
    for entry in entries:
        name = entry.name
        if len(name) <= len(path.name) or not name.startswith(path.name) or name.endswith(".gz"):
            continue
        if name[len(path.name)] not in _SIBLING_SEPARATORS:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.is_file(follow_symlinks=False) and info.st_size > 0:
            candidates.append((info.st_mtime_ns, entry.path))
    for _mtime, candidate in sorted(candidates, reverse=True):
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            found = _last_record(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        if found is not None:
            return found
    return None


def _last_record(fd: int, size: int) -> Resumed | None:
    if size == 0:
        return None
    for line in lines_backwards(fd, size, max_line=MAX_LINE_BYTES, max_scan=RESUME_SCAN_BYTES):
        record = parse_line(line) if line else None
        if record is None:
            continue
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            continue
        chain = record.get(CHAIN_FIELD)
        return Resumed(seq, str(chain) if is_chain_value(chain) else None)
    return None
