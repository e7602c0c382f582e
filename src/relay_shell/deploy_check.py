"""Drift check between the shipped deploy templates and the installed files (ADR 0011).

``relay-shell --verify-deploy`` compares every file listed in the templates' ``manifest.tsv``
(systemd unit, hardening drop-in, logrotate policy, Caddyfile) with its installed copy and
reports ``OK``, ``DRIFT`` (with a short unified diff) or ``MISSING`` per file; any difference
exits 2, so it fits a cron job.

Rules:

- The templates are the ones packaged inside the wheel (``relay_shell/deploy``), or the
  repository's ``deploy/`` when running from a source tree (editable install): one copy.
- ``install.sh`` and ``install-edge.sh`` put one marker line at the top of every file they
  install (``# installed by relay-shell <version> from <template>``). That line is left out of
  the comparison; a file without it is compared as it is.
- The Caddyfile is installed rendered (placeholders replaced by ``install-edge.sh``, which
  records the values in ``/etc/relay-shell/edge.env``). It is compared with the template
  rendered again from those values; a Caddyfile that still has ``{$RELAY_SHELL_EDGE_*}``
  placeholders is compared with the template as it is. A host without ``edge.env`` and without
  a relay-shell Caddyfile has no edge: that finding is ``OK`` and says it was not compared.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

from relay_shell.errors import ConfigError

Status = Literal["OK", "DRIFT", "MISSING"]

MANIFEST_NAME = "manifest.tsv"
EDGE_VALUES_PATH = "/etc/relay-shell/edge.env"
EDGE_PLACEHOLDER_PREFIX = "{$RELAY_SHELL_EDGE_"
CADDYFILE_ENTRY = "caddyfile"
DIFF_MAX_LINES = 40
EXIT_OK = 0
EXIT_DIFFERENT = 2

MARKER = re.compile(rb"\A# installed by relay-shell (?P<version>\S+) from (?P<template>\S+)\n")
PLACEHOLDER = re.compile(r"\{\$([^}]*)\}")
EDGE_NAME = re.compile(r"RELAY_SHELL_EDGE_[A-Z0-9_]+")


@dataclass(frozen=True)
class Finding:
    """The comparison of one installed file with its template."""

    name: str
    template: str
    install_path: str
    status: Status
    detail: str


@dataclass(frozen=True)
class ManifestEntry:
    """One line of ``manifest.tsv``: a template and where it is installed."""

    name: str
    template: str
    install_path: str
    installer: str


def templates_root() -> Path:
    """The directory holding the packaged deploy templates and their ``manifest.tsv``.

    In a wheel they are package data (``relay_shell/deploy``); in an editable install or a
    source tree they are the repository's ``deploy/``.

    Raises:
        ConfigError: neither location has a manifest.
    """
    packaged = files("relay_shell").joinpath("deploy")
    if isinstance(packaged, Path) and (packaged / MANIFEST_NAME).is_file():
        return packaged
    source_tree = Path(__file__).resolve().parents[2] / "deploy"
    if (source_tree / MANIFEST_NAME).is_file():
        return source_tree
    raise ConfigError(f"deploy templates not found (no {MANIFEST_NAME} in {packaged} or {source_tree})")


def read_manifest(templates_dir: Path) -> list[ManifestEntry]:
    """Parse ``templates_dir/manifest.tsv`` (tab-separated; ``#`` comments).

    Raises:
        ConfigError: the manifest is missing or a line does not have four fields.
    """
    path = templates_dir / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the deploy manifest {path}: {exc.strerror or exc}") from exc
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4 or not all(fields) or not fields[2].startswith("/"):
            raise ConfigError(f"{path}:{number}: expected name, template, absolute install path, installer")
        entries.append(ManifestEntry(*fields))
    return entries


def strip_marker(content: bytes) -> tuple[bytes, str | None]:
    """Split off the install marker line; return the rest and the version it names (or None)."""
    match = MARKER.match(content)
    if match is None:
        return content, None
    return content[match.end() :], match.group("version").decode("utf-8", "replace")


def render_edge_template(template: str, values: dict[str, str]) -> str:
    """Replace ``{$RELAY_SHELL_EDGE_*}`` and ``{$NAME:default}`` placeholders like install-edge.sh.

    An empty or absent value takes the default (empty without one); other placeholders stay.
    """

    def substitute(match: re.Match[str]) -> str:
        name, _, fallback = match.group(1).partition(":")
        if EDGE_NAME.fullmatch(name) is None:
            return match.group(0)
        return values.get(name) or fallback

    return PLACEHOLDER.sub(substitute, template)


def read_edge_values(path: Path) -> dict[str, str]:
    """Parse the ``KEY="value"`` lines install-edge.sh records (comments and blanks skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, separator, value = line.strip().partition("=")
        if not separator or key.startswith("#"):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def verify_deploy(*, templates_dir: Path | None = None, install_prefix: Path | None = None) -> list[Finding]:
    """Compare every manifest template with its installed file, in manifest order.

    ``install_prefix`` roots the install paths (a staging directory); default ``/``.

    Raises:
        ConfigError: the templates or their manifest cannot be read.
    """
    root = templates_dir if templates_dir is not None else templates_root()
    prefix = install_prefix if install_prefix is not None else Path("/")
    return [_check(entry, root, prefix) for entry in read_manifest(root)]


def _installed(prefix: Path, install_path: str) -> Path:
    return prefix / install_path.lstrip("/")


def _check(entry: ManifestEntry, root: Path, prefix: Path) -> Finding:
    template_path = root / entry.template
    installed_path = _installed(prefix, entry.install_path)

    def finding(status: Status, detail: str = "") -> Finding:
        return Finding(entry.name, str(template_path), str(installed_path), status, detail)

    try:
        template = template_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the template {template_path}: {exc.strerror or exc}") from exc
    try:
        installed, version = strip_marker(installed_path.read_bytes())
    except FileNotFoundError:
        installed, version = None, None
    except OSError as exc:
        return finding("DRIFT", f"cannot read the installed file: {exc.strerror or exc}")
    if entry.name == CADDYFILE_ENTRY:
        expected, note = _expected_caddyfile(template, installed, version, prefix)
        if expected is None:
            return finding("OK" if note.startswith("not compared") else "DRIFT", note)
    else:
        expected, note = template, ""
    if installed is None:
        return finding("MISSING", note or "not installed")
    if installed == expected:
        return finding("OK", note)
    return finding("DRIFT", _drift_detail(expected, installed, entry, installed_path, note))


def _expected_caddyfile(
    template: bytes, installed: bytes | None, version: str | None, prefix: Path
) -> tuple[bytes | None, str]:
    """What the installed Caddyfile should hold, or None and why it is not compared."""
    values_path = _installed(prefix, EDGE_VALUES_PATH)
    if installed is not None and EDGE_PLACEHOLDER_PREFIX.encode() in installed:
        return template, "compared with the template as is (placeholders not rendered)"
    if not values_path.is_file():
        if installed is not None and version is not None:
            return None, f"rendered Caddyfile but no {values_path} to render the template again"
        return None, f"not compared: no relay-shell edge on this host (no {values_path})"
    try:
        values = read_edge_values(values_path)
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {values_path}: {exc}"
    rendered = render_edge_template(template.decode("utf-8"), values)
    return rendered.encode("utf-8"), f"compared with the template rendered from {values_path}"


def _drift_detail(
    expected: bytes, installed: bytes, entry: ManifestEntry, installed_path: Path, note: str
) -> str:
    expected_lines = expected.decode("utf-8", "replace").splitlines(keepends=True)
    installed_lines = installed.decode("utf-8", "replace").splitlines(keepends=True)
    diff = [
        line if line.endswith("\n") else line + "\n"
        for line in difflib.unified_diff(
            expected_lines,
            installed_lines,
            fromfile=f"template/{entry.template}",
            tofile=f"installed{entry.install_path}",
            n=2,
        )
    ]
    changed = sum(1 for line in diff[2:] if line[:1] in "+-")
    head = f"{changed} changed line(s)" + (f"; {note}" if note else "")
    if len(diff) > DIFF_MAX_LINES:
        diff = [*diff[:DIFF_MAX_LINES], f"... {len(diff) - DIFF_MAX_LINES} more diff line(s)\n"]
    return head + "\n" + "".join(diff).rstrip("\n")


def render(findings: list[Finding], *, as_json: bool) -> str:
    """Text: ``STATUS name path`` per file, details indented below; or the JSON document."""
    if as_json:
        document = {
            "ok": all(item.status == "OK" for item in findings),
            "findings": [asdict(item) for item in findings],
        }
        return json.dumps(document, indent=2)
    lines = []
    for item in findings:
        lines.append(f"{item.status} {item.name} {item.install_path}")
        lines.extend("    " + line for line in item.detail.splitlines())
    return "\n".join(lines)


def main_verify_deploy(templates_dir: Path | None, install_prefix: Path | None, as_json: bool) -> int:
    """Print the comparison; return 0 when every file is OK, 2 on any difference or error."""
    try:
        findings = verify_deploy(templates_dir=templates_dir, install_prefix=install_prefix)
    except ConfigError as exc:
        print(f"relay-shell: --verify-deploy: {exc}", file=sys.stderr)
        return EXIT_DIFFERENT
    print(render(findings, as_json=as_json))
    return EXIT_OK if all(item.status == "OK" for item in findings) else EXIT_DIFFERENT
