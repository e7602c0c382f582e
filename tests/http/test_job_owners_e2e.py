"""Jobs belong to the grant that started them, on the real HTTP server with builtin OAuth.

Two consents through the consent page make two principals: a ``read`` grant and an ``admin``
grant of the same client. The read grant cannot read, consume, feed or stop the admin's job
and does not see it listed; the admin reads and stops the read grant's job. A refused read
takes nothing from the job: its owner still reads every byte afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import read_audit
from tests.http.consent_flow import cheap_hash
from tests.http.test_auth_e2e import REDIRECT, bearer_client, token_for
from tests.http.test_http_e2e import RelayProcess, running_relay

READ = "relay-shell:read"
ADMIN = "relay-shell:admin"
MARKER = "admin-only-output-7f3a"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    with running_relay(
        tmp_path_factory.mktemp("relay-owners"),
        RELAY_SHELL_AUTH_ENABLED="true",
        RELAY_SHELL_AUTH_ISSUER="http://127.0.0.1:{port}",
        RELAY_SHELL_AUTH_OPERATOR_HASH=cheap_hash(),
    ) as relay:
        yield relay


@pytest.fixture(scope="module")
def client_id(relay: RelayProcess) -> str:
    with relay.http() as http:
        response = http.post(
            "/register",
            json={
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "scope": f"{READ} relay-shell:operate {ADMIN}",
                "client_name": "owners-e2e",
            },
        )
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


def sc(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None
    return dict(result.structured_content)


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def refusal(result: Any) -> tuple[str, str | None]:
    assert result.is_error is True, text_of(result)
    error = sc(result)["error"]
    return error["kind"], error.get("rule")


async def test_a_read_grant_cannot_touch_an_admin_grants_job(relay: RelayProcess, client_id: str) -> None:
    read = token_for(relay, client_id, READ)
    admin = token_for(relay, client_id, ADMIN)
    async with bearer_client(relay, admin["access_token"]) as owner:
        # the marker is printed only after the yield, so it is still unread in the job's buffer
        started = sc(
            await owner.call_tool(
                "shell_exec", {"command": f"sleep 1; echo {MARKER}; sleep 60", "yield_after": 0.2}
            )
        )
        assert started["status"] == "running"
        job = started["job_id"]
        async with bearer_client(relay, read["access_token"]) as reader:
            recv = await reader.call_tool("session_recv", {"session_id": job, "until": MARKER, "timeout": 5})
            assert refusal(recv) == ("denied", "owner")
            assert MARKER not in text_of(recv)
            assert refusal(await reader.call_tool("session_kill", {"session_id": job}))[0] == "denied"
            assert refusal(await reader.call_tool("session_send", {"session_id": job, "data": "x"}))[0] in (
                "denied",
                "invalid",  # a job takes no input from anyone
            )
            listed = sc(await reader.call_tool("session_list", {}))
            assert job not in [row["session_id"] for row in listed["sessions"]]
        read_back = sc(
            await owner.call_tool("session_recv", {"session_id": job, "until": MARKER, "timeout": 10})
        )
        assert read_back["matched"] is True
        assert MARKER in read_back["output"]  # the refused read consumed nothing
        assert (await owner.call_tool("session_kill", {"session_id": job})).is_error is False
    denials = [r for r in read_audit(relay.audit_path) if r.get("rule") == "owner"]
    assert [(r["tool"], r["decision"]) for r in denials] == [("session_recv", "denied")]
    assert denials[0]["principal"] not in ("", None)
    assert denials[0]["principal"] != started_principal(relay, job)


async def test_an_admin_grant_reads_and_stops_a_read_grants_job(relay: RelayProcess, client_id: str) -> None:
    read = token_for(relay, client_id, READ)
    admin = token_for(relay, client_id, ADMIN)
    async with bearer_client(relay, read["access_token"]) as reader:
        started = sc(
            await reader.call_tool("shell_exec", {"command": "tail -f /dev/null", "yield_after": 0.2})
        )
        assert (started.get("status"), started["tier"]) == ("running", 0), started  # a read: tier 0
        job = started["job_id"]
        async with bearer_client(relay, admin["access_token"]) as other:
            listed = sc(await other.call_tool("session_list", {}))
            assert job in [row["session_id"] for row in listed["sessions"]]
            recv = await other.call_tool("session_recv", {"session_id": job, "timeout": 0.1})
            assert recv.is_error is False
            assert sc(recv)["state"] == "running"
            assert (await other.call_tool("session_kill", {"session_id": job})).is_error is False
        ended = sc(await reader.call_tool("session_recv", {"session_id": job, "timeout": 10}))
        assert (ended["ended"], ended["outcome"]) == (True, "cancelled")


def started_principal(relay: RelayProcess, job: str) -> str:
    """The principal on the start record of the call that became ``job``."""
    return next(
        str(r["principal"])
        for r in read_audit(relay.audit_path)
        if r.get("job_id") == job and r["tool"] == "shell_exec"
    )
