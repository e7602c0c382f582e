"""``find`` as a known-safe read: its expression may only test files and print them.

An action that runs, deletes or writes (``-exec``, ``-delete``, ``-fprint``...) or any
primary not listed here keeps ``find`` an ordinary tier-1 command (see
:mod:`relay_shell.policy.rules.readonly`).
"""

from __future__ import annotations

from relay_shell.policy.rules.base import Invocation


def find_read(invocation: Invocation) -> bool:
    """Whether ``find`` only tests and prints: every word starting with ``-`` is a listed test (with
    its value), printing action, operator or option."""
    tests = {
        "-name",
        "-iname",
        "-path",
        "-ipath",
        "-wholename",
        "-iwholename",
        "-regex",
        "-iregex",
        "-type",
        "-xtype",
        "-size",
        "-mtime",
        "-mmin",
        "-atime",
        "-amin",
        "-ctime",
        "-cmin",
        "-newer",
        "-anewer",
        "-cnewer",
        "-perm",
        "-user",
        "-group",
        "-uid",
        "-gid",
        "-links",
        "-inum",
        "-samefile",
        "-lname",
        "-ilname",
        "-used",
        "-fstype",
        "-maxdepth",
        "-mindepth",
        "-regextype",
        "-newermt",
        "-newerct",
        "-newerat",
        "-newermm",
        "-printf",
        "-context",
        "-files0-from",
    }
    flags = {
        "-print",
        "-print0",
        "-ls",
        "-empty",
        "-readable",
        "-writable",
        "-executable",
        "-nouser",
        "-nogroup",
        "-true",
        "-false",
        "-prune",
        "-quit",
        "-depth",
        "-xdev",
        "-mount",
        "-follow",
        "-daystart",
        "-ignore_readdir_race",
        "-noleaf",
        "!",
        "-not",
        "-a",
        "-and",
        "-o",
        "-or",
        "(",
        ")",
        ",",
        "-L",
        "-H",
        "-P",
        "-help",
        "--help",
        "-version",
        "--version",
    }
    args = invocation.args
    index = 0
    while index < len(args):
        text = args[index].text
        if text in tests:
            index += 2
            continue
        if text.startswith("-") and text not in flags and not text.startswith(("-O", "-D")):
            return False
        index += 1
    return all(word.plain for word in invocation.args)
