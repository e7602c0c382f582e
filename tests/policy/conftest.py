"""Classifier fixtures: an analyzer with the protected files of a server configured in a temp dir."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay_shell.policy.analyze import Analyzer
from relay_shell.policy.model import Analysis, CallText
from tests.policy.environment import server_files_environment

Classify = Callable[..., Analysis]


@pytest.fixture(scope="session")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    return Analyzer(server_files_environment(tmp_path_factory.mktemp("relay")))


@pytest.fixture(scope="session")
def relay_root(analyzer: Analyzer) -> Path:
    protected = analyzer.environment.protected
    assert protected is not None
    return Path(protected.entries[0].path).parent.parent


@pytest.fixture(scope="session")
def classify(analyzer: Analyzer) -> Classify:
    def run(text: str | None = None, **fields: Any) -> Analysis:
        return analyzer.analyze(CallText(shell=text, **fields))

    return run


class _Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage() + (f" {record.exc_info[1]!r}" if record.exc_info else ""))


@pytest.fixture(autouse=True)
def classifier_never_fails() -> Iterator[None]:
    """A rule that raises is caught (the call reads as tier 3 opaque), but it is a bug: fail."""
    handler = _Failures()
    logger = logging.getLogger("relay_shell.policy")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, handler.messages
