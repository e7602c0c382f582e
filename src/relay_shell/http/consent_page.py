"""The consent page: server-rendered HTML, no script, no external asset, a strict CSP.

``GET /consent?request=ID`` shows the client's name and id, the redirect URI, the scopes
asked (one ``scope`` checkbox for each the server may grant, none ticked in advance), the
time left, a passphrase field (when one is configured), an approval-code field with the
exact ``relay-shell --approve-login ID`` command, and two buttons named ``decision``:
``approve`` and ``deny``. The form posts to ``/consent`` with hidden ``request`` and
``csrf`` fields; the same CSRF token is set as an ``HttpOnly``, ``SameSite=Strict`` cookie
scoped to ``/consent`` and both must match (:class:`~relay_shell.http.consent.ConsentService`).

Every value is HTML-escaped into a :class:`string.Template`. Responses carry
``Content-Security-Policy: default-src 'none'; style-src 'sha256-...'; form-action 'self'
<the client's redirect origin>; frame-ancestors 'none'; base-uri 'none'`` (the redirect
origin is there because browsers apply ``form-action`` to the redirect that follows the
post), ``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin`` (the page's URL, which
names the request, never leaves this server; the redirect to the client carries
``no-referrer``), ``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from string import Template
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from relay_shell.http.consent import CLOSED, UNKNOWN, ConsentForm, ConsentRequest, ConsentService
from relay_shell.http.edge import parse_authority

COOKIE = "relay_shell_consent"
MAX_FORM_FIELDS = 32
SCOPE_MEANING = {
    "relay-shell:read": "tier 0 only: read-only diagnostics, no command runs",
    "relay-shell:operate": "up to tier 2: commands, sessions, transfers, forwards; no tier 3",
    "relay-shell:admin": "every tier, including irreversible (tier 3) commands",
}
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#111}"
    "dt{font-weight:600;margin-top:.5rem}dd{margin:0 0 0 1rem;overflow-wrap:anywhere}"
    "fieldset{margin:1rem 0;border:1px solid #999}label{display:block;margin:.4rem 0}"
    ".notice{padding:.5rem;border:2px solid #b00;background:#fee}"
    "button{margin-right:1rem;padding:.4rem 1.2rem}code{background:#eee;padding:0 .2rem}"
)
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>relay-shell: authorize an MCP client</title><style>$style</style></head>
<body><main><h1>Authorize an MCP client for relay-shell</h1>
$notice$body</main></body></html>
""")

FORM = Template("""<p>A client asks for access to this relay-shell server. Approve only a login you
started yourself, from the client named below.</p>
<dl><dt>Client</dt><dd>$client_name <code>$client_id</code></dd>
<dt>Redirect URI (where the code goes)</dt><dd><code>$redirect_uri</code></dd>
<dt>Scopes asked</dt><dd>$asked</dd>
<dt>This request expires</dt><dd>in $expires_in ($attempts_left attempt(s) left)</dd></dl>
<form method="post" action="/consent">
<input type="hidden" name="request" value="$request_id">
<input type="hidden" name="csrf" value="$csrf">
<fieldset><legend>Scopes to grant</legend>
$checkboxes$not_grantable</fieldset>
<fieldset><legend>Prove you are the operator</legend>
$passphrase<label>Approval code
<input type="text" name="approval_code" autocomplete="off" spellcheck="false" size="14"></label>
<p>To get an approval code, run on the server host:
<code>relay-shell --approve-login $request_id</code></p></fieldset>
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
""")

PASSPHRASE = """<label>Operator passphrase
<input type="password" name="passphrase" autocomplete="current-password"></label>
<p>or</p>
"""


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def csp_source(redirect_uri: str) -> str | None:
    """The CSP source of ``redirect_uri``'s origin (``scheme://host[:port]`` or ``scheme:``), if safe."""
    parts = urlsplit(redirect_uri)
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        return None
    if scheme in ("http", "https"):
        return f"{scheme}://{parts.netloc}" if parse_authority(parts.netloc) is not None else None
    return f"{scheme}:"


def content_security_policy(redirect_uri: str | None) -> str:
    """The page's CSP: nothing but our one style block and form posts to us (and the client's redirect)."""
    targets = ["'self'"]
    source = csp_source(redirect_uri) if redirect_uri else None
    if source is not None:
        targets.append(source)
    return (
        f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action {' '.join(targets)}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def _duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 60} min {whole % 60:02d} s"


def render(
    view: ConsentRequest | None, *, csrf: str | None, message: str, passphrase: bool, now: float
) -> str:
    """The page: the form for an open request (with ``csrf``), else only ``message``."""
    notice = f'<p class="notice" role="alert">{escape(message)}</p>\n' if message else ""
    body = ""
    if view is not None and not view.dead and csrf is not None:
        checkboxes = "".join(
            f'<label><input type="checkbox" name="scope" value="{escape(scope)}"> <code>{escape(scope)}</code>: '
            f"{escape(SCOPE_MEANING[scope])}</label>\n"
            for scope in view.grantable
        )
        refused = [scope for scope in view.asked if scope not in view.grantable]
        not_grantable = (
            f"<p>Asked but above this server's maximum scope, so not grantable: {escape(' '.join(refused))}</p>\n"
            if refused
            else ""
        )
        body = FORM.substitute(
            client_name=escape(view.client_name or "(unnamed client)"),
            client_id=escape(view.client_id),
            redirect_uri=escape(view.redirect_uri),
            asked=escape(" ".join(view.asked)),
            expires_in=_duration(view.expires_at - now),
            attempts_left=view.attempts_left,
            request_id=escape(view.request_id),
            csrf=escape(csrf),
            checkboxes=checkboxes,
            not_grantable=not_grantable,
            passphrase=PASSPHRASE if passphrase else "",
        )
    return PAGE.substitute(style=STYLE, notice=notice, body=body)


def _headers(redirect_uri: str | None, *, referrer: str = "same-origin") -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(redirect_uri),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": referrer,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


class ConsentEndpoints:
    """``GET`` and ``POST /consent`` over a :class:`ConsentService`."""

    def __init__(self, service: ConsentService, *, secure_cookie: bool, cookie_max_age: int) -> None:
        self._service = service
        self._secure = secure_cookie
        self._max_age = cookie_max_age

    async def show(self, request: Request) -> Response:
        """The form for ``?request=ID``; 404 for an unknown or expired request, 410 for a closed one."""
        view = self._service.request(request.query_params.get("request", ""))
        if view is None:
            return await self._page(None, 404, UNKNOWN)
        if view.dead:
            return await self._page(view, 410, CLOSED)
        return await self._page(view, 200, "")

    async def decide(self, request: Request) -> Response:
        """Apply the posted form: a 303 to the client, or the page again with the reason."""
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)

        def text(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""

        posted = ConsentForm(
            request_id=text("request"),
            csrf=text("csrf"),
            cookie=request.cookies.get(COOKIE, ""),
            decision=text("decision"),
            scopes=tuple(value for value in form.getlist("scope") if isinstance(value, str)),
            passphrase=text("passphrase"),
            approval_code=text("approval_code"),
        )
        outcome = await self._service.decide(posted)
        if outcome.redirect is not None:
            return RedirectResponse(
                outcome.redirect, status_code=303, headers=_headers(None, referrer="no-referrer")
            )
        return await self._page(outcome.request, outcome.status, outcome.message)

    async def _page(self, view: ConsentRequest | None, status: int, message: str) -> Response:
        """The page for ``view``; an open request gets a fresh CSRF token in the form and the cookie."""
        csrf = await self._service.issue_csrf(view.request_id) if view is not None and not view.dead else None
        content = render(
            view,
            csrf=csrf,
            message=message,
            passphrase=self._service.passphrase_enabled,
            now=self._service.now(),
        )
        response = HTMLResponse(
            content, status_code=status, headers=_headers(view.redirect_uri if view else None)
        )
        if csrf is not None:
            response.set_cookie(
                COOKIE,
                csrf,
                max_age=self._max_age,
                path="/consent",
                secure=self._secure,
                httponly=True,
                samesite="strict",
            )
        return response
