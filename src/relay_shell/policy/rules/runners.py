"""Task runners: tools that run commands or files from the working tree.

``make``, ``npx``, ``pytest``, ``tox``, ``cargo run``, ``go test``, ``uv run``, ``deno``,
terminal multiplexers, ``parallel``... are opaque (family ``opaque``, tier 2 at least):
what they run is in files the classifier does not read. Their version, help and listing
forms stay tier 1; a multiplexer also makes the session interactive and tainted.
"""

from __future__ import annotations

from relay_shell.policy.model import REVERSIBLE, Verdict, opaque
from relay_shell.policy.rules.base import Invocation, rule

_RUNNERS = (
    "make",
    "gmake",
    "bmake",
    "just",
    "tox",
    "nox",
    "pytest",
    "py.test",
    "mvn",
    "mvnw",
    "gradle",
    "gradlew",
    "ant",
    "sbt",
    "lein",
    "rake",
    "invoke",
    "inv",
    "fab",
    "ansible",
    "ansible-playbook",
    "ansible-pull",
    "salt",
    "salt-call",
    "pre-commit",
    "cmake",
    "ctest",
    "meson",
    "ninja",
    "scons",
    "bazel",
    "bazelisk",
    "buck",
    "buck2",
    "dotnet",
    "mix",
    "rebar3",
    "npx",
    "bunx",
    "pnpx",
    "turbo",
    "nx",
    "lerna",
    "rush",
    "nodemon",
    "jest",
    "vitest",
    "mocha",
    "phpunit",
    "rspec",
    "cucumber",
    "behave",
    "hatch",
    "pdm",
    "poetry",
    "pipenv",
    "uvx",
    "tsc",
    "webpack",
    "vite",
    "parallel",
    "sem",
    "tmux",
    "screen",
    "byobu",
    "zellij",
    "dtach",
    "abduco",
    "xterm",
    "gnome-terminal",
    "konsole",
    "urxvt",
    "kitty",
    "alacritty",
    "xdg-open",
    "open",
    "gio",
    "sensible-browser",
    "x-www-browser",
    "firefox",
    "chromium",
    "google-chrome",
    "bundle",
    "start-stop-daemon",
    "run-parts",
    "crun",
    "runc",
    "direnv",
    "asdf",
    "mise",
    "nvm",
    "pyenv",
    "rbenv",
    "entr",
)
_READ_VERBS = {"--version", "-V", "version", "--help", "-h", "help", "--list", "-l", "list", "show", "info"}


@rule(*_RUNNERS)
def task_runner(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if texts and not invocation.dynamic() and set(texts) <= _READ_VERBS:
        return Verdict(REVERSIBLE, "tools.runner_query")
    if invocation.name in ("tmux", "screen", "byobu", "zellij"):
        invocation.interactive = True
        invocation.taints = True
    return opaque("opaque.task_runner", f"{invocation.name} runs commands or files from the working tree")


_CARGO_SAFE = {
    "--version",
    "-V",
    "search",
    "help",
    "metadata",
    "tree",
    "pkgid",
    "locate-project",
    "verify-project",
    "version",
    "owner",
    "login",
    "logout",
    "yank",
    "fmt",
}
_GO_SAFE = {"version", "env", "list", "doc", "help", "fmt", "mod"}


def runner_subcommand(invocation: Invocation) -> Verdict | None:
    """``cargo``/``go``/``uv``/``deno`` subcommands that run code (None: leave it to the package rule)."""
    operands = [word for word in invocation.args if not word.text.startswith("-")]
    verb = operands[0].text if operands and operands[0].literal else ("?" if operands else None)
    if invocation.name == "cargo" and verb not in _CARGO_SAFE | {
        "install",
        "uninstall",
        "update",
        "add",
        "remove",
    }:
        return opaque("opaque.task_runner", f"cargo {verb or ''} builds and runs code of the working tree")
    if invocation.name == "go" and verb in ("run", "test", "generate", "build", "vet", "tool", "?"):
        return opaque("opaque.task_runner", f"go {verb} builds and runs code of the working tree")
    if invocation.name == "uv" and verb in ("run", "tool", "sync", "build", "?"):
        return opaque("opaque.task_runner", f"uv {verb} runs code of the working tree")
    if invocation.name == "deno":
        if verb in ("eval",):
            return opaque("opaque.inline_code", "deno eval runs code given inline")
        if verb not in ("--version", "-V", "help", "info", "fmt", "lint", "doc"):
            return opaque("opaque.task_runner", f"deno {verb or ''} runs code")
    return None


@rule("deno")
def deno(invocation: Invocation) -> Verdict:
    return runner_subcommand(invocation) or Verdict(REVERSIBLE, "tools.runner_query")
