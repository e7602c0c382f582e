"""The policy environment of a server whose own files live under one directory."""

from __future__ import annotations

from pathlib import Path

from relay_shell.config import load_settings
from relay_shell.policy.analyze import PolicyEnvironment


def server_files_environment(root: Path) -> PolicyEnvironment:
    """A :class:`PolicyEnvironment` protecting the files of a server configured under ``root``
    (audit trail, SSH config and known hosts, OAuth state, inventory, env file, recordings)."""
    (root / "audit").mkdir(parents=True, exist_ok=True)
    (root / "audit" / "audit.jsonl").write_text("")
    settings = load_settings(
        audit_path=root / "audit" / "audit.jsonl",
        ssh_config=root / "ssh_config",
        ssh_known_hosts_file=root / "known_hosts",
        auth_state_dir=root / "oauth",
        inventory=root / "inventory.json",
        env_file=root / "relay.env",
        session_record_dir=root / "recordings",
    )
    return PolicyEnvironment.from_settings(settings)
