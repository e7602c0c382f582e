"""Whether a program can be executed, decided as the child's own ``execve`` would decide it.

A held child (ADR 0016) runs its command through a shell's ``exec``, which turns a missing
program into exit 127 and runs a file the kernel refuses (no ``#!`` line, not ELF) as a
shell script; a direct spawn fails instead. :func:`check_program` makes the held spawn fail
the same way, before anything is started.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from relay_shell.errors import SpawnFailed


def check_program(program: str, env: Mapping[str, str], cwd: Path | None) -> None:
    """Fail as a direct exec would when ``program`` cannot be run (a held child would exit 127).

    The search is the child's: relative ``PATH`` entries start from ``cwd``. A file the
    kernel would refuse (no ``#!`` line and not ELF, or a ``#!`` interpreter that is not
    there) fails too: the shell's ``exec`` would run the first as a shell script.
    """
    path: str | None
    if "/" in program:
        path = program if os.path.isabs(program) or cwd is None else os.path.join(cwd, program)
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            regular = None
        if not (regular and os.access(path, os.X_OK)):
            reason = "Permission denied" if regular is not None else "No such file or directory"
            raise SpawnFailed(f"cannot start {program!r}: {reason}")
    else:
        path = shutil.which(program, path=search_path(env.get("PATH", os.defpath), cwd))
        if path is None:
            raise SpawnFailed(f"cannot start {program!r}: No such file or directory")
    refused = exec_format_error(path, cwd)
    if refused is not None:
        raise SpawnFailed(f"cannot start {program!r}: {refused}")


def exec_format_error(path: str, cwd: Path | None) -> str | None:
    """Why the kernel would refuse to execute the file ``path``, or None (it would run it, or
    it cannot be told: a ``binfmt_misc`` handler may take it). The answer is kept per file
    version (device, inode, change time)."""
    try:
        status = os.stat(path)
    except OSError:
        return None  # gone meanwhile: the exec reports it
    key = (status.st_dev, status.st_ino, status.st_ctime_ns, status.st_size, str(cwd))
    if key in _EXEC_FORMAT:
        return _EXEC_FORMAT[key]
    try:
        with open(path, "rb") as file:
            head = file.read(BINPRM_BUF_SIZE)
    except OSError:
        return None
    if head.startswith(b"\x7fELF"):
        refused = None
    elif head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        if not words:
            refused = "Exec format error"
        elif os.access(os.path.join(cwd or "", os.fsdecode(words[0])), os.X_OK):  # from the child's cwd
            refused = None
        else:
            refused = "No such file or directory"
    else:
        refused = None if _binfmt_misc_handlers() else "Exec format error"
    if len(_EXEC_FORMAT) >= 256:
        _EXEC_FORMAT.clear()
    _EXEC_FORMAT[key] = refused
    return refused


BINPRM_BUF_SIZE = 256
"""What the kernel reads of a file to choose how to execute it (its ``#!`` line included)."""
_EXEC_FORMAT: dict[tuple[int, int, int, int, str], str | None] = {}


def _binfmt_misc_handlers() -> bool:
    """True when ``binfmt_misc`` is on and has a handler (any format may then be executable)."""
    try:
        entries = set(os.listdir("/proc/sys/fs/binfmt_misc")) - {"register", "status"}
        with open("/proc/sys/fs/binfmt_misc/status", "rb") as status:
            enabled = status.read().strip() == b"enabled"
    except OSError:
        return False
    return enabled and bool(entries)


def search_path(path: str, cwd: Path | None) -> str:
    """``path`` with its relative entries (an empty one is ``.``) made absolute from ``cwd``, as
    the child's ``execvp`` sees them after its ``chdir``; unchanged without a ``cwd``."""
    if cwd is None:
        return path
    return os.pathsep.join(
        entry if os.path.isabs(entry) else os.path.join(cwd, entry) for entry in path.split(os.pathsep)
    )
