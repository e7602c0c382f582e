"""Tier-3 confirmation (docs/adr/0007-tier3-confirmation.md).

``elicit`` asks the human through MCP elicitation (the pipeline calls a :class:`Confirmer`
supplied by the transport layer). ``token`` issues a single-use, short-lived token bound
to the exact call; the same call re-issued with ``confirm_token`` runs once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal, Protocol

ElicitAnswer = Literal["accept", "decline", "cancel", "unsupported", "pending"]
"""``pending``: the question was handed to the client inside the result (protocol >= 2026-07-28);
the call ends now and the client retries it with the answer."""

TOKEN_TTL_S = 300.0
MAX_PENDING_TOKENS = 1024


class Confirmer(Protocol):
    """Asks the human behind the client; returns what they answered."""

    async def ask(self, message: str) -> ElicitAnswer:
        """Ask ``message``; ``pending`` means the transport keeps the question for the client."""
        ...


def call_binding(tool: str, args: Mapping[str, object], who: str) -> str:
    """A digest of the exact call: tool, every argument except the token, and the caller."""
    material = {k: v for k, v in args.items() if k != "confirm_token"}
    blob = json.dumps([tool, material, who], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ConfirmTokens:
    """Single-use tokens bound to a call digest, expiring after ``ttl_s`` (injectable clock)."""

    def __init__(self, *, ttl_s: float = TOKEN_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._pending: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, binding: str) -> str:
        token = "rsc-" + secrets.token_hex(16)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            self._expire()
            if len(self._pending) >= MAX_PENDING_TOKENS:
                oldest = min(self._pending, key=lambda key: self._pending[key][1])
                del self._pending[oldest]
            self._pending[digest] = (binding, self._clock() + self._ttl_s)
        return token

    def consume(self, token: str, binding: str) -> bool:
        """True once for a live token issued for this exact binding; the token is spent either way."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            self._expire()
            entry = self._pending.pop(digest, None)
        return entry is not None and secrets.compare_digest(entry[0], binding)

    def _expire(self) -> None:
        now = self._clock()
        for key in [key for key, (_, expiry) in self._pending.items() if expiry <= now]:
            del self._pending[key]
