"""Caller regexes: RE2 only (no fallback to re), incremental search with a bounded overlap."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_shell import linear_regex
from relay_shell.errors import InvalidInput
from relay_shell.linear_regex import StreamSearch, compile_caller_regex


@pytest.mark.parametrize(
    "source",
    [
        r"(?<=a)b",  # look-behind
        r"(?<!a)b",
        r"a(?=b)",  # look-ahead
        r"a(?!b)",
        r"(a)\1",  # backreference
        r"(?P<x>a)(?P=x)",
        r"a++",  # possessive
        r"(?>a)",  # atomic group
        r"(",  # plain syntax error
        r"\p{Nope}",
        r"(?:\pL|\pN){60}",  # a program over the memory budget
    ],
)
def test_patterns_re2_cannot_run_are_invalid_naming_the_argument(source: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        compile_caller_regex("until", source)
    assert raised.value.argument == "until"
    assert "RE2" in raised.value.message


def test_a_pattern_over_the_length_cap_is_invalid_before_re2_parses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    longest = "a" * linear_regex.MAX_PATTERN_CHARS
    assert compile_caller_regex("until", longest).search_inline(longest) is True
    parsed: list[int] = []
    real = linear_regex.re2._Regexp

    def spy(source: str, options: object) -> object:
        parsed.append(len(source))
        return real(source, options)

    monkeypatch.setattr(linear_regex.re2, "_Regexp", spy)
    for source in (longest + "a", "a" * 1_000_000, r"\p{Greek}" * 100_000):
        with pytest.raises(InvalidInput) as raised:
            compile_caller_regex("until", source)
        assert raised.value.argument == "until"
        assert f"at most {linear_regex.MAX_PATTERN_CHARS}" in raised.value.message
    assert parsed == []


def test_the_argument_named_is_the_callers() -> None:
    with pytest.raises(InvalidInput) as raised:
        compile_caller_regex("filter", r"(?<=x)")
    assert raised.value.argument == "filter"


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        (r"^(a+)+$", "a" * 5000 + "b", False),
        (r"^(a+)+$", "a" * 5000, True),
        (r"\$ $", "user@host:~\n$ ", True),
        (r"^x\d+$", "echo x1\nx1\n$ ", True),  # multi-line: ^ and $ at line boundaries
        (r"^x1$", "echo x1", False),
        (r"end\Z", "the end", True),  # Python's \Z means RE2's \z
        (r"end\Z", "the end\n", False),
        (r"a\\Z", "a\\Z", True),  # an escaped backslash followed by Z stays literal
        (r"(?i)\[y/n\]", "Continue? [Y/N]", True),
        (r"(?P<word>pass)word:", "Password: password:", True),
    ],
)
def test_search_semantics(source: str, text: str, expected: bool) -> None:
    assert compile_caller_regex("until", source).search_inline(text) is expected


async def test_long_searches_run_in_the_search_pool_and_short_ones_inline() -> None:
    seen: list[str] = []
    pattern = compile_caller_regex("until", "zz")
    original = pattern.search_inline

    def spy(text: str, pos: int = 0, endpos: int | None = None) -> bool:
        seen.append(threading.current_thread().name)
        return original(text, pos, endpos)

    pattern.search_inline = spy  # type: ignore[method-assign]
    assert await pattern.search("a" * 10 + "zz") is True
    assert seen == [threading.current_thread().name]
    seen.clear()
    assert await pattern.search("a" * 100_000 + "zz") is True
    assert seen and all(name.startswith("relay-shell-regex") for name in seen)


async def test_segments_overlap_and_keep_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linear_regex, "SEARCH_SEGMENT_CHARS", 400)
    monkeypatch.setattr(linear_regex, "SEARCH_OVERLAP_CHARS", 50)
    text = "b" * 390 + "needle" + "c" * 1000
    assert await compile_caller_regex("until", "needle").search(text) is True  # across a boundary
    # "$" must not match at a segment end that is not the end of the text or of a line.
    assert await compile_caller_regex("until", r"b$").search("b" * 1000 + "x") is False
    assert await compile_caller_regex("until", r"^c").search("b" * 400 + "c" * 600) is False


async def test_stream_search_finds_a_match_cut_between_chunks() -> None:
    search = StreamSearch(compile_caller_regex("until", r"\[Y/n\] $"))
    assert await search.feed("Installing...\nContinue? [Y") is False
    assert await search.feed("/n] ") is True


async def test_stream_search_window_start_is_not_a_line_start() -> None:
    search = StreamSearch(compile_caller_regex("until", r"^e"), overlap_chars=2)
    assert await search.feed("abcdef") is False
    assert await search.feed("g") is False  # window "efg" with context "d": not at a line start
    line_start = StreamSearch(compile_caller_regex("until", r"^e"), overlap_chars=2)
    assert await line_start.feed("abc\nef") is True


async def test_stream_search_never_rescans_everything() -> None:
    lengths: list[int] = []
    pattern = compile_caller_regex("until", "never-there")
    original = pattern.search_inline

    def spy(text: str, pos: int = 0, endpos: int | None = None) -> bool:
        lengths.append(len(text) - pos)
        return original(text, pos, endpos)

    pattern.search_inline = spy  # type: ignore[method-assign]
    search = StreamSearch(pattern, overlap_chars=100)
    for _ in range(200):
        await search.feed("x" * 50)
    assert max(lengths) <= 150  # overlap + one chunk, although 10,000 characters went by


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet="ab\n$ ", max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=8),
    literal=st.sampled_from(["ab", "b\na", "$ ", "aab", "^ab", "b$", "^$"]),
)
def test_stream_search_agrees_with_a_search_of_the_whole_text(
    text: str, cuts: list[int], literal: str
) -> None:
    pattern_source = literal.replace("$ ", r"\$ ") if literal == "$ " else literal
    expected = re.search(pattern_source, text, re.MULTILINE) is not None
    pieces = [
        text[start:end] for start, end in zip([0, *sorted(cuts)], [*sorted(cuts), len(text)], strict=True)
    ]

    async def run() -> bool:
        search = StreamSearch(compile_caller_regex("until", pattern_source), overlap_chars=16)
        found = False
        for piece in pieces:
            found = found or await search.feed(piece)
        return found

    # A match at the end of a prefix ("b$" before more text) counts: the stream matched then.
    # Nothing is searched before some text arrived (an empty stream never matches "^$").
    prefixes = [
        text[: sum(len(p) for p in pieces[: index + 1])] for index, piece in enumerate(pieces) if piece
    ]
    expected_any = bool(text) and (
        expected or any(re.search(pattern_source, prefix, re.MULTILINE) for prefix in prefixes)
    )
    assert asyncio.run(run()) is expected_any
