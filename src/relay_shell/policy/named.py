"""The protected files the words of a command name, each answer remembered for one call.

A script repeats its words (the same paths, options and names in command after command):
:class:`NamedPaths` asks :func:`~relay_shell.policy.paths.word_names_protected` once per word
spelling and directory, and answers every later occurrence from the call's memo. The memo is
the call's own (it lives in the call's flags), so a protected file created or configured
between two calls is seen by the next one.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay_shell.policy.model import IRREVERSIBLE, Verdict
from relay_shell.policy.paths import Protected, protected_rule, word_names_protected
from relay_shell.policy.words import Word

Memo = dict[tuple[object, ...], str | None]
"""Answers by (word text, literal, glob, may split, directory or directories, remote, literal only)."""

PlainMemo = dict[tuple[object, ...], dict[str, str | None]]
"""Answers for literal words that neither glob nor split, by directories and flags, then by text."""


class NamedPaths:
    """Which protected file a word names, asked at most once per spelling within one call."""

    def __init__(self, protected: Protected, named: Memo, named_words: Memo, plain: PlainMemo) -> None:
        self._protected = protected
        self._named = named
        self._named_words = named_words
        self._plain = plain

    def word(self, word: Word, cwd: str | None, remote: bool, *, literal_only: bool = False) -> str | None:
        """The protected file ``word`` names in ``cwd`` (path, ``--opt=path``, glob), or None.

        ``literal_only``: only a protected path written inside the word counts (the argument
        of ``echo`` is not opened).
        """
        key = (word.text, word.literal, word.glob, word.may_split, cwd, remote, literal_only)
        memo = self._named
        if key not in memo:
            memo[key] = word_names_protected(self._protected, word, cwd, remote, literal_only=literal_only)
        return memo[key]

    def labels(
        self, words: Sequence[Word], candidates: tuple[str | None, ...], remote: bool, literal_only: bool
    ) -> list[str]:
        """The labels of the protected files ``words`` name in any of the ``candidates``
        directories (the current one and those a failed ``cd`` leaves), one per naming word."""
        plain_key = (candidates, remote, literal_only)
        plain = self._plain.get(plain_key)
        if plain is None:
            plain = self._plain[plain_key] = {}
        found: list[str] = []
        for word in words:
            simple = word.literal and not word.glob and not word.may_split
            if simple and word.text in plain:
                label = plain[word.text]
            else:
                label = self._any(word, candidates, remote, literal_only)
                if simple:
                    plain[word.text] = label
            if label is not None:
                found.append(label)
        return found

    def verdicts(self, labels: list[str]) -> list[Verdict]:
        """The verdict of naming each protected file in ``labels``."""
        return [Verdict(IRREVERSIBLE, protected_rule(label)) for label in labels]

    def _any(
        self, word: Word, candidates: tuple[str | None, ...], remote: bool, literal_only: bool
    ) -> str | None:
        key = (word.text, word.literal, word.glob, word.may_split, candidates, remote, literal_only)
        memo = self._named_words
        if key in memo:
            return memo[key]
        label = None
        for candidate in candidates:
            label = label or self.word(word, candidate, remote, literal_only=literal_only)
        memo[key] = label
        return label
