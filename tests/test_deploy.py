"""Deploy artifacts (SPEC §13) checked by the real tools, and the drift check (SPEC §12).

Needs the Debian packages systemd (systemd-analyze), caddy, logrotate and e2fsprogs (chattr,
lsattr); scripts/setup --dev installs them. Nothing here touches the real /etc: the install
scripts run with ``--prefix <tmp> --no-system``.
"""

from __future__ import annotations

import configparser
import datetime
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_shell.config import Transport, load_settings
from relay_shell.deploy_check import (
    main_verify_deploy,
    read_manifest,
    render,
    render_edge_template,
    strip_marker,
    templates_root,
    verify_deploy,
)
from tests.components import need

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
TOOL_TIMEOUT_S = 60
EDGE_VALUES = {
    "RELAY_SHELL_EDGE_DOMAIN": "relay.example.com",
    "RELAY_SHELL_EDGE_EMAIL": "ops@example.com",
    "RELAY_SHELL_EDGE_ALLOWED_CIDRS": "203.0.113.0/24 2001:db8::/48",
}
UNIT = "etc/systemd/system/relay-shell.service"
DROPIN = "etc/systemd/system/relay-shell.service.d/hardening.conf"
LOGROTATE = "etc/logrotate.d/relay-shell"
CADDYFILE = "etc/caddy/Caddyfile"


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT_S)


@pytest.fixture
def tool_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose HOME and XDG dirs are private (caddy writes its storage there)."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }


@pytest.fixture
def prefix(tmp_path: Path, tool_env: dict[str, str]) -> Path:
    """A staging root filled by ``install.sh --prefix DIR --no-system``."""
    root = tmp_path / "root"
    result = run(["bash", str(DEPLOY / "install.sh"), "--prefix", str(root), "--no-system"], tool_env)
    assert result.returncode == 0, result.stderr
    return root


def install_edge(root: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return run(["bash", str(DEPLOY / "install-edge.sh"), "--prefix", str(root), *extra], env)


def statuses(root: Path) -> dict[str, str]:
    return {item.name: item.status for item in verify_deploy(install_prefix=root)}


def unit_sections(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


# --- packaging -----------------------------------------------------------------------------


def test_templates_root_is_the_single_copy_in_deploy() -> None:
    assert templates_root() == DEPLOY
    entries = {entry.name: (entry.template, entry.install_path) for entry in read_manifest(DEPLOY)}
    assert entries == {
        "unit": ("relay-shell.service", "/" + UNIT),
        "hardening": ("relay-shell-hardening.conf", "/" + DROPIN),
        "logrotate": ("logrotate/relay-shell", "/" + LOGROTATE),
        "caddyfile": ("Caddyfile", "/" + CADDYFILE),
    }
    assert not (REPO / "src" / "relay_shell" / "deploy").exists(), "a second copy would drift"


def test_wheel_carries_exactly_the_manifest_templates() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    force_include = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    wanted = ["manifest.tsv", *(entry.template for entry in read_manifest(DEPLOY))]
    assert force_include == {f"deploy/{name}": f"relay_shell/deploy/{name}" for name in wanted}


# --- systemd -------------------------------------------------------------------------------


def systemd_layout(tmp_path: Path, prefix: Path) -> Path:
    """The installed unit and drop-in, with ExecStart pointing at an executable stub."""
    layout = tmp_path / "systemd"
    (layout / "relay-shell.service.d").mkdir(parents=True)
    stub = tmp_path / "bin" / "relay-shell"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = (prefix / UNIT).read_text()
    assert "ExecStart=/opt/relay-shell/venv/bin/relay-shell\n" in unit
    (layout / "relay-shell.service").write_text(
        unit.replace("/opt/relay-shell/venv/bin/relay-shell", str(stub))
    )
    shutil.copy(prefix / DROPIN, layout / "relay-shell.service.d" / "hardening.conf")
    return layout / "relay-shell.service"


def test_unit_and_dropin_pass_systemd_analyze_verify_without_warnings(tmp_path: Path, prefix: Path) -> None:
    analyze = need("systemd-analyze", "systemd")
    result = run([analyze, "verify", str(systemd_layout(tmp_path, prefix))])
    assert (result.returncode, result.stderr) == (0, "")


def test_systemd_verify_reads_the_dropin_and_reports_unknown_keys(tmp_path: Path, prefix: Path) -> None:
    analyze = need("systemd-analyze", "systemd")
    unit = systemd_layout(tmp_path, prefix)
    with (unit.parent / "relay-shell.service.d" / "hardening.conf").open("a") as dropin:
        dropin.write("NoSuchHardeningKey=yes\n")
    result = run([analyze, "verify", str(unit)])
    assert "hardening.conf" in result.stderr and "NoSuchHardeningKey" in result.stderr


def test_unit_keys() -> None:
    unit = unit_sections(DEPLOY / "relay-shell.service")
    assert unit["Unit"]["StartLimitIntervalSec"] and unit["Unit"]["StartLimitBurst"]
    assert not {"StartLimitIntervalSec", "StartLimitBurst"} & set(unit["Service"])
    service = unit["Service"]
    assert (service["User"], service["Group"]) == ("relay-shell", "relay-shell")
    assert service["EnvironmentFile"] == "/etc/relay-shell/relay-shell.env"
    assert service["Environment"] == "RELAY_SHELL_ENV_FILE=/etc/relay-shell/relay-shell.env"
    assert service["Delegate"] == "yes"  # containment's delegated cgroup
    assert service["LogRateLimitIntervalSec"] == "0"  # journald never drops an audit anchor
    assert service["ExecStart"] == "/opt/relay-shell/venv/bin/relay-shell"
    assert (service["Restart"], service["KillMode"]) == ("on-failure", "mixed")
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_dropin_caps_resources() -> None:
    service = unit_sections(DEPLOY / "relay-shell-hardening.conf")["Service"]
    assert {"MemoryMax", "TasksMax", "CPUQuota", "LimitNOFILE"} <= set(service)
    assert service["OOMPolicy"] == "continue"
    # the only capability taken away: nothing the service starts can lift chattr +a
    assert service["CapabilityBoundingSet"] == "~CAP_LINUX_IMMUTABLE"


# Each would take power away from the commands relay-shell runs (sudo, installs, PTYs, SSH).
LEFT_OUT = [
    "NoNewPrivileges", "RestrictSUIDSGID", "AmbientCapabilities", "ProtectSystem", "ProtectHome",
    "PrivateTmp", "PrivateMounts", "ReadOnlyPaths", "PrivateDevices", "DevicePolicy",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectClock", "ProtectHostname", "ProtectProc", "PrivateNetwork", "IPAddressDeny",
    "RestrictAddressFamilies", "PrivateUsers", "RestrictNamespaces", "SystemCallFilter",
    "SystemCallArchitectures", "MemoryDenyWriteExecute", "LockPersonality", "RestrictRealtime",
]  # fmt: skip


@pytest.mark.parametrize("key", LEFT_OUT)
def test_breaking_protection_is_left_out_and_documented(key: str) -> None:
    dropin = DEPLOY / "relay-shell-hardening.conf"
    for path in (DEPLOY / "relay-shell.service", dropin):
        assert key not in unit_sections(path)["Service"]
    comments = "".join(line for line in dropin.read_text().splitlines() if line.startswith("#"))
    assert key in comments
    assert key in (REPO / "docs" / "deployment.md").read_text()


# --- Caddy ---------------------------------------------------------------------------------


def caddy_env(tool_env: dict[str, str], **values: str) -> dict[str, str]:
    return {**tool_env, **EDGE_VALUES, **values}


def test_caddyfile_validates_and_is_formatted(tool_env: dict[str, str]) -> None:
    caddy = need("caddy", "caddy")
    template = DEPLOY / "Caddyfile"
    result = run(
        [caddy, "validate", "--config", str(template), "--adapter", "caddyfile"], caddy_env(tool_env)
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout
    assert "not formatted" not in result.stderr
    assert run([caddy, "fmt", str(template)]).stdout == template.read_text()


def handlers(node: object) -> Iterator[dict[str, object]]:
    """Every JSON object in an adapted Caddy config, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from handlers(value)
    elif isinstance(node, list):
        for value in node:
            yield from handlers(value)


def adapted(tool_env: dict[str, str], **values: str) -> list[dict[str, object]]:
    caddy = need("caddy", "caddy")
    argv = [caddy, "adapt", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"]
    result = run(argv, caddy_env(tool_env, **values))
    assert result.returncode == 0, result.stderr
    return list(handlers(json.loads(result.stdout)))


def test_caddyfile_routes_allowlist_headers_and_streaming(tool_env: dict[str, str]) -> None:
    nodes = adapted(tool_env)
    hosts = [node["host"] for node in nodes if "host" in node]
    assert hosts == [["relay.example.com"]]
    assert [node["remote_ip"] for node in nodes if "remote_ip" in node] == [
        {"ranges": ["203.0.113.0/24", "2001:db8::/48"]}
    ]
    forbidden = [
        node for node in nodes if node.get("handler") == "static_response" and node.get("status_code") == 403
    ]
    assert len(forbidden) == 1
    paths = next(node["path"] for node in nodes if "path" in node)
    assert isinstance(paths, list)
    assert {"/mcp", "/metrics", "/authorize", "/consent", "/token", "/register", "/revoke"} <= set(paths)
    assert {"/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource/*"} <= set(
        paths
    )
    (proxy,) = [node for node in nodes if node.get("handler") == "reverse_proxy"]
    assert proxy["flush_interval"] == -1
    assert proxy["upstreams"] == [{"dial": "127.0.0.1:8080"}]
    (headers,) = [node for node in nodes if node.get("handler") == "headers"]
    response = headers["response"]
    assert isinstance(response, dict)
    assert response["set"] == {
        "Strict-Transport-Security": ["max-age=31536000; includeSubDomains"],
        "X-Content-Type-Options": ["nosniff"],
        "X-Frame-Options": ["DENY"],
        "Content-Security-Policy": ["default-src 'none'; frame-ancestors 'none'; base-uri 'none'"],
        "Referrer-Policy": ["no-referrer"],
    }
    assert any(node.get("email") == "ops@example.com" for node in nodes)


def test_caddyfile_upstream_is_a_parameter(tool_env: dict[str, str]) -> None:
    nodes = adapted(tool_env, RELAY_SHELL_EDGE_UPSTREAM="127.0.0.1:9100")
    assert [node["upstreams"] for node in nodes if node.get("handler") == "reverse_proxy"] == [
        [{"dial": "127.0.0.1:9100"}]
    ]


# --- logrotate -----------------------------------------------------------------------------


def logrotate_policy(tmp_path: Path, logs: Path) -> Path:
    """The shipped policy aimed at ``logs`` and owned by the current user (relay-shell may not exist)."""
    user = run(["id", "-un"]).stdout.strip()
    group = run(["id", "-gn"]).stdout.strip()
    text = (DEPLOY / "logrotate" / "relay-shell").read_text()
    assert "create 0600 relay-shell relay-shell" in text
    text = text.replace("/var/log/relay-shell/", f"{logs}/").replace(
        "create 0600 relay-shell relay-shell", f"create 0600 {user} {group}"
    )
    policy = tmp_path / "logrotate.conf"
    policy.write_text(text)
    return policy


def chattr_works(directory: Path) -> bool:
    probe = directory / ".attr-probe"
    probe.touch()
    supported = run(["chattr", "+a", str(probe)]).returncode == 0
    run(["chattr", "-a", str(probe)])
    probe.unlink()
    return supported


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    need("chattr", "e2fsprogs")
    directory = tmp_path / "logs"
    directory.mkdir(mode=0o700)
    yield directory
    for path in directory.iterdir():  # append-only files cannot be removed by the tmp cleanup
        run(["chattr", "-a", str(path)])


def test_logrotate_policy_parses(tmp_path: Path, logs: Path) -> None:
    logrotate = need("logrotate", "logrotate")
    (logs / "audit.jsonl").write_text("{}\n")
    result = run([logrotate, "-d", "-s", str(tmp_path / "state"), str(logrotate_policy(tmp_path, logs))])
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower()
    assert "365 rotations" in result.stderr


def test_logrotate_rotates_and_keeps_append_only(tmp_path: Path, logs: Path) -> None:
    logrotate = need("logrotate", "logrotate")
    audit = logs / "audit.jsonl"
    audit.write_text('{"seq": 1}\n')
    audit.chmod(0o600)
    append_only = chattr_works(logs)
    if append_only:
        assert run(["chattr", "+a", str(audit)]).returncode == 0
    result = run([logrotate, "-f", "-s", str(tmp_path / "state"), str(logrotate_policy(tmp_path, logs))])
    assert result.returncode == 0, result.stderr
    rotated = logs / f"audit.jsonl-{datetime.date.today():%Y%m%d}"
    assert rotated.read_text() == '{"seq": 1}\n'  # delaycompress: the newest rotation stays plain
    assert audit.stat().st_size == 0 and audit.stat().st_mode & 0o777 == 0o600
    if append_only:
        assert "a" in run(["lsattr", "-d", str(audit)]).stdout.split()[0]
        assert "a" not in run(["lsattr", "-d", str(rotated)]).stdout.split()[0]


def test_logrotate_rotates_where_chattr_fails(tmp_path: Path, logs: Path) -> None:
    logrotate = need("logrotate", "logrotate")
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "chattr").write_text("#!/bin/sh\necho 'chattr: Operation not supported' >&2\nexit 1\n")
    (fake_bin / "chattr").chmod(0o755)
    (logs / "audit.jsonl").write_text("{}\n")
    env = {"PATH": f"{fake_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    result = run([logrotate, "-f", "-s", str(tmp_path / "state"), str(logrotate_policy(tmp_path, logs))], env)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in logs.iterdir()) == [
        "audit.jsonl",
        f"audit.jsonl-{datetime.date.today():%Y%m%d}",
    ]


# --- install.sh ----------------------------------------------------------------------------


def test_install_stages_files_dirs_and_modes(prefix: Path) -> None:
    modes = {
        "etc/relay-shell": 0o750,
        "var/lib/relay-shell": 0o750,
        "var/lib/relay-shell/oauth": 0o700,
        "var/lib/relay-shell/.ssh": 0o700,
        "var/log/relay-shell": 0o750,
        "var/log/relay-shell/audit.jsonl": 0o600,
        "etc/relay-shell/relay-shell.env": 0o640,
        UNIT: 0o644,
        DROPIN: 0o644,
        LOGROTATE: 0o644,
    }
    assert {path: (prefix / path).stat().st_mode & 0o777 for path in modes} == modes
    for installed, template in ((UNIT, "relay-shell.service"), (DROPIN, "relay-shell-hardening.conf")):
        first, rest = (prefix / installed).read_text().split("\n", 1)
        assert first == f"# installed by relay-shell {VERSION} from {template}"
        assert rest == (DEPLOY / template).read_text()
    assert not (prefix / CADDYFILE).exists()  # the edge is install-edge.sh's job


def test_installed_env_file_is_an_http_service_config(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(prefix)
    settings = load_settings(_env_file=str(prefix / "etc/relay-shell/relay-shell.env"))
    assert settings.transport is Transport.HTTP
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert str(settings.audit_path) == "/var/log/relay-shell/audit.jsonl"


def test_fresh_install_verifies_ok(prefix: Path, capsys: pytest.CaptureFixture[str]) -> None:
    findings = verify_deploy(install_prefix=prefix)
    assert [item.status for item in findings] == ["OK"] * 4
    caddy = findings[-1]
    assert caddy.name == "caddyfile" and caddy.detail.startswith("not compared: no relay-shell edge")
    assert main_verify_deploy(None, prefix, as_json=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"OK unit {prefix / UNIT}"


def test_install_is_idempotent_and_keeps_settings(prefix: Path, tool_env: dict[str, str]) -> None:
    env_file = prefix / "etc/relay-shell/relay-shell.env"
    env_file.write_text(env_file.read_text() + "RELAY_SHELL_POLICY_MODE=guarded\n")
    before = {path: path.read_bytes() for path in prefix.rglob("*") if path.is_file()}
    result = run(["bash", str(DEPLOY / "install.sh"), "--prefix", str(prefix), "--no-system"], tool_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("install.sh: unchanged ") == 3
    assert {path: path.read_bytes() for path in prefix.rglob("*") if path.is_file()} == before


def test_install_repairs_drift_and_keeps_a_backup(prefix: Path, tool_env: dict[str, str]) -> None:
    dropin = prefix / DROPIN
    edited = dropin.read_text().replace("TasksMax=4096", "TasksMax=99")
    dropin.write_text(edited)
    result = run(["bash", str(DEPLOY / "install.sh"), "--prefix", str(prefix), "--no-system"], tool_env)
    assert result.returncode == 0, result.stderr
    assert statuses(prefix)["hardening"] == "OK"
    (backup,) = (prefix / "var/backups/relay-shell").glob("*/" + DROPIN)
    assert backup.read_text() == edited


def test_install_refuses_a_prefix_in_system_mode(tmp_path: Path, tool_env: dict[str, str]) -> None:
    result = run(["bash", str(DEPLOY / "install.sh"), "--prefix", str(tmp_path / "root")], tool_env)
    assert result.returncode == 1 and "--no-system" in result.stderr
    assert not (tmp_path / "root").exists()


# --- install-edge.sh -----------------------------------------------------------------------


def test_install_edge_renders_validates_and_verifies(prefix: Path, tool_env: dict[str, str]) -> None:
    need("caddy", "caddy")
    values = {**EDGE_VALUES, "RELAY_SHELL_EDGE_ALLOWED_CIDRS": " 203.0.113.0/24,2001:db8::/48 "}
    result = install_edge(prefix, {**tool_env, **values}, "--no-system")
    assert result.returncode == 0, result.stderr
    assert "valid configuration" in result.stdout
    caddyfile = (prefix / CADDYFILE).read_text()
    assert caddyfile.startswith(f"# installed by relay-shell {VERSION} from Caddyfile\n")
    assert "remote_ip 203.0.113.0/24 2001:db8::/48\n" in caddyfile and "{$" not in caddyfile
    assert 'RELAY_SHELL_EDGE_UPSTREAM="127.0.0.1:8080"' in (prefix / "etc/relay-shell/edge.env").read_text()
    assert statuses(prefix) == dict.fromkeys(("unit", "hardening", "logrotate", "caddyfile"), "OK")
    again = install_edge(prefix, {**tool_env, **values}, "--no-system")
    assert again.returncode == 0 and again.stdout.count("install-edge.sh: unchanged ") == 2


def test_install_edge_names_every_missing_value(tmp_path: Path, tool_env: dict[str, str]) -> None:
    result = install_edge(tmp_path / "root", tool_env, "--no-system")
    assert result.returncode == 1
    for name in EDGE_VALUES:
        assert f"{name} is required" in result.stderr
    assert not (tmp_path / "root").exists()


def fake_systemctl(tmp_path: Path, tool_env: dict[str, str]) -> tuple[dict[str, str], Path]:
    """A PATH whose systemctl only logs its arguments (and says caddy is active)."""
    fake_bin, log = tmp_path / "fake-bin", tmp_path / "systemctl.log"
    fake_bin.mkdir()
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexit 0\n')
    (fake_bin / "systemctl").chmod(0o755)
    return {**tool_env, **EDGE_VALUES, "PATH": f"{fake_bin}:{tool_env['PATH']}"}, log


def test_install_edge_reloads_caddy_after_validation(tmp_path: Path, tool_env: dict[str, str]) -> None:
    need("caddy", "caddy")
    env, log = fake_systemctl(tmp_path, tool_env)
    result = install_edge(tmp_path / "root", env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == ["is-active --quiet caddy", "reload caddy"]


def test_install_edge_never_installs_or_reloads_an_invalid_config(
    tmp_path: Path, tool_env: dict[str, str]
) -> None:
    need("caddy", "caddy")
    env, log = fake_systemctl(tmp_path, tool_env)
    root = tmp_path / "root"
    assert install_edge(root, env).returncode == 0
    before = (root / CADDYFILE).read_bytes()
    log.unlink()
    result = install_edge(root, {**env, "RELAY_SHELL_EDGE_ALLOWED_CIDRS": "999.0.0.1/8"})
    assert result.returncode == 1
    assert "caddy validate rejected" in result.stderr and "999.0.0.1" in result.stderr
    assert (root / CADDYFILE).read_bytes() == before
    assert not log.exists()


# --- the drift check -----------------------------------------------------------------------


@pytest.fixture
def edged(prefix: Path, tool_env: dict[str, str]) -> Path:
    """The staging root with the edge installed too (every finding OK)."""
    assert install_edge(prefix, {**tool_env, **EDGE_VALUES}, "--no-system").returncode == 0
    return prefix


def test_one_changed_byte_is_drift_with_a_diff(edged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit = edged / UNIT
    unit.write_bytes(unit.read_bytes().replace(b"RestartSec=5s", b"RestartSec=6s"))
    assert statuses(edged)["unit"] == "DRIFT"
    assert main_verify_deploy(None, edged, as_json=False) == 2
    out = capsys.readouterr().out
    assert f"DRIFT unit {unit}" in out.splitlines()
    assert "    -RestartSec=5s" in out.splitlines() and "    +RestartSec=6s" in out.splitlines()
    assert f"OK hardening {edged / DROPIN}" in out.splitlines()


def test_diff_is_bounded(edged: Path) -> None:
    (edged / LOGROTATE).write_text("".join(f"line {number}\n" for number in range(500)))
    (finding,) = [item for item in verify_deploy(install_prefix=edged) if item.name == "logrotate"]
    assert finding.status == "DRIFT"
    detail = finding.detail.splitlines()
    assert len(detail) <= 42 and detail[-1].endswith("more diff line(s)")


def test_removed_file_is_missing(edged: Path) -> None:
    (edged / LOGROTATE).unlink()
    assert statuses(edged) == {"unit": "OK", "hardening": "OK", "logrotate": "MISSING", "caddyfile": "OK"}
    assert main_verify_deploy(None, edged, as_json=False) == 2


def test_json_shape(edged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (edged / DROPIN).unlink()
    assert main_verify_deploy(None, edged, as_json=True) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    assert [set(item) for item in document["findings"]] == [
        {"name", "template", "install_path", "status", "detail"}
    ] * 4
    assert [(item["name"], item["status"]) for item in document["findings"]] == [
        ("unit", "OK"), ("hardening", "MISSING"), ("logrotate", "OK"), ("caddyfile", "OK")
    ]  # fmt: skip
    assert document["findings"][1]["install_path"] == str(edged / DROPIN)
    assert document["findings"][1]["template"] == str(DEPLOY / "relay-shell-hardening.conf")
    assert json.loads(render(verify_deploy(install_prefix=edged), as_json=True)) == document


def caddy_finding(root: Path) -> tuple[str, str]:
    (finding,) = [item for item in verify_deploy(install_prefix=root) if item.name == "caddyfile"]
    return finding.status, finding.detail


def test_caddyfile_value_edited_by_hand_is_drift(edged: Path) -> None:
    caddyfile = edged / CADDYFILE
    caddyfile.write_text(caddyfile.read_text().replace("remote_ip 203.0.113.0/24", "remote_ip 0.0.0.0/0"))
    status, detail = caddy_finding(edged)
    assert status == "DRIFT" and "+\t\t@outside not remote_ip 0.0.0.0/0 2001:db8::/48" in detail


@pytest.mark.parametrize(
    ("arrange", "expected_status", "detail_start"),
    [
        ("remove values", "DRIFT", "rendered Caddyfile but no "),
        ("remove caddyfile", "MISSING", "compared with the template rendered"),
        ("unrendered template", "OK", "compared with the template as is"),
        ("foreign caddyfile", "OK", "not compared: no relay-shell edge"),
    ],
)
def test_caddyfile_rules(edged: Path, arrange: str, expected_status: str, detail_start: str) -> None:
    caddyfile, values = edged / CADDYFILE, edged / "etc/relay-shell/edge.env"
    if arrange == "remove values":
        values.unlink()
    elif arrange == "remove caddyfile":
        caddyfile.unlink()
    elif arrange == "unrendered template":
        shutil.copy(DEPLOY / "Caddyfile", caddyfile)
    else:
        values.unlink()
        caddyfile.write_text(":80 {\n\tfile_server\n}\n")
    status, detail = caddy_finding(edged)
    assert (status, detail[: len(detail_start)]) == (expected_status, detail_start)


@pytest.mark.parametrize(
    ("content", "rest", "version"),
    [
        (b"# installed by relay-shell 0.2.0 from Caddyfile\nbody\n", b"body\n", "0.2.0"),
        (b"# installed by relay-shell 1.0.0rc1 from logrotate/relay-shell\n", b"", "1.0.0rc1"),
        (b"body\n# installed by relay-shell 0.2.0 from Caddyfile\n", None, None),
        (b"# installed by relay-shell from Caddyfile\nbody\n", None, None),
        (b"# installed by relay-shell 0.2.0 from Caddyfile", None, None),
        (b"", None, None),
    ],
)
def test_strip_marker(content: bytes, rest: bytes | None, version: str | None) -> None:
    assert strip_marker(content) == ((content if rest is None else rest), version)


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("{$RELAY_SHELL_EDGE_DOMAIN} {", {"RELAY_SHELL_EDGE_DOMAIN": "a.example"}, "a.example {"),
        ("x {$RELAY_SHELL_EDGE_UPSTREAM:127.0.0.1:8080} y", {}, "x 127.0.0.1:8080 y"),
        ("{$RELAY_SHELL_EDGE_UPSTREAM:127.0.0.1:8080}", {"RELAY_SHELL_EDGE_UPSTREAM": ""}, "127.0.0.1:8080"),
        ("{$RELAY_SHELL_EDGE_UPSTREAM:d}", {"RELAY_SHELL_EDGE_UPSTREAM": "h:1"}, "h:1"),
        ("{$HOME} {$RELAY_SHELL_EDGE_X}", {"HOME": "/root"}, "{$HOME} "),
        (
            "{$RELAY_SHELL_EDGE_A}{$RELAY_SHELL_EDGE_B}",
            {"RELAY_SHELL_EDGE_A": "1", "RELAY_SHELL_EDGE_B": "2"},
            "12",
        ),
        ("{placeholder} {$", {}, "{placeholder} {$"),
    ],
)
def test_render_edge_template(template: str, values: dict[str, str], expected: str) -> None:
    assert render_edge_template(template, values) == expected


def test_marker_free_copy_verifies(tmp_path: Path) -> None:
    for entry in read_manifest(DEPLOY)[:3]:
        target = tmp_path / entry.install_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / entry.template, target)
    assert set(statuses(tmp_path).values()) == {"OK"}


def test_unreadable_templates_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_verify_deploy(tmp_path, tmp_path, as_json=True) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "manifest" in captured.err


def test_cli_flag(edged: Path) -> None:
    argv = [sys.executable, "-m", "relay_shell", "--verify-deploy", "--install-prefix", str(edged), "--json"]
    result = run(argv, {**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
