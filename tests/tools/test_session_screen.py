"""Screen reads through an MCP client, against the real vim, less, top and htop on a local PTY."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp import Client

from tests.conftest import sc

PROMPT = r"\$ $"


async def shell(client: Client, tmp_path: Path, cols: int = 80, rows: int = 24) -> str:
    """A bash without start-up files, prompt ``$ ``, in ``tmp_path``; returns its id once it prompts."""
    result = await client.call_tool(
        "shell_spawn",
        {
            "command": "bash --norc --noprofile -i",
            "cols": cols,
            "rows": rows,
            "cwd": str(tmp_path),
            "env": {
                "PS1": "$ ",
                "HOME": str(tmp_path),
                "TERM": "xterm-256color",
                "LESS": "",
                "LESSHISTFILE": "-",
            },
        },
    )
    assert result.is_error is False, result.content[0].text
    session_id = str(sc(result)["session_id"])
    await recv(client, session_id, until=PROMPT)
    return session_id


async def recv(client: Client, session_id: str, **args: Any) -> dict[str, Any]:
    """session_recv; with ``until`` it must match (within 15 s)."""
    result = await client.call_tool("session_recv", {"session_id": session_id, "timeout": 15, **args})
    assert result.is_error is False, result.content[0].text
    data = sc(result)
    if "until" in args:
        assert data["matched"] is True, result.content[0].text
    data["text"] = result.content[0].text
    return data


async def send(client: Client, session_id: str, data: str = "", **args: Any) -> None:
    result = await client.call_tool("session_send", {"session_id": session_id, "data": data, **args})
    assert result.is_error is False, result.content[0].text


async def test_vim_screen_then_back_to_the_shell_stream(client: Client, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("one\ntwo\nthree\n")
    session_id = await shell(client, tmp_path)
    await send(client, session_id, "vim -u NONE -i NONE f.txt")
    data = await recv(client, session_id, until=r"^three$")
    assert data["mode"] == "screen"
    screen = data["screen"]
    assert screen["rows"][:3] == ["one", "two", "three"]
    assert screen["rows"][3:23] == ["~"] * 20  # the rest of the 24 rows is ~, then the status line
    assert '"f.txt"' in screen["rows"][23]
    assert screen["cursor"] == {"row": 0, "col": 0}
    assert (screen["width"], screen["height"]) == (80, 24)
    assert data["output"] == "\n".join(screen["rows"])
    assert len(data["text"].encode()) < 1024  # the whole answer a model reads

    await send(client, session_id, enter=False, keys=["Delete"])  # a named key through real vim
    data = await recv(client, session_id, until=r"^ne$")
    assert data["screen"]["rows"][:3] == ["ne", "two", "three"]

    await send(client, session_id, ":q!")
    data = await recv(client, session_id, until=PROMPT)
    assert data["mode"] == "stream"
    assert data.get("screen") is None
    assert data["output"].strip() == "$"  # vim's drawing was superseded: only the prompt is left
    await send(client, session_id, "echo back-$((6*7))")
    data = await recv(client, session_id, until=r"^back-42$")
    assert data["mode"] == "stream"


async def test_less_space_shows_the_second_page(client: Client, tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text("".join(f"line {n} of the file\n" for n in range(1, 201)))
    session_id = await shell(client, tmp_path)
    await send(client, session_id, "less long.txt")
    data = await recv(client, session_id, until=r"^line 23 of the file$")
    assert data["mode"] == "screen"
    assert data["screen"]["rows"][0] == "line 1 of the file"
    await send(client, session_id, " ", enter=False)
    data = await recv(client, session_id, until=r"^line 46 of the file$")
    rows = data["screen"]["rows"]
    assert rows[0] == "line 24 of the file"
    assert rows[22] == "line 46 of the file"
    await send(client, session_id, "q", enter=False)
    assert (await recv(client, session_id, until=PROMPT))["mode"] == "stream"


async def test_top_screen_has_its_header_and_follows_a_resize(client: Client, tmp_path: Path) -> None:
    session_id = await shell(client, tmp_path)
    await send(client, session_id, "top -d 1")
    data = await recv(client, session_id, until=r"PID +USER")
    assert data["mode"] == "screen"  # top repaints in place (no alternate screen): auto renders it too
    rows = data["screen"]["rows"]
    assert rows[0].startswith("top - ")
    assert rows[1].startswith("Tasks:")
    assert any(row.lstrip().startswith("PID") for row in rows)
    assert all(len(row) <= 80 for row in rows)
    await send(client, session_id, "q", enter=False)
    data = await recv(client, session_id, until=PROMPT)
    assert data["mode"] == "stream"
    assert "PID" not in data["output"]  # top's frames were superseded

    # A process whose command line is longer than any width, shown alone (-p) with its command
    # line (-c): its row fills whatever width top draws at.
    await send(client, session_id, """(exec -a "$(printf 'x%.0s' $(seq 200))" sleep 300) &""")
    await recv(client, session_id, until=PROMPT)
    await send(client, session_id, "top -c -d 1 -p $!")
    data = await recv(client, session_id, until=r"xxx\+$")  # cut at 80 columns, with a +
    assert max(len(row) for row in data["screen"]["rows"]) <= 80
    resized = await client.call_tool("session_resize", {"session_id": session_id, "cols": 120, "rows": 30})
    assert resized.is_error is False
    data = await recv(client, session_id, until=r"^.{81,}$")  # top redrew at the new width
    assert (data["screen"]["width"], data["screen"]["height"]) == (120, 30)
    assert data["screen"]["rows"][0].startswith("top - ")
    assert max(len(row) for row in data["screen"]["rows"]) <= 120
    await send(client, session_id, "q", enter=False)
    assert (await recv(client, session_id, until=PROMPT))["mode"] == "stream"


async def test_htop_screen_has_its_header(client: Client, tmp_path: Path) -> None:
    session_id = await shell(client, tmp_path, cols=100, rows=30)
    await send(client, session_id, "htop")
    data = await recv(client, session_id, until=r"F10Quit")
    assert data["mode"] == "screen"
    rows = data["screen"]["rows"]
    assert any("Mem[" in row for row in rows)
    assert any(row.lstrip().startswith("PID USER") for row in rows)
    assert rows[-1].startswith("F1Help")
    await send(client, session_id, enter=False, keys=["F10"])
    assert (await recv(client, session_id, until=PROMPT))["mode"] == "stream"


async def test_screen_always_and_never(client: Client, tmp_path: Path) -> None:
    session_id = await shell(client, tmp_path)
    await send(client, session_id, "printf 'a\\rb\\n'")
    data = await recv(client, session_id, until=r"^b\n\$$", screen="always")
    assert data["mode"] == "screen"
    assert data["screen"]["rows"][-2:] == ["b", "$"]  # the carriage return overwrote a, as on a terminal
    await send(client, session_id, "printf '\\033[?1049hALT'")
    data = await recv(client, session_id, until="ALT", screen="never")
    assert data["mode"] == "stream"
    assert data.get("screen") is None


async def test_quiet_ms_waits_for_the_output_to_pause(client: Client, tmp_path: Path) -> None:
    session_id = await shell(client, tmp_path)
    await send(client, session_id, "for n in 1 2 3; do echo step-$n; sleep 0.2; done")
    data = await recv(client, session_id, quiet_ms=1000)
    assert data["mode"] == "stream"
    assert [line for line in data["output"].splitlines() if line.startswith("step-")] == [
        "step-1",
        "step-2",
        "step-3",
    ]


async def test_sessions_beyond_the_render_cap_stream_with_a_note(client: Client, tmp_path: Path) -> None:
    session_id = await shell(client, tmp_path, cols=600, rows=40)
    await send(client, session_id, "echo wide")
    data = await recv(client, session_id, until=r"^wide$", screen="always")
    assert data["mode"] == "stream"
    assert any("500x200" in note for note in data["notes"])
