"""JWT resource-server verification against a local JWKS.

Most tests serve the JWKS through an ``httpx2.MockTransport`` (so fetches can be counted
and the key set changed); one serves it from a real Starlette app on a loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from relay_shell.errors import ConfigError
from relay_shell.http.jwt_auth import JwtTokenVerifier, parse_jwks
from tests.http.conftest import FakeClock

JWKS_URL = "https://idp.example/jwks.json"
ISSUER = "https://idp.example/"
AUDIENCE = "https://relay.example/mcp"
MIN_REFRESH_S = 30.0
CACHE_TTL_S = 300.0

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class Signer:
    kid: str
    algorithm: str
    private: SigningKey

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, clock: FakeClock, *, header: dict[str, Any] | None = None, **overrides: Any) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "client_id": "claude",
            "scope": "relay-shell:read relay-shell:operate",
            "iat": int(clock()),
            "exp": int(clock()) + 600,
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        headers = {"kid": self.kid, **(header or {})}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers=headers)


@pytest.fixture(scope="module")
def rsa_signer() -> Signer:
    return Signer("rsa-1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_signer() -> Signer:
    return Signer("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def ed_signer() -> Signer:
    return Signer("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def rotated_signer() -> Signer:
    return Signer("rsa-2", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class Jwks:
    """The identity provider's JWKS endpoint: what it serves and how often it was asked."""

    keys: list[dict[str, Any]]
    fetches: int = 0
    status: int = 200
    requests: list[httpx2.Request] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.fetches += 1
        self.requests.append(request)
        return httpx2.Response(self.status, json={"keys": self.keys})


@pytest.fixture
def jwks(rsa_signer: Signer, ec_signer: Signer, ed_signer: Signer) -> Jwks:
    return Jwks([rsa_signer.jwk(), ec_signer.jwk(), ed_signer.jwk()])


@pytest.fixture
async def http_client(jwks: Jwks) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(jwks.handle)) as client:
        yield client


@pytest.fixture
def make_verifier(clock: FakeClock, http_client: httpx2.AsyncClient) -> Callable[..., JwtTokenVerifier]:
    def factory(**overrides: Any) -> JwtTokenVerifier:
        options: dict[str, Any] = {
            "jwks_url": JWKS_URL,
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "algorithms": ("RS256", "ES256", "EdDSA"),
            "clock": clock,
            "cache_ttl_s": CACHE_TTL_S,
            "min_refresh_interval_s": MIN_REFRESH_S,
            "http_client": http_client,
        }
        options.update(overrides)
        return JwtTokenVerifier(**options)

    return factory


@pytest.fixture
def verifier(make_verifier: Callable[..., JwtTokenVerifier]) -> JwtTokenVerifier:
    return make_verifier()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def handmade(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT assembled by hand, for algorithms PyJWT refuses to produce."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def valid_claims(clock: FakeClock) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "mallory",
        "exp": int(clock()) + 600,
        "scope": "relay-shell:admin",
    }


# -- accepted tokens -------------------------------------------------------------------------


async def test_valid_rsa_token_is_accepted(
    verifier: JwtTokenVerifier, rsa_signer: Signer, clock: FakeClock
) -> None:
    token = rsa_signer.sign(clock)
    access = await verifier.verify_token(token)
    assert access is not None
    assert access.token == token
    assert access.scopes == ["relay-shell:read", "relay-shell:operate"]
    assert access.client_id == "claude"
    assert access.subject == "alice"
    assert access.resource == AUDIENCE
    assert access.expires_at == int(clock()) + 600
    assert access.claims is not None
    assert access.claims["iss"] == ISSUER


async def test_ec_token_with_azp_and_scp_list(
    verifier: JwtTokenVerifier, ec_signer: Signer, clock: FakeClock
) -> None:
    token = ec_signer.sign(clock, client_id=None, scope=None, azp="cli", scp=["relay-shell:admin"])
    access = await verifier.verify_token(token)
    assert access is not None
    assert (access.client_id, access.scopes) == ("cli", ["relay-shell:admin"])


async def test_eddsa_token_with_an_audience_list(
    verifier: JwtTokenVerifier, ed_signer: Signer, clock: FakeClock
) -> None:
    access = await verifier.verify_token(ed_signer.sign(clock, aud=["https://other.example", AUDIENCE]))
    assert access is not None
    assert access.resource == AUDIENCE


async def test_expiry_within_the_leeway_is_accepted(
    verifier: JwtTokenVerifier, rsa_signer: Signer, clock: FakeClock
) -> None:
    token = rsa_signer.sign(clock, exp=int(clock()) + 60)
    clock.advance(60 + 20)  # past exp, inside the 30 s leeway
    assert await verifier.verify_token(token) is not None
    clock.advance(20)  # now past the leeway too
    assert await verifier.verify_token(token) is None


async def test_keys_are_cached(
    verifier: JwtTokenVerifier, jwks: Jwks, rsa_signer: Signer, ec_signer: Signer, clock: FakeClock
) -> None:
    for _ in range(3):
        assert await verifier.verify_token(rsa_signer.sign(clock)) is not None
        assert await verifier.verify_token(ec_signer.sign(clock)) is not None
    assert jwks.fetches == 1
    assert str(jwks.requests[0].url) == JWKS_URL


# -- rejected tokens -------------------------------------------------------------------------

REJECTED_CLAIMS: list[tuple[str, dict[str, Any]]] = [
    ("wrong audience", {"aud": "https://another-server.example/mcp"}),
    ("wrong issuer", {"iss": "https://evil.example/"}),
    ("expired", {"exp": -3600}),
    ("no exp", {"exp": None}),
    ("no aud", {"aud": None}),
    ("no iss", {"iss": None}),
    ("not yet valid", {"nbf": 3600}),
    ("issued in the future", {"iat": 3600}),
    ("non-numeric exp", {"exp": "tomorrow"}),
    ("no sub", {"sub": None}),
    ("empty sub", {"sub": ""}),
    ("blank sub", {"sub": "  "}),
    ("numeric sub", {"sub": 42}),
]


@pytest.mark.parametrize(("case", "overrides"), REJECTED_CLAIMS, ids=[case for case, _ in REJECTED_CLAIMS])
async def test_bad_claims_are_rejected(
    verifier: JwtTokenVerifier, rsa_signer: Signer, clock: FakeClock, case: str, overrides: dict[str, Any]
) -> None:
    # relative times are offsets from the clock; everything else is taken as is
    claims: dict[str, Any] = {
        name: int(clock()) + value if name in ("exp", "nbf", "iat") and isinstance(value, int) else value
        for name, value in overrides.items()
    }
    assert await verifier.verify_token(rsa_signer.sign(clock)) is not None  # the control case passes
    assert await verifier.verify_token(rsa_signer.sign(clock, **claims)) is None


async def test_alg_none_is_rejected_before_any_key_lookup(
    verifier: JwtTokenVerifier, jwks: Jwks, clock: FakeClock
) -> None:
    token = handmade({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, valid_claims(clock), lambda _: b"")
    assert await verifier.verify_token(token) is None
    assert await verifier.verify_token(token.rsplit(".", 1)[0] + ".") is None
    assert jwks.fetches == 0


async def test_hs256_signed_with_the_public_key_is_rejected(
    verifier: JwtTokenVerifier, jwks: Jwks, rsa_signer: Signer, clock: FakeClock
) -> None:
    secret = rsa_signer.public_pem()
    token = handmade(
        {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"},
        valid_claims(clock),
        lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    assert await verifier.verify_token(token) is None
    assert jwks.fetches == 0  # refused on the header alone


async def test_allowed_alg_must_fit_the_key_type(
    make_verifier: Callable[..., JwtTokenVerifier], rsa_signer: Signer, clock: FakeClock
) -> None:
    verifier = make_verifier(algorithms=("RS256", "PS256", "ES256"))
    # an RSA key without its own `alg` verifies any allowed RSA algorithm
    pss = jwt.encode(valid_claims(clock), rsa_signer.private, algorithm="PS256", headers={"kid": "rsa-1"})
    assert await verifier.verify_token(pss) is not None
    # ES256 in the header against the RSA key: the key type does not fit
    forged = handmade({"alg": "ES256", "kid": "rsa-1"}, valid_claims(clock), lambda _: b"\x00" * 64)
    assert await verifier.verify_token(forged) is None


async def test_key_pinned_to_an_algorithm_refuses_another(
    make_verifier: Callable[..., JwtTokenVerifier], jwks: Jwks, rsa_signer: Signer, clock: FakeClock
) -> None:
    jwks.keys = [{**rsa_signer.jwk(), "alg": "RS256"}]
    verifier = make_verifier(algorithms=("RS256", "PS256"))
    assert await verifier.verify_token(rsa_signer.sign(clock)) is not None
    pss = jwt.encode(valid_claims(clock), rsa_signer.private, algorithm="PS256", headers={"kid": "rsa-1"})
    assert await verifier.verify_token(pss) is None


async def test_algorithm_outside_the_allowlist_is_rejected(
    make_verifier: Callable[..., JwtTokenVerifier], jwks: Jwks, ec_signer: Signer, clock: FakeClock
) -> None:
    verifier = make_verifier(algorithms=("RS256",))
    assert await verifier.verify_token(ec_signer.sign(clock)) is None
    assert jwks.fetches == 0


async def test_tampered_signature_and_payload_are_rejected(
    verifier: JwtTokenVerifier, rsa_signer: Signer, clock: FakeClock
) -> None:
    token = rsa_signer.sign(clock)
    header, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert await verifier.verify_token(f"{header}.{payload}.{flipped}") is None
    admin_payload = b64url(json.dumps({**valid_claims(clock), "sub": "alice"}).encode())
    assert await verifier.verify_token(f"{header}.{admin_payload}.{signature}") is None
    assert await verifier.verify_token(token) is not None  # the untouched token still passes


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "Bearer x.y.z"])
async def test_garbage_is_rejected(verifier: JwtTokenVerifier, garbage: str) -> None:
    assert await verifier.verify_token(garbage) is None


# -- key rotation and the refresh rate limit -------------------------------------------------


async def test_unknown_kid_refreshes_once_then_is_rate_limited(
    verifier: JwtTokenVerifier, jwks: Jwks, rsa_signer: Signer, clock: FakeClock
) -> None:
    stranger = Signer("ghost", "RS256", rsa_signer.private)
    assert await verifier.verify_token(rsa_signer.sign(clock)) is not None
    assert jwks.fetches == 1
    clock.advance(MIN_REFRESH_S)
    assert await verifier.verify_token(stranger.sign(clock)) is None
    assert jwks.fetches == 2  # refreshed for the unknown kid, still unknown
    for _ in range(5):
        assert await verifier.verify_token(stranger.sign(clock)) is None
    assert jwks.fetches == 2  # no flood of fetches
    clock.advance(MIN_REFRESH_S)
    assert await verifier.verify_token(stranger.sign(clock)) is None
    assert jwks.fetches == 3


async def test_rotated_key_is_picked_up_on_refresh(
    verifier: JwtTokenVerifier, jwks: Jwks, rsa_signer: Signer, rotated_signer: Signer, clock: FakeClock
) -> None:
    assert await verifier.verify_token(rsa_signer.sign(clock)) is not None
    jwks.keys = [rsa_signer.jwk(), rotated_signer.jwk()]  # the IdP publishes a new key
    clock.advance(MIN_REFRESH_S)  # still well inside the cache lifetime
    access = await verifier.verify_token(rotated_signer.sign(clock))
    assert access is not None
    assert jwks.fetches == 2
    jwks.keys = [rotated_signer.jwk()]  # then retires the old one
    clock.advance(CACHE_TTL_S)
    assert await verifier.verify_token(rsa_signer.sign(clock)) is None
    assert await verifier.verify_token(rotated_signer.sign(clock)) is not None


async def test_a_key_replaced_under_the_same_kid_refuses_tokens_it_accepted(
    verifier: JwtTokenVerifier, jwks: Jwks, rsa_signer: Signer, clock: FakeClock
) -> None:
    """A token's verified claims are kept only with the key they were checked against."""
    token = rsa_signer.sign(clock)
    for _ in range(3):
        assert await verifier.verify_token(token) is not None
    impostor = Signer(rsa_signer.kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    jwks.keys = [impostor.jwk()]  # same kid, another key
    clock.advance(CACHE_TTL_S)
    assert await verifier.verify_token(token) is None
    assert jwks.fetches == 2
    assert await verifier.verify_token(impostor.sign(clock)) is not None


async def test_kept_claims_still_meet_the_clock_and_the_signature(
    make_verifier: Callable[..., JwtTokenVerifier], rsa_signer: Signer, clock: FakeClock
) -> None:
    verifier = make_verifier()
    token = rsa_signer.sign(clock, exp=int(clock()) + 60)
    assert await verifier.verify_token(token) is not None
    clock.advance(60 + 31)  # past exp and the 30 s leeway
    assert await verifier.verify_token(token) is None
    fresh = rsa_signer.sign(clock)
    assert await verifier.verify_token(fresh) is not None
    signature = fresh.rsplit(".", 1)[1]
    flipped = fresh[: -len(signature)] + ("A" if signature[0] != "A" else "B") + signature[1:]
    assert await verifier.verify_token(flipped) is None
    assert await verifier.verify_token(fresh) is not None


async def test_concurrent_unknown_kids_share_one_fetch(
    verifier: JwtTokenVerifier, jwks: Jwks, rsa_signer: Signer, clock: FakeClock
) -> None:
    tokens = [Signer(f"ghost-{index}", "RS256", rsa_signer.private).sign(clock) for index in range(10)]
    results = await asyncio.gather(*(verifier.verify_token(token) for token in tokens))
    assert results == [None] * 10
    assert jwks.fetches == 1


async def test_failed_refresh_keeps_the_previous_keys(
    verifier: JwtTokenVerifier, jwks: Jwks, rsa_signer: Signer, clock: FakeClock
) -> None:
    assert await verifier.verify_token(rsa_signer.sign(clock)) is not None
    jwks.status = 503
    clock.advance(CACHE_TTL_S)
    assert await verifier.verify_token(rsa_signer.sign(clock)) is not None
    assert jwks.fetches == 2


async def test_unreachable_jwks_rejects_every_token(
    make_verifier: Callable[..., JwtTokenVerifier], jwks: Jwks, rsa_signer: Signer, clock: FakeClock
) -> None:
    jwks.status = 500
    verifier = make_verifier()
    assert await verifier.verify_token(rsa_signer.sign(clock)) is None


async def test_token_without_kid_needs_a_single_key(
    make_verifier: Callable[..., JwtTokenVerifier], jwks: Jwks, rsa_signer: Signer, clock: FakeClock
) -> None:
    no_kid = jwt.encode(valid_claims(clock), rsa_signer.private, algorithm="RS256")
    assert await make_verifier().verify_token(no_kid) is None  # three keys: ambiguous
    jwks.keys = [rsa_signer.jwk()]
    assert await make_verifier().verify_token(no_kid) is not None


def test_parse_jwks_keeps_only_signing_keys(rsa_signer: Signer, ec_signer: Signer) -> None:
    body = {
        "keys": [
            rsa_signer.jwk(),
            {**ec_signer.jwk(), "use": "enc"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "broken"},
            "not a key",
        ]
    }
    assert list(parse_jwks(json.dumps(body).encode())) == ["rsa-1"]


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"algorithms": ("none",)}, "not allowed"),
        ({"algorithms": ("RS256", "HS256")}, "not allowed"),
        ({"algorithms": ()}, "not allowed"),
        ({"jwks_url": "http://idp.example/jwks.json"}, "must be https"),
        ({"jwks_url": "file:///etc/jwks.json"}, "must be https"),
        ({"audience": ""}, "audience"),
    ],
)
def test_unsafe_configuration_is_refused(
    make_verifier: Callable[..., JwtTokenVerifier], overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        make_verifier(**overrides)


# -- a real JWKS endpoint on loopback --------------------------------------------------------


@pytest.fixture
async def loopback_jwks_url(rsa_signer: Signer) -> AsyncIterator[str]:
    async def serve_jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [rsa_signer.jwk()]})

    app = Starlette(routes=[Route("/jwks.json", serve_jwks)])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/jwks.json"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


async def test_fetches_the_jwks_over_loopback_http(
    loopback_jwks_url: str, rsa_signer: Signer, clock: FakeClock
) -> None:
    verifier = JwtTokenVerifier(
        jwks_url=loopback_jwks_url, issuer=ISSUER, audience=AUDIENCE, algorithms=("RS256",), clock=clock
    )
    access = await verifier.verify_token(rsa_signer.sign(clock))
    assert access is not None
    assert access.subject == "alice"
