"""Host patterns: which hosts a multi-host call (fan-out, check, upload, listing) selects.

Pure: no connection, no asyncssh. A pattern is a string of terms separated by commas or
whitespace, or a list of such strings::

    term   := [ "&" | "!" ] atom          & intersects, ! excludes, no prefix adds
    atom   := "@" tag                     hosts of an inventory tag (a glob over tag names: @web*)
            | ("failed"|"ok"|"skipped") ":" fanout_id
                                          hosts of an earlier fan-out: failed = failed, timeout
                                          or unreachable; a denied host is never re-selected
            | glob                        *, ? or [...] over the inventory and ssh_config aliases
            | name                        an alias, or a host form: user@host, host:port,
                                          user@host:port, a dotted name or an IP literal

Evaluation is Ansible's: the union of the plain terms (the whole inventory when there is
none), then every ``&`` term intersects, then every ``!`` term removes; the result keeps the
order of first appearance and holds each name once.

Strictness, because a wrong host is worse than an error:

- a plain or ``&`` term that selects nothing (a glob or tag matching no alias, a fan-out
  whose hosts had no such status) is ``invalid``, naming the term; so is a ``!`` term that
  matches no known host at all (a mistyped exclusion must not silently run on the host it
  meant to spare);
- a bare single-label name that is not an alias (``web13`` when the inventory stops at
  ``web12``) is ``invalid`` instead of a DNS lookup of the typo: outside the inventory a host
  is written ``user@host``, ``host:port``, with a dot, or as an IP literal;
- a selection that ends up empty is ``invalid``, naming the term that emptied it;
- ``&`` and ``!`` name terms also match by address: ``!10.0.0.5`` removes an alias whose
  host is 10.0.0.5 (on any port unless one is given), ``!web3`` removes every selected name
  that reaches web3's host and port.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from relay_shell.errors import InvalidInput
from relay_shell.ssh.targets import parse_target, validate_user

TermOperator = Literal["add", "intersect", "exclude"]
TermKind = Literal["tag", "history", "glob", "name"]
HistoryStatus = Literal["failed", "ok", "skipped"]

MAX_PATTERN_CHARS = 262_144
MAX_TERMS = 4096
MAX_TERM_CHARS = 512
MAX_MATCHING_TERMS = 256  # globs, tags and history terms: each one is a scan of the inventory

FANOUT_ID = re.compile(r"fo-[0-9a-f]{12}")
HISTORY_STATUSES: Mapping[HistoryStatus, frozenset[str]] = {
    "failed": frozenset({"failed", "timeout", "unreachable"}),
    "ok": frozenset({"ok"}),
    "skipped": frozenset({"skipped"}),
}
_HISTORY_PREFIXES: Mapping[str, HistoryStatus] = {"failed": "failed", "ok": "ok", "skipped": "skipped"}
_GLOB_CHARACTERS = frozenset("*?[")
_TAG = re.compile(r"[A-Za-z0-9_.:*?\[\]-]{1,128}")


@dataclass(frozen=True)
class Term:
    """One term as written (``text``) and what it means."""

    text: str
    operator: TermOperator
    kind: TermKind
    value: str  # the tag, glob, name or fan-out id, without operator or prefix
    status: HistoryStatus | None = None


@dataclass(frozen=True)
class Endpoint:
    """Where a name leads; ``user`` / ``port`` ``None`` mean "any" when matching."""

    user: str | None
    hostname: str
    port: int | None

    def covers(self, other: Endpoint) -> bool:
        """Does this (a term's endpoint) name the host ``other`` reaches?"""
        if canonical_host(self.hostname) != canonical_host(other.hostname):
            return False
        if self.port is not None and self.port != other.port:
            return False
        return self.user is None or self.user == other.user


HistoryLookup = Callable[[str], Sequence[tuple[str, str]] | None]
"""A fan-out id -> its hosts and their statuses in order, or ``None`` when unknown."""


@dataclass(frozen=True)
class Catalog:
    """What patterns are evaluated against.

    ``endpoint(name)`` resolves any selected name (alias or host form) to where it leads;
    it may raise :class:`InvalidInput`. ``history`` looks up earlier fan-outs.
    """

    aliases: Sequence[str]
    tags: Mapping[str, Sequence[str]]
    endpoint: Callable[[str], Endpoint]
    history: HistoryLookup = field(default=lambda fanout_id: None)


def split_terms(pattern: str | Sequence[str], *, argument: str = "hosts") -> list[str]:
    """The terms of a pattern, in order (duplicates kept: evaluation removes them).

    Raises:
        InvalidInput: not a string or list of strings, or beyond the size bounds.
    """
    items = [pattern] if isinstance(pattern, str) else list(pattern)
    total = 0
    terms: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(argument, "every host pattern must be a string")
        total += len(item)
        if total > MAX_PATTERN_CHARS:
            raise InvalidInput(argument, f"longer than {MAX_PATTERN_CHARS} characters")
        terms.extend(item.replace(",", " ").split())
        if len(terms) > MAX_TERMS:
            raise InvalidInput(argument, f"more than {MAX_TERMS} terms")
    return terms


def parse_term(text: str, aliases: frozenset[str], *, argument: str = "hosts") -> Term:
    """Classify one term; validates host forms, tags and fan-out ids.

    Raises:
        InvalidInput: naming the term and what is wrong with it.
    """
    if len(text) > MAX_TERM_CHARS:
        raise InvalidInput(argument, f"term {text[:40]!r}... is longer than {MAX_TERM_CHARS} characters")
    operator: TermOperator = "add"
    body = text
    if text[:1] in ("&", "!"):
        operator = "intersect" if text[0] == "&" else "exclude"
        body = text[1:]
    if not body:
        raise InvalidInput(argument, f"term {text!r} has an operator but no host, tag or glob after it")
    if body[0] in "&!":
        raise InvalidInput(argument, f"term {text!r}: one operator per term (& or !)")
    if body in aliases:
        return Term(text, operator, "name", body)
    if body.startswith("@"):
        tag = body[1:]
        if not _TAG.fullmatch(tag):
            raise InvalidInput(argument, f"term {text!r}: {tag!r} is not a tag name")
        return Term(text, operator, "tag", tag)
    prefix, colon, fanout_id = body.partition(":")
    status = _HISTORY_PREFIXES.get(prefix) if colon else None
    if status is not None:
        if not FANOUT_ID.fullmatch(fanout_id):
            raise InvalidInput(argument, f"term {text!r}: {fanout_id!r} is not a fan-out id (fo- + 12 hex)")
        return Term(text, operator, "history", fanout_id, status)
    if _is_glob(body):
        return Term(text, operator, "glob", body)
    _validate_host_form(text, body, aliases, argument)
    return Term(text, operator, "name", body)


def _is_glob(body: str) -> bool:
    if not _GLOB_CHARACTERS & set(body):
        return False
    if "*" in body or "?" in body:
        return True
    try:  # brackets alone: a bracketed IPv6 literal ([::1]:22) is a host form, not a character class
        parse_target(body)
    except InvalidInput:
        return True
    return False


def _validate_host_form(text: str, body: str, aliases: frozenset[str], argument: str) -> None:
    user, at, rest = body.rpartition("@")
    if at and rest in aliases:  # user@alias: the alias with another login
        validate_user(user, argument=argument)
        return
    try:
        user_part, host, port = parse_target(body)
    except InvalidInput as exc:
        raise InvalidInput(argument, f"term {text!r}: {exc.problem}") from exc
    if user_part is None and port is None and "." not in host and not _is_ip(host):
        raise InvalidInput(
            argument,
            f"term {text!r} matches no inventory or ssh_config alias; to reach a host outside the "
            "inventory write it as user@host, host:port, a dotted name or an IP address",
        )


def select(pattern: str | Sequence[str], catalog: Catalog, *, argument: str = "hosts") -> list[str]:
    """The names ``pattern`` selects, in order of first appearance, each once.

    Raises:
        InvalidInput: a malformed term, a term that selects nothing, or an empty result
            (naming the term responsible).
    """
    aliases = frozenset(catalog.aliases)
    terms = [parse_term(text, aliases, argument=argument) for text in split_terms(pattern, argument=argument)]
    if sum(1 for term in terms if term.kind != "name") > MAX_MATCHING_TERMS:
        raise InvalidInput(argument, f"more than {MAX_MATCHING_TERMS} glob, tag or fan-out terms")
    evaluator = _Evaluator(catalog)
    plain = [term for term in terms if term.operator == "add"]
    selected: dict[str, None] = {}
    if plain:
        for term in plain:
            matched = evaluator.universe_matches(term)
            if not matched:
                raise InvalidInput(argument, f"term {term.text!r} {evaluator.why_empty(term)}")
            selected.update(dict.fromkeys(matched))
    else:
        selected = dict.fromkeys(catalog.aliases)
        if not selected:
            raise InvalidInput(argument, "no hosts given and the inventory is empty")
    for operator in ("intersect", "exclude"):
        for term in (term for term in terms if term.operator == operator):
            if not evaluator.known(term, selected):
                raise InvalidInput(argument, f"term {term.text!r} {evaluator.why_empty(term)}")
            hits = {name for name in selected if evaluator.entry_matches(term, name)}
            selected = {name: None for name in selected if (name in hits) == (operator == "intersect")}
            if not selected:
                raise InvalidInput(argument, f"no host left after term {term.text!r}: the selection is empty")
    return list(selected)


class _Evaluator:
    """Term matching against the catalog, with resolved endpoints cached."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._aliases = frozenset(catalog.aliases)
        self._endpoints: dict[str, Endpoint] = {}

    def universe_matches(self, term: Term) -> list[str]:
        """What a term selects on its own (for plain terms and for 'does it exist')."""
        if term.kind == "name":
            return [term.value]
        if term.kind == "tag":
            return [alias for alias in self.catalog.aliases if self._has_tag(alias, term.value)]
        if term.kind == "glob":
            return [alias for alias in self.catalog.aliases if fnmatch.fnmatchcase(alias, term.value)]
        return self._history(term)

    def known(self, term: Term, selected: Mapping[str, None]) -> bool:
        """Does an & or ! term refer to anything at all? A name always does, a fan-out term when
        the fan-out is in the history, a tag or glob when it matches an alias or a selected host."""
        if term.kind == "name":
            return True
        if term.kind == "history":
            return self.catalog.history(term.value) is not None
        return bool(self.universe_matches(term)) or any(self.entry_matches(term, name) for name in selected)

    def why_empty(self, term: Term) -> str:
        if term.kind == "tag":
            return f"matches no host: no inventory host has the tag {term.value!r}"
        if term.kind == "glob":
            return "matches no inventory or ssh_config alias"
        if self.catalog.history(term.value) is None:
            return "names a fan-out that is not in the history (unknown, or too old and forgotten)"
        return f"matches no host: no host of {term.value} ended {term.status}"

    def entry_matches(self, term: Term, name: str) -> bool:
        """Does an & or ! term match the selected ``name``?"""
        if term.kind == "tag":
            return self._has_tag(name, term.value)
        if term.kind == "history":
            return name in self._history(term)
        if term.kind == "glob":
            return fnmatch.fnmatchcase(name, term.value) or fnmatch.fnmatchcase(
                self._endpoint(name).hostname.lower(), term.value.lower()
            )
        return name == term.value or self._term_endpoint(term.value).covers(self._endpoint(name))

    def _has_tag(self, alias: str, tag: str) -> bool:
        tags = self.catalog.tags.get(alias, ())
        if _GLOB_CHARACTERS & set(tag):
            return any(fnmatch.fnmatchcase(candidate, tag) for candidate in tags)
        return tag in tags

    def _history(self, term: Term) -> list[str]:
        entries = self.catalog.history(term.value) or ()
        wanted = HISTORY_STATUSES[term.status] if term.status is not None else frozenset()
        return list(dict.fromkeys(host for host, status in entries if status in wanted))

    def _endpoint(self, name: str) -> Endpoint:
        found = self._endpoints.get(name)
        if found is None:
            found = self._endpoints[name] = self.catalog.endpoint(name)
        return found

    def _term_endpoint(self, value: str) -> Endpoint:
        """An alias term matches its host and port (any user); a host form matches what it spells."""
        if value in self._aliases or value.rpartition("@")[2] in self._aliases:
            resolved = self._endpoint(value)
            user = resolved.user if "@" in value else None
            return Endpoint(user, resolved.hostname, resolved.port)
        user, host, port = parse_target(value)
        return Endpoint(user, host, port)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def canonical_host(hostname: str) -> str:
    """IP literals in one spelling, names lower-case without a trailing dot."""
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        return hostname.lower().rstrip(".")
