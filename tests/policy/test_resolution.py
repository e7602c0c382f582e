"""Where a command name resolves is read again when a PATH directory changed since."""

from __future__ import annotations

import os
from pathlib import Path

from relay_shell.policy import resolution
from relay_shell.policy.analyze import Analyzer, PolicyEnvironment
from relay_shell.policy.model import CallText


def test_a_program_written_into_a_path_directory_by_an_earlier_call_is_seen(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(mode=0o755)
    environment = PolicyEnvironment(None, f"{bin_dir}:/usr/bin:/bin", str(tmp_path), str(tmp_path))
    analyzer = Analyzer(environment)

    def run(text: str) -> tuple[int, bool]:
        resolution._CHECKED[0] = -1e9  # as if the check interval had passed
        analysis = analyzer.analyze(CallText(shell=text))
        return analysis.tier, analysis.opaque

    assert run("planted --help") == (1, False)  # on no PATH: runs nothing
    assert run("ls") == (0, False)
    planted = bin_dir / "planted"
    planted.write_text("#!/bin/sh\n")
    planted.chmod(0o755)
    (bin_dir / "ls").write_text("#!/bin/sh\n")
    (bin_dir / "ls").chmod(0o755)
    os.chmod(bin_dir, 0o777)  # a directory others can write: what it holds is not trusted
    tier, is_opaque = run("planted --help")
    assert is_opaque and tier >= 2
    assert run("ls")[0] >= 1  # no longer the system ls
