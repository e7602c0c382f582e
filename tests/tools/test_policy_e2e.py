"""The parse end to end, through the MCP client: rewrites refused with no effect, useful readonly.

Every refusal test checks a proof on disk (a directory that a tier-3 rewrite would delete, a
file mode a tier-2 rewrite would change) and, where it matters, a positive control in open
mode shows the same command really has that effect.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mcp import Client

from relay_shell.app import build_server
from relay_shell.config import Settings
from tests.conftest import connected, read_audit, sc


@pytest.fixture
async def guarded(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Client, Settings]]:
    settings = make_settings(policy_mode="guarded")
    server = build_server(settings)
    async with connected(server) as client:
        yield client, settings
    await server.services.aclose()


@pytest.fixture
async def readonly(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[Client, Settings]]:
    settings = make_settings(policy_mode="readonly")
    server = build_server(settings)
    async with connected(server) as client:
        yield client, settings
    await server.services.aclose()


def proofs(tmp_path: Path) -> tuple[Path, Path]:
    """A directory a tier-3 rewrite would delete and a 0644 file a tier-2 rewrite would chmod."""
    victim = tmp_path / "victim"
    victim.mkdir(parents=True)
    (victim / "keep").write_text("x")
    target = tmp_path / "mode-target"
    target.write_text("x")
    target.chmod(0o644)
    return victim, target


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# One tier-3 and one tier-2 rewrite per class; {d} is the directory, {f} the file.
REWRITES: list[tuple[str, str, str]] = [
    ("prefix", "X=1 >/dev/null rm -rf {d}", "2>/dev/null chmod 600 {f}"),
    ("glob", "/usr/bin/r[m] -rf {d}", "/usr/bin/ch?od 600 {f}"),
    ("empty expansion", "$EMPTY rm -rf {d}", "$(true) chmod 600 {f}"),
    ("quoting", "r''m -rf {d}", "ch\\mod 600 {f}"),
    ("brace and ansi-c", "{{r,}}m -rf {d}", "$'\\x63hmod' 600 {f}"),
    ("wrapper", "nohup nice -n 5 timeout 30 env X=1 rm -rf {d}", "setsid -w stdbuf -oL chmod 600 {f}"),
    ("abbreviation", "rm --recur --forc {d}", "chmod --verbose 600 {f}"),
    ("nested shell", "bash -c 'rm -rf {d}'", "sh -c 'chmod 600 {f}'"),
    ("pipe into shell", "echo 'rm -rf {d}' | sh", "printf 'chmod 600 {f}' | bash"),
    ("interpreter", "python3 -c 'import shutil; shutil.rmtree(\"{d}\")'", "perl -e 'chmod 0600, \"{f}\"'"),
    ("eval", "eval 'rm -rf {d}'", "eval chmod 600 {f}"),
    ("find and xargs", "find {d} -delete", "echo {f} | xargs chmod 600"),
    ("here-document", "sh <<'EOF'\nrm -rf {d}\nEOF", "bash <<< 'chmod 600 {f}'"),
    ("running a file", "printf 'rm -rf {d}' > {d}.sh; sh {d}.sh", "printf 'chmod 600 {f}' > s; sh s"),
    ("line continuation", "r\\\nm -rf {d}", "ch\\\nmod 600 {f}"),
    ("ifs", "rm${{IFS}}-rf${{IFS}}{d}", "chmod${{IFS}}600${{IFS}}{f}"),
    ("option that runs a command", "strace -o '|rm -rf {d}' true", "ed -s '!chmod 600 {f}' < /dev/null"),
]


@pytest.mark.parametrize(("group", "tier3", "tier2"), REWRITES, ids=[r[0] for r in REWRITES])
async def test_rewrites_are_refused_in_guarded_mode_and_do_nothing(
    guarded: tuple[Client, Settings], tmp_path: Path, group: str, tier3: str, tier2: str
) -> None:
    client, settings = guarded
    victim, target = proofs(tmp_path)
    for command in (tier3.format(d=victim, f=target), tier2.format(d=victim, f=target)):
        result = await client.call_tool("shell_exec", {"command": command, "cwd": str(tmp_path)})
        assert result.is_error is True, command
        error = sc(result)["error"]
        assert error["kind"] == "denied", command
        assert error["subcommand"], command
        assert error["mode"] == "guarded"
        assert isinstance(error["opaque"], bool)
        assert error["rule"]
    assert (victim / "keep").exists()
    assert mode_of(target) == 0o644
    assert not (tmp_path / "s").exists()
    record = read_audit(settings.audit_path)[-1]
    assert (record["decision"], record["outcome"]) == ("denied", "denied")
    assert isinstance(record["opaque"], bool) and record["commands"] and record["rules"]


async def test_the_same_rewrites_do_run_in_open_mode(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Positive control: the proofs above would change if the commands ran."""
    server = build_server(make_settings())
    async with connected(server) as client:
        for group, tier3, tier2 in [r for r in REWRITES[:8] if r[0] != "brace and ansi-c"]:  # /bin/sh is dash
            victim, target = proofs(tmp_path / group.replace(" ", "-"))
            for command in (tier3.format(d=victim, f=target), tier2.format(d=victim, f=target)):
                result = await client.call_tool("shell_exec", {"command": command})
                assert result.is_error is False, (command, result.content[0].text)
            assert not victim.exists(), group
            assert mode_of(target) == 0o600, group
    await server.services.aclose()


async def test_write_then_run_is_refused_at_the_run(guarded: tuple[Client, Settings], tmp_path: Path) -> None:
    client, _ = guarded
    target = tmp_path / "F"
    target.write_text("x")
    target.chmod(0o644)
    result = await client.call_tool(
        "shell_exec", {"command": "printf 'chmod 777 F' > s; sh s", "cwd": str(tmp_path)}
    )
    error = sc(result)["error"]
    assert error["kind"] == "denied"
    assert error["subcommand"] == "sh s"
    assert error["opaque"] is True
    assert error["rule"] == "opaque.run_file"
    assert not (tmp_path / "s").exists()
    assert mode_of(target) == 0o644


async def test_stdin_and_env_channels_are_classified(
    guarded: tuple[Client, Settings], tmp_path: Path
) -> None:
    client, _ = guarded
    victim, _ = proofs(tmp_path)
    via_stdin = await client.call_tool("shell_exec", {"command": "sh", "stdin": f"rm -rf {victim}\n"})
    assert (sc(via_stdin)["error"]["kind"], sc(via_stdin)["error"]["tier"]) == ("denied", 3)
    via_env = await client.call_tool("shell_exec", {"command": "$RUN", "env": {"RUN": f"rm -rf {victim}"}})
    assert sc(via_env)["error"]["tier"] == 3
    via_pager = await client.call_tool(
        "shell_exec", {"command": "git log", "env": {"GIT_PAGER": f"rm -rf {victim}"}}
    )
    assert sc(via_pager)["error"]["kind"] == "denied"
    via_python = await client.call_tool(
        "shell_script", {"script": f"import shutil\nshutil.rmtree('{victim}')", "interpreter": "python"}
    )
    assert sc(via_python)["error"]["opaque"] is True
    assert (victim / "keep").exists()


READS = [
    "uname -a",
    "df -h",
    "ls -la /etc",
    "cat /etc/os-release",
    "ps aux",
    "grep -rn x /etc/hostname",
    "systemctl status",
    'echo "kill -9 is a last resort"',
    "grep -rn 'DROP TABLE' /etc/hostname",
]


@pytest.mark.parametrize("command", READS)
async def test_readonly_runs_known_safe_reads(readonly: tuple[Client, Settings], command: str) -> None:
    client, settings = readonly
    result = await client.call_tool("shell_exec", {"command": command})
    assert result.is_error is False, result.content[0].text
    assert sc(result)["tier"] == 0
    record = read_audit(settings.audit_path)[-1]
    assert (record["tier"], record["opaque"], record["outcome"]) == (0, False, "ok")


REFUSED_READONLY = [
    "ls > {p}",
    "find {t} -delete",
    "sed -i s/a/b/ {t}/file",
    "cat $(touch {p})",
    "echo x | sh",
    "PATH=/tmp/evil ls",
    "./ls",
    "test -v 'a[$(touch {p})]'",
    "touch {p}",
]


@pytest.mark.parametrize("command", REFUSED_READONLY)
async def test_readonly_refuses_and_leaves_no_file(
    readonly: tuple[Client, Settings], tmp_path: Path, command: str
) -> None:
    client, _ = readonly
    (tmp_path / "file").write_text("a")
    proof = tmp_path / "proof"
    result = await client.call_tool(
        "shell_exec", {"command": command.format(p=proof, t=tmp_path), "cwd": str(tmp_path)}
    )
    assert sc(result)["error"]["kind"] == "denied"
    assert sc(result)["error"]["mode"] == "readonly"
    assert not proof.exists()
    assert (tmp_path / "file").read_text() == "a"


def repo_with_fsmonitor(root: Path) -> Path:
    """A repository under ``root`` whose ``core.fsmonitor`` hook touches ``root/hook-ran`` (git runs it)."""
    repo = root / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    hook = root / "fsmonitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {root / 'hook-ran'}\nexit 1\n")
    hook.chmod(0o755)
    subprocess.run(["git", "-C", str(repo), "config", "core.fsmonitor", str(hook)], check=True)
    (repo / "file").write_text("x")
    return repo


async def test_tier0_git_runs_with_code_running_configuration_off(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    repo = repo_with_fsmonitor(tmp_path)
    # Control: without the overlay, git status runs the repository's fsmonitor hook.
    subprocess.run(["git", "-C", str(repo), "status"], check=True, capture_output=True)
    assert (tmp_path / "hook-ran").exists()
    (tmp_path / "hook-ran").unlink()
    server = build_server(make_settings(policy_mode="readonly"))
    async with connected(server) as client:
        result = await client.call_tool("shell_exec", {"command": "git status", "cwd": str(repo)})
        assert result.is_error is False, result.content[0].text
        assert sc(result)["tier"] == 0
        assert "file" in sc(result)["output"]
    await server.services.aclose()
    assert not (tmp_path / "hook-ran").exists()


def _repo_with_drivers(root: Path) -> Path:
    """A repository whose textconv and clean-filter drivers each create a proof file."""
    repo = root / "drivers"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / "file").write_text("one\n")
    subprocess.run([*git, "add", "file"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    (repo / ".gitattributes").write_text("* diff=proof filter=proof\n")
    textconv = f"sh -c 'touch {root / 'textconv-ran'}; cat \"$0\"'"
    subprocess.run([*git[:3], "config", "diff.proof.textconv", textconv], check=True)
    subprocess.run(
        [*git[:3], "config", "filter.proof.clean", f"sh -c 'touch {root / 'clean-ran'}; cat'"], check=True
    )
    (repo / "file").write_text("two\n")
    return repo


async def test_tier0_git_is_refused_where_the_configuration_names_a_driver(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Textconv and filter drivers have names of the repository's choosing: no override switches
    them all off, so a local git read in such a repository is not a known-safe read."""
    repo = _repo_with_drivers(tmp_path)
    # Control: without the relay, git status runs the clean filter and git log -p the textconv.
    subprocess.run(["git", "-C", str(repo), "status"], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(repo), "log", "-p"], check=True, capture_output=True)
    assert (tmp_path / "clean-ran").exists() and (tmp_path / "textconv-ran").exists()
    (tmp_path / "clean-ran").unlink()
    (tmp_path / "textconv-ran").unlink()
    server = build_server(make_settings(policy_mode="readonly"))
    async with connected(server) as client:
        for command in ("git status", "git diff", "git log -p", "git show", "git diff --stat"):
            result = await client.call_tool("shell_exec", {"command": command, "cwd": str(repo)})
            assert sc(result)["error"]["kind"] == "denied", command
            assert sc(result)["error"]["mode"] == "readonly"
    await server.services.aclose()
    assert not (tmp_path / "clean-ran").exists()
    assert not (tmp_path / "textconv-ran").exists()


async def test_tier0_git_diff_shows_the_change(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    repo = tmp_path / "plain"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "file").write_text("one\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "file"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    (repo / "file").write_text("two\n")
    server = build_server(make_settings(policy_mode="readonly"))
    async with connected(server) as client:
        result = await client.call_tool("shell_exec", {"command": "git diff", "cwd": str(repo)})
    await server.services.aclose()
    assert result.is_error is False, result.content[0].text
    assert (sc(result)["tier"], sc(result)["exit_code"]) == (0, 0)
    assert "-one\n+two" in sc(result)["output"]


DENIED_SPELLINGS = [
    "touch {p}",
    "to''uch {p}",
    "t\\ouch {p}",
    "$'\\x74ouch' {p}",
    "env touch {p}",
    "/usr/bin/touch {p}",
    "/usr//bin/./touch {p}",
    "/usr/bin/t[o]uch {p}",
    "eval 'touch {p}'",
    'python3 -c \'open("{p}", "w")\'',
    "sudo -n touch {p}",
    "{{t,}}ouch {p}",
]


@pytest.mark.parametrize("command", DENIED_SPELLINGS)
async def test_a_deny_on_touch_refuses_every_spelling_and_every_opaque_call(
    make_settings: Callable[..., Settings], tmp_path: Path, command: str
) -> None:
    server = build_server(make_settings(policy_deny=r"(^|\s|/)touch\b"))
    proof = tmp_path / "proof"
    async with connected(server) as client:
        result = await client.call_tool("shell_exec", {"command": command.format(p=proof)})
        assert sc(result)["error"]["kind"] == "denied"
        assert sc(result)["error"]["mode"] == "open"
        allowed = await client.call_tool("shell_exec", {"command": "echo fine"})
        assert allowed.is_error is False
    await server.services.aclose()
    assert not proof.exists()


async def test_a_deny_on_an_ip_sees_it_inside_dev_tcp(make_settings: Callable[..., Settings]) -> None:
    server = build_server(make_settings(policy_deny=r"127\.0\.0\.1"))
    async with connected(server) as client:
        for command in (
            "echo x > /dev/tcp/0x7f000001/9",
            "exec 3<>/dev/tcp/127.1/9",
            "curl http://2130706433:9/",
        ):
            result = await client.call_tool("shell_exec", {"command": command})
            assert sc(result)["error"]["kind"] == "denied", command
    await server.services.aclose()


async def test_allow_must_match_each_stateful_command(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    victim, target = proofs(tmp_path)
    settings = make_settings(policy_mode="guarded", policy_allow=rf"chmod 600 {target}")
    server = build_server(settings)
    async with connected(server) as client:
        smuggled = await client.call_tool("shell_exec", {"command": f"chmod 600 {target}; rm -rf {victim}"})
        assert sc(smuggled)["error"]["subcommand"] == f"rm -rf {victim}"
        assert mode_of(target) == 0o644
        alone = await client.call_tool("shell_exec", {"command": f"chmod 600 {target}"})
        assert alone.is_error is False
    await server.services.aclose()
    assert (victim / "keep").exists()
    assert mode_of(target) == 0o600


async def test_opaque_calls_need_confirmation_like_tier_3(make_settings: Callable[..., Settings]) -> None:
    server = build_server(make_settings(confirm_tier3="token"))
    async with connected(server) as client:
        result = await client.call_tool("shell_exec", {"command": "python3 -c 'print(1)'"})
        error = sc(result)["error"]
        assert error["kind"] == "confirm_required"
        assert error["confirm_token"]
        ran = await client.call_tool(
            "shell_exec", {"command": "python3 -c 'print(1)'", "confirm_token": error["confirm_token"]}
        )
        assert sc(ran)["output"] == "1\n"
    await server.services.aclose()


async def test_protected_files_are_refused_in_every_mode(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    server = build_server(settings)
    audit = settings.audit_path
    async with connected(server) as client:
        await client.call_tool("server_info", {})
        before = audit.read_text()
        for command in (
            f"echo forged >> {audit}",
            f"cat {audit.parent}//./{audit.name}",
            f"cp /dev/null {audit.parent}/*",
            "relay-shell --approve-login x",
        ):
            result = await client.call_tool("shell_exec", {"command": command})
            assert sc(result)["error"]["kind"] == "denied", command
            assert sc(result)["error"]["reason"] == "protected"
    await server.services.aclose()
    assert "forged" not in audit.read_text().splitlines()  # (the word is in the refused calls' args)
    assert audit.read_text().startswith(before)


async def test_an_escape_hatch_lets_the_operator_touch_protected_files(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(policy_allow_protected=True)
    server = build_server(settings)
    async with connected(server) as client:
        await client.call_tool("server_info", {})
        result = await client.call_tool("shell_exec", {"command": f"wc -l {settings.audit_path}"})
        assert result.is_error is False
        assert sc(result)["tier"] == 3
    await server.services.aclose()


async def test_transfers_naming_protected_local_files_are_refused_before_connecting(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Uploads (one host and many) and downloads check their local path against the relay's own
    files; the refusal comes at admission, so nothing connects (192.0.2.1 is unroutable)."""
    settings = make_settings(auth_state_dir=tmp_path / "oauth")
    (tmp_path / "oauth").mkdir()
    (tmp_path / "oauth" / "state.json").write_text("{}")
    server = build_server(settings)
    audit = settings.audit_path
    async with connected(server) as client:
        await client.call_tool("server_info", {})
        before = audit.read_text()
        calls = [
            ("ssh_upload", {"host": "192.0.2.1", "local_path": str(audit), "remote_path": "/tmp/a"}),
            ("ssh_upload", {"hosts": "192.0.2.1,192.0.2.2", "local_path": f"{tmp_path}/oauth/state.json",
                            "remote_path": "/tmp/s"}),
            ("ssh_download", {"host": "192.0.2.1", "remote_path": "/etc/hostname",
                              "local_path": f"{audit.parent}//./{audit.name}"}),
        ]  # fmt: skip
        for tool, arguments in calls:
            result = await client.call_tool(tool, arguments)
            error = sc(result)["error"]
            assert (error["kind"], error["reason"], sc(result)["tier"]) == ("denied", "protected", 3), tool
    await server.services.aclose()
    assert audit.read_text().startswith(before)
    assert (tmp_path / "oauth" / "state.json").read_text() == "{}"
    records = [r for r in read_audit(audit) if r["tool"] in ("ssh_upload", "ssh_download")]
    assert [(r["decision"], r["rule"]) for r in records] == [("denied", "protected")] * 3


async def test_signal_spellings_and_task_runners_are_refused_and_do_nothing(
    guarded: tuple[Client, Settings], tmp_path: Path
) -> None:
    """The classes of rewrites the table above does not hold: a process to signal, a Makefile."""
    client, _ = guarded
    victim, target = proofs(tmp_path)
    (tmp_path / "Makefile").write_text(f"all:\n\trm -rf {victim}\n\tchmod 600 {target}\n")
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        for command in (
            f"kill -sKILL {sleeper.pid}",
            f"kill -09 {sleeper.pid}",
            f"/bin/kill --signal=kill {sleeper.pid}",
            f"kill -s sigkill {sleeper.pid}",
            f"timeout 5 kill -TERM {sleeper.pid}",
            "make",
            "make -f Makefile all",
            "env make -C . all",
            "nice make",
        ):
            result = await client.call_tool("shell_exec", {"command": command, "cwd": str(tmp_path)})
            error = sc(result)["error"]
            assert (error["kind"], error["mode"]) == ("denied", "guarded"), command
            assert error["subcommand"] and error["rule"], command
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert (victim / "keep").exists()
    assert mode_of(target) == 0o644
