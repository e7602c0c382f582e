"""P9: the cost of the grammar-aware classifier.

- P9a: parse + classify one typical command (every text of the test corpus,
  ``tests/policy/corpus.py``), p50 over 5 rounds, with the protected files of a configured
  server. Floor: tree-sitter's parse of the same texts alone (no walk, no rules). Target:
  p50 < 0.2 ms.
- P9b: one realistic 1 MiB script (the corpus's known-safe reads repeated, a tier-3 line at
  the end), parse + classify. Floor: tree-sitter's parse of the same bytes. Target: < 1 s;
  the ratio says how much the walk and the rules add to the grammar's own cost on this
  machine (the pipeline classifies inputs over 64 KiB in a worker thread either way).
- P9c (in the note): a dense adversarial megabyte (``true;`` repeated): the command budget
  reads the tail with the regex table, so the cost stays linear.

    .venv/bin/python bench/p9_classify.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import tree_sitter_bash
from common import Figure, measure, ratio, run_main
from tests.policy.corpus import LOOKALIKES, OPAQUE, REFUSED, SAFE, TIER3
from tree_sitter import Language, Parser

from relay_shell.config import load_settings
from relay_shell.policy.analyze import MAX_COMMANDS, Analyzer, PolicyEnvironment
from relay_shell.policy.model import CallText

ROUNDS = 5
TARGET_P50_MS = 0.2
TARGET_MIB_S = 1.0
MIB = 1_048_576


def analyzer() -> Analyzer:
    root = Path(tempfile.mkdtemp(prefix="relay-bench-p9-"))
    settings = load_settings(audit_path=root / "audit" / "audit.jsonl", auth_state_dir=root / "oauth")
    return Analyzer(PolicyEnvironment.from_settings(settings))


def corpus() -> list[str]:
    return [text for _, text in TIER3 + REFUSED + OPAQUE + SAFE + LOOKALIKES]


def per_command(classify: Analyzer, texts: list[str]) -> tuple[list[float], list[float]]:
    parser = Parser(Language(tree_sitter_bash.language()))
    values: list[float] = []
    floors: list[float] = []
    for text in texts:  # warm caches (PATH resolution, compiled patterns)
        classify.analyze(CallText(shell=text))
    for _ in range(ROUNDS):
        for text in texts:
            started = time.perf_counter()
            classify.analyze(CallText(shell=text))
            values.append(time.perf_counter() - started)
            data = text.encode()
            started = time.perf_counter()
            parser.parse(data)
            floors.append(time.perf_counter() - started)
    return values, floors


def megabyte(block: str) -> str:
    return block * (MIB // len(block)) + "rm -rf /srv/x\n"


def timed_best(action: object, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


async def typical(figure: Figure) -> None:
    classify = analyzer()
    values, floors = per_command(classify, corpus())
    p50, floor_p50 = statistics.median(values), statistics.median(floors)
    values.sort()
    figure.value = f"p50 {p50 * 1000:.3f} ms, p99 {values[int(len(values) * 0.99)] * 1000:.3f} ms"
    figure.floor = f"p50 {floor_p50 * 1000:.3f} ms (tree-sitter parse alone)"
    figure.ratio = ratio(p50, floor_p50)
    figure.judge(p50 * 1000 < TARGET_P50_MS)
    figure.note = f"{len(corpus())} corpus texts x {ROUNDS} rounds, protected files configured."


async def one_megabyte(figure: Figure) -> None:
    classify = analyzer()
    block = "\n".join(text for _, text in SAFE if "\n" not in text) + "\n"
    script = megabyte(block)
    parser = Parser(Language(tree_sitter_bash.language()))
    data = script.encode()
    value_s = timed_best(lambda: classify.analyze(CallText(shell=script)))
    floor_s = timed_best(lambda: parser.parse(data))
    analysis = classify.analyze(CallText(shell=script))
    dense = "true; " * (MIB // 6) + "\nrm -rf /srv/x\n"
    dense_s = timed_best(lambda: classify.analyze(CallText(shell=dense)), repeat=1)
    figure.value = f"{value_s:.2f} s"
    figure.floor = f"{floor_s:.2f} s (tree-sitter parse alone)"
    figure.ratio = ratio(value_s, floor_s)
    figure.judge(value_s < TARGET_MIB_S)
    figure.note = (
        f"best of 2; {len(analysis.commands)} commands recorded (budget {MAX_COMMANDS}, the rest read by the "
        f"regex table), tier {analysis.tier}{' opaque' if analysis.opaque else ''}; dense adversarial MiB "
        f"(`true;` x {MIB // 6}): {dense_s:.2f} s."
    )


async def main() -> list[Figure]:
    figures: list[Figure] = []
    await measure(figures, "P9a", "classify a typical command (p50)", f"< {TARGET_P50_MS} ms", typical)
    await measure(figures, "P9b", "classify a realistic 1 MiB script", f"< {TARGET_MIB_S:g} s", one_megabyte)
    return figures


if __name__ == "__main__":
    run_main(main)
