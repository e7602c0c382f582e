"""Streamed, bounded output capture: the one way output is collected anywhere in relay-shell.

:class:`OutputCapture` keeps the head (about 1/3 of the budget) and a ring of the tail (about
2/3), hashes the whole stream incrementally, and never holds more than the budget, whatever
the producer prints. Local processes, SSH channels and fan-out all feed one (ADR 0008).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


class OutputTap(Protocol):
    """A second reader of a command's raw output, fed each chunk as it arrives.

    A call that may outlive its request (a job) hands one to the executor: the capture
    still keeps the bounded head and tail for the final result, and the tap keeps the live
    stream that ``session_recv`` drains. A tap must not block and must not raise.
    """

    def stdout(self, data: bytes) -> None:
        """A chunk of stdout (of the merged stream when stderr is not kept apart)."""

    def stderr(self, data: bytes) -> None:
        """A chunk of stderr (only when the streams are kept apart)."""

    def attach(self, capture: OutputCapture | SplitCapture) -> None:
        """The capture that receives the same stream: its ``total`` and ``sha256`` are the
        stream's, so the tap need not count or hash again (called by :func:`new_capture`)."""


class OutputCapture:
    """Bounded head+tail capture of one byte stream, with a running SHA-256.

    Memory is at most ``budget`` bytes (plus one chunk while it is being split). A ``tap``
    also receives every chunk (as stdout), unbounded by the budget.
    """

    def __init__(self, budget: int, tap: OutputTap | None = None) -> None:
        if budget < 2:
            raise ValueError("budget must be at least 2 bytes")
        self.budget = budget
        self._head_limit = budget // 3
        self._tail_limit = budget - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._hash = hashlib.sha256()
        self._nul_seen = False
        self._tap = tap

    def feed(self, data: bytes) -> None:
        """Append a chunk of the stream."""
        if not data:
            return
        if self._tap is not None:
            self._tap.stdout(data)
        self._total += len(data)
        self._hash.update(data)
        if not self._nul_seen and b"\x00" in data:
            self._nul_seen = True
        view = memoryview(data)  # slices of a view share the chunk: no copy until stored
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += view[:room]
            view = view[room:]
            if not view:
                return
        if len(view) >= self._tail_limit:
            self._tail[:] = view[-self._tail_limit :]
        else:
            excess = len(self._tail) + len(view) - self._tail_limit
            if excess > 0:
                del self._tail[:excess]
            self._tail += view

    @property
    def total(self) -> int:
        """Bytes produced so far (the whole stream, not only what is kept)."""
        return self._total

    @property
    def truncated(self) -> bool:
        return self._total > self.budget

    @property
    def omitted(self) -> int:
        return max(0, self._total - len(self._head) - len(self._tail))

    @property
    def sha256(self) -> str:
        return self._hash.copy().hexdigest()

    @property
    def kept(self) -> bytes:
        """The kept bytes (head then tail) without any marker."""
        return bytes(self._head) + bytes(self._tail)

    def looks_binary(self) -> bool:
        """NUL bytes anywhere, or mostly undecodable bytes in what was kept."""
        if self._nul_seen:
            return True
        sample = self.kept[:8192]
        if not sample:
            return False
        decoded = sample.decode("utf-8", errors="replace")
        bad = decoded.count("\ufffd")
        return bad > max(8, len(decoded) // 10)

    def render(self) -> str:
        """Text for humans: head, a marker naming the omitted byte count, tail.

        Cuts are widened to UTF-8 character boundaries so no character is split, and the
        result is decoded with replacement.
        """
        if self.looks_binary():
            return f"[binary output, {self._total} bytes, sha256 {self.sha256}]"
        if not self.truncated:
            return (bytes(self._head) + bytes(self._tail)).decode("utf-8", errors="replace")
        head = _trim_incomplete_end(bytes(self._head))
        tail = _trim_partial_start(bytes(self._tail))
        left_out = self.omitted + (len(self._head) - len(head)) + (len(self._tail) - len(tail))
        marker = f"\n[... {left_out} bytes omitted ...]\n"
        return head.decode("utf-8", errors="replace") + marker + tail.decode("utf-8", errors="replace")


def _trim_incomplete_end(data: bytes) -> bytes:
    """Drop a trailing, incomplete UTF-8 sequence (at most 3 bytes)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a lead byte: complete only if the sequence fits
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if need <= back else data[:-back]
    return data


def _trim_partial_start(data: bytes) -> bytes:
    """Drop leading UTF-8 continuation bytes (at most 3) cut off from their lead byte."""
    skip = 0
    while skip < min(3, len(data)) and 0x80 <= data[skip] < 0xC0:
        skip += 1
    return data[skip:]


def decode_utf8_prefix(data: bytes) -> tuple[str, bytes]:
    """Decode as much of ``data`` as forms complete characters; return (text, leftover).

    Used by streaming readers (PTY sessions) so a character split across reads is
    carried over instead of replaced.
    """
    complete = _trim_incomplete_end(data)
    return complete.decode("utf-8", errors="replace"), data[len(complete) :]


@dataclass(frozen=True)
class ShapedOutput:
    """What a capture contributes to a result and to the audit record."""

    text: str
    truncated: bool
    output_bytes: int
    stream_sha256: str
    binary: bool


def shape(capture: OutputCapture) -> ShapedOutput:
    return ShapedOutput(
        text=capture.render(),
        truncated=capture.truncated,
        output_bytes=capture.total,
        stream_sha256=capture.sha256,
        binary=capture.looks_binary(),
    )


class SplitCapture:
    """stdout and stderr captured separately under one shared budget.

    Each stream keeps at most half the budget; ``stream`` hashes both in arrival order
    (what the audit calls the full raw output). A ``tap`` also receives every chunk.
    """

    def __init__(self, budget: int, tap: OutputTap | None = None) -> None:
        half = max(2, budget // 2)
        self.stdout = OutputCapture(half)
        self.stderr = OutputCapture(max(2, budget - half))
        self._hash = hashlib.sha256()
        self._total = 0
        self._tap = tap

    def feed_stdout(self, data: bytes) -> None:
        self.stdout.feed(data)
        self._hash.update(data)
        self._total += len(data)
        if self._tap is not None and data:
            self._tap.stdout(data)

    def feed_stderr(self, data: bytes) -> None:
        self.stderr.feed(data)
        self._hash.update(data)
        self._total += len(data)
        if self._tap is not None and data:
            self._tap.stderr(data)

    @property
    def total(self) -> int:
        return self._total

    @property
    def truncated(self) -> bool:
        return self.stdout.truncated or self.stderr.truncated

    @property
    def sha256(self) -> str:
        return self._hash.copy().hexdigest()


def new_capture(budget: int, *, merge: bool, tap: OutputTap | None = None) -> OutputCapture | SplitCapture:
    """The capture of one command: one merged stream, or stdout and stderr apart; ``tap`` sees it all."""
    capture = OutputCapture(budget, tap) if merge else SplitCapture(budget, tap)
    if tap is not None:
        tap.attach(capture)
    return capture


def render_capture(capture: OutputCapture | SplitCapture) -> str:
    """The readable body of a capture; split captures show labelled stdout and stderr."""
    if isinstance(capture, OutputCapture):
        return capture.render()
    parts = []
    if capture.stdout.total or not capture.stderr.total:
        parts.append(capture.stdout.render())
    if capture.stderr.total:
        parts.append("--- stderr ---\n" + capture.stderr.render())
    return "\n".join(parts)


def capture_fields(capture: OutputCapture | SplitCapture) -> dict[str, object]:
    """Structured fields of a capture: output text(s), truncation, total bytes, stream hash."""
    if isinstance(capture, OutputCapture):
        return {
            "output": capture.render(),
            "truncated": capture.truncated,
            "output_bytes": capture.total,
            "stream_sha256": capture.sha256,
            "binary": capture.looks_binary(),
        }
    return {
        "output": "",
        "stdout": capture.stdout.render(),
        "stderr": capture.stderr.render(),
        "truncated": capture.truncated,
        "output_bytes": capture.total,
        "stream_sha256": capture.sha256,
        "binary": capture.stdout.looks_binary() or capture.stderr.looks_binary(),
    }
