"""The VT emulator and the screen tracker, fed exact byte streams (no PTY)."""

from __future__ import annotations

import asyncio

import pytest

from relay_shell.sessions.screen import MAX_RENDER_COLS, MIN_PENDING_BYTES, ScreenTracker
from relay_shell.sessions.vt import MAX_COMBINING_MARKS, MAX_SAVED_CURSORS, MAX_TITLE_CHARS, VirtualTerminal

ENTER_ALT, LEAVE_ALT = b"\x1b[?1049h", b"\x1b[?1049l"


def screen_of(data: bytes, cols: int = 20, rows: int = 5) -> VirtualTerminal:
    terminal = VirtualTerminal(cols, rows)
    terminal.feed(data)
    return terminal


async def rendered(tracker: ScreenTracker, *chunks: bytes) -> tuple[str, ...]:
    offset = 0
    for chunk in chunks:
        tracker.observe(chunk, offset)
        offset += len(chunk)
    snapshot = await tracker.render()
    assert snapshot is not None
    return snapshot.rows


# -- the emulator ----------------------------------------------------------------------------


def test_rows_are_trimmed_and_trailing_empty_rows_dropped() -> None:
    snapshot = screen_of(b"ab   \r\n\r\ncd\r\n").snapshot()
    assert snapshot.rows == ("ab", "", "cd")
    assert (snapshot.cursor_row, snapshot.cursor_col) == (3, 0)
    assert snapshot.text == "ab\n\ncd"


def test_the_main_screen_and_its_cursor_come_back_after_1049() -> None:
    terminal = screen_of(b"$ ls\r\nfile\r\n$ vim" + ENTER_ALT + b"\x1b[Hedit me\x1b[3;1H~")
    assert terminal.snapshot().rows == ("edit me", "", "~")
    assert terminal.alternate
    terminal.feed(LEAVE_ALT)
    snapshot = terminal.snapshot()
    assert snapshot.rows == ("$ ls", "file", "$ vim")
    assert (snapshot.cursor_row, snapshot.cursor_col) == (2, 5)
    assert not snapshot.alternate


@pytest.mark.parametrize("mode", [47, 1047])
def test_modes_47_and_1047_switch_buffers_too(mode: int) -> None:
    terminal = screen_of(b"main" + f"\x1b[?{mode}h".encode() + b"\x1b[Halt")
    assert terminal.snapshot().rows[0].startswith("alt")
    terminal.feed(f"\x1b[?{mode}l".encode())
    assert terminal.snapshot().rows == ("main",)


def test_entering_the_alternate_screen_twice_keeps_the_first_main_screen() -> None:
    terminal = screen_of(b"main" + ENTER_ALT + b"one" + ENTER_ALT + b"two" + LEAVE_ALT)
    assert terminal.snapshot().rows == ("main",)
    terminal.feed(LEAVE_ALT)  # leaving when not in it changes nothing
    assert terminal.snapshot().rows == ("main",)


def test_a_resize_inside_the_alternate_screen_fits_the_main_screen_on_return() -> None:
    terminal = screen_of(b"1\r\n2\r\n3\r\n4\r\n" + b"x" * 20 + ENTER_ALT, cols=20, rows=5)
    terminal.resize(lines=3, columns=10)
    terminal.feed(LEAVE_ALT)
    snapshot = terminal.snapshot()
    assert snapshot.rows == ("3", "4", "x" * 10)  # rows lost at the top, columns at the right
    assert (snapshot.cols, snapshot.lines) == (10, 3)
    assert snapshot.cursor_row <= 2 and snapshot.cursor_col <= 9


def test_ris_leaves_the_alternate_screen_and_clears() -> None:
    terminal = screen_of(b"main" + ENTER_ALT + b"alt\x1bcafter")
    assert terminal.snapshot().rows == ("after",)
    assert not terminal.alternate


def test_deccolm_does_not_resize_the_screen() -> None:
    snapshot = screen_of(b"\x1b[?3hwide").snapshot()
    assert snapshot.cols == 20


def test_title_is_kept_bounded_and_without_controls() -> None:
    assert screen_of(b"\x1b]2;my \x01title\x07").snapshot().title == "my title"
    long_title = screen_of(b"\x1b]0;" + b"t" * 5000 + b"\x07").snapshot().title
    assert long_title == "t" * MAX_TITLE_CHARS


def test_hostile_parameters_do_not_break_the_emulator() -> None:
    # A 5,000-digit parameter makes pyte's int() raise: that piece is skipped, later ones render.
    terminal = screen_of(b"\x1b[" + b"9" * 5000 + b"m" + b"\r\n" * 3 + b"x" * 5000 + b"\x1b[Hok", cols=20)
    assert terminal.snapshot().rows[0].startswith("ok")
    assert terminal.skipped_pieces >= 1


@pytest.mark.parametrize("mark", ["\u0301", "\u0301\x1b[m"])  # one run, or one mark per draw call
def test_stacked_combining_marks_stay_bounded_per_cell(mark: str) -> None:
    # pyte re-normalizes a cell's text for every mark: unbounded stacks cost quadratic time.
    terminal = screen_of(("x" + mark * 20_000 + "ok").encode())
    cell = terminal.buffer[0][0]
    assert cell.data[0] == "x" and len(cell.data) <= 2 * MAX_COMBINING_MARKS + 1
    assert terminal.snapshot().rows[0].endswith("ok")
    assert screen_of("e\u0301 n\u0303".encode()).snapshot().rows == ("é ñ",)


def test_wide_characters_take_two_cells() -> None:
    snapshot = screen_of("漢字ab".encode()).snapshot()
    assert snapshot.rows == ("漢字ab",)
    assert snapshot.cursor_col == 6


FILLED = b"0123456789\r\nabcdefghij\r\nABCDEFGHIJ\r\nklmnopqrst"


@pytest.mark.parametrize(
    ("sequence", "rows"),
    [
        (b"\x1b[1;3H\x1b[2@", ("01  234567", "abcdefghij", "ABCDEFGHIJ", "klmnopqrst")),  # ICH
        (b"\x1b[1;3H\x1b[3P", ("0156789", "abcdefghij", "ABCDEFGHIJ", "klmnopqrst")),  # DCH
        (b"\x1b[1;3H\x1b[3X", ("01   56789", "abcdefghij", "ABCDEFGHIJ", "klmnopqrst")),  # ECH
        (b"\x1b[2;6H\x1b[K", ("0123456789", "abcde", "ABCDEFGHIJ", "klmnopqrst")),  # EL 0
        (b"\x1b[2;6H\x1b[1K", ("0123456789", "      ghij", "ABCDEFGHIJ", "klmnopqrst")),  # EL 1
        (b"\x1b[2;6H\x1b[2K", ("0123456789", "", "ABCDEFGHIJ", "klmnopqrst")),  # EL 2
        (b"\x1b[2;6H\x1b[J", ("0123456789", "abcde")),  # ED 0
        (b"\x1b[2;6H\x1b[1J", ("", "      ghij", "ABCDEFGHIJ", "klmnopqrst")),  # ED 1
        (b"\x1b[2;6H\x1b[2J", ()),  # ED 2
        (b"\x1b[2;1H\x1b[L", ("0123456789", "", "abcdefghij", "ABCDEFGHIJ")),  # IL
        (b"\x1b[2;1H\x1b[M", ("0123456789", "ABCDEFGHIJ", "klmnopqrst")),  # DL
        (b"\x1b[2;1H\x1b[M\x1b[M", ("0123456789", "klmnopqrst")),  # DL twice (pyte left a row behind)
        (b"\x1b[2;3r\x1b[3;1H\n", ("0123456789", "ABCDEFGHIJ", "", "klmnopqrst")),  # scroll in margins
        (b"\x1b[2;3r\x1b[2;1H\x1bM", ("0123456789", "", "abcdefghij", "klmnopqrst")),  # reverse index
        (b"\x1b[4;1H\n", ("abcdefghij", "ABCDEFGHIJ", "klmnopqrst")),  # scroll the whole screen
        (b"\x1b[4h\x1b[1;1HXY", ("XY23456789", "abcdefghij", "ABCDEFGHIJ", "klmnopqrst")),  # IRM ignored
        (b"\x1b#8", ("0123456789", "abcdefghij", "ABCDEFGHIJ", "klmnopqrst")),  # DECALN ignored
        (b"\x1b[?5h\x1b[?5l", ("0123456789", "abcdefghij", "ABCDEFGHIJ", "klmnopqrst")),  # DECSCNM
    ],
)
def test_editing_operations_touch_only_the_cells_they_name(sequence: bytes, rows: tuple[str, ...]) -> None:
    assert screen_of(FILLED + sequence, cols=10, rows=4).snapshot().rows == rows


def test_repeated_whole_screen_operations_leave_no_cells_behind() -> None:
    # pyte paints erased cells (keeping them), so each later erase walks every column again.
    terminal = screen_of(FILLED + b"\x1b[2J" + b"\x1b[K\x1b[2K\x1b[J\x1b[1J\x1b[9X" * 1000, cols=10, rows=4)
    assert sum(len(line) for line in terminal.buffer.values()) == 0
    assert len(screen_of(b"\x1b7" * 5000).savepoints) == MAX_SAVED_CURSORS


# -- the tracker -----------------------------------------------------------------------------


async def test_fullscreen_follows_the_alternate_screen_across_chunk_cuts() -> None:
    tracker = ScreenTracker(20, 5)
    stream = b"$ vim\r\n" + ENTER_ALT + b"text" + LEAVE_ALT + b"$ "
    for cut in range(1, len(stream)):
        tracker = ScreenTracker(20, 5)
        tracker.observe(stream[:cut], 0)
        tracker.observe(stream[cut:], cut)
        assert not tracker.fullscreen
        assert list(tracker.fullscreen_regions) == [(7, 7 + len(ENTER_ALT) + 4 + len(LEAVE_ALT))]
    tracker = ScreenTracker(20, 5)
    tracker.observe(b"x" + b"\x1b[?10", 0)
    tracker.observe(b"49h", 6)
    assert tracker.fullscreen


def test_a_repaint_in_place_is_fullscreen_until_the_cursor_shows() -> None:
    tracker = ScreenTracker(80, 24)
    tracker.observe(b"\x1b[?1h\x1b=\x1b[?25l\x1b[H\x1b[2Jtop - 12:00", 0)  # how top starts
    assert tracker.fullscreen
    tracker.observe(b"\x1b[?1l\x1b>\x1b[25;1H\r\n\x1b[?12l\x1b[?25h\x1b[K$ ", 100)  # how it quits
    assert not tracker.fullscreen
    plain = ScreenTracker(80, 24)
    plain.observe(b"\x1b[H\x1b[2J\x1b[3J$ ", 0)  # `clear` keeps the cursor: not a full-screen program
    assert not plain.fullscreen


async def test_render_is_incremental_and_follows_resizes() -> None:
    tracker = ScreenTracker(10, 3)
    assert await rendered(tracker, b"abc") == ("abc",)
    tracker.observe(b"\r\ndef", 3)
    tracker.resize(20, 4)
    tracker.observe(b"\r\n" + b"g" * 15, 8)
    snapshot = await tracker.render()
    assert snapshot is not None
    assert snapshot.rows == ("abc", "def", "g" * 15)
    assert (snapshot.cols, snapshot.lines) == (20, 4)


async def test_concurrent_renders_apply_output_in_order() -> None:
    tracker = ScreenTracker(40, 3)
    renders = []
    offset = 0
    for number in range(50):
        chunk = f"\x1b[H{number:03d}".encode()
        tracker.observe(chunk, offset)
        offset += len(chunk)
        renders.append(asyncio.ensure_future(tracker.render()))
    snapshots = await asyncio.gather(*renders)
    assert snapshots[-1] is not None
    assert snapshots[-1].rows == ("049",)


async def test_a_burst_keeps_bounded_pending_output_and_the_right_screen() -> None:
    tracker = ScreenTracker(80, 24)
    offset = 0
    lines = [f"line {n}\r\n".encode() for n in range(200_000)]
    for start in range(0, len(lines), 1000):
        chunk = b"".join(lines[start : start + 1000])
        tracker.observe(chunk, offset)
        offset += len(chunk)
        assert tracker.pending_bytes <= MIN_PENDING_BYTES + len(chunk)
    snapshot = await tracker.render()
    assert snapshot is not None
    assert snapshot.rows[-1] == "line 199999"
    assert snapshot.rows[0] == "line 199977"
    assert tracker.cut_bytes > 0


async def test_a_cut_at_a_full_clear_is_exact_and_keeps_the_alternate_state() -> None:
    tracker = ScreenTracker(80, 24)
    noise = b"".join(f"noise {n}\r\n".encode() for n in range(40_000))
    frame = b"\x1b[H\x1b[2Jframe top\x1b[5;1Hrow five"
    assert await rendered(tracker, b"$ app\r\n" + ENTER_ALT + noise + frame) == (
        "frame top", "", "", "", "row five",
    )  # fmt: skip
    snapshot = await tracker.render()
    assert snapshot is not None and snapshot.alternate
    tracker.observe(LEAVE_ALT, 10**9)
    back = await tracker.render()
    # The main screen drawn before the cut was dropped with it: it comes back blank, never
    # with the program's drawing on it.
    assert back is not None and not back.alternate
    assert back.rows == ()


async def test_sessions_beyond_the_cap_do_not_render_until_resized_back() -> None:
    tracker = ScreenTracker(MAX_RENDER_COLS + 1, 24)
    tracker.observe(b"lost" * 1000, 0)
    assert tracker.pending_bytes == 0
    assert await tracker.render() is None
    tracker.resize(80, 24)
    tracker.observe(b"\r\nkept", 4000)
    snapshot = await tracker.render()
    assert snapshot is not None and snapshot.rows == ("", "kept")


async def test_a_cut_keeps_the_size_in_force_and_later_resizes() -> None:
    tracker = ScreenTracker(80, 24)  # its bound is MIN_PENDING_BYTES
    line_count = int(0.8 * MIN_PENDING_BYTES) // 92
    old = b"".join(f"old {number:05d} {'x' * 80}\r\n".encode() for number in range(line_count))  # 90 columns
    tracker.observe(old, 0)  # under the bound: nothing cut yet
    tracker.resize(100, 30)
    filler = b"\x1b[0m" * (int(0.35 * MIN_PENDING_BYTES) // 4)  # draws nothing, pushes past the bound
    tracker.observe(filler + b"new A\r\nnew B", len(old))
    assert 0 < tracker.cut_bytes < len(old)  # the cut fell before the resize
    snapshot = await tracker.render()
    assert snapshot is not None
    assert (snapshot.cols, snapshot.lines) == (100, 30)
    rows = snapshot.rows
    assert rows[-2:] == ("new A", "new B")
    # The old lines were drawn at 80 columns (wrapped: 80 + 10), not at the size that came later.
    assert {len(row) for row in rows[:-2]} == {80, 10}
