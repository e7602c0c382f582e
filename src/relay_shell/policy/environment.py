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

GIT_SAFE_ENV: Mapping[str, str | None] = MappingProxyType({
    "GIT_CONFIG_COUNT": "6",
    "GIT_CONFIG_KEY_0": "core.fsmonitor", "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "core.hooksPath", "GIT_CONFIG_VALUE_1": "/dev/null",
    "GIT_CONFIG_KEY_2": "core.pager", "GIT_CONFIG_VALUE_2": "cat",
    "GIT_CONFIG_KEY_3": "diff.external", "GIT_CONFIG_VALUE_3": "",
    "GIT_CONFIG_KEY_4": "log.showSignature", "GIT_CONFIG_VALUE_4": "false",
    "GIT_CONFIG_KEY_5": "gpg.program", "GIT_CONFIG_VALUE_5": "false",
    "GIT_OPTIONAL_LOCKS": "0", "GIT_PAGER": "cat", "PAGER": "cat", "LESSSECURE": "1",
    "GIT_EXTERNAL_DIFF": None, "GIT_CONFIG_PARAMETERS": None,
})  # fmt: skip
"""The overlay a tier-0 run of git gets on a remote host: configuration that would run code
switched off (an empty ``diff.external`` makes ``git diff`` fail rather than run a program)."""
LOCAL_GIT_SAFE_ENV: Mapping[str, str | None] = MappingProxyType({
    "GIT_CONFIG_COUNT": "5",
    "GIT_CONFIG_KEY_0": "core.fsmonitor", "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "core.hooksPath", "GIT_CONFIG_VALUE_1": "/dev/null",
    "GIT_CONFIG_KEY_2": "core.pager", "GIT_CONFIG_VALUE_2": "cat",
    "GIT_CONFIG_KEY_3": "log.showSignature", "GIT_CONFIG_VALUE_3": "false",
    "GIT_CONFIG_KEY_4": "gpg.program", "GIT_CONFIG_VALUE_4": "false",
    "GIT_OPTIONAL_LOCKS": "0", "GIT_PAGER": "cat", "PAGER": "cat", "LESSSECURE": "1",
    "GIT_EXTERNAL_DIFF": None, "GIT_CONFIG_PARAMETERS": None,
})  # fmt: skip
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
