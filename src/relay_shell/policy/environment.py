"""What classification is measured against, and the environment a tier-0 git read runs with.

:class:`PolicyEnvironment`: the protected files, the server's PATH, HOME and working
directory, and whether a deny list needs the further spellings of each command.
:data:`GIT_SAFE_ENV` and :data:`LOCAL_GIT_SAFE_ENV`: the overlays the executor applies to a
tier-0 git read on a remote host and here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from relay_shell.config import Settings
from relay_shell.policy.paths import Protected


def _git_overlay(*config: tuple[str, str]) -> Mapping[str, str | None]:
    """Environment that sets each ``config`` pair (``GIT_CONFIG_KEY_n``/``VALUE_n``), keeps
    pagers inert and drops what would add configuration or run an external diff."""
    overlay: dict[str, str | None] = {"GIT_CONFIG_COUNT": str(len(config))}
    for index, (key, value) in enumerate(config):
        overlay[f"GIT_CONFIG_KEY_{index}"] = key
        overlay[f"GIT_CONFIG_VALUE_{index}"] = value
    overlay |= {"GIT_OPTIONAL_LOCKS": "0", "GIT_PAGER": "cat", "PAGER": "cat", "LESSSECURE": "1"}
    overlay |= {"GIT_EXTERNAL_DIFF": None, "GIT_CONFIG_PARAMETERS": None}
    return MappingProxyType(overlay)


_NO_CODE_CONFIG = (("core.fsmonitor", "false"), ("core.hooksPath", "/dev/null"), ("core.pager", "cat"))
_NO_SIGNATURES = (("log.showSignature", "false"), ("gpg.program", "false"))
GIT_SAFE_ENV = _git_overlay(*_NO_CODE_CONFIG, ("diff.external", ""), *_NO_SIGNATURES)
"""The overlay a tier-0 run of git gets on a remote host: configuration that would run code
switched off (an empty ``diff.external`` makes ``git diff`` fail rather than run a program)."""
LOCAL_GIT_SAFE_ENV = _git_overlay(*_NO_CODE_CONFIG, *_NO_SIGNATURES)
"""The overlay of a local tier-0 git: a local read is tier 0 only when no configuration file
it loads names a driver or an external diff (:mod:`relay_shell.policy.rules.git_config`),
so ``diff.external`` needs no override and ``git diff`` works."""


@dataclass(frozen=True)
class PolicyEnvironment:
    """What classification is measured against: protected files, the server's PATH, HOME, cwd."""

    protected: Protected | None
    search_path: str
    home: str | None
    cwd: str
    spellings: bool = True  # a deny list is configured: spellings (paths resolved, globs expanded), addresses

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyEnvironment:
        """The environment of a server started with ``settings`` (in this process)."""
        return cls(
            Protected.from_settings(settings),
            os.environ.get("PATH", os.defpath),
            os.path.expanduser("~"),
            os.getcwd(),
            spellings=settings.policy_deny is not None,
        )

    @classmethod
    def bare(cls) -> PolicyEnvironment:
        """No protected files (tests and tools that only want the parse)."""
        return cls(None, os.environ.get("PATH", os.defpath), os.path.expanduser("~"), os.getcwd())
