"""The OAuth state directory: who may own it and with which mode (checked, never loosened).

:func:`check_state_dir` is also what ``--check-config`` runs; :func:`prepare_state_dir` creates
a missing directory 0700 first.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from relay_shell.errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_state_dir(path: Path) -> None:
    """Refuse an OAuth state directory that others could read or that cannot be used.

    An existing ``path`` must be a directory with no group/world permission bits, owned by
    this user (any owner is accepted for root) and writable. A missing ``path`` is fine when
    it can be created (it is not created here: ``--check-config`` has no side effects).

    Raises:
        ConfigError: naming the path and, for a permission problem, its mode.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        parent = _nearest_existing(path.parent)
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"OAuth state directory {path} does not exist and {parent} is not writable"
            ) from None
        return
    except OSError as exc:
        raise ConfigError(f"OAuth state directory {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"OAuth state directory {path} is not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"OAuth state directory {path} has mode {mode:04o}: it must not be group/world accessible"
            f" (chmod 700 {path})"
        )
    euid = os.geteuid()
    if euid not in (0, info.st_uid):
        raise ConfigError(
            f"OAuth state directory {path} is owned by uid {info.st_uid}, not by this user ({euid})"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"OAuth state directory {path} is not writable by this user")


def prepare_state_dir(path: Path) -> None:
    """Create ``path`` 0700 when missing, then :func:`check_state_dir` it (never loosen or fix it)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            os.chmod(path, 0o700)  # the umask can only remove bits, but be explicit
    check_state_dir(path)
