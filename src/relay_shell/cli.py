"""The ``relay-shell`` command (docs/architecture.md, "Process life").

Exit codes: 0 normal (including SIGINT, SIGTERM and stdin EOF after an orderly teardown),
1 runtime failure, 2 configuration or check failure. Logs go to stderr only: stdout is the
stdio JSON-RPC channel.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from relay_shell.http import admin_cli

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2

log = logging.getLogger("relay_shell")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay-shell",
        description="Governed MCP server for shell and SSH operations (stdio or streamable HTTP).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--version", action="store_true", help="print the version and exit")
    mode.add_argument("--check-config", action="store_true", help="validate configuration without serving")
    mode.add_argument(
        "--verify-audit",
        action="store_true",
        help="verify the audit trail in PATH... (default: AUDIT_PATH and its rotated files)",
    )
    mode.add_argument(
        "--verify-deploy", action="store_true", help="compare installed deploy files with templates"
    )
    admin_cli.add_arguments(mode)
    mode.add_argument(
        "--explain",
        metavar="COMMAND",
        help="print how COMMAND is parsed and classified and what each policy mode would decide",
    )
    parser.add_argument(
        "--mode", choices=["open", "guarded", "readonly"], help="with --explain: only this policy mode"
    )
    parser.add_argument(
        "--templates-dir", type=Path, help="with --verify-deploy: templates to compare against"
    )
    parser.add_argument(
        "--install-prefix", type=Path, help="with --verify-deploy: root the installed files live under"
    )
    parser.add_argument(
        "--anchors",
        metavar="journald[:SOCKET]|FILE",
        help="with --verify-audit: check the trail against the anchors in journald or in a collector's file",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="with --verify-*, --check-config, --explain, --approve-login, --list-grants: machine-readable output",
    )
    parser.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="with --verify-audit: audit files"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the cyclic garbage collector is paused until the server is built.

    Start-up allocates some 150,000 objects that live as long as the process (modules,
    classes, the settings, the tools) and next to no garbage; collecting while they are
    made costs about a sixth of a cold start. Serving resumes collection with those objects
    frozen out of it (:func:`_resume_collection`); every other mode, and a failure, resumes
    it on return.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        if collecting and not gc.isenabled():
            gc.enable()


def _resume_collection() -> None:
    """The server is built: what start-up made is moved out of the collector's generations
    (``gc.freeze``: later collections do not scan it again) and collection resumes."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.paths or args.anchors) and not args.verify_audit:
        parser.error("PATH and --anchors go with --verify-audit")
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="relay-shell: %(levelname)s %(message)s"
    )
    if args.version or args.verify_deploy or args.verify_audit:
        return _without_settings(args)
    if args.check_config:
        from relay_shell.checks import main_check_config

        return main_check_config(args.json)
    if args.set_operator_passphrase:
        return admin_cli.set_operator_passphrase()
    from relay_shell.config import load_settings
    from relay_shell.errors import ConfigError

    try:
        return _with_settings(args, load_settings())
    except ConfigError as exc:
        print(f"relay-shell: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _without_settings(args: argparse.Namespace) -> int:
    """The modes that need no settings (``--verify-audit`` loads them itself only when needed)."""
    if args.version:
        import relay_shell

        print(f"relay-shell {relay_shell.__version__}")
        return EXIT_OK
    if args.verify_deploy:
        from relay_shell.deploy_check import main_verify_deploy

        return main_verify_deploy(args.templates_dir, args.install_prefix, args.json)
    return _verify_audit(args.paths, args.anchors, args.json)


def _with_settings(args: argparse.Namespace, settings: object) -> int:
    """The modes that need the settings: the OAuth admin verbs, explain, serve."""
    from relay_shell.config import Settings

    assert isinstance(settings, Settings)
    if admin_cli.wants_settings(args):
        return admin_cli.run(args, settings)
    if args.explain is not None:
        from relay_shell.policy.explain import main_explain

        return main_explain(args.explain, settings, args.mode, args.json)
    return _serve(settings)


def _verify_audit(paths: Sequence[Path], anchors: str | None, as_json: bool) -> int:
    """``--verify-audit``: loads the settings only when it needs them (audit_cli.py)."""
    from relay_shell.audit_cli import main_verify_audit
    from relay_shell.errors import ConfigError

    try:
        return main_verify_audit(paths, anchors, as_json)
    except ConfigError as exc:
        print(f"relay-shell: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _serve(settings: object) -> int:
    import anyio

    from relay_shell.config import Settings, Transport
    from relay_shell.errors import ConfigError

    assert isinstance(settings, Settings)
    _not_dumpable()
    try:
        if settings.transport is Transport.HTTP:
            _resume_collection()
            from relay_shell.http.serve import HttpStartFailed, serve_http

            try:
                anyio.run(serve_http, settings)
            except HttpStartFailed as exc:
                print(f"relay-shell: {exc}", file=sys.stderr)
                return EXIT_RUNTIME
        else:
            anyio.run(_serve_stdio, settings)
    except KeyboardInterrupt:
        return EXIT_OK
    except ConfigError:
        raise  # found while building the server (OAuth state, allowed hosts, containment, the audit file's lock)
    except Exception:
        log.exception("server failed")
        return EXIT_RUNTIME
    return EXIT_OK


def _not_dumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)``: processes of the same user cannot ptrace the server or
    read its ``/proc/<pid>/mem``, ``fd`` and ``environ``. Logged, not fatal, where unsupported."""
    import ctypes

    pr_set_dumpable = 4
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError):
        log.warning("prctl is not available; the server stays dumpable")


async def _serve_stdio(settings: object) -> None:
    import anyio

    from relay_shell.app import build_server
    from relay_shell.config import Settings
    from relay_shell.startup import announce

    assert isinstance(settings, Settings)
    server = build_server(settings)
    _resume_collection()
    services = server.services
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_exit_on_signal, services)
            services.on_started = lambda: announce(settings, services.facts())
            await server.run_stdio_async()  # the lifespan starts the services and stops them at EOF
            tasks.cancel_scope.cancel()  # stdin EOF: the client went away
    finally:
        with anyio.CancelScope(shield=True):
            await services.aclose()  # idempotent: also when serving failed before the lifespan ran


async def _exit_on_signal(services: object) -> None:
    """SIGTERM/SIGINT/SIGHUP: tear everything down, then exit 0.

    The teardown first cancels the calls in flight and waits for their audit records
    (``outcome: cancelled``); each kills what it started. The stdio transport reads stdin
    in a worker thread that cannot be interrupted, so a cancelled task group would wait for
    the next input line forever; after the orderly teardown (calls, sessions, forwards,
    connections, containment, audit sink) the process exits directly.
    """
    import os

    import anyio

    from relay_shell.services import Services

    assert isinstance(services, Services)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.warning("received %s, shutting down", signal.Signals(signum).name)
            with anyio.CancelScope(shield=True), anyio.move_on_after(30):
                await services.aclose()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_OK)
