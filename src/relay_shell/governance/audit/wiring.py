"""From settings to a running sink: the anchor and ship channels, and what is wrong with them.

``RELAY_SHELL_AUDIT_ANCHOR``: ``auto`` (journald when one listens on
``/run/systemd/journal/socket``, else off with a warning), ``journald``, ``journald:/SOCKET``,
``syslog+tcp://HOST:PORT``, ``syslog+tls://HOST:PORT`` or ``off``.
``RELAY_SHELL_AUDIT_SHIP`` takes the same values except ``auto``. TLS collectors are
verified against ``RELAY_SHELL_AUDIT_TLS_CA`` (PEM), or the system's CAs when unset.

Journald counts as a channel that reports failure: a stopped journald refuses the
datagram and a full queue times out, both of which the sink sees. What it cannot report is
an entry journald accepted and then dropped (its rate limit, a full journal disk): the
deploy unit switches the rate limit off for the service (``LogRateLimitIntervalSec=0``)
and gaps in the anchor numbers expose the rest. There is no UDP variant, so with
``AUDIT_REQUIRED`` every channel on offer can refuse calls when it fails.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from relay_shell.config import AuditFormat, Settings
from relay_shell.errors import ConfigError
from relay_shell.governance.audit.anchoring import Anchoring
from relay_shell.governance.audit.channels import (
    DEFAULT_JOURNAL_SOCKET,
    Channel,
    JournaldChannel,
    SyslogChannel,
    journal_listening,
)
from relay_shell.governance.audit.writer import AuditSink


def anchor_spec(settings: Settings) -> tuple[str, str | None]:
    """The effective anchor (``auto`` resolved) and a warning when ``auto`` found no journald."""
    spec = settings.audit_anchor
    if spec == "auto":
        try:
            journal_listening(DEFAULT_JOURNAL_SOCKET)
        except OSError:
            pass
        else:
            return "journald", None
        return "off", (
            f"audit anchoring is off: RELAY_SHELL_AUDIT_ANCHOR=auto and no journald listens on "
            f"{DEFAULT_JOURNAL_SOCKET}; without anchors, records cut from the end of the audit file or a "
            "rewritten file go unnoticed (set RELAY_SHELL_AUDIT_ANCHOR to a syslog collector)"
        )
    return spec, None  # an explicit "off" is the operator's choice: server_info shows it


def channel_for(spec: str, tls_ca: Path | None) -> Channel | None:
    """The channel a setting value names, or None for ``off`` (raises ConfigError when unusable)."""
    if spec == "off":
        return None
    if spec == "journald":
        return JournaldChannel()
    if spec.startswith("journald:"):
        return JournaldChannel(Path(spec.removeprefix("journald:")))
    scheme, _, address = spec.partition("://")
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if scheme == "syslog+tcp":
        return SyslogChannel(host, int(port))
    if scheme == "syslog+tls":
        try:
            context = ssl.create_default_context(cafile=str(tls_ca) if tls_ca is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"RELAY_SHELL_AUDIT_TLS_CA: cannot load {tls_ca}: {exc}") from exc
        return SyslogChannel(host, int(port), tls=context)
    raise ConfigError(f"unsupported audit channel {spec!r}")


def kind_of(spec: str) -> str:
    """``journald``, ``syslog`` or ``off`` for a setting value."""
    return spec.split(":", 1)[0].split("+", 1)[0]


def build_sink(settings: Settings) -> AuditSink:
    """The server's audit sink, with its anchor and ship channels (raises ConfigError)."""
    path = settings.expand(settings.audit_path)
    anchor, _warning = anchor_spec(settings)
    chained = settings.audit_chain and settings.audit_format is AuditFormat.JSONL
    anchor_channel = channel_for(anchor, settings.audit_tls_ca) if chained else None
    ship_channel = channel_for(settings.audit_ship, settings.audit_tls_ca)
    factory = None
    if anchor_channel is not None or ship_channel is not None:

        def factory(instance_id: str) -> Anchoring:
            return Anchoring(
                anchor=anchor_channel, ship=ship_channel, file=path.absolute(), instance_id=instance_id
            )

    sink = AuditSink(
        path,
        fmt=settings.audit_format,
        chain=settings.audit_chain,
        echo_stderr=settings.audit_stderr,
        anchoring=factory,
    )
    return sink


def settings_problems(settings: Settings) -> tuple[list[str], list[str]]:
    """Problems (``--check-config`` fails) and warnings (shown) of the audit settings."""
    problems: list[str] = []
    warnings: list[str] = []
    anchor, warning = anchor_spec(settings)
    if warning is not None:
        warnings.append(warning)
    if anchor != "off" and not (settings.audit_chain and settings.audit_format is AuditFormat.JSONL):
        warnings.append(
            "audit anchors apply to chained jsonl only: with this format or AUDIT_CHAIN=false none are sent"
        )
    for name, spec in (("RELAY_SHELL_AUDIT_ANCHOR", anchor), ("RELAY_SHELL_AUDIT_SHIP", settings.audit_ship)):
        try:
            channel = channel_for(spec, settings.audit_tls_ca)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if channel is None:
            continue
        try:
            channel.probe()
        except OSError as exc:
            problems.append(f"{name}: {channel.target} is not reachable: {exc.strerror or exc}")
        finally:
            channel.close()
    return problems, warnings
