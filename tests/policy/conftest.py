"""Classifier fixtures: an analyzer with the protected files of a server configured in a temp dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay_shell.config import load_settings
from relay_shell.policy.analyze import Analyzer, PolicyEnvironment
from relay_shell.policy.model import Analysis, CallText

Classify = Callable[..., Analysis]


@pytest.fixture(scope="session")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Analyzer:
    root = tmp_path_factory.mktemp("relay")
    settings = load_settings(
        audit_path=root / "audit" / "audit.jsonl",
        ssh_config=root / "ssh_config",
        ssh_known_hosts_file=root / "known_hosts",
        auth_state_dir=root / "oauth",
        inventory=root / "inventory.json",
        env_file=root / "relay.env",
        session_record_dir=root / "recordings",
    )
    (root / "audit").mkdir()
    (root / "audit" / "audit.jsonl").write_text("")
    return Analyzer(PolicyEnvironment.from_settings(settings))


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
