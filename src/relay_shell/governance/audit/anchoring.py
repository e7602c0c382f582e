"""Anchoring a sink's chain outside its file, and shipping its records.

An *anchor* is a small entry stating "instance I of the writer of file F had record ``seq``
with chain ``chain``" (plus its kind: ``header``, ``start``, ``head``, ``shutdown``,
``tamper``, ``recovery``). It goes to a channel the agent's account cannot rewrite
(:mod:`channels`). ``--verify-audit --anchors`` later checks the file against them: an
anchor whose record is missing or different exposes a removed, truncated or rewritten
trail.

Every entry sent to one destination by one instance is numbered (``RELAY_AUDIT_ANCHOR_SEQ``
1, 2, 3...), so a lost or suppressed entry shows as a gap. An entry that could not be sent
keeps its number and waits in a bounded queue; it is resent, in order and before anything
newer, by the next send or :meth:`Anchoring.flush`. Only when that queue overflows is an
entry dropped, which the gap then shows.

*Shipping* sends every full record (its JSON line) as an entry of kind ``record`` to a
channel (possibly the same destination: the numbering is per destination).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from relay_shell.governance.audit.channels import Channel

MAX_PENDING = 10_000
RETRY_INTERVAL_S = 1.0
SEVERITY = {"tamper": 2, "recovery": 4}
"""Syslog severities by anchor kind (2 critical, 4 warning); everything else is 6 (info)."""


@dataclass(frozen=True)
class _Entry:
    message: str
    fields: dict[str, str]
    severity: int


class _Destination:
    """One channel with its entry counter and its queue of entries not yet handed over.

    After a failure the channel is tried again at most once per :data:`RETRY_INTERVAL_S`:
    in between, entries are only queued (a dead collector must not cost a connect timeout
    on every record).
    """

    def __init__(self, channel: Channel, clock: Callable[[], float]) -> None:
        self.channel = channel
        self.counter = 0
        self.pending: deque[_Entry] = deque()
        self.dropped = 0
        self.error: str | None = None
        self._clock = clock
        self._failed_at: float | None = None

    def number(self) -> int:
        self.counter += 1
        return self.counter

    def push(self, entry: _Entry) -> None:
        """Queue ``entry`` behind older unsent ones, then send what can be sent (raises OSError)."""
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append(entry)
        if self._failed_at is not None and self._clock() - self._failed_at < RETRY_INTERVAL_S:
            raise ConnectionError(self.error or "the channel failed recently")
        self.drain()

    def drain(self) -> None:
        """Send every queued entry in order; raises ``OSError`` at the first that fails."""
        while self.pending:
            entry = self.pending[0]
            try:
                self.channel.send(entry.message, entry.fields, severity=entry.severity)
            except OSError as exc:
                self.error = f"{self.channel.kind} {self.channel.target}: {exc.strerror or exc}"
                self._failed_at = self._clock()
                self.channel.close()
                raise
            self.pending.popleft()
        self.error, self._failed_at = None, None

    def probe(self) -> None:
        """Raise ``OSError`` when the channel is known to be gone (a closed or refused connection)."""
        if self._failed_at is not None and self._clock() - self._failed_at < RETRY_INTERVAL_S:
            raise ConnectionError(self.error or "the channel failed recently")
        try:
            self.channel.probe()
        except OSError as exc:
            self.error = f"{self.channel.kind} {self.channel.target}: {exc.strerror or exc}"
            self._failed_at = self._clock()
            self.channel.close()
            raise
        if self.pending:
            self.drain()
        self.error, self._failed_at = None, None


class Anchoring:
    """Anchors and ships the records of one audit sink; either channel may be absent."""

    def __init__(
        self,
        *,
        anchor: Channel | None,
        ship: Channel | None,
        file: Path,
        instance_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = str(file)
        self._instance_id = instance_id
        self._clock = clock
        self._destinations: dict[str, _Destination] = {}
        self._anchor = self._destination(anchor) if anchor is not None else None
        self._ship = self._destination(ship) if ship is not None else None

    @property
    def anchors(self) -> bool:
        return self._anchor is not None

    @property
    def ships(self) -> bool:
        return self._ship is not None

    @property
    def error(self) -> str | None:
        """The latest failure of a channel not yet recovered, or None."""
        for destination in self._destinations.values():
            if destination.error:
                return destination.error
        return None

    def anchor(self, kind: str, record: Mapping[str, object]) -> None:
        """Anchor ``record`` (its ``seq`` and ``chain``) synchronously; raises ``OSError``."""
        if self._anchor is None:
            return
        seq, chain = record.get("seq"), record.get("chain")
        message = f"relay-shell audit anchor: {kind} seq {seq} chain {chain}"
        self._send(self._anchor, kind, record, message)

    def ship(self, line: str, record: Mapping[str, object]) -> None:
        """Ship one full record (its line as written); raises ``OSError``."""
        if self._ship is None:
            return
        self._send(self._ship, "record", record, line)

    def healthy(self) -> bool:
        """Probe every channel and resend what waits; True when all are reachable and nothing waits."""
        for destination in self._destinations.values():
            try:
                destination.probe()
            except OSError:
                return False
        return True

    def status(self) -> dict[str, object]:
        """For server_info: channel kinds, targets, queued and dropped entries, last error."""

        def describe(destination: _Destination | None) -> dict[str, object] | None:
            if destination is None:
                return None
            return {
                "kind": destination.channel.kind,
                "target": destination.channel.target,
                "sent": destination.counter - len(destination.pending) - destination.dropped,
                "pending": len(destination.pending),
                "dropped": destination.dropped,
                "error": destination.error,
            }

        return {"anchor": describe(self._anchor), "ship": describe(self._ship)}

    def close(self) -> None:
        for destination in self._destinations.values():
            destination.channel.close()

    def _destination(self, channel: Channel) -> _Destination:
        key = f"{channel.kind}:{channel.target}"
        found = self._destinations.get(key)
        if found is None:
            found = self._destinations[key] = _Destination(channel, self._clock)
        return found

    def _send(self, destination: _Destination, kind: str, record: Mapping[str, object], message: str) -> None:
        fields = {
            "RELAY_AUDIT_KIND": kind,
            "RELAY_AUDIT_SEQ": str(record.get("seq", "")),
            "RELAY_AUDIT_CHAIN": str(record.get("chain") or ""),
            "RELAY_AUDIT_INSTANCE": self._instance_id,
            "RELAY_AUDIT_FILE": self._file,
            "RELAY_AUDIT_ANCHOR_SEQ": str(destination.number()),
        }
        call_id = record.get("call_id")
        if isinstance(call_id, str):
            fields["RELAY_AUDIT_CALL_ID"] = call_id
        entry = _Entry(message=message, fields=fields, severity=SEVERITY.get(kind, 6))
        destination.push(entry)
