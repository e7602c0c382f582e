"""Read journal entries with ``journalctl`` (for ``relay-shell --verify-audit --anchors journald``).

Only the fields the anchor check needs are asked for, and entries are parsed as they
stream, so a large journal costs memory per entry, not per journal. Reading needs the
right to read the journal (root, or the ``systemd-journal``/``adm`` group).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator

from relay_shell.errors import ConfigError

FIELDS = (
    "_PID",
    "_SYSTEMD_UNIT",
    "SYSLOG_IDENTIFIER",
    "RELAY_AUDIT_KIND",
    "RELAY_AUDIT_SEQ",
    "RELAY_AUDIT_CHAIN",
    "RELAY_AUDIT_INSTANCE",
    "RELAY_AUDIT_FILE",
    "RELAY_AUDIT_ANCHOR_SEQ",
    "RELAY_AUDIT_CALL_ID",
)
_NAMESPACE_SOCKET = re.compile(r"/run/systemd/journal\.([A-Za-z0-9_.-]{1,64})/socket")
DEFAULT_SOCKET = "/run/systemd/journal/socket"


def namespace_of(socket_path: str | None) -> str | None:
    """The journal namespace whose socket is ``socket_path`` (None: the default journal).

    Raises :class:`ConfigError` for a socket that is neither the default nor a namespace's.
    """
    if socket_path is None or socket_path == DEFAULT_SOCKET:
        return None
    found = _NAMESPACE_SOCKET.fullmatch(socket_path)
    if found is None:
        raise ConfigError(
            f"--anchors journald:{socket_path}: not the journal socket of a namespace "
            "(/run/systemd/journal.NAMESPACE/socket); export the entries with journalctl -o json and pass the file"
        )
    return found.group(1)


def journal_entries(
    identifier: str, namespace: str | None, *, timeout_s: float = 300.0
) -> Iterator[dict[str, object]]:
    """Every entry with ``SYSLOG_IDENTIFIER=identifier``, oldest first, as JSON objects.

    Raises :class:`ConfigError` when journalctl is missing or fails.
    """
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise ConfigError("journalctl is not installed: cannot read journald anchors")
    argv = [journalctl, "--no-pager", "--quiet", "-o", "json", f"--output-fields={','.join(FIELDS)}"]
    if namespace is not None:
        argv.append(f"--namespace={namespace}")
    argv.append(f"SYSLOG_IDENTIFIER={identifier}")
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                yield value
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            raise ConfigError("journalctl did not finish") from exc
        error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
        if process.returncode != 0:
            raise ConfigError(f"journalctl failed ({process.returncode}): {error[:300]}")
