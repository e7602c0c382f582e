"""The tree walk: every simple command is found, wherever it is, with where its stdin comes from."""

from __future__ import annotations

import pytest

from relay_shell.policy.analyze import analyze_text
from relay_shell.policy.parse import ShellParser
from relay_shell.policy.words import WordScanner


def names(text: str) -> list[str]:
    parse = ShellParser(WordScanner(None)).parse(text)
    return [raw.words[0].text for raw in parse.commands if raw.kind == "command" and raw.words]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a | b | c", ["a", "b", "c"]),
        ("a && b || c; d & e", ["a", "b", "c", "d", "e"]),
        ("(a; b)", ["a", "b"]),
        ("{ a; b; }", ["a", "b"]),
        ("x $(a) `b` <(c) >(d)", ["x", "a", "b", "c", "d"]),
        ('echo "$(a "$(b)")"', ["echo", "a", "b"]),
        ("if a; then b; elif c; then d; else e; fi", ["a", "b", "c", "d", "e"]),
        ("while a; do b; done; until c; do d; done", ["a", "b", "c", "d"]),
        ("for x in $(a); do b; done", ["a", "b"]),
        ("case $(a) in x) b;; *) c;; esac", ["a", "b", "c"]),
        ("f() { a; }; f", ["a", "f"]),
        ("! a", ["a"]),
        ("cat <<EOF\n$(a)\nEOF", ["cat", "a"]),
        ("cat <<'EOF'\n$(a)\nEOF", ["cat"]),
        ("x=$(a) y=`b`", ["a", "b"]),
        ("echo ${x:-$(a)}", ["echo", "a"]),
        ("echo $(( $(a) + 1 ))", ["echo", "a"]),
        ("[[ $(a) == x ]]", ["a"]),
        ("declare x=$(a)", ["a"]),
        ("a[$(b)]=1", ["b"]),
        ("cat <<EOF | sh\nx\nEOF", ["cat", "sh"]),
        ("a > $(b)", ["a", "b"]),
        ("time a", ["time"]),
    ],
)
def test_every_command_is_found(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_stdin_sources() -> None:
    parse = ShellParser(WordScanner(None)).parse(
        "echo x | sh; sh < f; sh <<'E'\nls\nE\n; sh <<< 'id'; sh; tee >(sh)"
    )
    stdin = {(raw.words[0].text, index): raw for index, raw in enumerate(parse.commands) if raw.words}
    kinds = [(name, raw.stdin, raw.pipe_source is not None) for (name, _), raw in stdin.items()]
    assert ("sh", "pipe", True) in kinds
    assert ("sh", "pipe", False) in kinds  # tee >(sh): a pipe with no known writer
    redirects = [raw.redirects for (name, _), raw in stdin.items() if name == "sh" and raw.redirects]
    operators = sorted(redirect.operator for group in redirects for redirect in group)
    assert operators == ["<", "<<", "<<<"]
    heredoc = next(r for group in redirects for r in group if r.operator == "<<")
    assert (heredoc.body, heredoc.body_literal) == ("ls\n", True)


def test_a_heredoc_substitution_the_grammar_misses_is_reported() -> None:
    parse = ShellParser(WordScanner(None)).parse("cat <<EOF\n`b`\nEOF")
    assert parse.commands[0].reasons  # bash runs `b`; the grammar keeps it as text


def test_text_that_does_not_parse_is_reported() -> None:
    for text in ("echo 'x", "if true; then", "echo $((a) )", "cat <>x"):
        assert ShellParser(WordScanner(None)).parse(text).errors, text


def test_integer_table_follows_assignments() -> None:
    parse = ShellParser(WordScanner(None)).parse(
        "i=0; echo $((i)); j=x; echo $((j)); for ((k=0;k<2;k++)); do :; done"
    )
    table = parse.integers
    use_i = next(raw for raw in parse.commands if "i" in raw.arith)
    use_j = next(raw for raw in parse.commands if "j" in raw.arith)
    assert table.safe("i", use_i.arith["i"])
    assert not table.safe("j", use_j.arith["j"])
    assert not table.safe("never", 10**6)
    assert table.safe("RANDOM", 0)


@pytest.mark.parametrize(
    "text",
    [
        "cat <<EOF > f\nx\nEOF",
        "cat <<EOF >> f\nx\nEOF",
        "cat <<-EOF 2>f\nx\nEOF",
        "cat <<'EOF' >f\nx\nEOF",
        "cat <<EOF 3>f <<< x\nx\nEOF",
    ],
)
def test_redirections_written_after_a_here_document_belong_to_the_command(text: str) -> None:
    analysis = analyze_text(text)
    assert analysis.tier == 1 and any(command.rule == "redirect.write" for command in analysis.commands)


def test_text_that_crashes_the_grammar_is_parsed_without_it() -> None:
    """tree-sitter-bash 0.25 segfaults on ``{`` + a 4-byte UTF-8 character (memory-layout
    dependent, tree-sitter/tree-sitter-bash#337): the parser never sees bytes above 127."""
    import subprocess
    import sys

    code = (
        "from relay_shell.policy.analyze import analyze_text\n"
        "for cp in range(0x10000, 0x110000, 0x800):\n"
        "    analyze_text('{' + chr(cp))\n"
        "    analyze_text('x{' + chr(cp) + ' ; rm -rf /x')\n"
    )
    for _ in range(3):
        assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("text", "tier"),
    [
        ("rm -rf /srv/é", 3),
        ("rm -rf /srv/{é,ü}", 3),
        ("echo é > f", 1),
        ("echo 'ü' 🙂", 0),
        ("cat <<É\nrm -rf /x\nÉ", 0),
        ("sh <<É\nrm -rf /x\nÉ", 3),
        (
            "é=1 rm -rf /x",
            3,
        ),  # not an assignment in bash (é is no name character): a command whose arguments hold rm
        ("$é -rf /x", 2),  # the grammar stops at $ + a non-name byte: opaque
    ],
)
def test_non_ascii_text_reads_as_bash_reads_it(text: str, tier: int) -> None:
    assert analyze_text(text).tier == tier
