"""Properties of the classifier: never raises, deterministic, monotone, bounded on big inputs."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay_shell.policy.analyze import MAX_COMMANDS, analyze_text
from relay_shell.policy.model import CallText, TypedUnit
from relay_shell.policy.session import LineState, feed
from tests.policy.conftest import Classify
from tests.policy.corpus import LOOKALIKES, OPAQUE, REFUSED, SAFE, TIER3

SHELLISH = st.lists(
    st.sampled_from(
        [*list("abcrmf -'\"\\$(){}[];|&<>`!*?~=#\n\t0123456789"), "rm", "sh", "-c", "$(", "<<", "EOF"]
    ),
    max_size=60,
).map("".join)
COMPLETE = [
    text
    for _, text in TIER3 + REFUSED + OPAQUE + SAFE + LOOKALIKES
    if not analyze_text(text).commands
    or all(command.kind != "unparsed" for command in analyze_text(text).commands)
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHELLISH)
def test_never_raises_and_is_deterministic(text: str) -> None:
    first = analyze_text(text)
    second = analyze_text(text)
    assert 0 <= first.tier <= 3
    assert [(c.text, c.tier, c.rule, c.opaque) for c in first.commands] == [
        (c.text, c.tier, c.rule, c.opaque) for c in second.commands
    ]
    if first.opaque:
        assert first.tier >= 2


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=60),
    st.dictionaries(st.from_regex(r"[A-Z_]{1,8}", fullmatch=True), st.text(max_size=20), max_size=3),
)
def test_every_channel_never_raises(text: str, env: dict[str, str]) -> None:
    from relay_shell.policy.analyze import Analyzer, PolicyEnvironment

    analyzer = Analyzer(PolicyEnvironment.bare())
    for call in (
        CallText(shell=text, env=env),
        CallText(argv=(text, text)),
        CallText(stdin=text, shell="sh"),
        CallText(typed=(TypedUnit(text, True),), remote=True),
        CallText(shell=text, spawn=True),
    ):
        assert 0 <= analyzer.analyze(call).tier <= 3


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(COMPLETE), st.sampled_from(COMPLETE))
def test_appending_a_command_never_lowers_the_tier_or_clears_opaque(first: str, second: str) -> None:
    alone = analyze_text(first)
    joined = analyze_text(first + "\n" + second)
    assert joined.tier >= alone.tier, (first, second)
    assert joined.opaque or not alone.opaque, (first, second)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(COMPLETE), st.sampled_from(COMPLETE))
def test_a_dangerous_command_cannot_hide_behind_another(first: str, second: str) -> None:
    """Joined by ``;``, ``&&`` or ``||``, the call is at least as bad as its worst part; a join
    bash refuses as a syntax error (``nohup ./x & || ...``: nothing runs) is opaque instead."""
    worst = max(analyze_text(first).tier, analyze_text(second).tier)
    for joiner in ("; ", " && ", " || "):
        joined = analyze_text(first + joiner + second)
        if any(command.kind == "unparsed" for command in joined.commands):
            assert joined.opaque and joined.tier >= 2, (first, joiner, second)
        else:
            assert joined.tier >= min(worst, analyze_text(second).tier), (first, joiner, second)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=40), st.booleans())
def test_the_line_model_never_raises(data: str, ssh: bool) -> None:
    state = LineState(editor="basic" if ssh else "readline")
    result = feed(state, data)
    assert all(isinstance(unit.text, str) for unit in result.units)
    again = feed(result.state, data)
    assert len(again.units) >= 0


def test_a_megabyte_script_is_bounded(classify: Classify) -> None:
    """A dense megabyte still ends, with the tail read by the regex table (opaque)."""
    script = "true; " * 180_000 + "\nrm -rf /srv/x\n"
    analysis = classify(script)
    assert analysis.tier == 3
    assert analysis.opaque
    assert len(analysis.commands) <= MAX_COMMANDS + 2


def test_a_realistic_megabyte_script_is_classified_command_by_command(classify: Classify) -> None:
    block = "\n".join(text for _, text in SAFE if "\n" not in text) + "\n"
    script = block * (1_048_576 // len(block)) + "rm -rf /srv/x\n"
    analysis = classify(script)
    assert analysis.tier == 3
    assert analysis.rule == "deletion.rm_recursive" or analysis.opaque


def test_long_texts_are_cut_in_order_and_each_piece_is_parsed_once(classify: Classify) -> None:
    """The pieces of a long text join back to it, each carries the tree of exactly its bytes
    (reused by the parse), a piece never cuts a here-document or a quote, and once the command
    budget is spent no further piece is parsed."""
    import pytest

    from relay_shell.policy import chunks as chunking
    from relay_shell.policy import parse
    from relay_shell.policy.chunks import CHUNK_CHARS, chunks

    filler = "echo a\n" * (CHUNK_CHARS // 7 - 3)
    text = filler + "cat <<'EOF'\n" + "x\n" * 40 + "EOF\necho 'multi\nline'\n" + filler * 3 + "rm -rf /x\n"
    pieces = list(chunks(text))
    assert len(pieces) >= 3
    assert "".join(piece.text for piece in pieces) == text
    for piece in pieces[:-1]:
        assert piece.tree is not None
        assert piece.tree.root_node.end_byte == len(piece.text.encode())
        assert not piece.tree.root_node.has_error
    assert all(piece.text.count("<<'EOF'") == piece.text.count("\nEOF\n") for piece in pieces)

    parsed: list[int] = []
    real = parse.parse_tree

    def counting(data: bytes) -> object:
        parsed.append(len(data))
        return real(data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parse, "parse_tree", counting)
        patch.setattr(chunking, "parse_tree", counting)
        block = "\n".join(text for _, text in SAFE if "\n" not in text) + "\n"
        script = block * (1_048_576 // len(block)) + "rm -rf /srv/x\n"  # the budget is spent early
        analysis = classify(script)
    assert (analysis.tier, analysis.opaque) == (3, True)
    assert len(analysis.commands) > MAX_COMMANDS
    assert sum(parsed) < len(script) // 2  # each piece once, and none after the budget
