"""How the operator proves presence on the consent page: a passphrase or a one-time approval code.

- **Passphrase.** Only its Argon2id hash is configured (``RELAY_SHELL_AUTH_OPERATOR_HASH``,
  printed by ``relay-shell --set-operator-passphrase``). :class:`PassphraseVerifier` refuses
  any other hash type at start and verifies one attempt at a time in a worker thread (an
  Argon2id check costs tens of milliseconds and tens of MiB, so it never runs on the event
  loop and a flood cannot run many at once).
- **Approval codes.** Ten characters of Crockford base32 (50 bits, typed as ``ABCDE-FGHJK``),
  printed on the host by ``relay-shell --approve-login ID`` and stored only as a digest in the
  pending request they are bound to. :func:`normalize_approval_code` forgives case, spaces,
  hyphens and the look-alikes O/0 and I/L/1.
- **Rate limit.** :class:`TokenBucket` bounds passphrase checks server-wide: ``capacity``
  attempts at once, one more every ``refill_s`` seconds. A flood of guesses empties it, and
  it refills at that pace as soon as the flood stops; approval codes do not draw from it
  (they are unguessable within a request's five attempts), so an operator with a shell on the
  host is never locked out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

import anyio
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from relay_shell.errors import ConfigError

HASH_VARIABLE = "RELAY_SHELL_AUTH_OPERATOR_HASH"
MIN_PASSPHRASE_CHARS = 12
MAX_PASSPHRASE_CHARS = 1024
APPROVAL_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
APPROVAL_LENGTH = 10
_LOOK_ALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


def hash_passphrase(passphrase: str) -> str:
    """The Argon2id hash of ``passphrase`` (argon2-cffi's RFC 9106 low-memory parameters).

    Raises:
        ValueError: the passphrase is shorter than :data:`MIN_PASSPHRASE_CHARS` or longer
            than :data:`MAX_PASSPHRASE_CHARS`.
    """
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise ValueError(f"the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")
    if len(passphrase) > MAX_PASSPHRASE_CHARS:
        raise ValueError(f"the passphrase must have at most {MAX_PASSPHRASE_CHARS} characters")
    return PasswordHasher(type=Type.ID).hash(passphrase)


class PassphraseVerifier:
    """Checks passphrases against one Argon2id hash, one at a time, off the event loop."""

    def __init__(self, encoded_hash: str) -> None:
        """Parse ``encoded_hash``.

        Raises:
            ConfigError: naming :data:`HASH_VARIABLE`, when it is not an Argon2id hash.
        """
        try:
            parameters = extract_parameters(encoded_hash.strip())
        except (InvalidHashError, ValueError) as exc:
            raise ConfigError(
                f"{HASH_VARIABLE}: not an Argon2 hash (make one with --set-operator-passphrase)"
            ) from exc
        if parameters.type is not Type.ID:
            raise ConfigError(f"{HASH_VARIABLE}: the hash must be Argon2id, not {parameters.type.name}")
        self._hash = encoded_hash.strip()
        self._hasher = PasswordHasher(type=Type.ID)
        self._one_at_a_time = anyio.Lock()

    def verify_now(self, passphrase: str) -> bool:
        """True when ``passphrase`` matches (blocking; see :meth:`verify`)."""
        if not passphrase or len(passphrase) > MAX_PASSPHRASE_CHARS:
            return False
        try:
            return self._hasher.verify(self._hash, passphrase)
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, passphrase: str) -> bool:
        """True when ``passphrase`` matches; checks run one at a time in a worker thread."""
        async with self._one_at_a_time:
            return await anyio.to_thread.run_sync(self.verify_now, passphrase)


def new_approval_code() -> str:
    """A fresh approval code, ``XXXXX-XXXXX`` (50 random bits)."""
    characters = "".join(secrets.choice(APPROVAL_ALPHABET) for _ in range(APPROVAL_LENGTH))
    return f"{characters[:5]}-{characters[5:]}"


def normalize_approval_code(text: str) -> str:
    """``text`` upper-cased, without spaces or hyphens, look-alike letters mapped to digits."""
    kept = "".join(text.split()).replace("-", "").upper()
    return kept.translate(_LOOK_ALIKES)[: 4 * APPROVAL_LENGTH]


def approval_digest(text: str) -> str:
    """The stored form of an approval code (the digest of its normalized text)."""
    return hashlib.sha256(normalize_approval_code(text).encode()).hexdigest()


class TokenBucket:
    """``capacity`` attempts, refilled one per ``refill_s`` seconds (injectable monotonic clock)."""

    def __init__(
        self, capacity: int = 10, refill_s: float = 6.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._capacity = capacity
        self._refill_s = refill_s
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) / self._refill_s)
        self._updated = now

    def take(self) -> bool:
        """Use one attempt if one is left; False when the bucket is empty."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def retry_after_s(self) -> float:
        """Seconds until the next attempt is available (0 when one is)."""
        self._refill()
        return max(0.0, (1 - self._tokens) * self._refill_s)
