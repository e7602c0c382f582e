"""Host target parsing and validation: what reaches a connection attempt is always clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay_shell.config import KnownHostsMode
from relay_shell.errors import InvalidInput
from relay_shell.ssh.targets import (
    HostSpec,
    format_host_port,
    known_hosts_name,
    parse_target,
    split_hosts,
    split_jump_chain,
)

VALID = [
    ("web1", (None, "web1", None)),
    ("web1.example.com", (None, "web1.example.com", None)),
    ("root@web1", ("root", "web1", None)),
    ("deploy@web1:2222", ("deploy", "web1", 2222)),
    ("web1:22", (None, "web1", 22)),
    ("10.0.0.5", (None, "10.0.0.5", None)),
    ("admin@10.0.0.5:65535", ("admin", "10.0.0.5", 65535)),
    ("[::1]", (None, "::1", None)),
    ("[::1]:2200", (None, "::1", 2200)),
    ("u@[fe80::1]:22", ("u", "fe80::1", 22)),
    ("::1", (None, "::1", None)),
    ("  host-1  ", (None, "host-1", None)),
    ("a.b-c.d.", (None, "a.b-c.d.", None)),
    ("first.last@db", ("first.last", "db", None)),
]

INVALID = [
    "",
    "   ",
    "-oProxyCommand=touch /tmp/x",
    "host name",
    "host;rm -rf /",
    "$(id)",
    "`id`",
    "host|cat",
    "host&",
    "web1:0",
    "web1:65536",
    "web1:abc",
    "web1:",
    "-web1",
    "web-.example",
    "we_b1",
    "a" * 64 + ".com",
    "x." * 130 + "com",
    "-u@web1",
    "us er@web1",
    "@web1",
    "[::1",
    "[::1]x",
    "[not-an-ip]:22x",
    "web1\x00",
    "web\n1",
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_target_accepts(text: str, expected: tuple[str | None, str, int | None]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", INVALID)
def test_parse_target_rejects_with_host_argument(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_target(text)
    assert caught.value.argument == "host"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a,b c", ["a", "b", "c"]),
        ("a, a ,b,,", ["a", "b"]),
        (["x", "y", "x"], ["x", "y"]),
        (["x,y", "z"], ["x", "y", "z"]),
        ("", []),
        ("  ", []),
    ],
)
def test_split_hosts(value: str | list[str], expected: list[str]) -> None:
    assert split_hosts(value) == expected


def test_split_jump_chain_rejects_empty_hop() -> None:
    assert split_jump_chain("a@b:2, c") == ["a@b:2", "c"]
    with pytest.raises(InvalidInput) as caught:
        split_jump_chain("a,,b")
    assert caught.value.argument == "jump"


def test_known_hosts_name_and_display() -> None:
    assert known_hosts_name("web1", 22) == "web1"
    assert known_hosts_name("web1", 2222) == "[web1]:2222"
    assert format_host_port("::1", 22) == "[::1]:22"
    spec = HostSpec("v6", "::1", 2200, "u")
    assert spec.display() == "u@[::1]:2200"


def _spec(**changes: object) -> HostSpec:
    base: dict[str, object] = {
        "alias": "web1",
        "hostname": "10.0.0.1",
        "port": 22,
        "user": "deploy",
        "identity_files": (Path("/k/id"),),
        "known_hosts": KnownHostsMode.STRICT,
        "tags": ("web",),
        "source": "inventory",
    }
    base.update(changes)
    return HostSpec(**base)  # type: ignore[arg-type]


def test_pool_key_covers_everything_that_changes_the_connection() -> None:
    reference = _spec().pool_key()
    hop = HostSpec("bastion", "10.0.0.9", 22, "jump")
    changed = [
        _spec(user="root"),
        _spec(hostname="10.0.0.2"),
        _spec(port=2222),
        _spec(identity_files=(Path("/k/other"),)),
        _spec(identity_files=()),
        _spec(known_hosts=KnownHostsMode.IGNORE),
        _spec(known_hosts=KnownHostsMode.ACCEPT_NEW),
        _spec(jump=(hop,)),
    ]
    for spec in changed:
        assert spec.pool_key() != reference, spec
    # Labels do not change the connection: same key.
    assert _spec(alias="other", tags=(), source="literal").pool_key() == reference
    assert _spec(hostname="10.0.0.1").pool_key() == reference


def test_describe_is_json_ready() -> None:
    hop = HostSpec("bastion", "10.0.0.9", 22, "jump")
    described = _spec(jump=(hop,)).describe()
    assert described == {
        "alias": "web1",
        "hostname": "10.0.0.1",
        "port": 22,
        "user": "deploy",
        "identity_files": ["/k/id"],
        "known_hosts": "strict",
        "jump": ["jump@10.0.0.9:22"],
        "tags": ["web"],
        "source": "inventory",
    }
