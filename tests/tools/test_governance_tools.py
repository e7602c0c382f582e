"""Policy modes, tier-3 confirmation, degraded audit and diagnostics through the MCP client."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from relay_shell.app import build_server
from relay_shell.config import Settings
from tests.conftest import connected, read_audit, sc


async def call(settings: Settings, tool: str, args: dict[str, Any], **client_kwargs: Any) -> Any:
    server = build_server(settings)
    try:
        async with Client(server, **client_kwargs) as client:
            return await client.call_tool(tool, args)
    finally:
        await server.services.aclose()


async def test_readonly_denies_tier1_and_audits(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(policy_mode="readonly")
    result = await call(settings, "shell_exec", {"command": "touch /tmp/should-not-exist-relay"})
    assert result.is_error is True
    error = sc(result)["error"]
    assert error["kind"] == "denied"
    assert error["tier"] == 1
    assert not Path("/tmp/should-not-exist-relay").exists()
    record = read_audit(settings.audit_path)[-1]
    assert (record["decision"], record["outcome"]) == ("denied", "denied")
    info = await call(settings, "server_info", {})
    assert info.is_error is False


async def test_guarded_needs_allow_for_tier2(make_settings: Callable[..., Settings]) -> None:
    refused = await call(
        make_settings(policy_mode="guarded"), "shell_exec", {"command": "chmod 600 /nonexistent-x"}
    )
    assert sc(refused)["error"]["kind"] == "denied"
    allowed = await call(
        make_settings(policy_mode="guarded", policy_allow=r"chmod 600 /nonexistent-x"),
        "shell_exec",
        {"command": "chmod 600 /nonexistent-x"},
    )
    assert allowed.is_error is False
    assert sc(allowed)["tier"] == 2


async def test_deny_list_sees_stdin_and_env(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(policy_deny=r"forbidden-word")
    via_stdin = await call(settings, "shell_exec", {"command": "cat", "stdin": "forbidden-word"})
    via_env = await call(settings, "shell_exec", {"command": "true", "env": {"X": "forbidden-word"}})
    via_script = await call(settings, "shell_script", {"script": "echo forbidden-word"})
    for result in (via_stdin, via_env, via_script):
        assert sc(result)["error"]["kind"] == "denied"


async def test_stdin_side_channel_is_classified(make_settings: Callable[..., Settings]) -> None:
    result = await call(
        make_settings(policy_mode="guarded"), "shell_exec", {"command": "sh", "stdin": "rm -rf /srv/x"}
    )
    assert sc(result)["error"]["kind"] == "denied"
    assert sc(result)["error"]["tier"] == 3
    assert "deletion." in sc(result)["error"]["message"]  # the reason names the rule that set the tier


def _elicitation(answer: str, confirm: bool) -> Any:
    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        assert "rm -rf" in params.message
        return ElicitResult(action=answer, content={"confirm": confirm} if answer == "accept" else None)

    return callback


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 multi-round flow, and mid-call requests
@pytest.mark.parametrize(
    ("answer", "confirm", "runs"),
    [("accept", True, True), ("decline", False, False), ("accept", False, False), ("cancel", False, False)],
)
async def test_tier3_elicit(
    make_settings: Callable[..., Settings], tmp_path: Path, answer: str, confirm: bool, runs: bool, mode: str
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    settings = make_settings(confirm_tier3="elicit")
    result = await call(
        settings,
        "shell_exec",
        {"command": f"rm -rf {victim}"},
        elicitation_callback=_elicitation(answer, confirm),
        mode=mode,
    )
    assert victim.exists() is not runs
    assert result.is_error is not runs
    record = read_audit(settings.audit_path)[-1]
    assert record["tier"] == 3
    if not runs:
        assert sc(result)["error"]["kind"] == "confirm_required"
        assert record["decision"] == "confirm_required"


async def test_tier3_elicit_fails_closed_without_support(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    result = await call(make_settings(confirm_tier3="elicit"), "shell_exec", {"command": f"rm -rf {victim}"})
    assert sc(result)["error"]["kind"] == "confirm_required"
    assert victim.exists()


async def test_tier3_token_single_use_and_bound(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    settings = make_settings(confirm_tier3="token")
    server = build_server(settings)
    command = f"rm -rf {victim}"
    async with Client(server) as client:
        first = await client.call_tool("shell_exec", {"command": command})
        token = sc(first)["error"]["confirm_token"]
        assert victim.exists()
        other = await client.call_tool("shell_exec", {"command": command + " ", "confirm_token": token})
        assert sc(other)["error"]["kind"] == "confirm_required"  # bound to the exact call; and now spent
        second = await client.call_tool("shell_exec", {"command": command})
        token = sc(second)["error"]["confirm_token"]
        ran = await client.call_tool("shell_exec", {"command": command, "confirm_token": token})
        assert ran.is_error is False
        assert not victim.exists()
        replay = await client.call_tool("shell_exec", {"command": command, "confirm_token": token})
        assert sc(replay)["error"]["kind"] == "confirm_required"
    await server.services.aclose()
    assert token not in settings.audit_path.read_text()  # confirm_token is redacted in the audit


async def test_unwritable_audit_refuses_above_tier0(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where the audit directory should be")
    settings = make_settings(audit_path=blocker / "audit.jsonl")
    server = build_server(settings)
    async with Client(server) as client:
        info = await client.call_tool("server_info", {})
        assert info.is_error is False
        assert sc(info)["audit"]["healthy"] is False
        refused = await client.call_tool("shell_exec", {"command": "touch /tmp/relay-unaudited"})
        assert sc(refused)["error"]["kind"] == "unavailable"
    assert not Path("/tmp/relay-unaudited").exists()


async def test_server_info_fields(client: Client, settings: Settings) -> None:
    data = sc(await client.call_tool("server_info", {}))
    assert (data["policy"]["mode"], data["policy"]["confirm_tier3"]) == ("open", settings.confirm_tier3.value)
    assert "policy_mode" not in data  # said once, in policy
    assert data["limits"]["max_output"] == settings.max_output
    assert data["audit"]["path"] == str(settings.audit_path)
    assert data["identity"]["uid"] >= 0
    assert data["tier"] == 0


async def test_audit_tail_filters(client: Client) -> None:
    await client.call_tool("shell_exec", {"command": "sleep 0"})  # tier 1: start and end records
    await client.call_tool("shell_exec", {"command": "sleep 0", "timeout": -1})
    await client.call_tool("server_info", {})
    data = sc(await client.call_tool("audit_tail", {"lines": 10, "tool": "shell_exec"}))
    records = data["records"]
    # the call that ran has a start and an end record; the invalid one was refused before it started
    assert [(r["tool"], r.get("phase"), r.get("outcome")) for r in records] == [
        ("shell_exec", "start", None),
        ("shell_exec", "end", "ok"),
        ("shell_exec", None, "error"),
    ]
    assert records[0]["call_id"] == records[1]["call_id"]
    assert len(records[0]["call_id"]) >= 24  # >= 96 random bits
    assert records[0]["seq"] < records[1]["seq"] < records[2]["seq"]
    ok_only = sc(await client.call_tool("audit_tail", {"outcome": "ok", "min_tier": 1}))
    assert all(r["outcome"] == "ok" and r["tier"] >= 1 for r in ok_only["records"])


async def test_prompt_fetch_is_audited(client: Client, settings: Settings) -> None:
    prompts = await client.list_prompts()
    assert [p.name for p in prompts.prompts] == ["operating_guide"]
    guide = await client.get_prompt("operating_guide")
    assert "One-shot or session" in guide.messages[0].content.text
    record = read_audit(settings.audit_path)[-1]
    assert (record["tool"], record["tier"], record["args"]["name"]) == ("prompt_get", 0, "operating_guide")


async def test_audit_breaking_mid_run_refuses_the_very_next_call(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    audit_dir = tmp_path / "audit-dir"
    settings = make_settings(audit_path=audit_dir / "audit.jsonl")
    server = build_server(settings)
    victim = tmp_path / "must-not-exist"
    async with connected(server) as client:
        assert (await client.call_tool("shell_exec", {"command": "true"})).is_error is False
        audit_dir.rename(tmp_path / "audit-moved")
        audit_dir.write_text("a regular file where the audit directory was")
        refused = await client.call_tool("shell_exec", {"command": f"touch {victim}"})
        assert sc(refused)["error"]["kind"] == "unavailable"
        assert not victim.exists()  # nothing unaudited ran
        assert (await client.call_tool("server_info", {})).is_error is False
        audit_dir.unlink()
        (tmp_path / "audit-moved").rename(audit_dir)
        assert (await client.call_tool("shell_exec", {"command": "true"})).is_error is False
    await server.services.aclose()


async def _as_principal(
    server: Any, subject: str, scopes: list[str], calls: list[tuple[str, dict[str, Any]]]
) -> Any:
    """Run ``calls`` in a session whose requests carry an OAuth principal; the last result."""
    from mcp.server.auth.middleware.auth_context import auth_context_var
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken

    token = AccessToken(token=f"t-{subject}", client_id="client", scopes=scopes, subject=subject)
    reset = auth_context_var.set(AuthenticatedUser(token))  # the session's tasks inherit it
    try:
        async with connected(server) as client:
            result = None
            for tool, arguments in calls:
                result = await client.call_tool(tool, arguments)
            return result
    finally:
        auth_context_var.reset(reset)


async def test_audit_tail_shows_a_non_admin_only_its_own_records(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(auth_max_scope="relay-shell:admin")
    server = build_server(settings)
    await server.services.start()  # held open across the principals' sessions
    try:
        await _as_principal(
            server,
            "alice",
            ["relay-shell:operate"],
            [("shell_exec", {"command": "sleep 0 # alice-secret-work"})],
        )
        await _as_principal(
            server, "bob", ["relay-shell:operate"], [("shell_exec", {"command": "sleep 0 # bob-work"})]
        )
        bob = sc(
            await _as_principal(server, "bob", ["relay-shell:operate"], [("audit_tail", {"lines": 100})])
        )
        admin = sc(
            await _as_principal(server, "root", ["relay-shell:admin"], [("audit_tail", {"lines": 100})])
        )
        reader = sc(
            await _as_principal(server, "carol", ["relay-shell:read"], [("audit_tail", {"lines": 100})])
        )
    finally:
        await server.services.aclose()
    assert {record["principal"] for record in bob["records"]} == {"bob"}
    assert "alice-secret-work" not in json.dumps(bob["records"])
    assert [r["args"]["command"] for r in bob["records"] if r.get("phase") == "end"] == ["sleep 0 # bob-work"]
    assert not any("kind" in record for record in bob["records"])  # not the sink's own records either
    assert {record.get("principal") for record in admin["records"]} >= {"alice", "bob", None}
    assert reader["records"] == []  # carol ran nothing (her own audit_tail is written after it answered)
