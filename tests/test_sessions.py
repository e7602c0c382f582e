"""The session registry against a scripted in-memory Transport (our own protocol).

Real PTYs are exercised in tests/local/test_pty.py; here each chunk boundary, clock tick
and end of output is placed exactly, so buffering, decoding and reaping are deterministic.
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay_shell.errors import InvalidInput, LimitReached, SessionEnded, SessionNotFound, SpawnFailed
from relay_shell.linear_regex import compile_caller_regex
from relay_shell.sessions import (
    KEYS,
    SIGNALS,
    RecvResult,
    SessionRegistry,
    Transport,
    keys_to_bytes,
    parse_signal,
    strip_ansi,
)


class ScriptedTransport:
    """A Transport whose output the test delivers chunk by chunk."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.reading = asyncio.Event()
        self.written: list[bytes] = []
        self.signals: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.close_calls = 0
        self.closed = asyncio.Event()
        self.status: int | None = None
        self.fail_reads = False

    async def deliver(self, data: bytes) -> None:
        """Hand ``data`` to the reader and return once it was appended (the reader reads again)."""
        self.reading.clear()
        self.chunks.put_nowait(data)
        await asyncio.wait_for(self.reading.wait(), 5)

    def finish(self, status: int) -> None:
        self.status = status
        self.chunks.put_nowait(b"")

    async def end(self, status: int) -> None:
        """Finish and return once the reader saw the end (it then closes the transport)."""
        self.finish(status)
        await asyncio.wait_for(self.closed.wait(), 5)

    async def read(self) -> bytes:
        self.reading.set()
        if self.fail_reads:
            raise OSError("link down")
        return await self.chunks.get()

    async def write(self, data: bytes) -> None:
        if self.status is not None:
            raise SessionEnded("ended")
        self.written.append(data)

    async def resize(self, cols: int, rows: int) -> None:
        self.sizes.append((cols, rows))

    async def signal(self, name: str) -> None:
        self.signals.append(name)

    async def close(self, grace_s: float = 2.0) -> None:
        self.close_calls += 1
        self.closed.set()
        if self.status is None:
            self.status = 143
            self.chunks.put_nowait(b"")

    @property
    def exit_status(self) -> int | None:
        return self.status

    @property
    def pid(self) -> int | None:
        return None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_registry(clock: Callable[[], float] | None = None, **overrides: float) -> SessionRegistry:
    options: dict[str, float] = {
        "max_sessions": 4,
        "buffer_bytes": 4096,
        "idle_timeout_s": 60.0,
        "max_lifetime_s": 600.0,
        **overrides,
    }
    return SessionRegistry(
        max_sessions=int(options["max_sessions"]),
        buffer_bytes=int(options["buffer_bytes"]),
        idle_timeout_s=options["idle_timeout_s"],
        max_lifetime_s=options["max_lifetime_s"],
        clock=clock or FakeClock(),
        sweep_interval_s=options.get("sweep_interval_s", 30.0),
    )


async def add(
    registry: SessionRegistry,
    kind: str = "local",
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> tuple[str, ScriptedTransport]:
    transport = ScriptedTransport()
    info = await registry.add(
        transport, kind=kind, host=None if kind == "local" else "web1", command="bash", cols=80, rows=24,
        on_close=on_close,
    )  # fmt: skip
    await asyncio.wait_for(transport.reading.wait(), 5)  # the reader task is running
    return info.session_id, transport


async def recv_now(registry: SessionRegistry, session_id: str, **options: object) -> RecvResult:
    return await registry.recv(session_id, timeout_s=0, max_bytes=65536, **options)  # type: ignore[arg-type]


@pytest.fixture
async def registry() -> SessionRegistry:
    return make_registry()


def test_scripted_transport_satisfies_the_protocol() -> None:
    assert isinstance(ScriptedTransport(), Transport)


# -- ids, capacity, unknown ids -----------------------------------------------------------


@pytest.mark.parametrize(("kind", "pattern"), [("local", r"sh-[0-9a-f]{12}"), ("ssh", r"ssh-[0-9a-f]{12}")])
async def test_session_ids_have_the_kind_prefix_and_12_hex(kind: str, pattern: str) -> None:
    registry = make_registry()
    ids = {(await add(registry, kind))[0] for _ in range(4)}
    assert len(ids) == 4
    assert all(re.fullmatch(pattern, session_id) for session_id in ids)
    info = registry.list()[0]
    assert (info.kind, info.host) == (kind, None if kind == "local" else "web1")
    await registry.aclose()


async def test_full_registry_raises_limit_reached_and_closes_the_refused_transport() -> None:
    registry = make_registry(max_sessions=2)
    await add(registry)
    await add(registry)
    with pytest.raises(LimitReached) as raised:
        registry.ensure_capacity()
    assert raised.value.limit == "RELAY_SHELL_MAX_SESSIONS"
    assert raised.value.value == 2
    assert "RELAY_SHELL_MAX_SESSIONS" in raised.value.message
    refused = ScriptedTransport()
    released: list[str] = []

    async def on_close() -> None:
        released.append("closed")

    with pytest.raises(LimitReached):
        await registry.add(refused, kind="local", host=None, command="x", cols=80, rows=24, on_close=on_close)
    assert refused.close_calls == 1
    assert released == ["closed"]
    assert len(registry) == 2
    await registry.aclose()


async def test_unknown_kind_is_a_programming_error(registry: SessionRegistry) -> None:
    with pytest.raises(ValueError, match="kind"):
        await registry.add(ScriptedTransport(), kind="telnet", host=None, command="", cols=80, rows=24)


@pytest.mark.parametrize(
    "call",
    [
        lambda registry: registry.send("sh-000000000000", b"x"),
        lambda registry: registry.recv("sh-000000000000", timeout_s=0, max_bytes=10),
        lambda registry: registry.resize("sh-000000000000", 80, 24),
        lambda registry: registry.kill("sh-000000000000"),
        lambda registry: registry.kill("sh-000000000000", "INT", close=False),
    ],
    ids=["send", "recv", "resize", "kill", "signal"],
)
async def test_unknown_session_id_raises_session_not_found(
    registry: SessionRegistry, call: Callable[[SessionRegistry], Awaitable[object]]
) -> None:
    with pytest.raises(SessionNotFound) as raised:
        await call(registry)
    assert raised.value.session_id == "sh-000000000000"
    assert raised.value.kind == "invalid"
    with pytest.raises(SessionNotFound):
        registry.info("nope")


# -- signals and keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("INT", "INT"), ("SIGINT", "INT"), ("int", "INT"), ("2", "INT"), (" sigterm ", "TERM"), ("9", "KILL"),
     ("Hup", "HUP"), ("WINCH", "WINCH"), ("SIGUSR1", "USR1"), ("STOP", "STOP"), ("cont", "CONT"), ("QUIT", "QUIT")],
)  # fmt: skip
def test_parse_signal_accepts_names_prefixes_case_and_numbers(given: str, expected: str) -> None:
    assert parse_signal(given) == expected
    assert expected in SIGNALS


@pytest.mark.parametrize("given", ["FOO", "SIGFOO", "", "0", "999", "SIG", "-9", "INT2"])
def test_parse_signal_rejects_unknown_names_as_invalid_signal(given: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_signal(given)
    assert raised.value.argument == "signal"
    assert "known: HUP, INT" in raised.value.problem


async def test_kill_with_unknown_signal_is_invalid_and_leaves_the_session(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    with pytest.raises(InvalidInput) as raised:
        await registry.kill(session_id, "SIGBOGUS")
    assert raised.value.argument == "signal"
    assert transport.signals == []
    assert transport.close_calls == 0
    assert registry.info(session_id).state == "running"
    await registry.aclose()


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["Enter"], b"\r"), (["Tab"], b"\t"), (["Escape"], b"\x1b"), (["Backspace"], b"\x7f"),
        (["Up", "Down", "Right", "Left"], b"\x1b[A\x1b[B\x1b[C\x1b[D"), (["Home", "End"], b"\x1b[H\x1b[F"),
        (["PageUp", "PageDown"], b"\x1b[5~\x1b[6~"), (["C-a"], b"\x01"), (["C-c"], b"\x03"), (["C-d"], b"\x04"),
        (["C-z"], b"\x1a"), (["c-C", "enter", "ESCAPE"], b"\x03\r\x1b"), ([], b""),
    ],
)  # fmt: skip
def test_keys_to_bytes(keys: list[str], expected: bytes) -> None:
    assert keys_to_bytes(keys) == expected


def test_every_control_key_from_a_to_z() -> None:
    for offset, letter in enumerate(string.ascii_lowercase):
        assert KEYS[f"C-{letter}"] == bytes([offset + 1])


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (["F1", "F2", "F3", "F4"], b"\x1bOP\x1bOQ\x1bOR\x1bOS"),
        (["F5", "F6", "F7", "F8"], b"\x1b[15~\x1b[17~\x1b[18~\x1b[19~"),
        (["F9", "F10", "F11", "F12"], b"\x1b[20~\x1b[21~\x1b[23~\x1b[24~"),
        (["Insert", "Delete", "S-Tab"], b"\x1b[2~\x1b[3~\x1b[Z"),
        (["C-Space", "C-\\", "C-]"], b"\x00\x1c\x1d"),
        (["M-x", "M-X", "m-b", "M-.", "M-<"], b"\x1bx\x1bX\x1bb\x1b.\x1b<"),
        (["M-Enter", "M-Backspace", "m-left", "M-Space", "M-F1"], b"\x1b\r\x1b\x7f\x1b\x1b[D\x1b \x1b\x1bOP"),
        (["f12", "delete", "s-tab", "c-space"], b"\x1b[24~\x1b[3~\x1b[Z\x00"),
    ],
)  # fmt: skip
def test_function_editing_control_and_alt_keys(keys: list[str], expected: bytes) -> None:
    assert keys_to_bytes(keys) == expected


def test_every_key_of_the_table_is_accepted_by_its_own_name() -> None:
    for name, value in KEYS.items():
        assert keys_to_bytes([name]) == value


@pytest.mark.parametrize(
    "key", ["F0", "F13", "M-", "M-M-x", "M-é", "M-ab", "C-Space2", "C-[", "Alt-x", "M-\t", "S-Enter"]
)
def test_unknown_named_keys_are_invalid_naming_the_key(key: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        keys_to_bytes(["Enter", key])
    assert raised.value.argument == "keys"
    assert raised.value.problem.startswith(f"unknown key {key!r}")
    assert "F1 .. F12" in raised.value.problem and "M-<" in raised.value.problem


@pytest.mark.parametrize("keys", [["F13"], ["Enter", "Hyper"], ["C-1"], [""], "Enter", [3]])
def test_unknown_keys_are_invalid_keys(keys: list[str]) -> None:
    with pytest.raises(InvalidInput) as raised:
        keys_to_bytes(keys)
    assert raised.value.argument == "keys"


def test_unknown_key_message_names_the_key_and_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as raised:
        keys_to_bytes(["Enter", "X"])
    assert raised.value.problem.startswith("unknown key 'X' (known: Enter, Tab, Escape")
    assert "C-a .. C-z" in raised.value.problem


# -- strip_ansi ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("\x1b[1;31mred\x1b[0m", "red"),
        ("\x1b[?2004hroot@vm:~# ", "root@vm:~# "),
        ("a\x1b[2K\x1b[1Gb", "ab"),
        ("\x1b]0;title\x07prompt", "prompt"),
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b(Bplain\x1b)0", "plain"),
        ("\x1bP1$r0m\x1b\\x", "x"),
        ("\x1b=\x1b>keypad\x1b7\x1b8", "keypad"),
        ("line\r\nnext\r\r\n", "line\nnext\n"),
        ("echo x\r\n\x1b[?2004l\rx\r\n", "echo x\nx\n"),
        ("progress 10%\rprogress 20%", "progress 10%\rprogress 20%"),
        ("bell\x07 nul\x00", "bell nul"),
        ("stray \x1b", "stray "),
        ("tab\tand unicode é😀", "tab\tand unicode é😀"),
    ],
)
def test_strip_ansi(raw: str, plain: str) -> None:
    assert strip_ansi(raw) == plain


_TERMINAL_ALPHABET = st.sampled_from(
    ["\x1b", "[", "]", "\x07", "\\", "\r", "\n", "m", "0", ";", "?", "(", "B", "a", "é", "P"]
)


@given(st.lists(_TERMINAL_ALPHABET, max_size=60).map("".join))
def test_strip_ansi_leaves_no_escape_and_is_idempotent(text: str) -> None:
    stripped = strip_ansi(text)
    assert "\x1b" not in stripped
    assert "\r\n" not in stripped
    assert strip_ansi(stripped) == stripped


@given(st.text(alphabet=st.characters(blacklist_characters="\x1b\r\x00\x07\x0e\x0f")))
def test_strip_ansi_keeps_text_without_escapes(text: str) -> None:
    assert strip_ansi(text) == text


# -- recv ---------------------------------------------------------------------------------


async def test_recv_returns_buffered_output_at_once(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(b"hello\r\n")
    result = await registry.recv(session_id, timeout_s=30, max_bytes=1024)
    assert result == RecvResult("hello\n", 7, None, False, False, None, 0)
    assert registry.info(session_id).bytes_buffered == 0
    await registry.aclose()


async def test_recv_with_nothing_buffered_times_out(registry: SessionRegistry) -> None:
    session_id, _ = await add(registry)
    result = await registry.recv(session_id, timeout_s=0, max_bytes=1024)
    assert (result.output, result.bytes, result.timed_out, result.ended) == ("", 0, True, False)
    result = await registry.recv(
        session_id, timeout_s=0.05, max_bytes=1024, until=compile_caller_regex("until", "x")
    )
    assert (result.matched, result.timed_out) == (False, True)
    await registry.aclose()


async def test_recv_wakes_on_output_without_polling(registry: SessionRegistry) -> None:
    """Ordering, not timing: recv is done within a few loop turns of the reader's append."""
    session_id, transport = await add(registry)
    waiting = asyncio.create_task(registry.recv(session_id, timeout_s=60, max_bytes=1024))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not waiting.done()  # it really waits
    await transport.deliver(b"ready")  # returns once the reader appended and set the event
    for _ in range(3):
        if waiting.done():
            break
        await asyncio.sleep(0)
    assert waiting.done()
    assert waiting.result().output == "ready"
    await registry.aclose()


async def test_recv_until_accumulates_across_chunks(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    waiting = asyncio.create_task(
        registry.recv(
            session_id, timeout_s=30, max_bytes=1024, until=compile_caller_regex("until", r"\[Y/n\] $")
        )
    )
    chunks = (b"Installing...\r\n", b"\x1b[1mContinue?\x1b[0m [Y", b"/n] ")
    for chunk in chunks:
        await transport.deliver(chunk)
        await asyncio.sleep(0)
    result = await asyncio.wait_for(waiting, 5)
    assert result.output == "Installing...\nContinue? [Y/n] "
    assert (result.matched, result.timed_out, result.ended) == (True, False, False)
    assert result.bytes == sum(len(chunk) for chunk in chunks)
    await registry.aclose()


async def test_until_sees_raw_text_when_not_stripping(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(b"\x1b[32mok\x1b[0m\r\n")
    result = await registry.recv(
        session_id,
        timeout_s=0,
        max_bytes=1024,
        until=compile_caller_regex("until", r"\x1b\[0m"),
        strip_ansi=False,
    )
    assert result.output == "\x1b[32mok\x1b[0m\r\n"
    assert result.matched is True
    await registry.aclose()


async def test_recv_stops_at_max_bytes_and_keeps_the_rest(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(b"0123456789")
    result = await registry.recv(
        session_id, timeout_s=30, max_bytes=4, until=compile_caller_regex("until", "never")
    )
    assert (result.output, result.bytes, result.matched, result.timed_out) == ("0123", 4, False, False)
    assert (await recv_now(registry, session_id)).output == "456789"
    await registry.aclose()


async def test_cancelled_recv_consumes_nothing(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    waiting = asyncio.create_task(
        registry.recv(session_id, timeout_s=60, max_bytes=1024, until=compile_caller_regex("until", "x"))
    )
    await transport.deliver(b"abc\xf0\x9f")
    await transport.deliver(b"\x98\x80def")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await recv_now(registry, session_id)).output == "abc😀def"
    await registry.aclose()


@pytest.mark.parametrize("strip", [True, False])
async def test_utf8_characters_are_never_split_at_any_chunk_boundary(strip: bool) -> None:
    text = "a é ✓ 😀 z"
    data = text.encode()
    for cut in range(len(data) + 1):
        registry = make_registry()
        session_id, transport = await add(registry)
        outputs = []
        for chunk in (data[:cut], data[cut:]):
            if chunk:
                await transport.deliver(chunk)
            outputs.append((await recv_now(registry, session_id, strip_ansi=strip)).output)
        assert "".join(outputs) == text, cut
        assert "\ufffd" not in "".join(outputs)
        await registry.aclose()


async def test_escape_sequences_and_crlf_cut_between_chunks_are_still_stripped() -> None:
    data = b"\x1b[1;31mred\x1b[0m\r\n\x1b[?2004l\r\x1b]0;title\x07done"
    for cut in range(len(data) + 1):
        registry = make_registry()
        session_id, transport = await add(registry)
        outputs = []
        for chunk in (data[:cut], data[cut:]):
            if chunk:
                await transport.deliver(chunk)
            outputs.append((await recv_now(registry, session_id)).output)
        assert "".join(outputs) == "red\ndone", cut
        await registry.aclose()


async def test_held_back_bytes_are_flushed_when_the_session_ends(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(b"tail\xf0\x9f")
    assert (await recv_now(registry, session_id)).output == "tail"
    assert registry.info(session_id).bytes_buffered == 2
    transport.finish(0)
    result = await registry.recv(session_id, timeout_s=5, max_bytes=1024)
    assert (result.output, result.ended, result.exit_code) == ("\ufffd", True, 0)
    await registry.aclose()


# -- ring buffer --------------------------------------------------------------------------


async def test_ring_buffer_keeps_the_newest_bytes_and_counts_the_dropped() -> None:
    registry = make_registry(buffer_bytes=16)
    session_id, transport = await add(registry)
    await transport.deliver(b"A" * 20)
    await transport.deliver(b"0123456789abcdef-tail")
    info = registry.info(session_id)
    assert (info.bytes_produced, info.bytes_buffered, info.bytes_dropped) == (41, 16, 25)
    result = await recv_now(registry, session_id)
    assert (result.output, result.dropped_bytes) == ("56789abcdef-tail", 25)
    await transport.deliver(b"more")
    assert (await recv_now(registry, session_id)).dropped_bytes == 0
    assert registry.info(session_id).bytes_dropped == 25
    await registry.aclose()


async def test_overflow_never_leaves_half_a_character_at_the_head() -> None:
    registry = make_registry(buffer_bytes=9)
    session_id, transport = await add(registry)
    await transport.deliver(("a" + "é" * 8).encode())  # 17 bytes: dropping 8 cuts an é in two
    result = await recv_now(registry, session_id)
    assert (result.output, result.dropped_bytes) == ("éééé", 9)
    await registry.aclose()


async def test_overflow_discards_a_carry_that_lost_its_continuation() -> None:
    registry = make_registry(buffer_bytes=8)
    session_id, transport = await add(registry)
    await transport.deliver(b"x\xf0\x9f")
    assert (await recv_now(registry, session_id)).output == "x"
    await transport.deliver(b"\x98\x80" + b"b" * 10)  # overflows: the rest of the 😀 is dropped
    result = await recv_now(registry, session_id)
    assert result.output == "b" * 8
    assert "\ufffd" not in result.output
    await registry.aclose()


# -- end of session, send, resize, kill ---------------------------------------------------


async def test_ended_is_reported_once_exited_and_drained(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await transport.deliver(b"bye\r\n")
    await transport.end(3)
    first = await registry.recv(session_id, timeout_s=5, max_bytes=2)
    assert (first.output, first.ended, first.exit_code) == ("by", False, None)
    last = await registry.recv(session_id, timeout_s=5, max_bytes=100)
    assert (last.output, last.ended, last.exit_code) == ("e\n", True, 3)
    info = registry.info(session_id)
    assert (info.state, info.exit_code) == ("ended", 3)
    with pytest.raises(SessionEnded):
        await registry.send(session_id, b"x")
    with pytest.raises(SessionEnded):
        await registry.resize(session_id, 90, 30)
    with pytest.raises(SessionEnded):
        await registry.kill(session_id, "INT", close=False)
    closed = await registry.kill(session_id)
    assert (closed.state, closed.exit_code) == ("ended", 3)
    assert transport.signals == []
    assert len(registry) == 0
    with pytest.raises(SessionNotFound):
        registry.info(session_id)


async def test_a_failing_transport_ends_the_session(registry: SessionRegistry) -> None:
    transport = ScriptedTransport()
    transport.fail_reads = True
    info = await registry.add(transport, kind="ssh", host="web1", command="top", cols=80, rows=24)
    result = await registry.recv(info.session_id, timeout_s=5, max_bytes=100)
    assert result.ended is True
    assert transport.close_calls >= 1
    await registry.aclose()


async def test_send_and_resize_reach_the_transport(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    await registry.send(session_id, b"ls\r")
    await registry.resize(session_id, 132, 50)
    assert transport.written == [b"ls\r"]
    assert transport.sizes == [(132, 50)]
    info = registry.info(session_id)
    assert (info.cols, info.rows) == (132, 50)
    await registry.aclose()


@pytest.mark.parametrize(
    ("cols", "rows", "argument"), [(0, 24, "cols"), (80, 0, "rows"), (100000, 24, "cols"), (80, 5000, "rows")]
)
async def test_resize_rejects_absurd_sizes(
    registry: SessionRegistry, cols: int, rows: int, argument: str
) -> None:
    session_id, transport = await add(registry)
    with pytest.raises(InvalidInput) as raised:
        await registry.resize(session_id, cols, rows)
    assert raised.value.argument == argument
    assert transport.sizes == []
    await registry.aclose()


@pytest.mark.parametrize(
    ("options", "argument"),
    [({"timeout_s": -1, "max_bytes": 10}, "timeout"), ({"timeout_s": float("nan"), "max_bytes": 10}, "timeout"),
     ({"timeout_s": 1, "max_bytes": 0}, "max_bytes")],
)  # fmt: skip
async def test_recv_rejects_bad_bounds(
    registry: SessionRegistry, options: dict[str, float], argument: str
) -> None:
    session_id, _ = await add(registry)
    with pytest.raises(InvalidInput) as raised:
        await registry.recv(session_id, **options)  # type: ignore[arg-type]
    assert raised.value.argument == argument
    await registry.aclose()


async def test_kill_without_close_only_signals(registry: SessionRegistry) -> None:
    session_id, transport = await add(registry)
    info = await registry.kill(session_id, "sigint", close=False)
    assert transport.signals == ["INT"]
    assert transport.close_calls == 0
    assert info.state == "running"
    assert len(registry) == 1
    await registry.aclose()


async def test_kill_closes_removes_and_runs_on_close_once_even_when_raced() -> None:
    registry = make_registry()
    calls: list[str] = []

    async def on_close() -> None:
        calls.append("released")

    session_id, transport = await add(registry, "ssh", on_close)
    first, second = await asyncio.gather(registry.kill(session_id), registry.kill(session_id))
    assert first.state == second.state == "ended"
    assert first.exit_code == 143
    assert transport.signals == ["TERM"]
    assert calls == ["released"]
    assert len(registry) == 0


# -- reaping ------------------------------------------------------------------------------


async def test_sweep_reaps_idle_sessions_by_the_injected_clock() -> None:
    clock = FakeClock()
    registry = make_registry(clock, idle_timeout_s=60, max_lifetime_s=600)
    idle_id, idle = await add(registry)
    busy_id, _ = await add(registry)
    clock.now += 50
    await registry.send(busy_id, b"x")
    assert await registry.sweep() == []
    clock.now += 11
    assert registry.info(idle_id).idle_s == 61
    assert await registry.sweep() == [idle_id]
    assert idle.close_calls >= 1
    assert [info.session_id for info in registry.list()] == [busy_id]
    await registry.aclose()


async def test_sweep_reaps_sessions_past_their_lifetime_even_when_busy() -> None:
    clock = FakeClock()
    registry = make_registry(clock, idle_timeout_s=60, max_lifetime_s=600)
    session_id, _ = await add(registry)
    for _ in range(12):
        clock.now += 50
        await registry.recv(session_id, timeout_s=0, max_bytes=10)
        assert await registry.sweep() == []
    clock.now += 1
    assert registry.info(session_id).age_s == 601
    assert await registry.sweep() == [session_id]
    assert len(registry) == 0


async def test_a_session_with_a_waiting_recv_is_not_reaped_mid_wait() -> None:
    clock = FakeClock()
    registry = make_registry(clock, idle_timeout_s=60, max_lifetime_s=600)
    session_id, transport = await add(registry)
    waiting = asyncio.create_task(
        registry.recv(session_id, timeout_s=60, max_bytes=100, until=compile_caller_regex("until", "done"))
    )
    for _ in range(5):
        await asyncio.sleep(0)
    clock.now += 10_000  # past both the idle timeout and the lifetime
    assert await registry.sweep() == []
    assert transport.close_calls == 0
    await transport.deliver(b"done")
    result = await asyncio.wait_for(waiting, 5)
    assert result.matched is True
    assert await registry.sweep() == [session_id]  # the wait is over; the lifetime still holds


async def test_background_sweeper_reaps_and_stops_on_aclose() -> None:
    clock = FakeClock()
    registry = make_registry(clock, idle_timeout_s=60, sweep_interval_s=0.01)
    reaped = asyncio.Event()

    async def on_close() -> None:
        reaped.set()

    await add(registry, on_close=on_close)
    await registry.start()
    clock.now += 61
    await asyncio.wait_for(reaped.wait(), 5)
    assert len(registry) == 0
    await registry.aclose()


async def test_aclose_closes_every_session_and_refuses_new_ones() -> None:
    registry = make_registry()
    transports = [(await add(registry))[1] for _ in range(3)]
    await registry.start()
    await registry.aclose()
    assert len(registry) == 0
    assert all(transport.close_calls >= 1 for transport in transports)
    late = ScriptedTransport()
    with pytest.raises(SpawnFailed):
        await registry.add(late, kind="local", host=None, command="", cols=80, rows=24)
    assert late.close_calls == 1
