"""The operator's OAuth commands, run as the real ``relay-shell`` beside a real server on the same state.

``--set-operator-passphrase`` (on a pipe and on a terminal, where nothing is echoed),
``--approve-login``, ``--list-grants`` and ``--revoke-grant``; public-client revocation at
``/revoke`` without a client secret; a bad operator hash stopping the server.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher, Type

from relay_shell.errors import ConfigError
from relay_shell.http.operator_auth import PassphraseVerifier
from tests.conftest import read_audit
from tests.http.consent_flow import PASSPHRASE, cheap_hash, consent_sync, parse_page
from tests.http.test_auth_e2e import REDIRECT, bearer_client, pkce
from tests.http.test_http_e2e import INITIALIZE, RELAY, RelayProcess, running_relay, server_env


@dataclass
class Served:
    relay: RelayProcess
    client_id: str
    env: dict[str, str]

    def cli(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RELAY, *argv],
            input=stdin,
            env=self.env,
            cwd=self.relay.state_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def authorize(self, scope: str) -> tuple[str, str]:
        """Start a login: the consent URL and the PKCE verifier."""
        verifier, challenge = pkce()
        with self.relay.http() as http:
            response = http.get(
                "/authorize",
                params={
                    "response_type": "code",
                    "client_id": self.client_id,
                    "redirect_uri": REDIRECT,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                    "scope": scope,
                },
            )
        assert response.status_code == 302
        return response.headers["location"], verifier

    def grant(self, scope: str, **consent: Any) -> dict[str, Any]:
        location, verifier = self.authorize(scope)
        with self.relay.http() as http:
            approved = consent_sync(http, location, scopes=scope.split(), **consent)
            assert approved.status_code == 303, approved.text
            code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "client_id": self.client_id,
                "code_verifier": verifier,
            }
            token = http.post("/token", data=form)
        assert token.status_code == 200, token.text
        return dict(token.json())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state_dir = tmp_path_factory.mktemp("relay-admin")
    env = {
        "RELAY_SHELL_AUTH_ENABLED": "true",
        "RELAY_SHELL_AUTH_ISSUER": "http://127.0.0.1:{port}",
        "RELAY_SHELL_AUTH_OPERATOR_HASH": cheap_hash(),
    }
    with running_relay(state_dir, **env) as relay:
        with relay.http() as http:
            registered = http.post(
                "/register",
                json={
                    "redirect_uris": [REDIRECT],
                    "token_endpoint_auth_method": "none",
                    "scope": "relay-shell:read relay-shell:operate relay-shell:admin",
                    "client_name": "admin-cli-test",
                },
            )
        assert registered.status_code == 201
        cli_env = server_env(
            state_dir, **{name: value.replace("{port}", str(relay.port)) for name, value in env.items()}
        )
        yield Served(relay, str(registered.json()["client_id"]), cli_env)


def bearer_status(relay: RelayProcess, token: str) -> int:
    """The status of an MCP initialize with ``token``: 200 while it is live, 401 once it is not."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    with relay.http() as http:
        return http.post("/mcp", json=INITIALIZE, headers=headers).status_code


# -- --set-operator-passphrase -----------------------------------------------------------------


def test_passphrase_hash_from_a_pipe(tmp_path: Path) -> None:
    done = subprocess.run(
        [RELAY, "--set-operator-passphrase"],
        input=PASSPHRASE + "\n",
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    name, _, quoted = line.partition("=")
    assert name == "RELAY_SHELL_AUTH_OPERATOR_HASH"
    assert quoted.startswith("'$argon2id$") and quoted.endswith("'")
    assert PasswordHasher().verify(quoted.strip("'"), PASSPHRASE)


@pytest.mark.parametrize("passphrase", ["", "short", "x" * 11])
def test_too_short_a_passphrase_is_refused(tmp_path: Path, passphrase: str) -> None:
    done = subprocess.run(
        [RELAY, "--set-operator-passphrase"],
        input=passphrase + "\n",
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "at least 12 characters" in done.stderr


def read_until(fd: int, marker: bytes, seen: bytearray, deadline: float) -> None:
    """Read the terminal into ``seen`` until ``marker`` shows up (bounded by ``deadline``)."""
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {bytes(seen)!r}"
        if select.select([fd], [], [], remaining)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            seen += chunk


def test_passphrase_on_a_terminal_is_asked_twice_and_never_echoed(tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: relay-shell on a terminal of its own
        os.execve(RELAY, [RELAY, "--set-operator-passphrase"], server_env(tmp_path))
    seen = bytearray()
    deadline = time.monotonic() + 60
    try:
        read_until(fd, b"Operator passphrase: ", seen, deadline)
        os.write(fd, PASSPHRASE.encode() + b"\n")
        read_until(fd, b"Again: ", seen, deadline)
        os.write(fd, PASSPHRASE.encode() + b"\n")
        read_until(fd, b"'\r\n", seen, deadline)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert PASSPHRASE.encode() not in seen  # no echo
    line = next(
        part for part in seen.decode().splitlines() if part.startswith("RELAY_SHELL_AUTH_OPERATOR_HASH=")
    )
    assert PasswordHasher().verify(line.split("=", 1)[1].strip("'"), PASSPHRASE)


BCRYPT_LIKE = "$2b$12$abcdefghijklmnopqrstuuK8Vj1cT0Yk6m7Jw0m4Jb2rW2v2Z6Xy"
ARGON2I = PasswordHasher(type=Type.I, time_cost=1, memory_cost=8, parallelism=1).hash("x")


@pytest.mark.parametrize("value", [BCRYPT_LIKE, ARGON2I, "not a hash", "$argon2id$v=19$m=8,t=1,p=1$broken"])
def test_only_an_argon2id_hash_is_accepted(value: str) -> None:
    with pytest.raises(ConfigError, match="RELAY_SHELL_AUTH_OPERATOR_HASH"):
        PassphraseVerifier(value)


def test_a_bad_operator_hash_stops_the_server_with_exit_2(tmp_path: Path) -> None:
    env = server_env(
        tmp_path,
        RELAY_SHELL_TRANSPORT="http",
        RELAY_SHELL_AUTH_ENABLED="true",
        RELAY_SHELL_AUTH_OPERATOR_HASH=ARGON2I,
    )
    for argv in ([RELAY], [RELAY, "--check-config"]):
        done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "RELAY_SHELL_AUTH_OPERATOR_HASH" in done.stderr


# -- --approve-login ---------------------------------------------------------------------------


def test_approve_login_prints_what_it_approves_and_a_code_that_works(served: Served) -> None:
    location, verifier = served.authorize("relay-shell:read relay-shell:admin")
    request_id = parse_qs(urlsplit(location).query)["request"][0]
    shown = served.cli("--approve-login", request_id)
    assert shown.returncode == 0, shown.stderr
    assert "admin-cli-test" in shown.stdout and served.client_id in shown.stdout
    assert "relay-shell:read relay-shell:admin" in shown.stdout and REDIRECT in shown.stdout
    code = shown.stdout.split("valid 5 minutes: ", 1)[1].split()[0]
    with served.relay.http() as http:
        approved = consent_sync(
            http, location, scopes=["relay-shell:read"], passphrase=None, approval_code=code
        )
    assert approved.status_code == 303
    records = [r for r in read_audit(served.relay.audit_path) if r["tool"] == "oauth_consent"]
    assert [r["event"] for r in records[-2:]] == ["approval_code_issued", "approved"]
    assert code not in served.relay.audit_path.read_text()
    assert verifier


@pytest.mark.parametrize("request_id", ["no-such-request", ""])
def test_approve_login_for_an_unknown_request_is_refused(served: Served, request_id: str) -> None:
    done = served.cli("--approve-login", request_id)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "no open login request" in done.stderr


def test_approve_login_without_state_is_refused(tmp_path: Path) -> None:
    env = server_env(tmp_path, RELAY_SHELL_AUTH_ENABLED="true")
    done = subprocess.run(
        [RELAY, "--approve-login", "abc"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "no OAuth state" in done.stderr


# -- --list-grants and --revoke-grant ----------------------------------------------------------


async def test_list_and_revoke_grants(served: Served) -> None:
    first = served.grant("relay-shell:read")
    second = served.grant("relay-shell:operate")
    async with bearer_client(served.relay, second["access_token"]) as client:
        info = await client.call_tool("server_info", {})
    assert info.is_error is False
    listed = served.cli("--list-grants", "--json")
    assert listed.returncode == 0, listed.stderr
    grants = {row["scopes"][0]: row for row in json.loads(listed.stdout)["grants"] if len(row["scopes"]) == 1}
    operate = grants["relay-shell:operate"]
    assert operate["client_id"] == served.client_id and operate["method"] == "passphrase"
    assert (operate["access_tokens"], operate["refresh_tokens"]) == (1, 1)
    audit = read_audit(served.relay.audit_path)
    assert operate["grant"] in {record["principal"] for record in audit if record["tool"] == "server_info"}
    table = served.cli("--list-grants")
    assert operate["grant"] in table.stdout and "relay-shell:operate" in table.stdout

    revoked = served.cli("--revoke-grant", operate["grant"])
    assert revoked.returncode == 0, revoked.stderr
    assert bearer_status(served.relay, second["access_token"]) == 401
    with served.relay.http() as http:
        refresh = http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": second["refresh_token"],
                "client_id": served.client_id,
            },
        )
    assert refresh.status_code == 400
    assert bearer_status(served.relay, first["access_token"]) == 200  # the other grant is untouched
    after = json.loads(served.cli("--list-grants", "--json").stdout)["grants"]
    assert operate["grant"] not in [row["grant"] for row in after]
    last = read_audit(served.relay.audit_path)[-1]
    assert (last["tool"], last["event"], last["principal"], last["args"]["via"]) == (
        "oauth_revoke",
        "revoked",
        operate["grant"],
        "operator",
    )
    for unknown in (operate["grant"], ""):
        again = served.cli("--revoke-grant", unknown)
        assert again.returncode == 2
        assert "no live grant" in again.stderr


# -- public clients revoke their own tokens ----------------------------------------------------


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_public_client_revokes_without_a_secret(served: Served, hint: str | None) -> None:
    tokens = served.grant("relay-shell:read")
    assert bearer_status(served.relay, tokens["access_token"]) == 200
    which = tokens["refresh_token"] if hint == "refresh_token" else tokens["access_token"]
    form = {"token": which, "client_id": served.client_id}  # no client_secret field at all
    if hint is not None:
        form["token_type_hint"] = hint
    with served.relay.http() as http:
        response = http.post("/revoke", data=form)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert bearer_status(served.relay, tokens["access_token"]) == 401
        refresh = http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": served.client_id,
            },
        )
        assert refresh.status_code == 400


def test_revoke_needs_a_known_client_and_a_token(served: Served) -> None:
    tokens = served.grant("relay-shell:read")
    with served.relay.http() as http:
        assert http.post("/revoke", data={"token": tokens["access_token"]}).status_code == 401
        assert (
            http.post("/revoke", data={"token": tokens["access_token"], "client_id": "someone"}).status_code
            == 401
        )
        assert http.post("/revoke", data={"client_id": served.client_id}).status_code == 400
        unknown = http.post("/revoke", data={"token": "not-a-token", "client_id": served.client_id})
        assert unknown.status_code == 200  # RFC 7009: unknown tokens are answered like revoked ones
    assert bearer_status(served.relay, tokens["access_token"]) == 200


def test_consent_page_answers_unknown_requests_with_404(served: Served) -> None:
    with served.relay.http() as http:
        response = http.get("/consent", params={"request": "nope"})
    assert response.status_code == 404
    assert parse_page(response.text).hidden == {}  # no form for a request that does not exist
