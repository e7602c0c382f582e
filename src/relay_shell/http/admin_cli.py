"""The operator's commands for builtin OAuth, run on the server host.

    relay-shell --set-operator-passphrase   read a passphrase (no echo on a terminal), print
                                            RELAY_SHELL_AUTH_OPERATOR_HASH='<Argon2id hash>'
    relay-shell --approve-login ID          print a one-time approval code for the pending
                                            login request ID, with its client and scopes
    relay-shell --list-grants [--json]      the live grants (one per consent) and their tokens
    relay-shell --revoke-grant ID           revoke a grant: every code and token of it dies

They work on the same ``RELAY_SHELL_AUTH_STATE_DIR`` as the server, under the same file
lock, so run them as the service account with the service's environment (as root they keep
the state file owned by the directory's owner). Approving and revoking are audited through
the same audit file as the server (``oauth_consent`` ``approval_code_issued``,
``oauth_revoke`` ``revoked`` via ``operator``): a server is the only writer of that file,
so beside a running one (or as root beside the service's file) the record is submitted to
its inbox and the server writes it, marked ``submitted: inbox``. An approval code is
refused while the audit is required and cannot be written. These verbs are protected paths for the policy: an agent
cannot run them through the relay.

Exit codes: 0 done, 2 refused (no such request or grant, no state, bad passphrase).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from relay_shell.config import Settings
    from relay_shell.http.oauth_events import OAuthAudit
    from relay_shell.http.oauth_state import OAuthState, StateStore

EXIT_OK = 0
EXIT_REFUSED = 2
MAX_LINE_CHARS = 4096


def add_arguments(group: argparse._MutuallyExclusiveGroup) -> None:
    """Add the four verbs to the command's mutually exclusive group of modes."""
    group.add_argument(
        "--set-operator-passphrase",
        action="store_true",
        help="read the operator passphrase from stdin and print its Argon2id hash for the env file",
    )
    group.add_argument(
        "--approve-login", metavar="ID", help="print a one-time approval code for login request ID"
    )
    group.add_argument("--list-grants", action="store_true", help="list the live OAuth grants (builtin mode)")
    group.add_argument("--revoke-grant", metavar="ID", help="revoke OAuth grant ID and all its tokens")


def wants_settings(args: argparse.Namespace) -> bool:
    """True when ``args`` names a verb that reads the settings (all but the passphrase hash)."""
    return args.approve_login is not None or args.list_grants or args.revoke_grant is not None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the verb ``args`` names (see :func:`wants_settings`)."""
    if args.approve_login is not None:
        return approve_login(settings, args.approve_login, as_json=args.json)
    if args.list_grants:
        return list_grants(settings, as_json=args.json)
    return revoke_grant(settings, args.revoke_grant)


def set_operator_passphrase(stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Read a passphrase (twice, without echo, on a terminal; one line otherwise) and print its hash line."""
    from relay_shell.http.operator_auth import hash_passphrase

    source, out = stdin or sys.stdin, stdout or sys.stdout
    if source.isatty():
        passphrase = getpass.getpass("Operator passphrase: ")
        if getpass.getpass("Again: ") != passphrase:
            print("relay-shell: the two passphrases differ", file=sys.stderr)
            return EXIT_REFUSED
    else:
        passphrase = source.readline(MAX_LINE_CHARS + 1).removesuffix("\n").removesuffix("\r")
    try:
        encoded = hash_passphrase(passphrase)
    except ValueError as exc:
        print(f"relay-shell: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"RELAY_SHELL_AUTH_OPERATOR_HASH='{encoded}'", file=out)
    return EXIT_OK


def _open_store(settings: Settings, audit: OAuthAudit) -> StateStore | None:
    """The server's state store, upgraded; ``None`` (reported) when there is no state directory."""
    from relay_shell.errors import ConfigError
    from relay_shell.http.oauth_state import OAuthStateUnavailable, StateStore

    directory = settings.expand(settings.auth_state_dir)
    if not (directory / "state.json").is_file():
        print(
            f"relay-shell: no OAuth state in {directory}: is builtin OAuth on, and is "
            "RELAY_SHELL_AUTH_STATE_DIR the server's?",
            file=sys.stderr,
        )
        return None
    try:
        store = StateStore(directory)
        for family in store.upgrade():
            audit.record("oauth_revoke", "upgrade", grant=family, details={"reason": "issued before consent"})
    except (ConfigError, OAuthStateUnavailable) as exc:
        print(f"relay-shell: {exc}", file=sys.stderr)
        return None
    return store


def _audit(settings: Settings) -> OAuthAudit:
    """The audit of the operator's command: the audit file itself when no server holds it and
    it is ours, else the file's inbox, which its writer takes in (``governance/audit/inbox.py``)."""
    from relay_shell.governance.audit.guard import UnsafeFile, probe
    from relay_shell.governance.audit.inbox import InboxSubmitter
    from relay_shell.governance.audit.records import RecordSink
    from relay_shell.governance.audit.writer import AuditSink
    from relay_shell.http.oauth_events import OAuthAudit

    path = settings.expand(settings.audit_path)
    try:
        remark = probe(path)
    except (UnsafeFile, OSError):
        remark = None  # the sink below reports what is wrong with the file
    sink: RecordSink
    if remark is None:
        sink = AuditSink(path, fmt=settings.audit_format, chain=settings.audit_chain)
    else:  # a running server holds it, or it belongs to the service's user
        sink = InboxSubmitter(path, writer_running=remark.startswith("in use"))
    return OAuthAudit(sink, policy_mode=settings.policy_mode.value, required=settings.audit_required)


def approve_login(settings: Settings, request_id: str, *, as_json: bool = False) -> int:
    """Bind a fresh approval code to the pending request and print it with what it approves."""
    import asyncio

    from relay_shell.http.consent import APPROVAL_TTL_S, issue_approval_code
    from relay_shell.http.oauth_events import request_ref

    audit = _audit(settings)
    store = _open_store(settings, audit)
    if store is None:
        return EXIT_REFUSED
    if not audit.can_grant():
        print("relay-shell: the audit trail cannot be written: no approval code is issued", file=sys.stderr)
        return EXIT_REFUSED
    issued = asyncio.run(issue_approval_code(store, request_id))
    if issued is None:
        print(
            f"relay-shell: no open login request {request_id!r} (expired, closed or never made)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    code, record, client = issued
    name = client.client_name if client is not None else None
    audit.record(
        "oauth_consent",
        "approval_code_issued",
        client_id=record.client_id,
        details={"request": request_ref(request_id), "client_name": name, "asked": record.scopes},
    )
    approval_expires = record.approval.expires_at if record.approval else record.expires_at
    if as_json:
        fields = {
            "request": request_id,
            "client_id": record.client_id,
            "client_name": name,
            "redirect_uri": record.redirect_uri,
            "scopes": record.scopes,
            "expires_at": record.expires_at,
            "approval_code": code,
            "approval_expires_at": approval_expires,
        }
        print(json.dumps(fields))
        return EXIT_OK
    left = max(0, int(record.expires_at - time.time()))
    print(f"Login request {request_id}")
    print(f"  client        {name or '(unnamed client)'} (client id {record.client_id})")
    print(f"  redirect URI  {record.redirect_uri}")
    print(f"  scopes asked  {' '.join(record.scopes)}")
    print(f"  expires in    {left // 60} min {left % 60:02d} s")
    print(f"Approval code for this request only, valid {APPROVAL_TTL_S // 60} minutes: {code}")
    print("Type it on the consent page, tick only the scopes you mean to grant, then Approve.")
    return EXIT_OK


@dataclass(frozen=True)
class GrantRow:
    """One live grant as the operator sees it."""

    grant: str
    client_id: str
    client_name: str | None
    scopes: list[str]
    method: str
    created_at: str
    access_tokens: int
    refresh_tokens: int
    expires_at: str

    def line(self) -> str:
        return (
            f"{self.grant}  {' '.join(self.scopes)}  client {self.client_name or self.client_id}  by {self.method}"
            f"  since {self.created_at}  tokens {self.access_tokens}+{self.refresh_tokens}  until {self.expires_at}"
        )


def grant_rows(state: OAuthState) -> list[GrantRow]:
    """One row per live grant: its id, client, scopes, consent, live tokens and their horizon."""
    rows: list[GrantRow] = []
    for grant_id, grant in sorted(state.grants.items(), key=lambda item: item[1].created_at):
        refresh = [record for record in state.refresh.values() if record.family == grant_id]
        access = [record for record in state.access.values() if record.family == grant_id]
        horizon = max((record.expires_at for record in refresh + access), default=grant.created_at)
        rows.append(
            GrantRow(
                grant=grant_id,
                client_id=grant.client_id,
                client_name=state.client.client_name if state.client else None,
                scopes=list(grant.scopes),
                method=grant.method,
                created_at=_iso(grant.created_at),
                access_tokens=len(access),
                refresh_tokens=len(refresh),
                expires_at=_iso(horizon),
            )
        )
    return rows


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_grants(settings: Settings, *, as_json: bool = False) -> int:
    """Print the live grants (a table, or ``{"grants": [...]}`` with ``as_json``)."""
    store = _open_store(settings, _audit(settings))
    if store is None:
        return EXIT_REFUSED
    state = store.read()
    state.prune(time.time())
    rows = grant_rows(state)
    if as_json:
        print(json.dumps({"grants": [asdict(row) for row in rows]}))
        return EXIT_OK
    if not rows:
        print("no live grants")
    for row in rows:
        print(row.line())
    return EXIT_OK


def revoke_grant(settings: Settings, grant_id: str) -> int:
    """Revoke ``grant_id`` and every code and token of it."""
    import asyncio

    audit = _audit(settings)
    store = _open_store(settings, audit)
    if store is None:
        return EXIT_REFUSED

    def change(state: OAuthState) -> tuple[bool, int, str | None]:
        grant = state.grants.get(grant_id)
        client_id = grant.client_id if grant else None
        known = grant is not None
        revoked = state.revoke_family(grant_id, via="operator")
        return known or revoked > 0, revoked, client_id

    known, revoked, client_id = asyncio.run(store.update(change))
    if not known:
        print(f"relay-shell: no live grant {grant_id!r} (see --list-grants)", file=sys.stderr)
        return EXIT_REFUSED
    audit.record("oauth_revoke", "revoked", client_id=client_id, grant=grant_id, details={"via": "operator"})
    print(f"revoked grant {grant_id} ({revoked} code(s) and token(s))")
    return EXIT_OK
