"""Stream and screen reads on the registry, with a scripted transport placing every byte."""

from __future__ import annotations

import asyncio

import pytest

from relay_shell.errors import InvalidInput
from relay_shell.linear_regex import compile_caller_regex
from relay_shell.sessions import SessionRegistry
from tests.test_sessions import add, make_registry

ENTER_ALT, LEAVE_ALT = b"\x1b[?1049h", b"\x1b[?1049l"


@pytest.fixture
async def registry() -> SessionRegistry:
    return make_registry(buffer_bytes=1 << 20)


async def test_auto_streams_a_shell_and_renders_a_full_screen_program(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(b"$ vim f\r\n")
    stream = await registry.recv(session_id, timeout_s=0, max_bytes=4096)
    assert stream.screen is None
    assert stream.output == "$ vim f\n"
    drawing = ENTER_ALT + b"\x1b[Hone\r\ntwo\r\n~\x1b[1;1H"
    await transport.deliver(drawing)
    screen = await registry.recv(session_id, timeout_s=5, max_bytes=4096)
    assert screen.screen is not None
    assert screen.screen.rows == ("one", "two", "~")
    assert (screen.screen.cursor_row, screen.screen.cursor_col) == (0, 0)
    assert screen.output == "one\ntwo\n~"
    assert screen.bytes == len(drawing)
    assert registry.info(session_id).bytes_buffered == 0  # the screen read consumed the stream
    await transport.deliver(b"\x1b[2;1HTWO" + LEAVE_ALT + b"\r\n$ ")
    after = await registry.recv(session_id, timeout_s=5, max_bytes=4096)
    assert after.screen is None
    assert after.output == "\n$ "  # what vim drew after the last screen read is skipped
    await registry.aclose()


async def test_a_stream_read_becomes_a_screen_read_when_a_program_takes_the_screen(
    registry: SessionRegistry,
) -> None:
    session_id, transport = await add(registry)
    waiting = asyncio.create_task(
        registry.recv(
            session_id, timeout_s=30, max_bytes=4096, until=compile_caller_regex("until", "^ready$")
        )
    )
    await transport.deliver(b"$ less f\r\n")
    await transport.deliver(ENTER_ALT + b"\x1b[Hready\r\n:")
    result = await asyncio.wait_for(waiting, 10)
    assert result.screen is not None
    assert result.matched is True
    assert result.screen.rows == ("ready", ":")
    await registry.aclose()


async def test_until_in_screen_mode_matches_the_screen_not_the_raw_output(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(ENTER_ALT + b"\x1b[Hold text\r\x1b[Knew")
    result = await registry.recv(
        session_id, timeout_s=0.3, max_bytes=4096, until=compile_caller_regex("until", "old text")
    )
    assert result.screen is not None
    assert (result.matched, result.timed_out) == (False, True)
    assert result.screen.rows == ("new",)
    await registry.aclose()


async def test_screen_always_renders_the_shell_and_never_streams_a_program(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(b"progress 10%\rprogress 99%\r\n$ ")
    result = await registry.recv(session_id, timeout_s=1, max_bytes=4096, screen="always")
    assert result.screen is not None
    assert result.screen.rows == ("progress 99%", "$")
    await transport.deliver(ENTER_ALT + b"drawn")
    result = await registry.recv(session_id, timeout_s=1, max_bytes=4096, screen="never")
    assert result.screen is None
    assert result.output == "drawn"
    await registry.aclose()


async def test_a_cancelled_screen_read_consumes_nothing(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(ENTER_ALT + b"screen")
    waiting = asyncio.create_task(
        registry.recv(session_id, timeout_s=60, max_bytes=4096, until=compile_caller_regex("until", "never"))
    )
    await transport.deliver(b" more")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert registry.info(session_id).bytes_buffered == len(ENTER_ALT) + 11
    await registry.aclose()


async def test_quiet_collects_until_the_output_pauses(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    waiting = asyncio.create_task(registry.recv(session_id, timeout_s=30, max_bytes=4096, quiet_s=0.5))
    for part in (b"one ", b"two ", b"three"):
        await transport.deliver(part)
    result = await asyncio.wait_for(waiting, 10)
    assert result.output == "one two three"
    assert (result.timed_out, result.matched) == (False, None)
    await registry.aclose()


async def test_screen_read_reports_the_end_of_the_session(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(ENTER_ALT + b"last frame")
    transport.finish(0)
    result = await registry.recv(session_id, timeout_s=5, max_bytes=4096, screen="always")
    assert result.screen is not None and result.screen.rows == ("last frame",)
    assert (result.ended, result.exit_code) == (True, 0)
    await registry.aclose()


async def test_screen_rows_beyond_max_bytes_are_left_out_with_a_note(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(ENTER_ALT + b"\x1b[H" + b"\r\n".join(b"row %d" % n for n in range(20)))
    result = await registry.recv(session_id, timeout_s=1, max_bytes=20)
    assert result.screen is not None
    assert result.output == "row 0\nrow 1\nrow 2"
    assert result.notes and "max_bytes=20" in result.notes[0]
    await registry.aclose()


@pytest.mark.parametrize(
    ("options", "argument"), [({"screen": "sometimes"}, "screen"), ({"quiet_s": -1.0}, "quiet_ms")]
)
async def test_bad_read_options_are_invalid(
    registry: SessionRegistry, options: dict[str, object], argument: str
) -> None:
    session_id, _ = await add(registry)
    with pytest.raises(InvalidInput) as raised:
        await registry.recv(session_id, timeout_s=0, max_bytes=10, **options)  # type: ignore[arg-type]
    assert raised.value.argument == argument
    await registry.aclose()
