"""Adversarial rewrites by class (tests/policy/corpus.py): none of them gets through guarded mode."""

from __future__ import annotations

import pytest

from relay_shell.policy.model import IRREVERSIBLE, STATEFUL
from tests.policy.conftest import Classify
from tests.policy.corpus import LOOKALIKES, NOT_READS, OPAQUE, REFUSED, SAFE, TIER3


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{group}:{text[:50]}" for group, text in cases]


@pytest.mark.parametrize(("group", "text"), TIER3, ids=_ids(TIER3))
def test_irreversible_rewrites_stay_tier_3(classify: Classify, group: str, text: str) -> None:
    analysis = classify(text)
    assert analysis.tier == IRREVERSIBLE, [(c.text, c.tier, c.rule) for c in analysis.commands]


@pytest.mark.parametrize(("group", "text"), REFUSED, ids=_ids(REFUSED))
def test_stateful_rewrites_need_the_allow_list(classify: Classify, group: str, text: str) -> None:
    analysis = classify(text)
    assert analysis.tier >= STATEFUL or analysis.opaque, [(c.text, c.tier, c.rule) for c in analysis.commands]


@pytest.mark.parametrize(("group", "text"), OPAQUE, ids=_ids(OPAQUE))
def test_opaque_execution_is_flagged(classify: Classify, group: str, text: str) -> None:
    analysis = classify(text)
    assert analysis.opaque, [(c.text, c.tier, c.rule) for c in analysis.commands]
    assert analysis.tier >= STATEFUL
    assert any(command.reason.startswith("opaque: ") for command in analysis.commands)


@pytest.mark.parametrize(("group", "text"), SAFE, ids=_ids(SAFE))
def test_known_safe_reads_are_tier_0(classify: Classify, group: str, text: str) -> None:
    analysis = classify(text)
    assert (analysis.tier, analysis.opaque) == (0, False), [
        (c.text, c.tier, c.rule) for c in analysis.commands
    ]


@pytest.mark.parametrize(("group", "text"), LOOKALIKES, ids=_ids(LOOKALIKES))
def test_lookalikes_stay_reversible(classify: Classify, group: str, text: str) -> None:
    analysis = classify(text)
    assert analysis.tier <= 1 and not analysis.opaque, [(c.text, c.tier, c.rule) for c in analysis.commands]


@pytest.mark.parametrize("text", NOT_READS, ids=[text[:50] for text in NOT_READS])
def test_readonly_refuses_what_is_not_a_known_safe_read(classify: Classify, text: str) -> None:
    analysis = classify(text)
    assert analysis.tier >= 1, [(c.text, c.tier, c.rule) for c in analysis.commands]
