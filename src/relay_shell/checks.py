"""``--check-config``: validate everything a server needs without serving (SPEC §12)."""

from __future__ import annotations

from relay_shell.config import AuthMode, Settings, Transport
from relay_shell.errors import ConfigError


def run_checks(settings: Settings, warnings: list[str] | None = None) -> list[str]:
    """Return one message per problem; empty means the configuration is usable.

    Warnings (a usable but weaker setup, such as audit anchoring off) are appended to
    ``warnings`` when given.
    """
    problems = _audit_problems(settings, warnings if warnings is not None else [])
    try:
        from relay_shell.ssh.inventory import Inventory

        Inventory.load(settings)
    except ConfigError as exc:
        problems.append(str(exc))
    except ImportError:
        pass
    if (
        settings.auth_enabled
        and settings.transport is Transport.HTTP
        and settings.auth_mode is AuthMode.BUILTIN
    ):
        try:
            from relay_shell.http.oauth_store import check_state_dir

            check_state_dir(settings.expand(settings.auth_state_dir))
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def _audit_problems(settings: Settings, warnings: list[str]) -> list[str]:
    """The audit file as a writer would open it (without writing; a running server's lock is
    fine), and the anchor and ship channels."""
    from relay_shell.governance.audit.guard import UnsafeFile, probe
    from relay_shell.governance.audit.wiring import settings_problems

    problems: list[str] = []
    path = settings.expand(settings.audit_path)
    try:
        remark = probe(path)
    except UnsafeFile as exc:
        problems.append(f"RELAY_SHELL_AUDIT_PATH: {exc}")
    except OSError as exc:
        problems.append(f"RELAY_SHELL_AUDIT_PATH: {path} is not writable ({exc.strerror or exc})")
    else:
        if remark is not None and not remark.startswith("in use"):
            warnings.append(f"RELAY_SHELL_AUDIT_PATH: {path} is {remark}")
    channel_problems, channel_warnings = settings_problems(settings)
    warnings.extend(channel_warnings)
    return problems + channel_problems
