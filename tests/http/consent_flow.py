"""Helpers that go through the consent page like a browser without JavaScript would.

The page is parsed with the stdlib HTML parser (its hidden fields, its ``scope`` checkboxes,
whether it asks for a passphrase), then the form is posted back with the CSRF cookie the
page set, which the HTTP client's cookie jar carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import httpx2
from argon2 import PasswordHasher, Type

PASSPHRASE = "correct horse battery staple"


def cheap_hash(passphrase: str = PASSPHRASE) -> str:
    """An Argon2id hash with tiny parameters, so tests verify it in microseconds."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID).hash(passphrase)


@dataclass
class ConsentPage:
    """What a consent page offers."""

    hidden: dict[str, str] = field(default_factory=dict)
    scopes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    passphrase_field: bool = False
    approval_field: bool = False
    action: str | None = None
    method: str | None = None


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = ConsentPage()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.page.action, self.page.method = values.get("action"), values.get("method")
        elif tag == "button" and values.get("name") == "decision":
            self.page.decisions.append(values.get("value", ""))
        elif tag == "input":
            kind, name = values.get("type", "text"), values.get("name", "")
            if kind == "hidden":
                self.page.hidden[name] = values.get("value", "")
            elif kind == "checkbox" and name == "scope":
                self.page.scopes.append(values.get("value", ""))
                if "checked" in values:
                    self.page.checked.append(values.get("value", ""))
            elif name == "passphrase":
                self.page.passphrase_field = True
            elif name == "approval_code":
                self.page.approval_field = True


def parse_page(html: str) -> ConsentPage:
    parser = _Parser()
    parser.feed(html)
    return parser.page


def request_id_of(location: str) -> str:
    """The pending request id in a ``/consent?request=ID`` URL."""
    return parse_qs(urlsplit(location).query)["request"][0]


def form_data(
    page: ConsentPage,
    *,
    decision: str = "approve",
    scopes: list[str] | None = None,
    passphrase: str | None = None,
    approval_code: str | None = None,
) -> list[tuple[str, str]]:
    data = [*page.hidden.items(), ("decision", decision)]
    data += [("scope", scope) for scope in (scopes if scopes is not None else page.scopes)]
    if passphrase is not None:
        data.append(("passphrase", passphrase))
    if approval_code is not None:
        data.append(("approval_code", approval_code))
    return data


async def consent_async(
    http: httpx2.AsyncClient,
    location: str,
    *,
    decision: str = "approve",
    scopes: list[str] | None = None,
    passphrase: str | None = PASSPHRASE,
    approval_code: str | None = None,
) -> httpx2.Response:
    """Open the consent page at ``location`` and post its form; the response to the post."""
    shown = await http.get(location)
    assert shown.status_code == 200, shown.text
    page = parse_page(shown.text)
    data = form_data(
        page, decision=decision, scopes=scopes, passphrase=passphrase, approval_code=approval_code
    )
    return await http.post("/consent", data=dict_list(data))


def consent_sync(
    http: httpx2.Client,
    location: str,
    *,
    decision: str = "approve",
    scopes: list[str] | None = None,
    passphrase: str | None = PASSPHRASE,
    approval_code: str | None = None,
) -> httpx2.Response:
    shown = http.get(location)
    assert shown.status_code == 200, shown.text
    page = parse_page(shown.text)
    data = form_data(
        page, decision=decision, scopes=scopes, passphrase=passphrase, approval_code=approval_code
    )
    return http.post("/consent", data=dict_list(data))


def dict_list(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Form pairs as httpx wants repeated fields: name -> values."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped
