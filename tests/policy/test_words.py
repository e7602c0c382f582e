"""The word scanner: quote removal, escapes, $'..', braces, tilde, and what stays unknown."""

from __future__ import annotations

import pytest

from relay_shell.policy.words import WordScanner, arith_assignments, arith_uses, expand_braces

SCANNER = WordScanner(home="/home/op")


def texts(source: str) -> list[str]:
    return [word.text for word in SCANNER.words(source, lambda offset: True)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("to''uch", ["touch"]),
        ('to""uch', ["touch"]),
        ("t\\ouch", ["touch"]),
        ("'t'ouch", ["touch"]),
        ('"touch"', ["touch"]),
        ("$'\\x74ouch'", ["touch"]),
        ("$'\\164ouch'", ["touch"]),
        ("$'\\u0074ouch'", ["touch"]),
        ("$'t\\'q'", ["t'q"]),
        ('$"touch"', ["touch"]),
        ('"a\\"b"', ['a"b']),
        ('"a\\$b"', ["a$b"]),
        ("'a\\'", ["a\\"]),
        ("a\\\nb", ["ab"]),
        ("{r,}m", ["rm", "m"]),
        ("{a,b}{1,2}", ["a1", "a2", "b1", "b2"]),
        ("x{a,{b,c}}", ["xa", "xb", "xc"]),
        ("{1..3}", ["1", "2", "3"]),
        ("{01..03}", ["01", "02", "03"]),
        ("{a..e..2}", ["a", "c", "e"]),
        ("{3..1}", ["3", "2", "1"]),
        ("'{a,b}'", ["{a,b}"]),
        ("{a}", ["{a}"]),
        ("{}", ["{}"]),
        ("{,}", []),
        ("~", ["/home/op"]),
        ("~/x", ["/home/op/x"]),
        ("'~'/x", ["~/x"]),
        ("x~", ["x~"]),
    ],
)
def test_literal_spellings(source: str, expected: list[str]) -> None:
    assert texts(source) == expected
    assert all(word.literal for word in SCANNER.words(source, lambda offset: True))


@pytest.mark.parametrize(
    ("source", "glob", "may_be_option", "may_split", "code"),
    [
        ("*", True, True, False, False),
        ("/tmp/*", True, False, False, False),
        ("r?", True, False, False, False),
        ("[ab]x", True, True, False, False),
        ("@(a|b)", True, True, False, False),
        ("$X", False, True, True, False),
        ('"$X"', False, True, False, False),
        ('"/tmp/$X"', False, False, False, False),
        ('"$@"', False, True, True, False),
        ("$(id)", False, True, True, True),
        ('"$(id)"', False, True, False, True),
        ("`id`", False, True, True, True),
        ("${!x}", False, True, True, True),
        ("${x@P}", False, True, True, True),
    ],
)
def test_what_is_unknown(source: str, glob: bool, may_be_option: bool, may_split: bool, code: bool) -> None:
    (word,) = SCANNER.words(source, lambda offset: True)
    assert not word.literal
    assert (word.glob, word.may_be_option, word.may_split, word.code is not None) == (
        glob,
        may_be_option,
        may_split,
        code,
    )


def test_a_substitution_the_grammar_did_not_see_is_flagged() -> None:
    (seen,) = SCANNER.words("a$(id)", lambda offset: offset == 1)
    (unseen,) = SCANNER.words("a$(id)", lambda offset: False)
    assert not seen.unseen
    assert unseen.unseen and not unseen.literal


def test_unterminated_quotes_are_not_literal() -> None:
    for source in ("'abc", '"abc', "$'abc", "`abc", "$(abc"):
        assert not SCANNER.words(source, lambda offset: True)[0].literal


def test_brace_expansion_is_bounded() -> None:
    tokens = [("u", character) for character in "{a,b}" * 30]
    expanded, overflow = expand_braces(tokens)
    assert overflow
    assert len(expanded) <= 4096
    words = SCANNER.words("{1..100000}", lambda offset: True)
    assert len(words) <= 4096


def test_arithmetic_reads_names_not_numbers() -> None:
    assert set(arith_uses("x + $y + ${z} + 16#ff + 0x1f + a[i]")) == {"x", "y", "z", "a", "i"}
    assert set(arith_uses("x = 1")) == set()
    assert set(arith_uses("x += 1")) == {"x"}
    assert set(arith_uses("$(id) + 1")) == set()
    assert set(arith_assignments("i = 0; i < 3; i++")) == {"i"}
