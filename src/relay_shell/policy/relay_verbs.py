"""The relay's own command line: which invocations of ``relay-shell`` act as the relay.

``relay-shell`` with an administration verb (``--approve-login``, ``--set-operator-passphrase``,
``--revoke-grant``, ``--list-grants``, in any unambiguous abbreviation, as argparse reads
them) changes or reveals the OAuth grants; ``relay-shell`` without any mode serves MCP on its
stdin: a second relay that runs whatever its client sends under the policy its own
environment sets, writing to the relay's audit file and OAuth state. Both are the relay's
own administration and protected. The modes that only read or print (``--version``,
``--help``, ``--check-config``, ``--verify-audit``, ``--verify-deploy``, ``--explain``) are not.
An argument the parse cannot read (an expansion) could be any of these: ambiguity rounds up.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay_shell.policy.words import Word

ADMIN_VERBS = ("--approve-login", "--set-operator-passphrase", "--revoke-grant", "--list-grants")
READ_MODES = ("--version", "--help", "--check-config", "--verify-audit", "--verify-deploy", "--explain")
SELF_NAMES = frozenset({"relay-shell", "relay_shell"})


def acts_as_the_relay(args: Sequence[Word]) -> bool:
    """Whether ``relay-shell ARGS`` runs an administration verb or serves (see the module docstring)."""
    if any(_names(word, ADMIN_VERBS) for word in args):
        return True
    if any(not word.literal for word in args):
        return True
    return not any(word.text in ("-h", "-V") or _names(word, READ_MODES) for word in args)


def _names(word: Word, flags: Sequence[str]) -> bool:
    """``word`` may spell one of ``flags`` (a prefix of one, ``=value`` aside, in a word of more
    than three characters)."""
    return len(word.text) > 3 and any(flag.startswith(word.text.split("=", maxsplit=1)[0]) for flag in flags)
