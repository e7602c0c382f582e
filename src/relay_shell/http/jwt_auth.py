"""JWT access tokens from the operator's identity provider (``AUTH_MODE=jwt``, ADR 0005).

relay-shell is then a resource server only: :class:`JwtTokenVerifier` is the SDK's
``TokenVerifier`` that the bearer middleware calls for every request. A token is accepted
only when all of this holds, checked in this order:

1. its header ``alg`` is in the configured allowlist, which can hold asymmetric
   algorithms only (never ``none``, never ``HS*``: a public key must not become an HMAC
   secret). This is checked before any key is looked up or any signature computed;
2. its ``kid`` names a signing key of the JWKS at ``jwks_url`` (without ``kid``, the JWKS
   must hold exactly one key) whose type fits ``alg`` and whose own ``alg``, if any, is
   the same. Keys are cached for ``cache_ttl_s``; an unknown ``kid`` refreshes them at
   once (key rotation), but at most once per ``min_refresh_interval_s`` so a flood of
   made-up ``kid`` values cannot turn into a flood of requests to the identity provider.
   When a refresh fails the previous keys stay in use;
3. the signature verifies (PyJWT);
4. ``iss`` equals ``issuer`` and ``aud`` contains ``audience`` (the resource URL, RFC 8707);
5. ``exp`` is present and not past, ``nbf`` (if present) is not future, ``iat`` (if
   present) is not future, each with ``leeway_s``, against the injectable ``clock``;
6. ``sub`` is a non-blank string (RFC 9068 requires it; it names the principal).

Steps 3 and 4 cost most (a signature check is hundreds of microseconds) and give the same
answer for the same token and key, so their outcome is kept: the claims of a token that
passed them, under the token's SHA-256 digest (never the token), with the key object they
were checked with, at most :data:`VERIFIED_TOKENS` entries (least recently used out). A kept
entry is used only while steps 1 and 2, run again for every request, pick that very key
object (a JWKS refresh makes new ones and empties the store); steps 5 and 6 run every time.
The key object built from a JWK is kept the same way until the next refresh.

The resulting ``AccessToken`` carries the scopes (``scope``, space-separated, else ``scp``,
a list or a string), ``client_id`` (the ``client_id`` claim, else ``azp``, else empty),
``subject`` (``sub``: the SDK's ``AccessToken`` has that field, which
:func:`relay_shell.http.scopes.current_principal` reads), ``resource`` (``audience``) and
every claim in ``claims``. A rejected token yields ``None`` (the middleware answers 401);
the reason is logged at debug level, never the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx2
import jwt
from mcp.server.auth.provider import AccessToken, TokenVerifier

from relay_shell.errors import ConfigError, RelayError
from relay_shell.vocabulary import ErrorKind

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
DEFAULT_LEEWAY_S = 30.0
DEFAULT_MIN_REFRESH_INTERVAL_S = 30.0
DEFAULT_FETCH_TIMEOUT_S = 5.0
MAX_JWKS_BYTES = 256 * 1024
VERIFIED_TOKENS = 256

JwkData = dict[str, Any]


class JwksUnavailable(RelayError):
    """The JWKS could not be fetched or holds no usable signing key."""

    kind: ErrorKind = ErrorKind.UNAVAILABLE


def _check_jwks_url(url: str) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if parts.scheme == "http" and loopback:
        return
    raise ConfigError(f"JWKS URL {url!r} must be https (plain http only on loopback)")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def claim_scopes(claims: Mapping[str, Any]) -> list[str]:
    """The scopes a token grants: ``scope`` (space-separated) or else ``scp`` (list or string)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, str):
        return scp.split()
    if isinstance(scp, list):
        return [item for item in scp if isinstance(item, str)]
    return []


def parse_jwks(body: bytes) -> dict[str | None, JwkData]:
    """The usable signing keys of a JWKS document, by ``kid`` (``None`` for a key without one).

    Symmetric (``oct``) keys, encryption keys (``use`` other than ``sig``) and keys PyJWT
    cannot load are left out.

    Raises:
        JwksUnavailable: the document is not a JWKS or holds no usable signing key.
    """
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise JwksUnavailable("the JWKS is not JSON") from exc
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksUnavailable("the JWKS has no `keys` list")
    keys: dict[str | None, JwkData] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in SIGNING_KEY_TYPES:
            continue
        kid = entry.get("kid")
        if entry.get("use", "sig") != "sig" or not (kid is None or isinstance(kid, str)):
            continue
        try:
            jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        keys[kid] = entry
    if not keys:
        raise JwksUnavailable("the JWKS holds no usable signing key")
    return keys


class JwtTokenVerifier(TokenVerifier):
    """Verifies JWT bearer tokens against a remote JWKS (see the module docstring)."""

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        algorithms: Sequence[str],
        clock: Callable[[], float] = time.time,
        cache_ttl_s: float = 300.0,
        leeway_s: float = DEFAULT_LEEWAY_S,
        min_refresh_interval_s: float = DEFAULT_MIN_REFRESH_INTERVAL_S,
        fetch_timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        """Configure the checks; nothing is fetched until the first token arrives.

        ``http_client`` (optional) is used for JWKS requests instead of a fresh client per
        fetch; the caller owns and closes it.

        Raises:
            ConfigError: an algorithm outside the asymmetric allowlist (``none``, ``HS*``...),
                an empty issuer or audience, or a JWKS URL that is not https (loopback aside).
        """
        rejected = [name for name in algorithms if name not in ASYMMETRIC_ALGORITHMS]
        if rejected or not algorithms:
            raise ConfigError(
                f"JWT algorithms {rejected or list(algorithms)} are not allowed;"
                f" choose from {sorted(ASYMMETRIC_ALGORITHMS)}"
            )
        if not issuer or not audience:
            raise ConfigError("JWT verification needs both an issuer and an audience")
        _check_jwks_url(jwks_url)
        self._jwks_url = jwks_url
        self._issuer = issuer
        self._audience = audience
        self._algorithms = tuple(algorithms)
        self._clock = clock
        self._cache_ttl_s = cache_ttl_s
        self._leeway_s = leeway_s
        self._min_refresh_interval_s = min_refresh_interval_s
        self._fetch_timeout_s = fetch_timeout_s
        self._http_client = http_client
        self._keys: dict[str | None, JwkData] = {}
        self._built: dict[tuple[int, str], tuple[JwkData, jwt.PyJWK]] = {}
        self._verified: OrderedDict[str, tuple[JwkData, str, dict[str, Any]]] = OrderedDict()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._refresh_lock = asyncio.Lock()

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access token ``token`` grants, or ``None`` when any check fails."""
        allowed = self._allowed_header(token)
        if allowed is None:
            return None
        algorithm, kid = allowed
        key_data = await self._signing_key(kid, algorithm)
        if key_data is None:
            logger.debug("JWT rejected: no signing key for kid %r and %s", kid, algorithm)
            return None
        claims = self._checked_claims(token, key_data, algorithm)
        if claims is None or not self._times_valid(claims):
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            logger.debug("JWT rejected: no sub (every principal needs one)")
            return None
        return self._access_token(token, claims)

    def _allowed_header(self, token: str) -> tuple[str, str | None] | None:
        """``(alg, kid)`` from the unverified header when ``alg`` is allowed, else ``None``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            logger.debug("JWT rejected: malformed")
            return None
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            logger.debug("JWT rejected: algorithm %r is not allowed", algorithm)
            return None
        if kid is not None and not isinstance(kid, str):
            return None
        return algorithm, kid

    def _checked_claims(self, token: str, key_data: JwkData, algorithm: str) -> dict[str, Any] | None:
        """:meth:`_verified_claims`, or a copy of its kept answer for this token and this key object."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        kept = self._verified.get(digest)
        if kept is not None and kept[0] is key_data and kept[1] == algorithm:
            self._verified.move_to_end(digest)
            return dict(kept[2])
        claims = self._verified_claims(token, key_data, algorithm)
        if claims is not None:
            self._verified[digest] = (key_data, algorithm, dict(claims))
            while len(self._verified) > VERIFIED_TOKENS:
                self._verified.popitem(last=False)
        return claims

    def _key(self, key_data: JwkData, algorithm: str) -> jwt.PyJWK:
        """The key object of ``key_data`` for ``algorithm``, built once per JWKS fetch.

        Raises:
            jwt.PyJWTError: the JWK does not make a key for ``algorithm``.
        """
        built = self._built.get((id(key_data), algorithm))
        if built is not None and built[0] is key_data:
            return built[1]
        key = jwt.PyJWK(key_data, algorithm=algorithm)
        self._built[(id(key_data), algorithm)] = (key_data, key)
        return key

    def _verified_claims(self, token: str, key_data: JwkData, algorithm: str) -> dict[str, Any] | None:
        """The claims once signature, issuer and audience check out (times are checked apart)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=self._key(key_data, algorithm),
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,  # checked by _times_valid against the injectable clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            logger.debug("JWT rejected: %s", exc)
            return None
        return claims

    def _times_valid(self, claims: Mapping[str, Any]) -> bool:
        """``exp`` required and not past, ``nbf``/``iat`` optional and not future (with leeway)."""
        now = self._clock()
        expires = _number(claims.get("exp"))
        if expires is None or now >= expires + self._leeway_s:
            logger.debug("JWT rejected: expired or without a numeric exp")
            return False
        for name in ("nbf", "iat"):
            if name not in claims:
                continue
            moment = _number(claims[name])
            if moment is None or moment > now + self._leeway_s:
                logger.debug("JWT rejected: %s is not a number or is in the future", name)
                return False
        return True

    def _access_token(self, token: str, claims: dict[str, Any]) -> AccessToken:
        client_id = claims.get("client_id") or claims.get("azp")
        subject = claims.get("sub")
        expires = _number(claims.get("exp"))
        return AccessToken(
            token=token,
            client_id=client_id if isinstance(client_id, str) else "",
            scopes=claim_scopes(claims),
            expires_at=int(expires) if expires is not None else None,
            resource=self._audience,
            subject=subject if isinstance(subject, str) else None,
            claims=claims,
        )

    async def _signing_key(self, kid: str | None, algorithm: str) -> JwkData | None:
        """The cached key for ``kid`` fit for ``algorithm``, refreshing the cache when stale or unknown."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._cache_ttl_s:
            await self._refresh()
        key_data = self._lookup(kid)
        if key_data is None:
            await self._refresh()
            key_data = self._lookup(kid)
        if key_data is None or key_data.get("alg", algorithm) != algorithm:
            return None
        return key_data

    def _lookup(self, kid: str | None) -> JwkData | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        """Fetch the JWKS unless another fetch was attempted within ``min_refresh_interval_s``."""
        async with self._refresh_lock:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._min_refresh_interval_s:
                return
            self._attempted_at = now
            try:
                self._keys = parse_jwks(await self._download())
                self._built.clear()
                self._verified.clear()
            except JwksUnavailable as exc:
                logger.warning(
                    "JWKS refresh from %s failed (keeping the previous keys): %s", self._jwks_url, exc
                )
                return
            self._fetched_at = now

    async def _download(self) -> bytes:
        """The JWKS document, bounded in time and size.

        Raises:
            JwksUnavailable: network error, timeout, a status other than 200, or too large.
        """
        try:
            async with asyncio.timeout(self._fetch_timeout_s):
                if self._http_client is not None:
                    return await self._read(self._http_client)
                async with httpx2.AsyncClient(
                    timeout=self._fetch_timeout_s, follow_redirects=False
                ) as client:
                    return await self._read(client)
        except TimeoutError as exc:
            raise JwksUnavailable(f"no answer within {self._fetch_timeout_s:g} s") from exc
        except httpx2.HTTPError as exc:
            raise JwksUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _read(self, client: httpx2.AsyncClient) -> bytes:
        async with client.stream("GET", self._jwks_url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise JwksUnavailable(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)
