"""The strict Host/Origin check and the request-body caps, as a parser table and on the real server."""

from __future__ import annotations

import json
import select
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_shell.config import Settings
from relay_shell.errors import ConfigError
from relay_shell.http.edge import (
    FORM_BODY_CAP,
    MCP_BODY_OVERHEAD,
    Authority,
    allowed_authorities,
    body_cap,
    parse_authority,
    parse_origin,
)
from relay_shell.http.serve import metrics_authorized
from tests.http.test_http_e2e import INITIALIZE, RELAY, RelayProcess, running_relay, server_env

# -- the parser ------------------------------------------------------------------------------

PARSED: list[tuple[str, Authority]] = [
    ("127.0.0.1", Authority("127.0.0.1")),
    ("127.0.0.1:8080", Authority("127.0.0.1", 8080)),
    ("LOCALHOST:8080", Authority("localhost", 8080)),
    ("[::1]:443", Authority("::1", 443)),
    ("[0:0:0:0:0:0:0:1]", Authority("::1")),
    ("relay.example.org", Authority("relay.example.org")),
    ("relay-1.example.org:65535", Authority("relay-1.example.org", 65535)),
    ("0x7f.0.0.1", Authority("0x7f.0.0.1")),  # a name, which no allowed entry equals
    ("[::ffff:127.0.0.1]", Authority("::ffff:7f00:1")),
]

REFUSED = [
    "",
    "127.0.0.1:8080@evil.example",
    "127.0.0.1@evil.example",
    "user@127.0.0.1:8080",
    "user:pw@127.0.0.1",
    "127.0.0.1:8080.evil.example",
    "127.0.0.1:8080:80",
    "127.0.0.1:8080/",
    "127.0.0.1:8080/path",
    "127.0.0.1:8080?x",
    "127.0.0.1:8080#x",
    "127.0.0.1 :8080",
    " 127.0.0.1",
    "127.0.0.1\t",
    "127.0.0.1%40evil.example",
    "127.0.0.1:0",
    "127.0.0.1:65536",
    "127.0.0.1:08080",
    "127.0.0.1:",
    "127.1",
    "127.0.0.256",
    "1.2.3.4.5",
    "::1",
    "[::1",
    "[::1%lo]:8080",
    "[evil.example]",
    "localhost.",
    ".localhost",
    "local..host",
    "-localhost",
    "localhost-",
    "l\u043ecalhost",  # a Cyrillic o
    "a" * 64 + ".example",
    "*.example.org",
    "evil.example\\@127.0.0.1",
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_parse_authority_accepts(text: str, expected: Authority) -> None:
    assert parse_authority(text) == expected


@pytest.mark.parametrize("text", REFUSED)
def test_parse_authority_refuses(text: str) -> None:
    assert parse_authority(text) is None


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://127.0.0.1:8080", Authority("127.0.0.1", 8080)),
        ("HTTPS://Relay.Example.org", Authority("relay.example.org")),
        ("null", None),
        ("http://127.0.0.1:8080@evil.example", None),
        ("http://127.0.0.1:8080/", None),
        ("http://user@127.0.0.1:8080", None),
        ("ftp://127.0.0.1", None),
        ("127.0.0.1:8080", None),
        ("http://127.0.0.1:8080 http://evil.example", None),
        ("http://", None),
    ],
)
def test_parse_origin(origin: str, expected: Authority | None) -> None:
    assert parse_origin(origin) == expected


def test_allowed_set_and_matching() -> None:
    settings = Settings(
        http_host="10.0.0.5",
        http_allowed_hosts="relay.example.org, edge.example.org:8443",
        auth_issuer="https://issuer.example.org:9443",
    )
    allowed = allowed_authorities(settings)
    assert set(allowed) == {
        Authority("127.0.0.1"),
        Authority("localhost"),
        Authority("::1"),
        Authority("10.0.0.5"),
        Authority("relay.example.org"),
        Authority("edge.example.org", 8443),
        Authority("issuer.example.org", 9443),
    }

    def ok(text: str) -> bool:
        parsed = parse_authority(text)
        return parsed is not None and any(parsed.matches(entry) for entry in allowed)

    assert ok("relay.example.org") and ok("relay.example.org:443")
    assert ok("edge.example.org:8443") and not ok("edge.example.org:8444") and not ok("edge.example.org")
    assert ok("issuer.example.org:9443") and not ok("issuer.example.org")
    assert ok("10.0.0.5:8080") and ok("localhost:1234")
    assert not ok("relay.example.org.evil.example") and not ok("evil.relay.example.org")


def test_wildcard_bind_adds_no_host() -> None:
    assert Authority("0.0.0.0") not in allowed_authorities(Settings(http_host="0.0.0.0"))


@pytest.mark.parametrize("entry", ["relay.example.org/mcp", "*.example.org", "user@relay.example.org"])
def test_bad_allowed_host_entry_is_a_config_error(entry: str) -> None:
    with pytest.raises(ConfigError, match="RELAY_SHELL_HTTP_ALLOWED_HOSTS"):
        allowed_authorities(Settings(http_allowed_hosts=entry))


def test_body_caps() -> None:
    settings = Settings(max_input_bytes=65536)
    assert body_cap("/mcp", settings) == 2 * 65536 + MCP_BODY_OVERHEAD
    assert body_cap("/token", settings) == FORM_BODY_CAP
    assert body_cap("/consent", settings) == FORM_BODY_CAP


# -- on the real server ----------------------------------------------------------------------

INPUT_CAP = 65536
METRICS_TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """A server with builtin OAuth, a metrics token and a small input cap."""
    state_dir = tmp_path_factory.mktemp("relay-edge")
    with running_relay(
        state_dir,
        RELAY_SHELL_AUTH_ENABLED="true",
        RELAY_SHELL_MAX_INPUT_BYTES=str(INPUT_CAP),
        RELAY_SHELL_METRICS_TOKEN=METRICS_TOKEN,
    ) as relay:
        yield relay


def raw_request(port: int, head: str, body: bytes = b"") -> bytes:
    """Send one HTTP/1.1 request as written and return everything the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head.encode() + b"\r\n\r\n" + body)
        answer = bytearray()
        while chunk := connection.recv(65536):
            answer += chunk
    return bytes(answer)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


ROUTES = [
    ("POST", "/mcp"),
    ("GET", "/consent?request=x"),
    ("POST", "/consent"),
    ("POST", "/token"),
    ("POST", "/register"),
    ("POST", "/revoke"),
    ("GET", "/authorize"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/oauth-protected-resource/mcp"),
    ("GET", "/no-such-route"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}@evil.example", "evil.example", "127.0.0.1:{port}.evil.example", ""]
)
def test_bad_host_is_refused_on_every_route(guarded: RelayProcess, method: str, path: str, host: str) -> None:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host.format(port=guarded.port)}\r\nContent-Length: 0"
    answer = raw_request(guarded.port, head)
    assert status_of(answer) == 421, answer[:200]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:{port}@evil.example", "http://evil.example", "null", "http://127.0.0.1:{port}/"],
)
def test_bad_origin_is_refused_on_every_route(
    guarded: RelayProcess, method: str, path: str, origin: str
) -> None:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{guarded.port}\r\n"
        f"Origin: {origin.format(port=guarded.port)}\r\nContent-Length: 0"
    )
    assert status_of(raw_request(guarded.port, head)) == 403


@pytest.mark.parametrize(
    ("fetch_site", "status"),
    [("same-origin", 404), ("cross-site", 403), ("same-site", 403), ("none", 403), (None, 403)],
)
def test_null_origin_passes_only_for_a_same_origin_fetch(
    guarded: RelayProcess, fetch_site: str | None, status: int
) -> None:
    """A browser posting a page's own form under Referrer-Policy: no-referrer sends Origin: null."""
    head = f"POST /consent HTTP/1.1\r\nHost: 127.0.0.1:{guarded.port}\r\nOrigin: null\r\nContent-Length: 0"
    if fetch_site is not None:
        head += f"\r\nSec-Fetch-Site: {fetch_site}"
    assert (
        status_of(raw_request(guarded.port, head + "\r\nConnection: close")) == status
    )  # 404: past the guard


def test_two_host_headers_are_refused(guarded: RelayProcess) -> None:
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{guarded.port}\r\nHost: evil.example"
    assert status_of(raw_request(guarded.port, head)) in (400, 421)  # the HTTP parser or the guard


def test_good_host_and_origin_pass(guarded: RelayProcess) -> None:
    head = (
        f"GET /healthz HTTP/1.1\r\nHost: localhost:{guarded.port}\r\n"
        f"Origin: http://localhost:{guarded.port}\r\nConnection: close"
    )
    assert status_of(raw_request(guarded.port, head)) == 200


def test_declared_oversized_body_is_refused_before_it_is_sent(guarded: RelayProcess) -> None:
    """Only the headers go out: the 413 comes back without a single body byte read."""
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{guarded.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {64 * 1024 * 1024}"
    )
    answer = raw_request(guarded.port, head)
    assert status_of(answer) == 413


@pytest.fixture(scope="module")
def open_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    """A server without OAuth and with the same small input cap: /mcp reads every body."""
    with running_relay(
        tmp_path_factory.mktemp("relay-open"), RELAY_SHELL_MAX_INPUT_BYTES=str(INPUT_CAP)
    ) as relay:
        yield relay


def stream_chunked(port: int, path: str, content_type: str) -> tuple[int, int]:
    """POST a 256 MiB chunked body until the server answers or hangs up: (status, bytes sent)."""
    intended = 256 * 1024 * 1024
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            while sent < intended:
                if select.select([connection], [], [], 0)[0]:
                    break  # the server has answered
                connection.sendall(frame)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection on us: also a refusal
        answer = bytearray()
        try:
            while data := connection.recv(65536):  # until the server closes: it must not wait for more
                answer += data
        except ConnectionResetError:
            pass
    return status_of(bytes(answer)), sent


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("server", "path", "content_type", "status"),
    [
        ("open_relay", "/mcp", "application/json", 413),  # read up to the cap, then refused
        ("guarded", "/mcp", "application/json", 401),  # refused before any of it is read
        ("guarded", "/token", FORM, 413),
        ("guarded", "/revoke", FORM, 413),
        ("guarded", "/consent", FORM, 413),
        ("guarded", "/register", "application/json", 413),
    ],
)
def test_streamed_oversized_body_is_cut_off(
    request: pytest.FixtureRequest, server: str, path: str, content_type: str, status: int
) -> None:
    """A chunked body with no length: refused, the connection closed long before the body would end."""
    relay: RelayProcess = request.getfixturevalue(server)
    answered, sent = stream_chunked(relay.port, path, content_type)
    assert answered == status
    assert sent < 32 * 1024 * 1024  # stopped near the cap, nowhere near the whole body
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{relay.port}\r\nConnection: close"
    assert status_of(raw_request(relay.port, head)) == 200


def test_body_under_the_cap_reaches_the_route(open_relay: RelayProcess) -> None:
    pad = "a" * (2 * INPUT_CAP)
    message = {
        **INITIALIZE,
        "params": {**INITIALIZE["params"], "capabilities": {"experimental": {"pad": {"x": pad}}}},
    }
    body = json.dumps(message).encode()
    assert INPUT_CAP * 2 < len(body) < body_cap("/mcp", Settings(max_input_bytes=INPUT_CAP))
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{open_relay.port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close"
    )
    answer = raw_request(open_relay.port, head, body)
    assert status_of(answer) == 200
    assert b'"serverInfo"' in answer


async def test_largest_input_still_runs(open_relay: RelayProcess) -> None:
    """stdin of MAX_INPUT_BYTES made of characters JSON escapes to two bytes each still fits the cap."""
    from mcp import Client

    stdin = '"\\\n' * (INPUT_CAP // 3)
    async with Client(open_relay.mcp_url, read_timeout_seconds=30) as client:
        result = await client.call_tool("shell_exec", {"command": "wc -c", "stdin": stdin})
    assert result.is_error is False, result.content
    assert result.structured_content is not None
    assert int(result.structured_content["output"].split()[0]) == len(stdin.encode())


def test_bad_allowed_host_stops_the_server_with_exit_2(tmp_path: Path) -> None:
    env = server_env(
        tmp_path,
        RELAY_SHELL_TRANSPORT="http",
        RELAY_SHELL_HTTP_ALLOWED_HOSTS="relay.example.org@evil.example",
    )
    for argv in ([RELAY], [RELAY, "--check-config"]):
        done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "RELAY_SHELL_HTTP_ALLOWED_HOSTS" in done.stderr


# -- the metrics token -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("", 401),
        (f"Basic {METRICS_TOKEN}", 401),
        (f"Bearer {METRICS_TOKEN}x", 401),
        (f"Bearer {METRICS_TOKEN[:-1]}", 401),
        ("Bearer", 401),
        (f"Bearer {METRICS_TOKEN}", 200),
        (f"bearer {METRICS_TOKEN}", 200),
    ],
)
def test_metrics_require_the_token_when_set(
    guarded: RelayProcess, authorization: str | None, status: int
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with guarded.http() as http:
        response = http.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "relay_shell_" not in response.text
    else:
        assert "relay_shell_audit_degraded" in response.text


def test_metrics_authorized_without_a_token_set() -> None:
    assert metrics_authorized(None, None)
    assert metrics_authorized(None, "Bearer anything")
    assert not metrics_authorized("t" * 16, None)
