"""Read the newest audit records without reading the whole file (the ``audit_tail`` tool).

The file is read backwards from its end in fixed-size blocks, so memory stays bounded by
the block size, the longest accepted line and the records returned, whatever the file's
size. Lines that do not parse are skipped. All three formats are read: JSON lines come
back as written; CEF and LEEF lines come back as their extension fields (string values,
except the integer fields listed in :data:`formats.INTEGER_FIELDS`, and ``args`` as its
JSON text). Only the current file is read, not its rotated predecessors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from relay_shell.errors import AuditUnavailable
from relay_shell.governance.audit.formats import parse_line

BLOCK_SIZE = 64 * 1024
MAX_LINE_BYTES = 1024 * 1024
"""Longer lines are skipped (no audit record the writer produces comes near this)."""


def tail_records(
    path: Path,
    lines: int,
    *,
    tool: str | None = None,
    outcome: str | None = None,
    min_tier: int | None = None,
    principal: str | None = None,
) -> list[dict[str, object]]:
    """The last ``lines`` records of ``path`` that match every given filter, oldest first.

    ``tool`` and ``outcome`` match exactly; ``min_tier`` keeps records whose integer
    ``tier`` is at least that; ``principal``, when given, keeps only the records of that
    principal (what a non-admin caller may see: not the sink's own records, not other
    principals' calls). A missing file has no records (``[]``). Raises
    :class:`AuditUnavailable` when the file exists but cannot be read.
    """
    if lines <= 0:
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AuditUnavailable(f"audit trail {path} cannot be read: {exc.strerror or exc}") from exc
    found: list[dict[str, object]] = []
    try:
        for line in lines_backwards(fd, os.fstat(fd).st_size):
            record = parse_line(line) if line else None
            if record is None or not _matches(record, tool, outcome, min_tier):
                continue
            if principal is not None and record.get("principal") != principal:
                continue
            found.append(record)
            if len(found) >= lines:
                break
    except OSError as exc:
        raise AuditUnavailable(f"audit trail {path} cannot be read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    found.reverse()
    return found


def lines_backwards(
    fd: int,
    size: int,
    *,
    block_size: int = BLOCK_SIZE,
    max_line: int = MAX_LINE_BYTES,
    max_scan: int | None = None,
) -> Iterator[bytes]:
    """Lines of the first ``size`` bytes of ``fd``, last line first, without their newline.

    A file ending in a newline yields an empty line first; a last line without one is
    yielded as it is. Lines longer than ``max_line`` are skipped. Reading stops after
    ``max_scan`` bytes when given. Uses ``pread``: the file offset is not touched.
    """
    position = size
    carry = b""  # the end of a line whose beginning lies before ``position``
    skipping = False  # the line being assembled is over ``max_line``: drop it
    scanned = 0
    while position > 0 and (max_scan is None or scanned < max_scan):
        start = max(0, position - block_size)
        block = os.pread(fd, position - start, start)
        if len(block) < position - start:  # truncated under our feet
            return
        scanned += len(block)
        position = start
        pieces = block.split(b"\n")
        if len(pieces) == 1:
            carry = b"" if skipping else pieces[0] + carry
            if len(carry) > max_line:
                carry, skipping = b"", True
            continue
        pieces[-1] += carry
        for index in range(len(pieces) - 1, 0, -1):
            if skipping:
                skipping = False
            elif len(pieces[index]) <= max_line:
                yield pieces[index]
        carry = pieces[0]
        if len(carry) > max_line:
            carry, skipping = b"", True
    if position == 0 and not skipping:
        yield carry


def _matches(record: dict[str, object], tool: str | None, outcome: str | None, min_tier: int | None) -> bool:
    if tool is not None and record.get("tool") != tool:
        return False
    if outcome is not None and record.get("outcome") != outcome:
        return False
    if min_tier is not None:
        tier = record.get("tier")
        if not isinstance(tier, int) or isinstance(tier, bool) or tier < min_tier:
            return False
    return True
