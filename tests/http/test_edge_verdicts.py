"""EdgeGuard keeps its Host/Origin verdicts per distinct header values: the same answer every time."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from relay_shell.config import Settings
from relay_shell.http.edge import MAX_VERDICTS, EdgeGuard


async def _route(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def status(guard: EdgeGuard, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": headers}
    await guard(scope, receive, send)
    return int(sent[0]["status"])


async def test_verdicts_hold_past_the_kept_ones() -> None:
    guard = EdgeGuard(_route, settings=Settings(http_allowed_hosts="relay.example.org:443"))
    for round_ in range(2):  # the first round fills the kept verdicts, the second reads them
        for port in range(1, MAX_VERDICTS + 40):
            assert await status(guard, [(b"host", b"localhost:%d" % port)]) == 200
            assert await status(guard, [(b"host", b"relay.example.org:%d" % port)]) == (
                200 if port == 443 else 421
            )
            assert await status(guard, [(b"host", b"127.0.0.1:%d@evil.example" % port)]) == 421, round_
    assert await status(guard, [(b"host", b"localhost"), (b"host", b"localhost")]) == 421
    assert await status(guard, []) == 421
    assert await status(guard, [(b"host", b"LOCALHOST:8080"), (b"origin", b"http://localhost:9")]) == 200
    assert await status(guard, [(b"host", b"localhost"), (b"origin", b"http://evil.example")]) == 403
    null_origin = [(b"host", b"localhost"), (b"origin", b"null")]
    assert await status(guard, null_origin) == 403
    assert await status(guard, [*null_origin, (b"sec-fetch-site", b"same-origin")]) == 200
    assert await status(guard, [*null_origin, (b"sec-fetch-site", b"cross-site")]) == 403
    assert await status(guard, null_origin) == 403
