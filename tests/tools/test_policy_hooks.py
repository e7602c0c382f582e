"""The classifier's hooks on the pipeline's stages, through the MCP client: the scope ceiling and
opaque calls, jobs that are never made for a refused call, what a parsed call leaves in the audit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from relay_shell.app import RelayServer, build_server
from relay_shell.config import Settings
from tests.conftest import connected, principal, read_audit, sc


async def test_the_operate_scope_refuses_opaque_calls_and_admin_runs_them(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server: RelayServer = build_server(make_settings())
    proof = tmp_path / "opaque-proof"
    opaque = f'python3 -c \'open("{proof}", "w")\''  # tier 2, opaque (inline interpreter code)
    target = tmp_path / "mode-target"
    target.write_text("x")
    with principal("op", "relay-shell:operate"):
        async with connected(server) as client:
            refused = await client.call_tool("shell_exec", {"command": opaque})
            chmod = await client.call_tool("shell_exec", {"command": f"chmod 600 {target}"})  # tier 2, seen
    error = sc(refused)["error"]
    assert (error["kind"], error["reason"], error["opaque"], sc(refused)["tier"]) == (
        "denied",
        "scope",
        True,
        2,
    )
    assert error["rule"] == "opaque.inline_code"
    assert not proof.exists()
    assert (chmod.is_error, sc(chmod)["tier"], target.stat().st_mode & 0o777) == (False, 2, 0o600)
    await server.services.aclose()
    admin_server = build_server(make_settings())
    with principal("root", "relay-shell:admin"):
        async with connected(admin_server) as client:
            ran = await client.call_tool("shell_exec", {"command": opaque})
    await admin_server.services.aclose()
    assert ran.is_error is False
    assert proof.exists()


async def test_a_refused_call_never_becomes_a_job(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Admission comes before execution: with yield_after 0 a refused call still answers denied,
    and no job (nor its process) ever exists."""
    server = build_server(make_settings(policy_mode="guarded"))
    target = tmp_path / "mode-target"
    target.write_text("x")
    target.chmod(0o644)
    async with connected(server) as client:
        refused = await client.call_tool(
            "shell_exec", {"command": f"chmod 600 {target}; sleep 5", "yield_after": 0}
        )
        listed = sc(await client.call_tool("session_list", {}))
    await server.services.aclose()
    assert (sc(refused)["error"]["kind"], sc(refused)["error"]["subcommand"]) == (
        "denied",
        f"chmod 600 {target}",
    )
    assert "job_id" not in sc(refused)
    assert server.services.jobs.jobs() == []
    assert listed["sessions"] == []
    assert target.stat().st_mode & 0o777 == 0o644
    record = read_audit(server.services.settings.audit_path)[-2]
    assert (record["tool"], record["outcome"], "job_id" in record) == ("shell_exec", "denied", False)


async def test_a_parsed_call_is_audited_with_its_commands_and_rules(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(policy_mode="readonly")
    server = build_server(settings)
    async with connected(server) as client:
        read = await client.call_tool("shell_exec", {"command": "uname -a | head -n 1"})
        refused = await client.call_tool("shell_exec", {"command": 'ls >/dev/null; eval "$X"'})
    await server.services.aclose()
    assert (read.is_error, sc(read)["tier"]) == (False, 0)
    assert sc(refused)["error"]["reason"] == "mode:readonly"
    ran, denied = read_audit(settings.audit_path)[-2:]
    assert (ran["tier"], ran["opaque"], ran["commands"], ran["rules"], ran["pattern"]) == (
        0, False, ["uname", "head"], [], "read.known_safe",
    )  # fmt: skip
    assert "call_id" not in ran  # a tier-0 call has none
    assert (denied["decision"], denied["rule"], denied["opaque"], denied["commands"]) == (
        "denied", "mode:readonly", True, ["ls", "eval"],
    )  # fmt: skip
    assert "opaque.eval" in denied["rules"]
