"""``--check-config``: validate everything a server needs without serving.

Each check is a :class:`Finding` named after the variable it is about (``settings`` for
the load itself), with status ``OK``, ``WARN`` (usable, but worth a look) or ``FAIL``.
``--json`` prints ``{"ok": bool, "findings": [{"name", "status", "detail"}]}`` on stdout,
the shape of ``--verify-deploy --json``; text mode prints one summary line, then one line
per finding (stdout when usable, stderr otherwise). Exit 0 when no finding failed, else 2.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Literal

from relay_shell.config import AuthMode, ContainmentMode, Settings, Transport, load_settings
from relay_shell.config_env import DOTENV_DEFAULT, ConfigSources, SettingsInvalid
from relay_shell.errors import ConfigError
from relay_shell.startup import endpoint, exposure_warning

EXIT_OK = 0
EXIT_CONFIG = 2

Status = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Finding:
    """One check: ``name`` (a variable, or ``settings``), ``status``, and what was found."""

    name: str
    status: Status
    detail: str


def run_checks(settings: Settings) -> list[Finding]:
    """Check the audit sink and its channels, the SSH inventory, the containment, the HTTP edge,
    the OAuth state and the exposure."""
    findings = [*_check_audit(settings), _check_hosts(settings), _check_containment(settings)]
    for check in (_check_allowed_hosts, _check_oauth_state, _check_operator_hash):
        finding = check(settings)
        if finding is not None:
            findings.append(finding)
    warning = exposure_warning(settings)
    if warning is not None:
        findings.append(Finding("RELAY_SHELL_HTTP_HOST", "WARN", warning))
    return findings


def _check_audit(settings: Settings) -> list[Finding]:
    """The audit file as a writer would open it (without writing or taking its lock, so a
    running server is no problem), then the anchor and ship channels."""
    from relay_shell.governance.audit.guard import UnsafeFile, probe
    from relay_shell.governance.audit.wiring import settings_problems

    path = settings.expand(settings.audit_path)
    try:
        remark = probe(path)
    except UnsafeFile as exc:
        findings = [Finding("RELAY_SHELL_AUDIT_PATH", "FAIL", str(exc))]
    except OSError as exc:
        findings = [
            Finding("RELAY_SHELL_AUDIT_PATH", "FAIL", f"{path} is not writable ({exc.strerror or exc})")
        ]
    else:
        if remark is not None and not remark.startswith("in use"):
            findings = [Finding("RELAY_SHELL_AUDIT_PATH", "WARN", f"{path} is {remark}")]
        else:
            findings = [
                Finding(
                    "RELAY_SHELL_AUDIT_PATH", "OK", f"{path} writable" + (f" ({remark})" if remark else "")
                )
            ]
    problems, warnings = settings_problems(settings)
    for problem in problems:
        name, _, detail = problem.partition(": ")
        findings.append(
            Finding(
                name if name.startswith("RELAY_SHELL_") else "RELAY_SHELL_AUDIT_ANCHOR",
                "FAIL",
                detail or problem,
            )
        )
    findings.extend(Finding("RELAY_SHELL_AUDIT_ANCHOR", "WARN", warning) for warning in warnings)
    return findings


def _check_hosts(settings: Settings) -> Finding:
    from relay_shell.ssh.inventory import Inventory

    name = "RELAY_SHELL_INVENTORY" if settings.inventory is not None else "RELAY_SHELL_SSH_CONFIG"
    try:
        inventory = Inventory.load(settings)
    except ConfigError as exc:
        return Finding(name, "FAIL", str(exc))
    read = [str(path) for path in (inventory.ssh_config_path, inventory.inventory_path) if path is not None]
    return Finding(name, "OK", f"{len(inventory)} host(s) from {', '.join(read) or 'no file'}")


def _check_containment(settings: Settings) -> Finding:
    """Which mechanism will hold the calls' processes; FAIL when ``cgroup`` is forced and cannot work."""
    from relay_shell.local.containment import probe_cgroup

    name = "RELAY_SHELL_CONTAINMENT"
    if settings.containment is ContainmentMode.SUBREAPER:
        return Finding(name, "OK", "subreaper: the server is the child subreaper of what calls start")
    reason = probe_cgroup()
    if reason is None:
        return Finding(name, "OK", "cgroup: one cgroup v2 per call under the server's own")
    if settings.containment is ContainmentMode.CGROUP:
        return Finding(name, "FAIL", f"cgroup was asked for, but {reason}")
    return Finding(name, "OK", f"subreaper (no cgroup: {reason})")


def _check_oauth_state(settings: Settings) -> Finding | None:
    """The builtin OAuth state directory, when HTTP with builtin OAuth will use it."""
    if not (
        settings.auth_enabled
        and settings.transport is Transport.HTTP
        and settings.auth_mode is AuthMode.BUILTIN
    ):
        return None
    from relay_shell.http.oauth_store import check_state_dir

    path = settings.expand(settings.auth_state_dir)
    try:
        check_state_dir(path)
    except ConfigError as exc:
        return Finding("RELAY_SHELL_AUTH_STATE_DIR", "FAIL", str(exc))
    return Finding("RELAY_SHELL_AUTH_STATE_DIR", "OK", f"{path} usable")


def _check_allowed_hosts(settings: Settings) -> Finding | None:
    """The Host/Origin allowlist of the HTTP edge parses (a bad entry stops the server)."""
    if settings.transport is not Transport.HTTP:
        return None
    from relay_shell.http.edge import allowed_authorities

    try:
        allowed_authorities(settings)
    except ConfigError as exc:
        return Finding("RELAY_SHELL_HTTP_ALLOWED_HOSTS", "FAIL", str(exc))
    return None


def _check_operator_hash(settings: Settings) -> Finding | None:
    """The operator passphrase hash, when builtin OAuth will ask for it, is an Argon2id hash."""
    if not (settings.auth_enabled and settings.auth_operator_hash):
        return None
    from relay_shell.http.operator_auth import PassphraseVerifier

    try:
        PassphraseVerifier(settings.auth_operator_hash)
    except ConfigError as exc:
        return Finding("RELAY_SHELL_AUTH_OPERATOR_HASH", "FAIL", str(exc))
    return Finding("RELAY_SHELL_AUTH_OPERATOR_HASH", "OK", "an Argon2id hash")


def settings_finding(settings: Settings, env_file: str = DOTENV_DEFAULT) -> Finding:
    """The load itself: what is served and how many variables were read from where."""
    sources = ConfigSources.read(os.environ, env_file)
    return Finding(
        "settings",
        "OK",
        f"serving {endpoint(settings)}, policy {settings.policy_mode.value}; "
        f"{len(sources.environment)} variable(s) from the environment, {len(sources.dotenv)} from .env",
    )


def problem_findings(exc: ConfigError) -> list[Finding]:
    """A failed load as findings: one per problem, named after the variable."""
    if not isinstance(exc, SettingsInvalid):
        return [Finding("settings", "FAIL", exc.message)]
    return [
        Finding(
            problem.variable,
            "FAIL",
            f"from {'the environment' if problem.source == 'environment' else '.env'}: {problem.message}"
            if problem.source
            else problem.message,
        )
        for problem in exc.problems
    ]


def render(findings: list[Finding], *, as_json: bool) -> str:
    """The JSON document, or the summary line followed by ``STATUS name: detail`` lines."""
    ok = all(item.status != "FAIL" for item in findings)
    if as_json:
        return json.dumps({"ok": ok, "findings": [asdict(item) for item in findings]}, indent=2)
    failed = sum(item.status == "FAIL" for item in findings)
    warned = sum(item.status == "WARN" for item in findings)
    if ok:
        summary = f"relay-shell: configuration OK ({len(findings)} checks, {warned} warning(s))"
    else:
        summary = f"relay-shell: configuration check FAILED ({failed} problem(s), {warned} warning(s))"
    return "\n".join([summary, *(f"{item.status} {item.name}: {item.detail}" for item in findings)])


def main_check_config(as_json: bool) -> int:
    """Load and check the configuration, print the findings; 0 when usable, 2 otherwise."""
    try:
        settings = load_settings()
        findings = [settings_finding(settings), *run_checks(settings)]
    except ConfigError as exc:
        findings = problem_findings(exc)
    ok = all(item.status != "FAIL" for item in findings)
    print(render(findings, as_json=as_json), file=sys.stdout if ok or as_json else sys.stderr)
    return EXIT_OK if ok else EXIT_CONFIG
