"""By hand: make the code ignore each setting in turn and check that its row of the table fails.

For every row of ``test_every_setting.ROWS``, each read of the setting in ``src/relay_shell``
(``<anything>settings.<field>``, outside the modules that only report or validate settings) is
replaced by the field's default; the row's test then runs and must fail ("caught"). Every file
is restored after each row. It edits the source tree in place, so it refuses to start on
uncommitted changes under ``src/`` (``git checkout src`` restores the tree if it is killed).

    .venv/bin/python -m tests.settings.mutation_sweep [VARIABLE ...]
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.settings.test_every_setting import ROWS

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "relay_shell"
# Modules that only validate, report or echo settings: ignoring a setting there changes no behaviour.
REPORTING = {"config.py", "config_env.py", "checks.py", "startup.py", "diagnostics.py"}
# Settings read through a derived property of Settings.
PROPERTIES = {"auth_jwt_algorithms": "jwt_algorithms"}
DEFAULTS = "__import__('relay_shell.config').config.Settings.model_construct()"


def mutate(field: str) -> dict[Path, str]:
    """Replace every read of ``field`` by its default; return the original text of each file changed."""
    name = PROPERTIES.get(field, field)
    pattern = re.compile(rf"\b[\w.]*settings\.{name}\b")
    originals = {}
    for path in SOURCE.rglob("*.py"):
        if path.name in REPORTING:
            continue
        text = path.read_text()
        changed = pattern.sub(f"{DEFAULTS}.{name}", text)
        if changed != text:
            originals[path] = text
            path.write_text(changed)
    return originals


def row_fails(variable: str) -> tuple[bool, str]:
    test = f"tests/settings/test_every_setting.py::test_setting_reaches_behaviour[{variable}]"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
    return proc.returncode != 0, summary


def main(only: list[str]) -> int:
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
    if dirty.stdout.strip():
        print("uncommitted changes under src/: commit or stash them first", file=sys.stderr)
        return 2
    survivors = 0
    for row in ROWS:
        if only and row.variable not in only:
            continue
        originals = mutate(row.variable.lower())
        try:
            if not originals:
                print(f"{row.variable:28} no read found in src/ (check by hand)")
                continue
            caught, summary = row_fails(row.variable)
        finally:
            for path, text in originals.items():
                path.write_text(text)
        survivors += not caught
        print(f"{row.variable:28} {len(originals)} file(s): {'caught' if caught else 'SURVIVED'} ({summary})")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
