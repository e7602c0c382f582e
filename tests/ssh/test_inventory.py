"""Inventory: ssh_config Host blocks + JSON inventory file -> HostSpec (SPEC §9.2)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from relay_shell.config import KnownHostsMode, Settings
from relay_shell.errors import ConfigError, InvalidInput
from relay_shell.ssh.inventory import Inventory
from relay_shell.ssh.targets import ConnectOverrides

SSH_CONFIG = """\
# a comment
Host web1 web2
    HostName %h.example.com
    User deploy
    Port 2222
    IdentityFile ~/.ssh/web_key

Host db
    HostName 10.0.0.5
    ProxyJump bastion

Host bastion
    HostName=10.0.0.1
    User jumper

Host *.internal !skip.internal
    User internal-user

Match host web1
    User never-applied

Host *
    User fallback
    IdentityFile %d/.ssh/id_%r
"""


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def writer(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return writer


def load(make_settings: Callable[..., Settings], **overrides: object) -> Inventory:
    return Inventory.load(make_settings(**overrides))


def test_missing_ssh_config_is_empty(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    inventory = load(make_settings, ssh_config=tmp_path / "absent")
    assert inventory.aliases() == []
    assert inventory.hosts() == []
    assert inventory.ssh_config_path == tmp_path / "absent"
    assert inventory.inventory_path is None


def test_ssh_config_blocks_resolve_like_openssh(
    make_settings: Callable[..., Settings], write: Callable[[str, str], Path]
) -> None:
    inventory = load(make_settings, ssh_config=write("config", SSH_CONFIG))
    home = Path.home()
    assert inventory.aliases() == ["web1", "web2", "db", "bastion"]

    web1 = inventory.resolve("web1")
    assert (web1.hostname, web1.user, web1.port, web1.source) == (
        "web1.example.com",
        "deploy",
        2222,
        "ssh_config",
    )
    # IdentityFile accumulates across matching blocks, tokens and ~ expanded.
    assert web1.identity_files == (home / ".ssh/web_key", home / ".ssh/id_deploy")
    assert web1.jump == ()

    db = inventory.resolve("db")
    assert (db.hostname, db.user, db.port) == ("10.0.0.5", "fallback", 22)
    assert [(hop.hostname, hop.user, hop.alias) for hop in db.jump] == [("10.0.0.1", "jumper", "bastion")]

    # Wildcard blocks apply to literal names too; negation excludes.
    assert inventory.resolve("x.internal").user == "internal-user"
    assert inventory.resolve("skip.internal").user == "fallback"
    assert inventory.resolve("x.internal").source == "literal"


def test_first_value_wins_and_include_returns_to_the_including_block(
    make_settings: Callable[..., Settings], write: Callable[[str, str], Path]
) -> None:
    write("conf.d/10-extra.conf", "Host extra\n    HostName 10.9.9.9\n")
    config = write(
        "config",
        "Host web1\n    User first\n    Include conf.d/*.conf\n    Port 2200\n"
        "Host web1\n    User second\n    Port 2300\n",
    )
    inventory = load(make_settings, ssh_config=config)
    assert inventory.aliases() == ["web1", "extra"]
    web1 = inventory.resolve("web1")
    assert (web1.user, web1.port) == ("first", 2200)  # Port after the Include still belongs to web1
    assert inventory.resolve("extra").port == 22
    assert inventory.resolve("extra").hostname == "10.9.9.9"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Host web1\n    Port abc\n", "port must be a number"),
        ('Host web1\n    User "unterminated\n', "No closing quotation"),
        ("Host\n    User x\n", "Host needs at least one pattern"),
        ("Host web1\n    HostName bad_host!\n", "not a valid host name"),
        ("Host web1\n    HostName %z\n", "unsupported token %z"),
    ],
)
def test_malformed_ssh_config_is_a_config_error_naming_the_file(
    make_settings: Callable[..., Settings], write: Callable[[str, str], Path], text: str, problem: str
) -> None:
    config = write("config", text)
    with pytest.raises(ConfigError) as caught:
        load(make_settings, ssh_config=config)
    assert str(config) in caught.value.message
    assert problem in caught.value.message


def test_inventory_wins_per_alias_field_by_field(
    make_settings: Callable[..., Settings], write: Callable[[str, str], Path]
) -> None:
    config = write("config", SSH_CONFIG)
    inventory_file = write(
        "inventory.json",
        json.dumps(
            {
                "web1": {"hostname": "192.0.2.10", "tags": ["web", "prod"], "known_hosts": "strict"},
                "db_primary": {
                    "hostname": "192.0.2.20",
                    "user": "postgres",
                    "port": 2201,
                    "identity_file": "~/.ssh/db_key",
                    "jump": "bastion",
                },
                "multi": {"identity_file": ["/k/one", "/k/two"], "jump": ["bastion", "ops@192.0.2.1:2222"]},
            }
        ),
    )
    inventory = load(make_settings, ssh_config=config, inventory=inventory_file)
    assert inventory.aliases() == ["web1", "db_primary", "multi", "web2", "db", "bastion"]
    assert len(inventory) == 6
    assert inventory.inventory_path == inventory_file

    web1 = inventory.resolve("web1")
    assert web1.hostname == "192.0.2.10"  # inventory
    assert (web1.user, web1.port) == ("deploy", 2222)  # ssh_config fields the inventory leaves unset
    assert web1.tags == ("web", "prod")
    assert web1.known_hosts is KnownHostsMode.STRICT
    assert web1.source == "inventory"

    db = inventory.resolve("db_primary")
    assert (db.hostname, db.user, db.port) == ("192.0.2.20", "postgres", 2201)
    assert db.identity_files == (Path.home() / ".ssh/db_key",)
    assert [hop.alias for hop in db.jump] == ["bastion"]
    assert db.known_hosts is KnownHostsMode.ACCEPT_NEW  # the setting's default

    multi = inventory.resolve("multi")
    assert multi.identity_files == (Path("/k/one"), Path("/k/two"))
    assert [hop.display() for hop in multi.jump] == ["jumper@10.0.0.1:22", "ops@192.0.2.1:2222"]

    # user@alias keeps the alias (even one that is not a valid DNS name).
    assert inventory.resolve("admin@db_primary").user == "admin"
    assert [spec.alias for spec in inventory.hosts()] == inventory.aliases()


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        ('{"web1": {"port": "22x"}}', "web1.port"),
        ('{"web1": {"port": 70000}}', "web1.port"),
        ('{"web1": {"hostnme": "typo"}}', "web1.hostnme"),
        ('{"web1": {"known_hosts": "maybe"}}', "web1.known_hosts"),
        ('{"web1": {"hostname": "-oProxyCommand=x"}}', "web1.hostname"),
        ('{"web1": {"user": "a b"}}', "web1.user"),
        ('{"web1": {"jump": "a,,b"}}', "empty hop"),
        ('{"bad alias": {}}', "alias 'bad alias'"),
        ('{"web1": "10.0.0.1"}', "web1"),
    ],
)
def test_malformed_inventory_is_a_config_error_naming_the_file(
    make_settings: Callable[..., Settings], write: Callable[[str, str], Path], document: str, problem: str
) -> None:
    path = write("inventory.json", document)
    with pytest.raises(ConfigError) as caught:
        load(make_settings, inventory=path)
    assert str(path) in caught.value.message
    assert problem in caught.value.message


def test_missing_inventory_file_is_a_config_error(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(make_settings, inventory=tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in caught.value.message
    assert "not found" in caught.value.message


def test_literal_targets_and_overrides(
    make_settings: Callable[..., Settings], write: Callable[[str, str], Path], tmp_path: Path
) -> None:
    key = write("keys/id_test", "not really a key")
    inventory = load(make_settings, ssh_config=tmp_path / "absent", ssh_known_hosts="strict")
    plain = inventory.resolve("192.0.2.7")
    assert (plain.user, plain.port, plain.source) == (getpass.getuser(), 22, "literal")
    assert plain.identity_files == ()
    assert plain.known_hosts is KnownHostsMode.STRICT

    spec = inventory.resolve(
        "ops@192.0.2.7:2022",
        ConnectOverrides(key_path=key, known_hosts=KnownHostsMode.IGNORE, jump="j1@192.0.2.1:2200,192.0.2.2"),
    )
    assert (spec.user, spec.port, spec.identity_files) == ("ops", 2022, (key,))
    assert spec.known_hosts is KnownHostsMode.IGNORE
    assert [hop.display() for hop in spec.jump] == ["j1@192.0.2.1:2200", f"{getpass.getuser()}@192.0.2.2:22"]
    assert all(hop.known_hosts is KnownHostsMode.IGNORE for hop in spec.jump)  # same policy as the target

    same = inventory.resolve("ops@192.0.2.7:2022", ConnectOverrides(user="ops", port=2022))
    assert (same.user, same.port) == ("ops", 2022)
    # Mode names as text (what a JSON caller sends) are accepted.
    textual = inventory.resolve("192.0.2.7", ConnectOverrides(known_hosts="ignore"))  # type: ignore[arg-type]
    assert textual.known_hosts is KnownHostsMode.IGNORE


@pytest.mark.parametrize(
    ("host", "overrides", "argument"),
    [
        ("ops@192.0.2.7", ConnectOverrides(user="root"), "user"),
        ("192.0.2.7:22", ConnectOverrides(port=2222), "port"),
        ("192.0.2.7", ConnectOverrides(key_path=Path("/nonexistent/key")), "key_path"),
        ("192.0.2.7", ConnectOverrides(jump="ok,-bad"), "jump"),
        ("192.0.2.7", ConnectOverrides(user="-oX"), "user"),
        ("bad host", ConnectOverrides(), "host"),
        ("192.0.2.7", ConnectOverrides(port=0), "port"),
        ("192.0.2.7", ConnectOverrides(known_hosts="sometimes"), "known_hosts"),  # type: ignore[arg-type]
    ],
)
def test_invalid_resolution_names_the_argument(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    host: str,
    overrides: ConnectOverrides,
    argument: str,
) -> None:
    inventory = load(make_settings, ssh_config=tmp_path / "absent")
    with pytest.raises(InvalidInput) as caught:
        inventory.resolve(host, overrides)
    assert caught.value.argument == argument


def test_jump_chains_flatten_and_cycles_fail(
    make_settings: Callable[..., Settings], write: Callable[[str, str], Path]
) -> None:
    config = write(
        "config",
        "Host target\n    HostName 192.0.2.30\n    ProxyJump inner\n"
        "Host inner\n    HostName 192.0.2.20\n    ProxyJump bastion\n"
        "Host bastion\n    HostName 192.0.2.10\n",
    )
    inventory = load(make_settings, ssh_config=config)
    strict = inventory.resolve("target", ConnectOverrides(known_hosts=KnownHostsMode.STRICT))
    assert [hop.alias for hop in strict.jump] == ["bastion", "inner"]
    assert all(hop.jump == () and hop.known_hosts is KnownHostsMode.STRICT for hop in strict.jump)
    assert inventory.resolve("target", ConnectOverrides(jump="none")).jump == ()

    loop = write("loop", "Host a\n    ProxyJump b\nHost b\n    ProxyJump a\n")
    with pytest.raises(ConfigError) as caught:
        load(make_settings, ssh_config=loop)
    assert "circular" in caught.value.message


def test_proxycommand_hosts_are_refused_not_dialled_directly(
    make_settings: Callable[..., Settings], write: Callable[[str, str], Path]
) -> None:
    config = write(
        "config",
        "Host iap-*\n    ProxyCommand gcloud compute start-iap-tunnel %h 22\n"
        "Host tunnelled\n    HostName 10.1.1.1\n    ProxyCommand nc -X 5 -x proxy:1080 %h %p\n"
        "Host direct\n    HostName 10.1.1.2\n    ProxyCommand none\n",
    )
    inventory = load(make_settings, ssh_config=config)  # such hosts do not break start-up
    assert inventory.aliases() == ["direct"]
    for host in ("tunnelled", "iap-web1", "ops@iap-db"):
        with pytest.raises(InvalidInput) as caught:
            inventory.resolve(host)
        assert caught.value.argument == "host"
        assert "ProxyCommand" in caught.value.problem
    assert inventory.resolve("direct").hostname == "10.1.1.2"
