"""Fleet semantics through an MCP client against 12 real OpenSSH sshd, one per loopback address.

Host patterns, batches, the failure budget, canaries, retrying the failed, multi-host
uploads, the bounded text of a 200-host fan-out, keyscan by alias and pooled ssh_check.
Each sshd logs at LogLevel VERBOSE, so a test can tell from the server's own log whether a
host was contacted at all ("Connection from ..." per accepted TCP connection). Marker files
written by the remote command (named after the address the client connected to) show on
which hosts a command ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.conftest import connected, read_audit, sc
from tests.sshd import (
    TEST_USER,
    ClientKey,
    SshdInstance,
    ensure_test_user,
    free_port,
    start_many,
    start_sshd,
    stop_all,
)

pytestmark = pytest.mark.usefixtures("sshd_installed")

VERBOSE = ("LogLevel VERBOSE",)
SECOND_USER = "relayfleet"  # web1 logs in as another non-root user: its own home, its own permissions
WEB = [f"web{number}" for number in range(1, 9)]
DB = [f"db{number}" for number in range(1, 5)]
ALIASES = [*WEB, *DB]
TAGS = {
    **{name: ["web", "prod"] for name in WEB[:4]},
    **{name: ["web", "staging"] for name in WEB[4:]},
    **{name: ["db", "prod"] for name in DB[:2]},
    **{name: ["db"] for name in DB[2:]},
}
SERVER_ADDRESS = '"$(echo $SSH_CONNECTION | cut -d" " -f3)"'  # the address the client connected to


@dataclass
class Fleet:
    hosts: dict[str, SshdInstance]  # alias -> its sshd

    def address(self, alias: str) -> str:
        return self.hosts[alias].address

    def alias_of(self, address: str) -> str:
        return next(alias for alias, instance in self.hosts.items() if instance.address == address)

    def log_marks(self) -> dict[str, int]:
        """Where each host's sshd log ends now."""
        return {alias: instance.log_path.stat().st_size for alias, instance in self.hosts.items()}

    def contacted_since(self, marks: dict[str, int]) -> set[str]:
        """Hosts whose sshd accepted a TCP connection since ``marks``."""
        contacted = set()
        for alias, instance in self.hosts.items():
            with instance.log_path.open("rb") as log:
                log.seek(marks[alias])
                if b"Connection from " in log.read():
                    contacted.add(alias)
        return contacted


@pytest.fixture(scope="module")
def fleet(key: ClientKey) -> Iterator[Fleet]:
    ensure_test_user(SECOND_USER)
    first = start_sshd(key, address="127.0.0.70", extra_config=VERBOSE, user=SECOND_USER)
    try:
        others = start_many(key, 11, first_address="127.0.0.71", extra_config=VERBOSE)
    except BaseException:
        first.remove()
        raise
    instances = [first, *others]
    yield Fleet(dict(zip(ALIASES, instances, strict=True)))
    stop_all(instances)


@pytest.fixture
def markers() -> Iterator[Path]:
    """A directory every test user can write marker files into."""
    directory = Path(tempfile.mkdtemp(prefix="relay-fleet-markers-"))
    directory.chmod(0o1777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def marked(directory: Path, fleet: Fleet) -> set[str]:
    return {fleet.alias_of(path.name) for path in directory.iterdir()}


def mark_each(directory: Path, fleet: Fleet, aliases: list[str]) -> str:
    """A command that marks the host it runs on, with a literal path per host.

    ``touch DIR/$(...)`` reads as opaque (a command substitution among a write's arguments),
    which a deny list or guarded mode refuses; a ``case`` over the addresses is not opaque.
    """
    branches = " ".join(
        f"{fleet.address(alias)}) touch {directory}/{fleet.address(alias)};;" for alias in aliases
    )
    return f"case {SERVER_ADDRESS} in {branches} esac"


def inventory_entries(fleet: Fleet, key: ClientKey) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for alias, instance in fleet.hosts.items():
        entries[alias] = {
            "hostname": instance.address, "port": instance.port, "user": instance.user,
            "identity_file": str(key.private_path), "tags": TAGS[alias],
        }  # fmt: skip
    entries["dead1"] = {
        "hostname": "127.0.0.1", "port": free_port(), "user": TEST_USER,
        "identity_file": str(key.private_path), "tags": ["ghost"],
    }  # fmt: skip
    return entries


@pytest.fixture
def fleet_server(
    make_settings: Callable[..., Settings], tmp_path: Path, fleet: Fleet, key: ClientKey
) -> Callable[..., RelayServer]:
    servers: list[RelayServer] = []

    def factory(extra: dict[str, dict[str, Any]] | None = None, **overrides: Any) -> RelayServer:
        inventory = tmp_path / f"inventory-{len(servers)}.json"
        inventory.write_text(json.dumps({**inventory_entries(fleet, key), **(extra or {})}))
        overrides.setdefault("fanout_max_concurrency", 256)
        server = build_server(make_settings(inventory=inventory, **overrides))
        servers.append(server)
        return server

    return factory


@pytest.fixture
async def client(fleet_server: Callable[..., RelayServer]) -> AsyncIterator[Client]:
    server = fleet_server()
    async with connected(server) as mcp_client:
        yield mcp_client
    await server.services.aclose()


def statuses(result: Any) -> dict[str, str]:
    return {row["host"]: row["status"] for row in sc(result)["results"]}


# --- host patterns -------------------------------------------------------------------------------


async def test_patterns_select_exactly_and_run_exactly_there(
    client: Client, fleet: Fleet, markers: Path
) -> None:
    listed = sc(await client.call_tool("ssh_hosts", {"pattern": "@web,&@prod"}))
    assert [row["alias"] for row in listed["hosts"]] == ["web1", "web2", "web3", "web4"]
    result = await client.call_tool(
        "ssh_fanout", {"command": f"touch {markers}/{SERVER_ADDRESS}", "hosts": "@web,&@prod"}
    )
    assert result.is_error is False
    assert list(statuses(result)) == ["web1", "web2", "web3", "web4"]
    assert marked(markers, fleet) == {"web1", "web2", "web3", "web4"}

    excluded = await client.call_tool("ssh_fanout", {"command": "true", "hosts": "web*,!web3"})
    assert list(statuses(excluded)) == ["web1", "web2", "web4", "web5", "web6", "web7", "web8"]
    assert set(statuses(excluded).values()) == {"ok"}


@pytest.mark.parametrize(
    ("tool", "arguments", "argument", "term"),
    [
        ("ssh_fanout", {"command": "true", "hosts": "nomatch*"}, "hosts", "'nomatch*'"),
        ("ssh_fanout", {"command": "true", "hosts": "@web,&@nosuchtag"}, "hosts", "'&@nosuchtag'"),
        ("ssh_check", {"hosts": "@web,!@prod,!@staging"}, "hosts", "'!@staging'"),
        ("ssh_hosts", {"pattern": "web9"}, "pattern", "'web9'"),
        ("ssh_keyscan", {"hosts": "@nosuchtag"}, "hosts", "'@nosuchtag'"),
        (
            "ssh_upload",
            {"hosts": "db*,&@web", "local_path": "/etc/passwd", "remote_path": "x"},
            "hosts",
            "'&@web'",
        ),
    ],
)
async def test_a_pattern_that_selects_nothing_is_invalid_naming_the_term(
    client: Client, fleet: Fleet, tool: str, arguments: dict[str, Any], argument: str, term: str
) -> None:
    marks = fleet.log_marks()
    result = await client.call_tool(tool, arguments)
    assert result.is_error is True
    error = sc(result)["error"]
    assert (error["kind"], error["argument"]) == ("invalid", argument)
    assert term in error["message"]
    assert fleet.contacted_since(marks) == set()


# --- rolling ---------------------------------------------------------------------------------------


async def test_batches_run_one_after_the_other(client: Client) -> None:
    result = await client.call_tool(
        "ssh_fanout",
        {"command": "date +%s%N; sleep 0.3; date +%s%N", "hosts": "@web,@db", "batch": 4, "concurrency": 16},
    )
    rows = sc(result)["results"]
    assert [row["status"] for row in rows] == ["ok"] * 12
    assert [row["batch"] for row in rows] == [1] * 4 + [2] * 4 + [3] * 4
    times = {row["host"]: [int(line) for line in row["output"].split()] for row in rows}
    for batch in (1, 2):
        ended = max(times[row["host"]][1] for row in rows if row["batch"] == batch)
        next_started = min(times[row["host"]][0] for row in rows if row["batch"] == batch + 1)
        assert ended < next_started, f"batch {batch + 1} started before batch {batch} ended"
    assert sc(result)["recap"] == {"ok": 12}


async def test_max_fail_skips_the_rest_and_nothing_runs_on_them(
    client: Client, fleet: Fleet, markers: Path, settings: Settings
) -> None:
    failing = " | ".join(fleet.address(alias) for alias in ("web1", "web2", "web3"))
    command = (
        f"touch {markers}/{SERVER_ADDRESS}; case {SERVER_ADDRESS} in {failing}) exit 1;; esac; echo fine"
    )
    marks = fleet.log_marks()
    result = await client.call_tool(
        "ssh_fanout", {"command": command, "hosts": "@web,@db", "max_fail": 2, "concurrency": 1}
    )
    assert result.is_error is False
    data = sc(result)
    assert [row["status"] for row in data["results"]] == ["failed"] * 3 + ["skipped"] * 9
    assert data["recap"]["aborted"] is True
    assert "more than max_fail 2" in data["recap"]["reason"]
    assert (data["recap"]["failed"], data["recap"]["skipped"]) == (3, 9)
    assert marked(markers, fleet) == {"web1", "web2", "web3"}
    assert fleet.contacted_since(marks) == {"web1", "web2", "web3"}
    text = result.content[0].text
    assert text.startswith("ABORTED: ")
    record = read_audit(settings.audit_path)[-1]
    assert record["tool"] == "ssh_fanout"
    assert (record["aborted"], record["fanout_id"]) == (True, data["fanout_id"])
    assert record["skipped"] == ALIASES[3:]
    assert record["started"] == ALIASES[:3]
    assert record["rollout"] == {"batch": None, "max_fail": 2, "canary": 0}
    assert "max_fail" in record["abort_reason"]


async def test_a_failing_canary_skips_every_other_host(
    client: Client, fleet: Fleet, markers: Path, settings: Settings
) -> None:
    command = (
        f"touch {markers}/{SERVER_ADDRESS}; case {SERVER_ADDRESS} in {fleet.address('web1')}) exit 3;; esac"
    )
    marks = fleet.log_marks()
    result = await client.call_tool(
        "ssh_fanout", {"command": command, "hosts": "@web,@db", "canary": 1, "batch": 4}
    )
    data = sc(result)
    assert [(row["host"], row["status"], row["batch"]) for row in data["results"][:2]] == [
        ("web1", "failed", 0), ("web2", "skipped", 1),
    ]  # fmt: skip
    assert [row["status"] for row in data["results"][1:]] == ["skipped"] * 11
    assert data["recap"]["aborted"] is True
    assert data["recap"]["reason"] == "canary web1 ended failed"
    assert marked(markers, fleet) == {"web1"}
    assert fleet.contacted_since(marks) == {"web1"}
    record = read_audit(settings.audit_path)[-1]
    assert (record["batches"], record["started"], record["aborted"]) == ([1, 4, 4, 3], ["web1"], True)
    assert record["rollout"] == {"batch": 4, "max_fail": None, "canary": 1}
    assert record["abort_reason"] == "canary web1 ended failed"


async def test_retrying_the_failed_selects_failed_timed_out_and_unreachable_only(
    fleet_server: Callable[..., RelayServer], fleet: Fleet, markers: Path
) -> None:
    server = fleet_server(policy_deny=rf"{fleet.address('db1')}\b")
    command = (
        f"case {SERVER_ADDRESS} in {fleet.address('web2')}) exit 1;; {fleet.address('web5')}) sleep 30;; esac; "
        "echo fine"
    )
    async with connected(server) as client:
        first = await client.call_tool(
            "ssh_fanout", {"command": command, "hosts": "@web,dead1,@db", "timeout": 2}
        )
        first_statuses = statuses(first)
        assert {host: status for host, status in first_statuses.items() if status != "ok"} == {
            "web2": "failed", "web5": "timeout", "dead1": "unreachable", "db1": "denied",
        }  # fmt: skip
        fanout_id = sc(first)["fanout_id"]
        assert fanout_id.startswith("fo-")
        assert len(fanout_id) == 15

        retry = await client.call_tool(
            "ssh_fanout", {"command": mark_each(markers, fleet, WEB), "hosts": f"failed:{fanout_id}"}
        )
        assert list(statuses(retry)) == ["web2", "web5", "dead1"]
        assert marked(markers, fleet) == {"web2", "web5"}  # dead1 is still unreachable

        succeeded = sc(await client.call_tool("ssh_hosts", {"pattern": f"ok:{fanout_id}"}))
        assert [row["alias"] for row in succeeded["hosts"]] == ["web1", "web3", "web4", "web6", "web7", "web8",
                                                                "db2", "db3", "db4"]  # fmt: skip
        unknown = await client.call_tool("ssh_fanout", {"command": "true", "hosts": "failed:fo-000000000000"})
        assert sc(unknown)["error"]["argument"] == "hosts"
    await server.services.aclose()


async def test_guarded_mode_allows_commands_not_hosts(
    fleet_server: Callable[..., RelayServer], fleet: Fleet, markers: Path
) -> None:
    """In guarded mode the allow list must match each tier-2 command in full: an allow list
    that names hosts admits no tier-2 command on any of them (it would also admit any text
    that merely mentions the host)."""
    chmod = f"chmod 644 {markers}/none"
    command = f"{chmod} 2>/dev/null; {mark_each(markers, fleet, ['web2', 'web3'])}"  # chmod: tier 2
    hosts = "web1,web2,web3,web4"
    allowed = "|".join(fleet.address(alias).replace(".", r"\.") for alias in ("web2", "web3"))
    marks = fleet.log_marks()
    server = fleet_server(policy_mode="guarded", policy_allow=rf"({allowed})\b")
    async with connected(server) as client:
        refused = await client.call_tool("ssh_fanout", {"command": command, "hosts": hosts})
    await server.services.aclose()
    error = sc(refused)["error"]
    assert (refused.is_error, error["kind"], error["reason"], error["subcommand"]) == (
        True, "denied", "mode:guarded", chmod,
    )  # fmt: skip
    assert sc(refused)["tier"] == 2
    assert marked(markers, fleet) == set()
    assert fleet.contacted_since(marks) == set()


async def test_guarded_mode_admits_each_host_on_its_own(
    fleet_server: Callable[..., RelayServer], fleet: Fleet, markers: Path
) -> None:
    """The allowed tier-2 command runs only on the hosts each host's own decision admits."""
    chmod = f"chmod 644 {markers}/none"
    command = f"{chmod} 2>/dev/null; {mark_each(markers, fleet, ['web2', 'web3'])}"  # chmod: tier 2
    refused_hosts = "|".join(fleet.address(alias).replace(".", r"\.") for alias in ("web1", "web4"))
    marks = fleet.log_marks()
    server = fleet_server(
        policy_mode="guarded", policy_allow=re.escape(chmod), policy_deny=rf"({refused_hosts})\b"
    )
    async with connected(server) as client:
        result = await client.call_tool("ssh_fanout", {"command": command, "hosts": "web1,web2,web3,web4"})
    await server.services.aclose()
    assert statuses(result) == {"web1": "denied", "web2": "ok", "web3": "ok", "web4": "denied"}
    assert "RELAY_SHELL_POLICY_DENY" in sc(result)["results"][0]["reason"]
    assert sc(result)["tier"] == 2
    assert marked(markers, fleet) == {"web2", "web3"}
    assert not fleet.contacted_since(marks) & {"web1", "web4"}


# --- uploads ---------------------------------------------------------------------------------------


@pytest.fixture
def drop_directories(fleet: Fleet) -> Iterator[str]:
    """``drop-<id>`` in each test user's home: writable by relaytest, root-owned for SECOND_USER."""
    name = f"drop-{uuid.uuid4().hex[:12]}"
    created = []
    for user in (TEST_USER, SECOND_USER):
        account = pwd.getpwnam(user)
        directory = Path(account.pw_dir) / name
        directory.mkdir(mode=0o755)
        if user == TEST_USER:
            os.chown(directory, account.pw_uid, account.pw_gid)
        created.append(directory)
    yield name
    for directory in created:
        shutil.rmtree(directory, ignore_errors=True)


async def test_upload_to_a_tag_with_max_fail_zero_stops_after_the_failing_batch(
    client: Client, fleet: Fleet, drop_directories: str, tmp_path: Path, settings: Settings
) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_bytes(b"fleet payload\n" * 100)
    marks = fleet.log_marks()
    result = await client.call_tool(
        "ssh_upload",
        {"hosts": "@web", "local_path": str(payload), "remote_path": f"{drop_directories}/", "batch": 4,
         "max_fail": 0},
    )  # fmt: skip
    assert result.is_error is False
    data = sc(result)
    rows = {row["host"]: row for row in data["results"]}
    assert rows["web1"]["status"] == "failed"  # its drop directory belongs to root
    assert "permission denied" in rows["web1"]["reason"]
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    for alias in ("web2", "web3", "web4"):  # the rest of the failing batch may finish
        assert rows[alias]["status"] in ("ok", "skipped")
        if rows[alias]["status"] == "ok":
            assert (rows[alias]["bytes"], rows[alias]["sha256"]) == (1400, digest)
    assert [rows[alias]["status"] for alias in WEB[4:]] == ["skipped"] * 4
    assert data["recap"]["aborted"] is True
    assert not fleet.contacted_since(marks) & set(WEB[4:])
    home = Path(pwd.getpwnam(TEST_USER).pw_dir) / drop_directories / "payload.txt"
    assert home.read_bytes() == payload.read_bytes()
    assert not (Path(pwd.getpwnam(SECOND_USER).pw_dir) / drop_directories / "payload.txt").exists()
    record = read_audit(settings.audit_path)[-1]
    assert (record["tool"], record["tier"], record["aborted"]) == ("ssh_upload", 2, True)
    assert record["skipped"] == WEB[4:]


async def test_upload_passes_each_host_through_the_deny_list(
    fleet_server: Callable[..., RelayServer], fleet: Fleet, drop_directories: str, tmp_path: Path
) -> None:
    server = fleet_server(policy_deny=rf"{fleet.address('web3')}\b")
    payload = tmp_path / "denied.txt"
    payload.write_text("x")
    marks = fleet.log_marks()
    async with connected(server) as client:
        result = await client.call_tool(
            "ssh_upload",
            {"hosts": "web2,web3,web4", "local_path": str(payload), "remote_path": drop_directories},
        )
    await server.services.aclose()
    assert statuses(result) == {"web2": "ok", "web3": "denied", "web4": "ok"}
    assert "RELAY_SHELL_POLICY_DENY" in sc(result)["results"][1]["reason"]
    assert "web3" not in fleet.contacted_since(marks)
    assert sc(result)["recap"] == {"ok": 2, "denied": 1}


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [
        ({"host": "web2", "hosts": "@web"}, "hosts"),
        ({}, "host"),
        ({"host": "web2", "batch": 2}, "batch"),
        ({"hosts": "@web", "batch": "0%"}, "batch"),
        ({"hosts": "@web", "max_fail": "x"}, "max_fail"),
    ],
)
async def test_upload_host_choice_is_validated(
    client: Client, arguments: dict[str, Any], argument: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.txt"
    source.write_text("x")
    result = await client.call_tool(
        "ssh_upload", {"local_path": str(source), "remote_path": "somewhere", **arguments}
    )
    assert sc(result)["error"]["argument"] == argument


# --- a big fan-out stays within its budget ---------------------------------------------------------


async def test_two_hundred_hosts_three_outputs_five_failures_fit_the_budget(
    fleet_server: Callable[..., RelayServer], fleet: Fleet, key: ClientKey
) -> None:
    extra: dict[str, dict[str, Any]] = {}
    live = list(fleet.hosts.values())
    for number in range(195):
        instance = live[number % len(live)]
        extra[f"node{number:03d}"] = {
            "hostname": instance.address, "port": instance.port, "user": instance.user,
            "identity_file": str(key.private_path), "tags": ["big"],
        }  # fmt: skip
    for number in range(5):
        extra[f"gone{number}"] = {
            "hostname": "127.0.0.1", "port": free_port(), "user": TEST_USER,
            "identity_file": str(key.private_path), "tags": ["big"],
        }  # fmt: skip
    words = ["alpha", "beta", "gamma"]
    cases = " ".join(f"{instance.address}) echo {words[index % 3]};;" for index, instance in enumerate(live))
    server = fleet_server(extra)
    budget = 4096
    async with connected(server) as client:
        result = await client.call_tool(
            "ssh_fanout",
            {"command": f"case {SERVER_ADDRESS} in {cases} esac", "hosts": "@big", "max_output": budget,
             "concurrency": 64},
        )  # fmt: skip
    await server.services.aclose()
    data = sc(result)
    assert len(data["results"]) == 200
    assert data["recap"] == {"ok": 195, "unreachable": 5}
    text = result.content[0].text
    assert len(text.encode()) <= budget
    lines = text.splitlines()
    first_ok = next(number for number, line in enumerate(lines) if ": ok (exit 0)" in line)
    failure_lines = [number for number, line in enumerate(lines) if "unreachable" in line and "gone" in line]
    assert failure_lines
    assert max(failure_lines) < first_ok  # failures first
    assert all(f"gone{number}" in text for number in range(5))
    assert sorted(word for word in words if word in text) == sorted(words)
    assert [text.count(f"\n{word}") for word in words] == [1, 1, 1]  # identical outputs grouped


# --- keyscan by alias, pooled checks ---------------------------------------------------------------


@pytest.fixture
def solo(key: ClientKey) -> Iterator[SshdInstance]:
    instance = start_sshd(key, address="127.0.0.90", extra_config=VERBOSE)
    yield instance
    instance.remove()


def connections_accepted(instance: SshdInstance) -> int:
    return instance.log_path.read_text(errors="replace").count("Connection from ")


async def test_keyscan_by_alias_then_check_reuses_the_connection_until_the_server_dies(
    make_settings: Callable[..., Settings], tmp_path: Path, solo: SshdInstance, key: ClientKey
) -> None:
    inventory = tmp_path / "solo.json"
    inventory.write_text(json.dumps({"solo": {
        "hostname": solo.address, "port": solo.port, "user": solo.user, "identity_file": str(key.private_path),
    }}))  # fmt: skip
    settings = make_settings(inventory=inventory)
    known_hosts = settings.ssh_known_hosts_file
    server = build_server(settings)
    async with connected(server) as client:
        unknown = sc(await client.call_tool("ssh_check", {"hosts": "solo"}))
        assert (unknown["hosts"][0]["ok"], unknown["hosts"][0]["reason"]) == (False, "host_key")
        assert solo.fingerprint in unknown["hosts"][0]["detail"]
        assert not known_hosts.exists() or known_hosts.read_text() == ""  # nothing recorded

        scan = sc(await client.call_tool("ssh_keyscan", {"hosts": "solo"}))
        [row] = scan["hosts"]
        assert row["host"] == "solo"
        assert solo.fingerprint in {found["fingerprint_sha256"] for found in row["keys"]}
        line = next(
            found["known_hosts_line"]
            for found in row["keys"]
            if solo.fingerprint == found["fingerprint_sha256"]
        )
        assert line.startswith(f"[{solo.address}]:{solo.port} ")
        known_hosts.write_text(line + "\n")  # the operator trusts the scanned key

        first = await client.call_tool("ssh_check", {"hosts": "solo"})
        assert (sc(first)["hosts"][0]["ok"], sc(first)["tier"]) == (True, 0)
        before = connections_accepted(solo)
        second = sc(await client.call_tool("ssh_check", {"hosts": "solo"}))
        assert (second["hosts"][0]["ok"], second["hosts"][0]["reused"]) == (True, True)
        assert connections_accepted(solo) == before  # one round trip on the pooled connection

        fresh = sc(await client.call_tool("ssh_check", {"hosts": "solo", "fresh": True}))
        assert (fresh["hosts"][0]["ok"], fresh["hosts"][0]["reused"]) == (True, False)
        assert connections_accepted(solo) == before + 1

        same = await client.call_tool("ssh_check", {"hosts": solo.target()})
        assert sc(same)["tier"] == 0  # written out, but the inventory host on its configured port
        other_port = await client.call_tool(
            "ssh_check", {"hosts": f"{solo.address}:{free_port(solo.address)}"}
        )
        assert (sc(other_port)["tier"], sc(other_port)["hosts"][0]["reason"]) == (1, "refused")

        solo.stop()
        third = sc(await client.call_tool("ssh_check", {"hosts": "solo"}))
        assert (third["hosts"][0]["ok"], third["hosts"][0]["reason"]) == (False, "refused")
    await server.services.aclose()
    assert known_hosts.read_text() == line + "\n"
    checks = [record for record in read_audit(settings.audit_path) if record["tool"] == "ssh_check"]
    assert [record["tier"] for record in checks] == [0, 0, 0, 0, 0, 1, 0]


async def test_exec_declares_its_host_in_the_output_schema(client: Client, fleet: Fleet) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    schema = tools["ssh_exec"].output_schema
    assert schema is not None
    assert "host" in schema["properties"]
    result = sc(await client.call_tool("ssh_exec", {"host": "web2", "command": "true"}))
    assert result["host"] == fleet.hosts["web2"].target()
