"""Host patterns, table-driven: grammar, Ansible evaluation order, strictness (pure: no connection)."""

from __future__ import annotations

import pytest

from relay_shell.errors import InvalidInput
from relay_shell.ssh.hostpatterns import (
    MAX_TERMS,
    Catalog,
    Endpoint,
    parse_term,
    select,
    split_terms,
)
from relay_shell.ssh.targets import parse_target

HOSTS: dict[str, tuple[str, str, int, tuple[str, ...]]] = {
    # alias: (user, hostname, port, tags)
    "web1": ("deploy", "10.0.0.1", 22, ("web", "prod")),
    "web2": ("deploy", "10.0.0.2", 22, ("web", "prod")),
    "web3": ("deploy", "10.0.0.3", 2222, ("web", "prod")),
    "web4": ("deploy", "10.0.0.4", 22, ("web", "staging")),
    "web5": ("deploy", "10.0.0.5", 22, ("web", "canary")),
    "db1": ("postgres", "db1.example.com", 22, ("db", "prod")),
    "db2": ("postgres", "db2.example.com", 22, ("db",)),
    "lb1": ("root", "10.0.9.1", 22, ()),
    "web3-alt": ("other", "10.0.0.3", 2222, ()),  # same machine as web3, another alias
}
HISTORY = {
    "fo-0123456789ab": [
        ("web1", "ok"),
        ("web2", "failed"),
        ("web3", "timeout"),
        ("web4", "unreachable"),
        ("web5", "denied"),
        ("db1", "skipped"),
        ("deploy@10.0.7.7:2200", "failed"),
    ],
    "fo-aaaaaaaaaaaa": [("web1", "ok"), ("web2", "ok")],
}


def endpoint(name: str) -> Endpoint:
    user, at, rest = name.rpartition("@")
    if rest in HOSTS:
        known_user, hostname, port, _ = HOSTS[rest]
        return Endpoint(user if at else known_user, hostname, port)
    parsed_user, host, parsed_port = parse_target(name)
    return Endpoint(parsed_user or "deploy", host, parsed_port or 22)


CATALOG = Catalog(
    aliases=list(HOSTS),
    tags={alias: fields[3] for alias, fields in HOSTS.items()},
    endpoint=endpoint,
    history=HISTORY.get,
)

SELECTIONS: list[tuple[str | list[str], list[str]]] = [
    # plain terms: union in order of first appearance, each name once
    ("web1", ["web1"]),
    ("web2,web1 web2", ["web2", "web1"]),
    (["web3", "web1, db1"], ["web3", "web1", "db1"]),
    ("", list(HOSTS)),  # empty: the whole inventory
    ([], list(HOSTS)),
    # globs over aliases
    ("web*", ["web1", "web2", "web3", "web4", "web5", "web3-alt"]),
    ("web?", ["web1", "web2", "web3", "web4", "web5"]),
    ("web[12]", ["web1", "web2"]),
    ("db*,web1", ["db1", "db2", "web1"]),
    ("*", list(HOSTS)),
    # tags
    ("@web", ["web1", "web2", "web3", "web4", "web5"]),
    ("@db,@canary", ["db1", "db2", "web5"]),
    ("@stag*", ["web4"]),  # a glob over tag names
    # intersections (after the union, whatever their position)
    ("@web,&@prod", ["web1", "web2", "web3"]),
    ("&@prod,@web", ["web1", "web2", "web3"]),
    ("@web,&@prod,&web[23]", ["web2", "web3"]),
    ("@prod,&@db", ["db1"]),
    # exclusions (after the intersections)
    ("web*,!web3", ["web1", "web2", "web4", "web5"]),  # !web3 also spares web3-alt: same host and port
    ("web[0-9],!web3", ["web1", "web2", "web4", "web5"]),
    ("@web,!@canary,!@staging", ["web1", "web2", "web3"]),
    ("!web3,@prod", ["web1", "web2", "db1"]),
    ("@web,!10.0.0.1", ["web2", "web3", "web4", "web5"]),  # by address, any port
    ("@web,!10.0.0.3:22", ["web1", "web2", "web3", "web4", "web5"]),  # web3 is on 2222
    ("@web,!10.0.0.3:2222", ["web1", "web2", "web4", "web5"]),
    ("@web,!10.0.0.*", []),  # handled below: empties the selection
    ("@web,&@prod,!web1", ["web2", "web3"]),
    # only & / ! terms: they apply to the whole inventory
    ("!@web,!web3-alt", ["db1", "db2", "lb1"]),
    ("&@prod", ["web1", "web2", "web3", "db1"]),
    # host forms outside the inventory
    ("deploy@10.9.9.9:2200", ["deploy@10.9.9.9:2200"]),
    ("10.9.9.9,host.example.com:2222", ["10.9.9.9", "host.example.com:2222"]),
    ("[::1]:2222", ["[::1]:2222"]),
    ("admin@web1", ["admin@web1"]),  # an alias with another login
    ("admin@web1,!web1", []),  # handled below: the same host and port
    # earlier fan-outs: failed = failed, timeout, unreachable; denied never re-selected
    ("failed:fo-0123456789ab", ["web2", "web3", "web4", "deploy@10.0.7.7:2200"]),
    ("ok:fo-0123456789ab", ["web1"]),
    ("skipped:fo-0123456789ab", ["db1"]),
    ("@web,!failed:fo-0123456789ab", ["web1", "web5"]),
    ("@prod,&ok:fo-aaaaaaaaaaaa", ["web1", "web2"]),
    ("failed:fo-0123456789ab,!@web", ["deploy@10.0.7.7:2200"]),
]


@pytest.mark.parametrize(("pattern", "expected"), [case for case in SELECTIONS if case[1]])
def test_selection(pattern: str | list[str], expected: list[str]) -> None:
    assert select(pattern, CATALOG) == expected


INVALID: list[tuple[str | list[str], str]] = [
    # a term that matches nothing is named
    ("db9*", "'db9*'"),
    ("@nosuchtag", "'@nosuchtag'"),
    ("web1,@nosuchtag", "'@nosuchtag'"),
    ("web1,&@nosuchtag", "'&@nosuchtag'"),
    ("web1,!@canry", "'!@canry'"),  # a mistyped exclusion must not run on the host it meant to spare
    ("web1,!zz*", "'!zz*'"),
    ("web13", "'web13'"),  # a bare name outside the inventory: a typo, not a DNS lookup
    ("web1,!web13", "'!web13'"),
    # an empty result names the term that emptied it
    ("@web,!10.0.0.*", "'!10.0.0.*'"),
    ("web1,&@db", "'&@db'"),
    ("web1,!web1", "'!web1'"),
    ("admin@web1,!web1", "'!web1'"),
    ("ok:fo-0123456789ab,&@db", "'&@db'"),
    # history terms
    ("failed:fo-ffffffffffff", "not in the history"),
    ("failed:fo-aaaaaaaaaaaa", "'failed:fo-aaaaaaaaaaaa'"),  # no host failed there
    ("failed:fo-123", "not a fan-out id"),
    ("failed:FO-0123456789AB", "not a fan-out id"),
    ("web1,!failed:fo-ffffffffffff", "not in the history"),
    # malformed terms
    ("!", "operator but no host"),
    ("&", "operator but no host"),
    ("!!web1", "one operator per term"),
    ("&!web1", "one operator per term"),
    ("@", "not a tag name"),
    ("@we;b", "not a tag name"),
    ("-oProxyCommand=touch /tmp/pwned", "must not start with '-'"),
    ("!-oProxyCommand=x", "must not start with '-'"),
    ("web1;id", "not a valid host name"),
    ("$(id).example.com", "not a valid host name"),
    ("`id`@10.0.0.1", "not a valid user name"),
    ("-x@web1", "not a valid user name"),
    ("10.0.0.1:99999", "port must be between"),
    ("10.0.0.1:0x16", "port must be a number"),
    ("[::1", "'[::1'"),  # an unclosed bracket reads as a glob that matches nothing
    ("x" * 600, "longer than 512"),
    ([1], "must be a string"),  # type: list[int] at runtime
]


@pytest.mark.parametrize(("pattern", "fragment"), INVALID)
def test_invalid_patterns_name_the_term(pattern: str | list[str], fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        select(pattern, CATALOG, argument="hosts")
    assert caught.value.argument == "hosts"
    assert fragment in caught.value.problem


def test_the_argument_name_is_the_callers() -> None:
    with pytest.raises(InvalidInput) as caught:
        select("@nosuchtag", CATALOG, argument="pattern")
    assert caught.value.argument == "pattern"


def test_empty_inventory_without_a_pattern_is_invalid() -> None:
    empty = Catalog(aliases=[], tags={}, endpoint=endpoint)
    with pytest.raises(InvalidInput, match="inventory is empty"):
        select("", empty)
    assert select("10.0.0.1", empty) == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("text", "kind", "operator", "value"),
    [
        ("web1", "name", "add", "web1"),
        ("&web1", "name", "intersect", "web1"),
        ("!@prod", "tag", "exclude", "prod"),
        ("web*", "glob", "add", "web*"),
        ("[::1]:22", "name", "add", "[::1]:22"),  # brackets of an IPv6 literal are not a glob
        ("web[1-3]", "glob", "add", "web[1-3]"),
        ("ok:fo-0123456789ab", "history", "add", "fo-0123456789ab"),
        ("!skipped:fo-0123456789ab", "history", "exclude", "fo-0123456789ab"),
    ],
)
def test_parse_term(text: str, kind: str, operator: str, value: str) -> None:
    term = parse_term(text, frozenset(HOSTS))
    assert (term.kind, term.operator, term.value, term.text) == (kind, operator, value, text)


def test_an_alias_wins_over_every_other_reading() -> None:
    odd = Catalog(aliases=["ok:fo-0123456789ab", "web*"], tags={}, endpoint=endpoint)
    assert select("web*", odd) == ["web*"]
    assert select("ok:fo-0123456789ab", odd) == ["ok:fo-0123456789ab"]


def test_bounds() -> None:
    with pytest.raises(InvalidInput, match=f"more than {MAX_TERMS} terms"):
        split_terms(" ".join(["web1"] * (MAX_TERMS + 1)))
    with pytest.raises(InvalidInput, match="glob, tag or fan-out terms"):
        select(",".join(f"@web,web{index}*" for index in range(200)), CATALOG)
    assert select(["web1"] * MAX_TERMS, CATALOG) == ["web1"]


def test_evaluation_is_ansible_order_not_left_to_right() -> None:
    # Left to right would give [web1] for "!web2,web1,web2"; Ansible's order excludes after the union.
    assert select("!web2,web1,web2", CATALOG) == ["web1"]
    assert select("web4,&@prod,web1", CATALOG) == ["web1"]
