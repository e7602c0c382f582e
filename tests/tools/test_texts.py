"""The result texts are complete for a model that never reads structuredContent.

- ``audit_tail`` lines name what each call ran or read (its redacted arguments and target);
- ``server_info`` names the policy (mode, confirmation, whether deny/allow lists are set, the
  patterns themselves only to an admin principal) and every limit a call can meet;
- a truncated or binary output says how to get the rest.

Tools are called through an MCP client; the values asserted are the ones the settings and
the audit file hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from relay_shell.app import build_server
from relay_shell.config import Settings
from relay_shell.governance.call import Identity
from relay_shell.tools.diagnostics import LINE_DETAIL_CHARS, record_line
from relay_shell.tools.server_info import describe, is_admin
from tests.conftest import connected, read_trail

DENY = r"forbidden-[a-z]+-word"
ALLOW = r"^allowed-thing$"


def text_of(result: Any) -> str:
    return "".join(block.text for block in result.content)


async def calls(settings: Settings, *steps: tuple[str, dict[str, Any]]) -> list[Any]:
    server = build_server(settings)
    try:
        async with connected(server) as client:
            return [await client.call_tool(tool, arguments) for tool, arguments in steps]
    finally:
        await server.services.aclose()


async def test_audit_tail_lines_show_what_each_call_ran(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(policy_deny=DENY)
    secret = "hunter2-very-secret-value"
    denied_command = "echo forbidden-top-word; rm -rf /srv/tmp-x"
    denied, ran, bad, tail = await calls(
        settings,
        ("shell_exec", {"command": denied_command}),
        ("shell_exec", {"command": f"echo line1\necho --password={secret}", "env": {"A": "1"}}),
        ("shell_exec", {"command": "true", "timeout": -1}),
        ("audit_tail", {"lines": 10}),
    )
    assert denied.structured_content["error"]["kind"] == "denied"
    assert ran.is_error is False and bad.is_error is True
    lines = text_of(tail).splitlines()[1:]
    records = read_trail(settings.audit_path)[:-1]  # the last one is audit_tail's own
    # the file's header, the refused call, the start and end of the call that ran, the invalid one
    assert len(lines) == len(records) == 5
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert lines[0].startswith(f"{records[0]['ts']} #1 audit header: ")
    assert lines[1].startswith(f"{records[1]['ts']} #2 shell_exec tier 3 denied/denied rule deny: ")
    assert denied_command in lines[1]  # the command that was refused, as the record holds it
    assert lines[2].startswith(f"{records[2]['ts']} #3 shell_exec start tier 1 allowed/None: ")
    assert "line1\\necho --password=" in lines[3]  # one line per record, newlines shown as \n
    assert secret not in text_of(tail)  # the record's redaction holds in the text too
    assert secret not in settings.audit_path.read_text()
    assert '(env={"A":"1"})' in lines[3]
    assert " shell_exec tier - allowed/error: true (timeout=-1) [invalid argument `timeout`" in lines[4]


def test_an_audit_line_is_bounded_and_names_targets() -> None:
    long = {"tool": "ssh_exec", "tier": 1, "decision": "allowed", "outcome": "ok", "exit_code": 0,
            "args": {"host": "box", "command": "x" * 5000}, "target": ["box", "u@10.0.0.9:22"]}  # fmt: skip
    line = record_line(long)
    assert len(line) < LINE_DETAIL_CHARS + 100 and line.endswith("…")
    short = {**long, "args": {"host": "box", "command": "uptime"}}
    assert record_line(short).endswith(": uptime (host=box) -> u@10.0.0.9:22")
    cef = {**long, "args": '{"command": "ls\\u001b[31m", "cwd": "/tmp"}', "target": None}
    assert record_line(cef).endswith(": ls\\x1b[31m (cwd=/tmp)")  # CEF/LEEF args are JSON text
    bare = {"tool": "server_info", "tier": 0, "decision": "allowed", "outcome": "ok", "args": {}}
    assert record_line(bare).endswith("server_info tier 0 allowed/ok")


async def test_server_info_text_names_the_policy_and_every_limit(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        policy_mode="guarded", policy_deny=DENY, policy_allow=ALLOW, confirm_tier3="elicit",
        default_timeout=33, max_timeout=333, max_output=40000, max_output_hard=400000,
        max_input_bytes=123456, max_sessions=7, max_jobs=9, yield_after=17, max_forwards=5,
        fanout_max_hosts=77, fanout_max_concurrency=11, max_conns=13, containment="subreaper",
    )  # fmt: skip
    (info,) = await calls(settings, ("server_info", {}))
    text = text_of(info)
    for expected in (
        "policy: mode guarded; tier-3 confirmation elicit; deny list set; allow list set",
        f"  deny: {DENY}",  # no OAuth: the operator's own client sees the patterns
        f"  allow: {ALLOW}",
        "time: 33 s by default, at most 333 s",
        "output: 40000 bytes by default, at most 400000 bytes",
        "input: at most 123456 bytes per argument",
        "sessions: 0 live of 7",
        "jobs: 0 of 9; a command still running after 17 s becomes a job",
        "fan-out: at most 77 hosts per call, 11 at once",
        "forwards: 0 open of 5; SSH connections: 0 open of 13",
        f"audit: {settings.audit_path} ok",
        "containment: subreaper (whatever a call leaves running is killed)",  # the mechanism in effect
    ):
        assert expected in text, (expected, text)
    assert "{" not in text  # readable lines, not a printed dict
    data = info.structured_content
    assert data["policy"] == {
        "mode": "guarded", "confirm_tier3": "elicit", "deny_list": True, "allow_list": True,
        "allow_protected": False, "deny": DENY, "allow": ALLOW,
    }  # fmt: skip
    assert data["jobs"] == {"count": 0, "max": 9}
    assert (data["containment"], data["tasks"]) == ("subreaper", ["2026-07-28", "2025-11-25"])
    assert (data["audit"]["anchor"], data["audit"]["ship"]) == (
        "off",
        "off",
    )  # the tests' settings turn it off
    assert "anchor off; shipped to off" in text
    assert data["limits"]["max_input_bytes"] == 123456


@pytest.mark.parametrize(("max_tier", "admin"), [(None, True), (3, True), (2, False), (0, False)])
async def test_only_an_admin_principal_reads_the_patterns(
    make_settings: Callable[..., Settings], max_tier: int | None, admin: bool
) -> None:
    settings = make_settings(policy_deny=DENY, policy_allow=ALLOW)
    server = build_server(settings)
    try:
        outcome = describe(server.services, Identity(subject="someone", max_tier=max_tier))
    finally:
        await server.services.aclose()
    assert is_admin(Identity(max_tier=max_tier)) is admin
    shown = outcome.text + repr(outcome.data)
    assert (DENY in shown, ALLOW in shown) == (admin, admin)
    assert "deny list set; allow list set" in outcome.text
    policy = outcome.data["policy"]
    assert isinstance(policy, dict) and (policy["deny_list"], policy["allow_list"]) == (True, True)
    assert ("deny" in policy) is admin


async def test_a_truncated_output_says_how_to_get_the_rest(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(max_output=4096)
    long, short, binary = await calls(
        settings,
        ("shell_exec", {"command": "seq 1 20000"}),
        ("shell_exec", {"command": "seq 1 3"}),
        ("shell_exec", {"command": "head -c 3000 /dev/zero"}),
    )
    assert long.structured_content["truncated"] is True
    last = text_of(long).splitlines()[-1]
    assert last.startswith(f"note: output truncated: the start and the end of {len(_seq(20000))} bytes")
    assert "| head -n" in last and "| grep" in last and "max_output" in last and "session_recv" in last
    assert "note:" not in text_of(short)
    assert binary.structured_content["binary"] is True
    assert "binary output of 3000 bytes, not shown" in text_of(binary)


def _seq(count: int) -> str:
    return "".join(f"{number}\n" for number in range(1, count + 1))
