"""Admission: every mode x tier, deny first, allow only in guarded, canonical IP forms."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay_shell.config import PolicyMode, Settings
from relay_shell.errors import Decision
from relay_shell.governance.policy import PolicyConfig, build_probe, canonical_ip_forms, decide


def config(mode: PolicyMode, deny: str | None = None, allow: str | None = None) -> PolicyConfig:
    return PolicyConfig(
        mode=mode,
        deny=re.compile(deny) if deny is not None else None,
        allow=re.compile(allow) if allow is not None else None,
    )


# (mode, tier) -> (allowed, rule) with no deny and no allow list
MODE_TIER = [
    (PolicyMode.OPEN, 0, True, None),
    (PolicyMode.OPEN, 1, True, None),
    (PolicyMode.OPEN, 2, True, None),
    (PolicyMode.OPEN, 3, True, None),
    (PolicyMode.GUARDED, 0, True, None),
    (PolicyMode.GUARDED, 1, True, None),
    (PolicyMode.GUARDED, 2, False, "mode:guarded"),
    (PolicyMode.GUARDED, 3, False, "mode:guarded"),
    (PolicyMode.READONLY, 0, True, None),
    (PolicyMode.READONLY, 1, False, "mode:readonly"),
    (PolicyMode.READONLY, 2, False, "mode:readonly"),
    (PolicyMode.READONLY, 3, False, "mode:readonly"),
]


@pytest.mark.parametrize(("mode", "tier", "allowed", "rule"), MODE_TIER)
def test_every_mode_and_tier(mode: PolicyMode, tier: int, allowed: bool, rule: str | None) -> None:
    decision = decide(config(mode), "local_exec", tier, "local_exec uptime")
    assert (decision.allowed, decision.tier, decision.rule, decision.mode) == (
        allowed,
        tier,
        rule,
        mode.value,
    )


@pytest.mark.parametrize("mode", list(PolicyMode))
@pytest.mark.parametrize("tier", [0, 1, 2, 3])
def test_deny_comes_first_in_every_mode_and_tier(mode: PolicyMode, tier: int) -> None:
    # the allow list matches too: deny still wins
    decision = decide(config(mode, deny=r"secret-db", allow=r"."), "ssh_exec", tier, "ssh_exec ls\nsecret-db")
    assert (decision.allowed, decision.rule, decision.tier) == (False, "deny", tier)


@pytest.mark.parametrize("mode", list(PolicyMode))
def test_deny_that_does_not_match_changes_nothing(mode: PolicyMode) -> None:
    assert decide(config(mode, deny=r"^never$"), "server_info", 0, "server_info ").allowed


@pytest.mark.parametrize(
    ("probe", "tier", "allowed", "rule"),
    [
        ("local_exec systemctl restart nginx", 2, True, "allow"),
        ("local_exec rm -rf /srv/cache/nginx", 3, True, "allow"),
        ("local_exec systemctl restart postgres", 2, False, "mode:guarded"),
        ("local_exec rm -rf /srv/data", 3, False, "mode:guarded"),
        ("local_exec ls", 1, True, None),  # tier 1 never needs the allow list
    ],
)
def test_allow_admits_tier_2_and_3_in_guarded(probe: str, tier: int, allowed: bool, rule: str | None) -> None:
    decision = decide(config(PolicyMode.GUARDED, allow=r"nginx"), "local_exec", tier, probe)
    assert (decision.allowed, decision.rule) == (allowed, rule)


def test_allow_does_not_widen_readonly() -> None:
    decision = decide(config(PolicyMode.READONLY, allow=r"."), "local_exec", 1, "local_exec ls")
    assert (decision.allowed, decision.rule) == (False, "mode:readonly")


def test_allow_is_not_needed_in_open() -> None:
    decision = decide(
        config(PolicyMode.OPEN, allow=r"^nothing-matches$"), "local_exec", 3, "local_exec reboot"
    )
    assert (decision.allowed, decision.rule) == (True, None)


@pytest.mark.parametrize(
    ("decision_config", "tier", "variable"),
    [
        (config(PolicyMode.GUARDED), 3, "RELAY_SHELL_POLICY_ALLOW"),
        (config(PolicyMode.READONLY), 2, "RELAY_SHELL_POLICY_MODE"),
        (config(PolicyMode.OPEN, deny="rm"), 3, "RELAY_SHELL_POLICY_DENY"),
    ],
)
def test_refusal_reason_tells_the_model_to_ask_the_operator(
    decision_config: PolicyConfig, tier: int, variable: str
) -> None:
    decision = decide(
        decision_config, "local_exec", tier, "local_exec rm -rf /srv", classified_by="deletion.rm_recursive"
    )
    assert not decision.allowed
    assert "refused by policy" in decision.reason
    assert "ask the operator" in decision.reason
    assert "do not retry with a rephrased command" in decision.reason
    assert variable in decision.reason
    assert f"tier {tier}" in decision.reason
    assert "deletion.rm_recursive" in decision.reason


def test_guarded_reason_names_mode_tier_and_rule() -> None:
    decision = decide(config(PolicyMode.GUARDED), "local_exec", 3, "p", classified_by="deletion.rm_recursive")
    assert "(mode guarded, local_exec, tier 3 IRREVERSIBLE rule deletion.rm_recursive)" in decision.reason


@pytest.mark.parametrize("tier", [-1, 4])
def test_tier_outside_0_to_3_is_a_programming_error(tier: int) -> None:
    with pytest.raises(ValueError, match="tier"):
        decide(config(PolicyMode.OPEN), "local_exec", tier, "probe")


def test_decision_type_is_the_shared_one() -> None:
    assert isinstance(decide(config(PolicyMode.OPEN), "server_info", 0, "server_info "), Decision)


# --- settings ------------------------------------------------------------------------------------


def test_from_settings_compiles_the_lists(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        policy_mode="guarded", policy_deny=r"(?i)prod-db", policy_allow=r"^local_exec ls\b"
    )
    policy = PolicyConfig.from_settings(settings)
    assert policy.mode is PolicyMode.GUARDED
    assert policy.deny is not None and policy.deny.search("ssh_exec x\nPROD-DB:22")
    assert policy.allow is not None and policy.allow.search("local_exec ls -la")


def test_from_settings_unset_and_blank_lists_are_none(make_settings: Callable[..., Settings]) -> None:
    policy = PolicyConfig.from_settings(make_settings(policy_deny="  "))
    assert (policy.mode, policy.deny, policy.allow) == (PolicyMode.OPEN, None, None)


# --- targets and the probe ----------------------------------------------------------------------

IP_FORMS = [
    ("127.0.0.1", ["127.0.0.1"]),
    ("0x7f000001", ["127.0.0.1"]),
    ("0X7F000001", ["127.0.0.1"]),
    ("2130706433", ["127.0.0.1"]),
    ("127.1", ["127.0.0.1"]),
    ("127.0.1", ["127.0.0.1"]),
    ("0177.0.0.1", ["127.0.0.1"]),
    ("0x7f.1", ["127.0.0.1"]),
    ("017700000001", ["127.0.0.1"]),
    ("::ffff:127.0.0.1", ["::ffff:7f00:1", "127.0.0.1"]),
    ("[::ffff:7f00:1]:22", ["::ffff:7f00:1", "127.0.0.1"]),
    ("[::1]", ["::1"]),
    ("[::1]:2222", ["::1"]),
    ("0:0:0:0:0:0:0:1", ["::1"]),
    ("fe80::1%eth0", ["fe80::1"]),
    ("user@0x7f000001:2222", ["127.0.0.1"]),
    ("root@127.1", ["127.0.0.1"]),
    ("ssh://deploy@2130706433:22/srv", ["127.0.0.1"]),
    ("0x7f000001:5432", ["127.0.0.1"]),
    ("jump@10.1,web@0xa000002:22", ["10.0.0.1", "10.0.0.2"]),
    ("web1", []),
    ("localhost", []),
    ("deploy@web1.example.com:22", []),
    ("/etc/hosts", []),
    ("web1:/srv/data", []),
    ("256.1.1.1", []),
    ("1.2.3.4.5", []),
    ("08.0.0.1", []),
    ("0x", []),
    ("127.0.0.1.nip.io", []),
    ("", []),
    ("9" * 5000, []),
    ("0x" + "f" * 5000, []),
]


@pytest.mark.parametrize(("target", "forms"), IP_FORMS)
def test_canonical_ip_forms(target: str, forms: list[str]) -> None:
    assert canonical_ip_forms(target) == forms


LOOPBACK_SPELLINGS = [
    "0x7f000001",
    "2130706433",
    "127.1",
    "0177.0.0.1",
    "::ffff:127.0.0.1",
    "user@0x7f000001:2222",
    "[::ffff:127.0.0.1]:22",
]


@pytest.mark.parametrize("mode", list(PolicyMode))
@pytest.mark.parametrize("target", LOOPBACK_SPELLINGS)
def test_deny_on_loopback_catches_every_spelling(mode: PolicyMode, target: str) -> None:
    probe = build_probe("ssh_exec", "uptime", [target])
    decision = decide(config(mode, deny=r"(^|\s|@)127\.0\.0\.1(\s|:|$)"), "ssh_exec", 0, probe)
    assert (decision.allowed, decision.rule) == (False, "deny")


def test_probe_carries_tool_text_targets_and_forms() -> None:
    probe = build_probe("ssh_upload", "local.txt", ["deploy@0x7f000001:2222", "/srv/app/remote.txt", "web1"])
    assert probe.splitlines() == [
        "ssh_upload local.txt",
        "deploy@0x7f000001:2222 127.0.0.1",
        "/srv/app/remote.txt",
        "web1",
    ]


def test_probe_without_targets_is_tool_and_text() -> None:
    assert build_probe("local_exec", "ls -la", []) == "local_exec ls -la"


def test_deny_can_name_a_tool() -> None:
    probe = build_probe("ssh_forward", "", ["db.internal:5432"])
    assert not decide(config(PolicyMode.OPEN, deny=r"^ssh_forward "), "ssh_forward", 2, probe).allowed
    assert decide(config(PolicyMode.OPEN, deny=r"^ssh_forward "), "ssh_exec", 2, "ssh_exec ls").allowed


@given(st.text(max_size=200))
def test_canonical_ip_forms_never_raises(target: str) -> None:
    forms = canonical_ip_forms(target)
    assert all(isinstance(form, str) and form for form in forms)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_every_ipv4_number_spelling_is_canonical(number: int) -> None:
    dotted = ".".join(str((number >> shift) & 0xFF) for shift in (24, 16, 8, 0))
    assert canonical_ip_forms(str(number)) == [dotted]
    assert canonical_ip_forms(hex(number)) == [dotted]
    assert canonical_ip_forms(f"user@{dotted}:22") == [dotted]
