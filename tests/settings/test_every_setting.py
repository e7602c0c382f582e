"""Every setting of ``.env.example`` reaches behaviour: one row per variable.

A row gives its variable a non-default value (through the environment, as an operator
would), builds what the server builds from it, and observes the effect through the same
surfaces a user has: tool results, the audit file, HTTP answers, the start-up line, a real
``sshd``. Each row also runs with its variable left out, and there the probe must fail: a
setting the code ignored (a hard-coded default) would make that second run pass.

Settings added this wave whose behaviour lands on other branches are listed in
``IMPLEMENTED_ELSEWHERE`` until their row can be written; a variable of ``.env.example``
with neither a row nor an entry there fails the table.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from relay_shell.config import ENV_PREFIX, load_settings
from relay_shell.config_env import SettingsInvalid
from tests.audit_peers import Journald, Rsyslog, journald, rsyslog
from tests.components import require_sshd
from tests.http.consent_flow import cheap_hash
from tests.settings import probes_audit as audit
from tests.settings import probes_http as web
from tests.settings import probes_local as local
from tests.settings import probes_remote as remote
from tests.settings.harness import Harness, Peers, base_env, free_port
from tests.sshd import ClientKey, SshdInstance, start_sshd

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"

Probe = Callable[[Harness], Awaitable[None]]


@dataclass(frozen=True)
class Row:
    """``RELAY_SHELL_<variable>=<value>`` (plus ``support``) and the probe that sees its effect.

    Values are ``str.format`` templates over ``tmp`` (the row's temp dir), ``port`` (a free
    loopback port), ``jwks_url`` and ``blocker`` (a regular file, so ``{blocker}/x`` cannot be
    created). ``needs`` names the peers the probe talks to (``sshd``, ``jwks``, ``black_hole``).
    Without the variable the probe must fail with ``without`` (an assertion of the probe, or
    the load's refusal where the variable is required); ``baseline=False`` skips that run, for
    the one row where it would bind a fixed port.
    """

    variable: str
    value: str
    probe: Probe
    support: Mapping[str, str] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    baseline: bool = True
    without: type[Exception] = AssertionError


SSHD = frozenset({"sshd"})
BUILTIN = {"AUTH_ENABLED": "true", "AUTH_OPERATOR_HASH": cheap_hash()}
RECORDING = {"SESSION_RECORD_DIR": "{tmp}/recordings"}
JWT = {"AUTH_ENABLED": "true", "AUTH_MODE": "jwt", "AUTH_JWKS_URL": "{jwks_url}"}

ROWS: tuple[Row, ...] = (
    # transport
    Row("TRANSPORT", "http", web.transport, {"HTTP_PORT": "{port}"}),
    Row("HTTP_HOST", "127.0.0.2", web.http_host, {"TRANSPORT": "http", "HTTP_PORT": "{port}"}),
    Row("HTTP_PORT", "{port}", web.http_port, {"TRANSPORT": "http"}, baseline=False),
    Row("HTTP_ALLOWED_HOSTS", "relay.example.com", web.http_allowed_hosts),
    # bounds
    Row("MAX_OUTPUT", "2048", local.max_output),
    Row("MAX_OUTPUT_HARD", "4096", local.max_output_hard, {"MAX_OUTPUT": "2048"}),
    Row("DEFAULT_TIMEOUT", "7", local.default_timeout),
    Row("MAX_TIMEOUT", "5", local.max_timeout, {"DEFAULT_TIMEOUT": "5"}),
    # sessions
    Row("MAX_SESSIONS", "1", local.max_sessions),
    Row("SESSION_IDLE_TIMEOUT", "0.3", local.session_idle_timeout),
    Row("SESSION_MAX_LIFETIME", "0.3", local.session_max_lifetime),
    Row("SESSION_BUFFER_BYTES", "4096", local.session_buffer_bytes),
    # jobs
    Row("YIELD_AFTER", "0.5", local.yield_after),
    Row("MAX_JOBS", "1", local.max_jobs),
    Row("JOB_RETENTION", "0.3", local.job_retention),
    # policy
    Row("POLICY_MODE", "readonly", local.policy_mode),
    Row("POLICY_DENY", "relay-forbidden", local.policy_deny),
    Row("POLICY_ALLOW", "kill -9 99999999", local.policy_allow, {"POLICY_MODE": "guarded"}),
    Row("CONFIRM_TIER3", "token", local.confirm_tier3),
    Row("POLICY_ALLOW_PROTECTED", "true", local.policy_allow_protected),
    Row("ENV_FILE", "{tmp}/relay.env", local.env_file),
    # audit
    Row("AUDIT_PATH", "{tmp}/elsewhere/audit.jsonl", local.audit_path),
    Row("AUDIT_FORMAT", "cef", local.audit_format),
    Row("AUDIT_STDERR", "true", local.audit_stderr),
    Row("AUDIT_CHAIN", "false", local.audit_chain),
    Row("AUDIT_REQUIRED", "false", local.audit_required, {"AUDIT_PATH": "{blocker}/audit.jsonl"}),
    Row("AUDIT_ANCHOR", "journald:{journal_socket}", audit.audit_anchor, needs=frozenset({"journal"})),
    Row(
        "AUDIT_ANCHOR_INTERVAL",
        "0.05",
        audit.audit_anchor_interval,
        {"AUDIT_ANCHOR": "journald:{journal_socket}"},
        frozenset({"journal"}),
    ),
    Row(
        "AUDIT_SHIP",
        "syslog+tcp://127.0.0.1:{collector_port}",
        audit.audit_ship,
        needs=frozenset({"collector"}),
    ),
    Row(
        "AUDIT_TLS_CA",
        "{tls_ca}",
        audit.audit_tls_ca,
        {"AUDIT_SHIP": "syslog+tls://127.0.0.1:{tls_collector_port}"},
        frozenset({"tls_collector"}),
    ),
    # ssh
    Row("SSH_CONFIG", "{tmp}/custom_ssh_config", remote.ssh_config),
    Row("INVENTORY", "{tmp}/inventory.json", remote.inventory),
    Row("SSH_KNOWN_HOSTS", "strict", remote.ssh_known_hosts, needs=SSHD),
    Row("SSH_KNOWN_HOSTS_FILE", "{tmp}/custom_known_hosts", remote.ssh_known_hosts_file, needs=SSHD),
    Row("SSH_CONNECT_TIMEOUT", "1", remote.ssh_connect_timeout, needs=frozenset({"black_hole"})),
    Row("SSH_KEEPALIVE", "0.3", remote.ssh_keepalive, needs=SSHD),
    Row("SSH_IDLE_TIMEOUT", "0.5", remote.ssh_idle_timeout, needs=SSHD),
    Row("MAX_CONNS", "1", remote.max_conns, needs=SSHD),
    Row("MAX_FORWARDS", "1", remote.max_forwards, needs=SSHD),
    Row("FANOUT_MAX_HOSTS", "2", remote.fanout_max_hosts),
    Row("FANOUT_MAX_CONCURRENCY", "2", remote.fanout_max_concurrency),
    Row("FANOUT_HISTORY", "1", remote.fanout_history),
    # OAuth (HTTP)
    Row("AUTH_ENABLED", "true", web.auth_enabled),
    Row(
        "AUTH_MODE",
        "jwt",
        web.auth_mode,
        {"AUTH_ENABLED": "true", "AUTH_JWKS_URL": "{jwks_url}"},
        frozenset({"jwks"}),
    ),
    Row("AUTH_ISSUER", "https://relay.example.com:9443", web.auth_issuer, {"AUTH_ENABLED": "true"}),
    Row("AUTH_STATE_DIR", "{tmp}/custom-oauth", web.auth_state_dir, {"AUTH_ENABLED": "true"}),
    Row("AUTH_ACCESS_TTL", "45", web.auth_access_ttl, BUILTIN),
    Row("AUTH_REFRESH_TTL", "7200", web.auth_refresh_ttl, BUILTIN),
    Row("AUTH_CODE_TTL", "17", web.auth_code_ttl, BUILTIN),
    Row("AUTH_OPERATOR_HASH", cheap_hash(), web.auth_operator_hash, {"AUTH_ENABLED": "true"}),
    Row("AUTH_MAX_SCOPE", "relay-shell:read", web.auth_max_scope, {"AUTH_ENABLED": "true"}),
    Row("METRICS_TOKEN", web.METRICS_TOKEN, web.metrics_token),
    Row("MAX_INPUT_BYTES", "2048", local.max_input_bytes),
    Row("CONTAINMENT", "subreaper", local.containment),
    Row("SESSION_RECORD_DIR", "{tmp}/recordings", local.session_record_dir),
    Row("SESSION_RECORD_INPUT", "true", local.session_record_input, RECORDING),
    Row("SESSION_RECORD_MAX_BYTES", "4096", local.session_record_max_bytes, RECORDING),
    Row(
        "AUTH_JWKS_URL",
        "{jwks_url}",
        web.auth_jwks_url,
        {"AUTH_ENABLED": "true", "AUTH_MODE": "jwt"},
        frozenset({"jwks"}),
        without=SettingsInvalid,  # jwt mode does not start without it
    ),
    Row("AUTH_JWT_ISSUER", "https://idp.example", web.auth_jwt_issuer, JWT, frozenset({"jwks"})),
    Row("AUTH_AUDIENCE", "api://relay-shell", web.auth_audience, JWT, frozenset({"jwks"})),
    Row("AUTH_JWT_ALGORITHMS", "ES256", web.auth_jwt_algorithms, JWT, frozenset({"jwks"})),
)

# Settings added this wave whose behaviour is being built on other branches. When one lands,
# write its row above and delete it here (the table fails while a variable is in both).
IMPLEMENTED_ELSEWHERE: frozenset[str] = frozenset()


def example_variables() -> set[str]:
    """The variables of ``.env.example``, without the prefix."""
    found = re.findall(rf"^{ENV_PREFIX}([A-Z0-9_]+)=", EXAMPLE.read_text(), flags=re.MULTILINE)
    return set(found)


def test_every_variable_has_a_row_or_is_implemented_elsewhere() -> None:
    variables = example_variables()
    rows = [row.variable for row in ROWS]
    assert len(rows) == len(set(rows)), "a variable has two rows"
    assert not set(rows) & IMPLEMENTED_ELSEWHERE, "a row exists: remove it from IMPLEMENTED_ELSEWHERE"
    assert set(rows) <= variables, f"rows for unknown variables: {sorted(set(rows) - variables)}"
    assert variables >= IMPLEMENTED_ELSEWHERE, f"stale entries: {sorted(IMPLEMENTED_ELSEWHERE - variables)}"
    missing = variables - set(rows) - IMPLEMENTED_ELSEWHERE
    assert not missing, f"settings no row shows reaching behaviour: {sorted(missing)}"


# -- peers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd_peer() -> Iterator[tuple[SshdInstance, ClientKey]]:
    require_sshd()
    key = ClientKey.create()
    instance = start_sshd(key, extra_config=("LogLevel DEBUG1",))  # keepalive requests are logged
    yield instance, key
    instance.remove()
    key.remove()


@pytest.fixture(scope="module")
def jwks_peer() -> Iterator[tuple[str, dict[str, tuple[str, Any]]]]:
    """An identity provider's JWKS on a loopback port: one RS256 and one ES256 key."""
    signers: dict[str, tuple[str, Any]] = {
        "RS256": ("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ES256": ("ec-1", ec.generate_private_key(ec.SECP256R1())),
    }
    keys = [
        {**RSAAlgorithm.to_jwk(signers["RS256"][1].public_key(), as_dict=True), "kid": "rsa-1", "use": "sig"},
        {**ECAlgorithm.to_jwk(signers["ES256"][1].public_key(), as_dict=True), "kid": "ec-1", "use": "sig"},
    ]
    body = json.dumps({"keys": keys}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", signers
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def journal_peer() -> Iterator[Journald]:
    """A journald in a namespace of its own (started as root here)."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED: starting a journald namespace needs root; the audit anchor rows read it")
    with journald() as started:
        yield started


@pytest.fixture(scope="module")
def collector_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    if os.geteuid() != 0:
        pytest.skip("SKIPPED: the rsyslog collector of the shipping rows is started as root here")
    with rsyslog(tmp_path_factory.mktemp("collector")) as started:
        yield started


@pytest.fixture(scope="module")
def tls_collector_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    if os.geteuid() != 0:
        pytest.skip("SKIPPED: the rsyslog collector of the TLS row is started as root here")
    with rsyslog(tmp_path_factory.mktemp("tls-collector"), tls=True) as started:
        yield started


@pytest.fixture(scope="module")
def black_hole_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def peers_for(row: Row, request: pytest.FixtureRequest) -> Peers:
    peers = Peers()
    if "sshd" in row.needs:
        peers.sshd, peers.key = request.getfixturevalue("sshd_peer")
    if "jwks" in row.needs:
        peers.jwks_url, peers.signers = request.getfixturevalue("jwks_peer")
    if "black_hole" in row.needs:
        peers.black_hole_port = request.getfixturevalue("black_hole_port")
    if "journal" in row.needs:
        peers.journal = request.getfixturevalue("journal_peer")
    if "collector" in row.needs:
        peers.collector = request.getfixturevalue("collector_peer")
    if "tls_collector" in row.needs:
        peers.tls_collector = request.getfixturevalue("tls_collector_peer")
    return peers


# -- running a row ------------------------------------------------------------------------


def write_files(tmp: Path) -> None:
    """The files some rows point their variable at."""
    (tmp / "not-a-dir").write_text("a regular file: nothing can be created below it\n")
    (tmp / "custom_ssh_config").write_text("Host relay-from-config\n  HostName 127.0.0.8\n  Port 2201\n")
    inventory = {"relay-from-inventory": {"hostname": "127.0.0.9", "port": 2202, "user": "relaytest"}}
    (tmp / "inventory.json").write_text(json.dumps(inventory))


def harness(
    row: Row,
    *,
    with_value: bool,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    peers: Peers,
) -> Harness:
    """Environment for the row (its variable set or not), loaded as the server would load it."""
    monkeypatch.chdir(tmp)
    write_files(tmp)
    values = {
        "tmp": str(tmp),
        "port": str(free_port()),
        "jwks_url": peers.jwks_url or "",
        "blocker": str(tmp / "not-a-dir"),
        "journal_socket": str(peers.journal.socket) if peers.journal else "",
        "collector_port": str(peers.collector.port) if peers.collector else "",
        "tls_collector_port": str(peers.tls_collector.port) if peers.tls_collector else "",
        "tls_ca": str(peers.tls_collector.tls_ca) if peers.tls_collector else "",
    }
    env = base_env(tmp)
    env.update({ENV_PREFIX + name: value.format(**values) for name, value in row.support.items()})
    if with_value:
        env[ENV_PREFIX + row.variable] = row.value.format(**values)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Harness(tmp, env, load_settings(), peers, capfd, values)


@pytest.mark.parametrize("row", ROWS, ids=[row.variable for row in ROWS])
async def test_setting_reaches_behaviour(
    row: Row,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    peers = peers_for(row, request)
    await row.probe(
        harness(row, with_value=True, tmp=tmp_path, monkeypatch=monkeypatch, capfd=capfd, peers=peers)
    )


BASELINE_ROWS = [row for row in ROWS if row.baseline]


@pytest.mark.parametrize("row", BASELINE_ROWS, ids=[row.variable for row in BASELINE_ROWS])
async def test_probe_fails_without_the_setting(
    row: Row,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    """The probe tells the row's value from the default: without the variable it must fail."""
    peers = peers_for(row, request)
    with pytest.raises(Exception) as failed:
        await row.probe(
            harness(row, with_value=False, tmp=tmp_path, monkeypatch=monkeypatch, capfd=capfd, peers=peers)
        )
    causes = leaves(failed.value)
    assert all(isinstance(cause, row.without) for cause in causes), causes


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``error`` itself."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]
