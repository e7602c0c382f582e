"""Regular expressions supplied by a caller, run by a linear-time engine off the event loop (ADR 0014).

A caller's pattern is untrusted input. With a backtracking engine (Python's ``re``) a pattern
such as ``^(a+)+$`` takes exponential time on a crafted text, and it would run on the event
loop that serves every client. So every caller-supplied pattern goes through this module:

- :func:`compile_caller_regex` compiles with RE2 (``google-re2``): search time is linear in
  the text for every pattern, and the compiled program and its automata are bounded by
  :data:`PATTERN_MEMORY` (which also bounds the compile time, a few milliseconds, that still
  runs where the caller is); a pattern longer than :data:`MAX_PATTERN_CHARS` is ``invalid``
  before it is parsed (the budget does not bound the parse). A pattern RE2 cannot run (look-around, backreferences,
  possessive or atomic groups, a program over the budget) is ``invalid`` naming the argument;
  there is no fallback to ``re``. Python's ``\\Z`` is accepted as RE2's ``\\z``. With
  ``multiline`` (the default) ``^`` and ``$`` match at line boundaries.
- Linear is not cheap: a pattern whose automaton explodes runs RE2's NFA at several seconds per
  MiB. :meth:`LinearRegex.search` therefore runs a search of more than
  :data:`INLINE_SEARCH_CHARS` characters in a small dedicated thread pool (RE2 releases the
  GIL while it searches), in segments of at most :data:`SEARCH_SEGMENT_CHARS`, so the loop
  never waits on it and a cancelled or timed-out caller leaves at most one segment running.
- :class:`StreamSearch` searches a growing text incrementally: each piece of new text is
  searched together with the last :data:`SEARCH_OVERLAP_CHARS` characters before it (so a
  match cut across two chunks is found) and one more character of context (so ``^`` and
  ``\\b`` see what precedes the window). The accumulated text is never searched again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Protocol, cast

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from relay_shell.errors import InvalidInput

MAX_PATTERN_CHARS = 4096
"""The longest caller pattern compiled. Longer ones are ``invalid`` before RE2 parses them: the
memory budget bounds the program built, not the parse, and a 1 MB pattern took RE2 0.4-1.2 s
to refuse, on the caller's thread (the event loop)."""
PATTERN_MEMORY = 1 << 20
"""RE2 ``max_mem`` per pattern: program plus DFA caches. Bounds compile time (~20 ms worst measured)."""
INLINE_SEARCH_CHARS = 256
"""Searches up to this many characters run on the caller's thread (well under a millisecond even
for the costliest automaton); longer ones run in the search pool."""
SEARCH_SEGMENT_CHARS = 65536
SEARCH_OVERLAP_CHARS = 16384
SEARCH_THREADS = 2

# Apart from asyncio's default executor, so long searches never starve other work; threads
# start on first use.
_SEARCH_POOL = concurrent.futures.ThreadPoolExecutor(
    max_workers=SEARCH_THREADS, thread_name_prefix="relay-shell-regex"
)


class _CompiledRegexp(Protocol):
    """The part of ``re2._Regexp`` this module uses."""

    def search(self, text: str, pos: int, endpos: int) -> object | None: ...


def _rewrite_python_syntax(source: str) -> str:
    """Python's end-of-text ``\\Z`` is RE2's ``\\z``; every other escape is left as written."""
    out: list[str] = []
    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source):
            following = source[index + 1]
            out.append("\\z" if following == "Z" else char + following)
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


class LinearRegex:
    """A compiled caller pattern. Build it with :func:`compile_caller_regex`."""

    def __init__(self, source: str, compiled: _CompiledRegexp) -> None:
        self.source = source
        self._compiled = compiled

    def search_inline(self, text: str, pos: int = 0, endpos: int | None = None) -> bool:
        """Whether the pattern matches in ``text[pos:endpos]``. The characters outside that range
        are context (for ``^``, ``$`` and ``\\b``). Runs here: only for short texts."""
        end = len(text) if endpos is None else endpos
        return self._compiled.search(text, pos, end) is not None

    async def search(self, text: str, pos: int = 0) -> bool:
        """:meth:`search_inline` over ``text[pos:]``, off the event loop when that is long.

        Long texts are searched in segments of :data:`SEARCH_SEGMENT_CHARS` that overlap by
        :data:`SEARCH_OVERLAP_CHARS` (one character on each side is context), so a match longer
        than the overlap that straddles two segments is not found, the same limit as
        :class:`StreamSearch`.
        """
        if len(text) - pos <= INLINE_SEARCH_CHARS:
            return self.search_inline(text, pos)
        loop = asyncio.get_running_loop()
        start = pos
        while True:
            end = min(len(text), start + SEARCH_SEGMENT_CHARS)
            context = max(0, start - 1)
            window = text[context : end + 1]
            found = await loop.run_in_executor(
                _SEARCH_POOL, self.search_inline, window, start - context, end - context
            )
            if found:
                return True
            if end >= len(text):
                return False
            start = max(start + 1, end - SEARCH_OVERLAP_CHARS)


def compile_caller_regex(argument: str, source: str, *, multiline: bool = True) -> LinearRegex:
    """Compile a caller-supplied pattern with RE2 (see the module docstring).

    Raises:
        InvalidInput: (``argument``) RE2 cannot compile or run the pattern, or it is too large
            (over :data:`MAX_PATTERN_CHARS` characters, or its program over the memory budget).
    """
    if not isinstance(source, str):
        raise InvalidInput(argument, "must be a regular expression (a string)")
    if len(source) > MAX_PATTERN_CHARS:
        raise InvalidInput(
            argument, f"a pattern of {len(source)} characters; at most {MAX_PATTERN_CHARS} are accepted"
        )
    options = re2.Options()
    options.max_mem = PATTERN_MEMORY
    options.log_errors = False
    rewritten = _rewrite_python_syntax(source)
    try:
        # _Regexp directly: re2.compile keeps 128 patterns in a cache, each up to max_mem.
        compiled = re2._Regexp(f"(?m){rewritten}" if multiline else rewritten, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        reason = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        raise InvalidInput(
            argument,
            f"not a pattern the linear-time engine (RE2) can run: {reason} "
            "(look-around, backreferences, possessive and atomic groups are not supported)",
        ) from None
    return LinearRegex(source, cast(_CompiledRegexp, compiled))


class StreamSearch:
    """Incremental search of a text that grows by pieces (see the module docstring)."""

    def __init__(self, pattern: LinearRegex, overlap_chars: int = SEARCH_OVERLAP_CHARS) -> None:
        self._pattern = pattern
        self._overlap = overlap_chars
        self._tail = ""  # the last overlap + 1 characters seen: the overlap and its context

    async def feed(self, text: str) -> bool:
        """Add ``text``; True when the pattern matches in it or across the boundary before it."""
        if not text:
            return False
        window = self._tail + text
        start = max(0, len(self._tail) - self._overlap)
        self._tail = window[-(self._overlap + 1) :]
        return await self._pattern.search(window, start)
