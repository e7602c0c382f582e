"""``--check-config``: validate everything a server needs without serving (SPEC §12)."""

from __future__ import annotations

from relay_shell.config import AuthMode, Settings, Transport
from relay_shell.errors import ConfigError


def run_checks(settings: Settings) -> list[str]:
    """Return one message per problem; empty means the configuration is usable."""
    problems: list[str] = []
    from relay_shell.governance.audit.writer import AuditSink

    sink = AuditSink(
        settings.expand(settings.audit_path), fmt=settings.audit_format, chain=settings.audit_chain
    )
    try:
        if not sink.check():
            problems.append(f"RELAY_SHELL_AUDIT_PATH: {sink.path} is not writable ({sink.last_error})")
    finally:
        sink.close()
    try:
        from relay_shell.ssh.inventory import Inventory

        Inventory.load(settings)
    except ConfigError as exc:
        problems.append(str(exc))
    except ImportError:
        pass
    if settings.transport is Transport.HTTP:
        try:
            from relay_shell.http.edge import allowed_authorities

            allowed_authorities(settings)
        except ConfigError as exc:
            problems.append(str(exc))
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
        if settings.auth_operator_hash:
            try:
                from relay_shell.http.operator_auth import PassphraseVerifier

                PassphraseVerifier(settings.auth_operator_hash)
            except ConfigError as exc:
                problems.append(str(exc))
    return problems
