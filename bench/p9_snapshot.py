"""P9 guard: the classifier's verdicts on every text the policy tests know, as one snapshot.

A speed change to the classifier must not change a single verdict. This script classifies
every string literal of ``tests/policy/`` (the corpus, the adversarial classes, the examples
of each test), the bench's megabyte scripts and a seeded set of shell-like fragments, under
every channel (command, remote command, script, session line, text fed to ``sh``, argv) and
both environments (protected files with spellings, bare), and writes one line per analysis:
the call's tier, opaque flag, rule, taints/interactive/protected flags and, per recorded
command, its kind, text, name, tier, rule, opaque flag, origin, depth, wrappers, spellings
and known-safe flag.

    .venv/bin/python bench/p9_snapshot.py write /tmp/p9-before.jsonl
    .venv/bin/python bench/p9_snapshot.py check /tmp/p9-before.jsonl

``check`` exits non-zero and prints the first differences when any verdict changed. The
protected files live in a fixed directory so two runs compare.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from relay_shell.policy.analyze import Analyzer, PolicyEnvironment
from relay_shell.policy.model import Analysis, CallText, Interpreter, TypedUnit

ROOT = Path(__file__).resolve().parent.parent
FIXED = Path("/tmp/relay-p9-snapshot")
MIB = 1_048_576
FRAGMENTS = [
    *list("abcrmf -'\"\\$(){}[];|&<>`!*?~=#\n\t0123456789/."),
    "rm", "sh", "-c", "$(", "<<", "EOF", "bash", "eval", "cat", "ls", "find", "-exec", "xargs", "sudo",
    "env", "X=1", "${x}", "$((", "))", "[[", "]]", "cd", "/etc", "~", "git", "export", "f()", "{r,}",
]  # fmt: skip


def test_texts() -> list[str]:
    """Every string literal of the policy tests (duplicates removed, order kept)."""
    found: dict[str, None] = {}
    for path in sorted((ROOT / "tests" / "policy").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 5000:
                found.setdefault(node.value, None)
    return list(found)


def fragments(count: int = 3000, seed: int = 9) -> list[str]:
    """Seeded shell-like texts: random joins of tokens that stress the grammar's corners."""
    chooser = random.Random(seed)
    return ["".join(chooser.choice(FRAGMENTS) for _ in range(chooser.randint(1, 40))) for _ in range(count)]


def big_texts(texts: list[str]) -> list[str]:
    """The bench's megabyte scripts (P9b) and a smaller mix that crosses chunk cuts."""
    from tests.policy.corpus import SAFE

    block = "\n".join(text for _, text in SAFE if "\n" not in text) + "\n"
    mixed = "\n".join(texts[:400]) + "\n"
    return [
        block * (MIB // len(block)) + "rm -rf /srv/x\n",
        "true; " * (MIB // 6) + "\nrm -rf /srv/x\n",
        mixed * (300_000 // len(mixed) + 1),
    ]


def environments() -> list[tuple[str, PolicyEnvironment]]:
    from tests.policy.environment import server_files_environment  # ROOT is on sys.path by then

    protected = server_files_environment(FIXED)
    return [("protected", replace(protected, spellings=True)), ("plain", replace(protected, spellings=False)),
            ("bare", PolicyEnvironment.bare())]  # fmt: skip


def calls(text: str) -> Iterator[tuple[str, CallText]]:
    yield "command", CallText(shell=text)
    yield "remote", CallText(shell=text, remote=True)
    yield "script", CallText(shell=text, interpreter=Interpreter.BASH)
    yield "session", CallText(typed=(TypedUnit(text, True),))
    yield "stdin", CallText(shell="sh", stdin=text)
    yield "argv", CallText(argv=tuple(text.split()) or ("",))


_TMP_FILES = re.compile(r"(?: ?/tmp/[^\s']+)+")  # a glob's expansion in /tmp changes as others work


def record(analysis: Analysis) -> dict[str, object]:
    return {
        "tier": analysis.tier,
        "opaque": analysis.opaque,
        "rule": analysis.rule,
        "taints": analysis.taints,
        "interactive": analysis.interactive,
        "protected": analysis.protected,
        "exec_env": sorted(analysis.exec_env),
        "addresses": list(analysis.addresses),
        "commands": [
            [c.kind, c.text, c.name, c.tier, c.rule, c.opaque, c.reason, c.origin, c.depth, list(c.wrappers),
             [_TMP_FILES.sub(" /tmp/...", spelling) for spelling in c.spellings], c.known_safe, c.remote]
            for c in analysis.commands
        ],
    }  # fmt: skip


def _own_pid(value: object) -> str:
    """The JSON of ``value`` with this process's id and its standard files replaced (spellings
    resolve ``/proc/self`` and ``/dev/stderr``)."""
    text = json.dumps(value).replace(f"/proc/{os.getpid()}", "/proc/PID")
    for fd in (0, 1, 2):
        target = os.path.realpath(f"/proc/self/fd/{fd}")
        if target.startswith("/") and len(target) > 10:
            text = text.replace(json.dumps(target)[1:-1], f"FD{fd}")
    return text


def lines(texts: list[str]) -> Iterator[str]:
    small = texts + fragments()
    for env_name, environment in environments():
        analyzer = Analyzer(environment)
        for index, text in enumerate(small):
            for call_name, call in calls(text):
                yield _own_pid([env_name, call_name, index, record(analyzer.analyze(call))])
        if env_name != "plain":
            continue
        for index, text in enumerate(big_texts(texts)):
            for call_name, call in list(calls(text))[:2]:
                digest = hashlib.sha256(_own_pid(record(analyzer.analyze(call))).encode()).hexdigest()
                yield json.dumps([env_name, call_name, f"big{index}", digest])


def main(argv: list[str]) -> int:
    action, path = argv[1], Path(argv[2])
    if action == "write":
        texts = test_texts()
        with path.open("w") as out:
            out.write(json.dumps(texts) + "\n")  # the texts of the tests as they were
            for line in lines(texts):
                out.write(line + "\n")
        return 0
    differences = 0
    with path.open() as before:
        for old, new in zip(before, lines(json.loads(before.readline())), strict=True):
            if old.rstrip("\n") != new:
                differences += 1
                if differences <= 5:
                    print("before:", old[:2000], "\nafter: ", new[:2000], "\n")
    print(f"{differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":  # a set's order shows in some opaque reasons
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv))
