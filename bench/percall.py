"""Per-call work of relay-shell, in one process and independent of the machine's load.

Not a figure of the table: a profiling aid for P1, P2 and P8. relay-shell is built in this
process (default settings, audit on, containment ``auto``, no anchor) and called through the
official client on the in-memory transport; a real OpenSSH sshd (``tests/sshd.py``) serves
``ssh_exec``. For ``shell_exec true``, ``ssh_exec true`` (pooled) and ``server_info`` it
prints the Python function calls per MCP call (client and server together, cProfile's count:
it does not move with the load of the machine, unlike any time), how many of them are
relay-shell's own, and with ``--top N`` the N relay-shell functions with the most cumulative
time.

    .venv/bin/python bench/percall.py [--calls 100] [--top 0]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats

from common import in_process_settings, state_dir
from tests.sshd import ClientKey, start_sshd


async def main(calls: int, top: int) -> None:
    from mcp import Client

    from relay_shell.app import build_server

    state = state_dir()
    key = ClientKey.create(state)
    instance = start_sshd(key)
    try:
        os.chdir(state)
        settings = in_process_settings(state)
        server = build_server(settings)
        work: dict[str, tuple[str, dict[str, object]]] = {
            "shell_exec true": ("shell_exec", {"command": "true"}),
            "ssh_exec true": (
                "ssh_exec",
                {"host": instance.target(), "command": "true", "key_path": str(key.private_path)},
            ),
            "server_info": ("server_info", {}),
        }
        async with Client(server) as client:
            for label, (tool, arguments) in work.items():
                for _ in range(20):  # warm: imports, the SSH pool, caches
                    if (await client.call_tool(tool, arguments)).is_error:
                        raise RuntimeError(f"{tool} failed")
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(calls):
                    await client.call_tool(tool, arguments)
                profile.disable()
                stats = pstats.Stats(profile, stream=io.StringIO())
                own = sum(entry[1] for where, entry in stats.stats.items() if "relay_shell" in where[0])  # type: ignore[attr-defined]
                print(
                    f"{label}: {stats.total_calls / calls:.0f} Python function calls per call "  # type: ignore[attr-defined]
                    f"({own / calls:.0f} in relay_shell)"
                )
                if top:
                    out = io.StringIO()
                    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats("relay_shell", top)
                    print(out.getvalue())
    finally:
        instance.remove()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--top", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.top))
