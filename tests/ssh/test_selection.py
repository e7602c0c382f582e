"""Host patterns against a real Inventory (JSON inventory + ssh_config) and the fan-out history."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from relay_shell.config import Settings
from relay_shell.errors import InvalidInput, LimitReached
from relay_shell.ssh.fleet import FanoutHistory
from relay_shell.ssh.inventory import Inventory
from relay_shell.ssh.selection import all_configured, keyscan_addresses, resolve_selected, select_hosts

SSH_CONFIG = """\
Host cfg1 cfg2
    HostName %h.example.com
    Port 2200

Host behind
    HostName 10.0.0.9
    ProxyJump web1
"""
INVENTORY = {
    "web1": {"hostname": "10.0.0.1", "user": "deploy", "tags": ["web", "prod"]},
    "web2": {"hostname": "10.0.0.2", "port": 2222, "tags": ["web"]},
    "db1": {"hostname": "10.0.1.1", "tags": ["db", "prod"]},
}


@pytest.fixture
def inventory(make_settings: Callable[..., Settings], tmp_path: Path) -> Inventory:
    (tmp_path / "ssh_config").write_text(SSH_CONFIG)
    (tmp_path / "inventory.json").write_text(json.dumps(INVENTORY))
    return Inventory.load(make_settings(inventory=tmp_path / "inventory.json"))


def test_aliases_of_both_sources_and_tags(inventory: Inventory) -> None:
    assert select_hosts(inventory, "", None, limit=100) == ["web1", "web2", "db1", "cfg1", "cfg2", "behind"]
    assert select_hosts(inventory, "@prod", None, limit=100) == ["web1", "db1"]
    assert select_hosts(inventory, "cfg*,!cfg2.example.com", None, limit=100) == ["cfg1"]
    assert select_hosts(inventory, "*,!10.0.0.*", None, limit=100) == ["db1", "cfg1", "cfg2"]
    assert select_hosts(inventory, "@web,!10.0.0.2:22", None, limit=100) == ["web1", "web2"]


def test_history_terms(inventory: Inventory) -> None:
    history = FanoutHistory(4)
    history.record("fo-00000000000a", [("web1", "failed"), ("db1", "denied"), ("deploy@10.9.9.9", "timeout")])
    assert select_hosts(inventory, "failed:fo-00000000000a", history, limit=100) == [
        "web1",
        "deploy@10.9.9.9",
    ]
    with pytest.raises(InvalidInput, match="not in the history"):
        select_hosts(inventory, "failed:fo-00000000000b", history, limit=100)


def test_limit(inventory: Inventory) -> None:
    with pytest.raises(LimitReached) as caught:
        select_hosts(inventory, "*", None, limit=3)
    assert caught.value.limit == "RELAY_SHELL_FANOUT_MAX_HOSTS"


def test_a_name_that_cannot_be_resolved_names_the_argument(inventory: Inventory) -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve_selected(inventory, "bad_name.example.com", argument="pattern")
    assert caught.value.argument == "pattern"


@pytest.mark.parametrize(
    ("names", "configured"),
    [
        (["web1", "cfg2", "behind"], True),
        (
            ["other@web1", "10.0.0.1", "root@10.0.0.2:2222", "cfg1.example.com:2200"],
            True,
        ),  # same host and port
        (["10.0.0.1:2222"], False),  # another port
        (["web2.example.com"], False),  # another host
        (["10.0.0.9"], False),  # the host behind web1, reached directly: another route
        (["web1", "10.9.9.9"], False),
    ],
)
def test_all_configured(inventory: Inventory, names: list[str], configured: bool) -> None:
    specs = [resolve_selected(inventory, name) for name in names]
    assert all_configured(inventory, specs) is configured


def test_keyscan_addresses(inventory: Inventory) -> None:
    addresses, targets = keyscan_addresses(inventory, ["web2", "cfg1", "10.5.5.5:2022"], None)
    assert addresses == ["10.0.0.2:2222", "cfg1.example.com:2200", "10.5.5.5:2022"]
    assert {"web2", "10.0.0.2", "cfg1", "cfg1.example.com", "10.5.5.5:2022"} <= set(targets)
    assert keyscan_addresses(inventory, ["web2"], 22)[0] == ["10.0.0.2:22"]  # an explicit port wins
    with pytest.raises(InvalidInput, match="jump host"):
        keyscan_addresses(inventory, ["behind"], None)
