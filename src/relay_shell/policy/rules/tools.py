"""Programs that run other commands: remote shells, xargs, schedulers, editors, sockets.

* ``ssh HOST CMD`` classifies ``CMD`` as remote shell text; ``-o ProxyCommand``,
  ``LocalCommand``, ``KnownHostsCommand`` and ``-F`` make it opaque; forwards are tier 2.
* ``xargs CMD``, ``watch CMD``, ``flock FILE CMD``, ``script -c CMD``, ``sg GROUP CMD``:
  the command is classified recursively (xargs adds arguments at run time: worst case).
* Editors and debuggers, ``at``, ``socat EXEC:``, ``nc -e`` and options that name a
  program (``sort --compress-program``, ``rg --pre``, ``tcpdump -z``...) are opaque; task
  runners are in :mod:`relay_shell.policy.rules.runners`.
"""

from __future__ import annotations

import re

from relay_shell.policy.model import REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import Parsed, first_operand_index, parse_options, spec
from relay_shell.policy.rules.base import Invocation, Stdin, rule
from relay_shell.policy.words import Word

_SSH = spec("46AaCfGgKkMNnqsTtVvXxYy", "BbcDEeFIiJLlmOoPpQRSWw", permute=False)
_SSH_COMMAND_OPTIONS = re.compile(
    r"(?i)\s*(proxycommand|localcommand|permitlocalcommand|knownhostscommand|match|include|"
    r"remotecommand|proxyusefdpass|securitykeyprovider|pkcs11provider|sshaskpass)\b\s*=?\s*(.*)",
    re.DOTALL,
)


@rule("ssh", "autossh", worst=opaque("opaque.ssh", "ssh with expansions among its options"))
def ssh(invocation: Invocation) -> Verdict:
    parsed = parse_options(invocation.args, _SSH)
    if parsed.dynamic or parsed.dynamic_values:
        return opaque("opaque.ssh", "ssh with expansions among its options")
    verdict = _ssh_options(invocation, parsed)
    operands = parsed.operands
    if len(operands) > 1:
        words = operands[1:]
        if not all(word.literal for word in words):
            return verdict.worst(opaque("opaque.ssh", "ssh runs a remote command built from expansions"))
        text = " ".join(word.text for word in words)
        return verdict.worst(
            invocation.nested.shell(text, "ssh remote command", remote=True, stdin=invocation.stdin)
        )
    if parsed.has("-N", "-W"):
        return verdict
    return verdict.worst(_remote_shell_stdin(invocation))


def _ssh_options(invocation: Invocation, parsed: Parsed) -> Verdict:
    """``-o`` options that run commands, ``-F`` configurations, forwards."""
    verdict = Verdict(REVERSIBLE, "remote.ssh")
    for value in parsed.values("-o"):
        match = _SSH_COMMAND_OPTIONS.match(value)
        if match is None:
            continue
        if match.group(1).lower() == "remotecommand":
            verdict = verdict.worst(invocation.nested.shell(match.group(2), "ssh RemoteCommand", remote=True))
        elif match.group(1).lower() != "permitlocalcommand" or match.group(2).strip().lower() == "yes":
            verdict = verdict.worst(opaque("opaque.ssh", f"ssh -o {match.group(1)} runs a local command"))
    if parsed.has("-F") and parsed.values("-F") != ["/dev/null"]:
        verdict = verdict.worst(opaque("opaque.ssh", "ssh -F reads a configuration that can run commands"))
    if parsed.has("-L", "-R", "-D", "-w", "-M", "-S"):
        verdict = verdict.worst(Verdict(STATEFUL, "remote.ssh_forward"))
    return verdict


def _remote_shell_stdin(invocation: Invocation) -> Verdict:
    """``ssh host`` without a command: the remote shell runs what it reads on stdin."""
    remote_stdin = invocation.stdin
    if remote_stdin.text is not None:
        return invocation.nested.shell(remote_stdin.text, "ssh stdin", remote=True, stdin=Stdin("empty"))
    if remote_stdin.source == "terminal":
        invocation.interactive = True
    if remote_stdin.source in ("empty", "terminal"):
        return Verdict(REVERSIBLE, "remote.ssh")
    return opaque("opaque.pipe_to_shell", f"a remote shell reads commands from {remote_stdin.label}")


@rule("scp", "sftp", "ssh-copy-id")
def scp(invocation: Invocation) -> Verdict:
    parsed = parse_options(invocation.args, spec("346ABCpqrTvaRdf", "cFiJloPSbDsXz"))
    verdict = Verdict(REVERSIBLE, "remote.copy")
    if invocation.name == "ssh-copy-id":
        verdict = Verdict(STATEFUL, "etc_writes.ssh_dir")
    if (
        parsed.dynamic
        or parsed.has("-S", "-F", "-D", "-b")
        or any(_SSH_COMMAND_OPTIONS.match(value) for value in parsed.values("-o"))
    ):
        return verdict.worst(
            opaque("opaque.ssh", f"{invocation.name} runs a program or reads commands from a file")
        )
    if invocation.name == "sftp" and invocation.stdin.text is not None and "!" in invocation.stdin.text:
        return verdict.worst(opaque("opaque.ssh", "sftp ! runs a local shell command"))
    local = [word for word in parsed.operands[-1:] if ":" not in word.text]
    for word in local if invocation.name == "scp" and len(parsed.operands) > 1 else []:
        verdict = verdict.worst(invocation.write(word))
    return verdict


_XARGS = spec(
    "0prtx",
    "aEILnPsd",
    long="null no-run-if-empty verbose exit interactive show-limits open-tty",
    long_values="arg-file delimiter max-args max-procs max-chars max-lines process-slot-var",
    short_optional="eil",
    long_optional="eof replace",
    permute=False,
)


@rule("xargs", worst=opaque("opaque.xargs", "xargs with expansions among its options", 3))
def xargs(invocation: Invocation) -> Verdict:
    index = first_operand_index(invocation.args, _XARGS)
    if index is None:
        return opaque("opaque.xargs", "xargs with expansions among its options", 3)
    parsed = parse_options(invocation.args[:index], _XARGS)
    command = invocation.args[index:] or [Word("echo", True)]
    replace = parsed.values("-I") or parsed.values("-i", "--replace")
    if replace:
        token = replace[0] or "{}"
        command = [Word(word.text, False) if token in word.text else word for word in command]
    return Verdict(REVERSIBLE, "tools.xargs").worst(
        invocation.nested.argv(command, "xargs", more_arguments=True)
    )


_WATCH = spec(
    "bcCeghtwpxrq",
    "nqs",
    long="beep color no-color errexit chgexit no-title no-wrap precise exec no-rerun",
    long_values="interval equexit shotsdir",
    long_optional="differences",
    permute=False,
)


@rule("watch")
def watch(invocation: Invocation) -> Verdict:
    index = first_operand_index(invocation.args, _WATCH)
    if index is None:
        return opaque("opaque.watch", "watch with expansions among its options")
    parsed = parse_options(invocation.args[:index], _WATCH)
    command = invocation.args[index:]
    if not command:
        return Verdict(REVERSIBLE, "tools.watch")
    if parsed.has("-x", "--exec"):
        return invocation.nested.argv(command, "watch -x")
    if not all(word.literal for word in command):
        return opaque("opaque.watch", "watch runs a command built from expansions")
    return invocation.nested.shell(" ".join(word.text for word in command), "watch")


_FLOCK = spec(
    "sxuneoFvh",
    "wEc",
    long="shared exclusive unlock nonblock nb close no-fork verbose",
    long_values="timeout wait conflict-exit-code command",
    permute=False,
)


@rule("flock")
def flock(invocation: Invocation) -> Verdict:
    """``flock [options] FILE -c COMMAND``, ``flock [options] FILE COMMAND...`` or ``flock FD``."""
    args = invocation.args
    index = first_operand_index(args, _FLOCK)
    if index is None:
        return opaque("opaque.flock", "flock with expansions among its options")
    parsed = parse_options(args[:index], _FLOCK)
    commands = parsed.values("-c", "--command")
    rest = args[index + 1 :]
    if rest and rest[0].literal and rest[0].text in ("-c", "--command"):
        if len(rest) < 2 or not rest[1].literal:
            return opaque("opaque.flock", "flock -c runs an expansion")
        commands.append(rest[1].text)
    elif rest:
        return invocation.nested.argv(rest, "flock")
    if commands:
        return invocation.nested.shell(commands[-1], "flock -c")
    return Verdict(REVERSIBLE, "tools.flock")


@rule("sg")
def sg(invocation: Invocation) -> Verdict:
    words = [word for word in invocation.args if word.text != "-c"]
    verdict = Verdict(STATEFUL, "privilege.escalate")
    if len(words) > 1:
        if not all(word.literal for word in words[1:]):
            return opaque("opaque.shell", "sg runs a command built from expansions")
        return verdict.worst(invocation.nested.shell(" ".join(word.text for word in words[1:]), "sg"))
    invocation.interactive = True
    return verdict


@rule("script")
def script(invocation: Invocation) -> Verdict:
    parsed = invocation.options(
        spec(
            "aeEfqTt",
            "cOIBmT",
            long="append return flush force quiet",
            long_values="command log-out log-in log-io log-timing logging-format output-limit echo",
            permute=True,
        )
    )
    verdict = Verdict(REVERSIBLE, "tools.script")
    for word in parsed.operands[:1] or [Word("typescript", True)]:
        verdict = verdict.worst(invocation.write(word))
    commands = parsed.values("-c", "--command")
    if parsed.dynamic_values:
        return opaque("opaque.shell", "script -c runs an expansion")
    if commands:
        return verdict.worst(invocation.nested.shell(commands[0], "script -c"))
    invocation.interactive = True
    return verdict


@rule("chroot")
def chroot(invocation: Invocation) -> Verdict:
    verdict = opaque("opaque.chroot", "chroot runs a program from another root", STATEFUL)
    operands = [word for word in invocation.args if not word.text.startswith("--")]
    if len(operands) > 1:
        verdict = verdict.worst(invocation.nested.argv(operands[1:], "chroot"))
    return verdict


@rule("unzip", "cpio", "7z", "7za", "unrar", "bsdcpio")
def extract(invocation: Invocation) -> Verdict:
    verdict = Verdict(REVERSIBLE, "files.extract")
    texts = [word.text for word in invocation.args]
    for index, text in enumerate(texts):
        target = None
        if text in ("-d", "-D") and index + 1 < len(texts):
            target = invocation.args[index + 1]
        elif text.startswith("-o") and invocation.name.startswith("7z") and len(text) > 2:
            target = Word(text[2:], True)
        if target is not None:
            written = invocation.write(target)
            verdict = verdict.worst(written if written.tier > REVERSIBLE else verdict)
    if invocation.cwd is not None:
        here = invocation.write(Word(".", True))
        verdict = verdict.worst(here if here.tier > REVERSIBLE else verdict)
    return verdict


@rule("at", "batch")
def at(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if texts and texts[0] in ("-l", "-r", "-d", "-c") and not invocation.dynamic():
        return Verdict(STATEFUL if texts[0] in ("-r", "-d") else REVERSIBLE, "services.at")
    return opaque("opaque.scheduled", f"{invocation.name} schedules commands to run later")


@rule("atq")
def atq(invocation: Invocation) -> Verdict:
    return Verdict(REVERSIBLE, "services.at")


@rule("atrm")
def atrm(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "services.at")


_EDITORS = (
    "vi",
    "vim",
    "nvim",
    "view",
    "vimdiff",
    "gvim",
    "rvim",
    "emacs",
    "emacsclient",
    "nano",
    "pico",
    "joe",
    "jed",
    "micro",
    "mcedit",
    "ne",
    "kak",
    "hx",
    "helix",
    "code",
    "subl",
    "gedit",
    "kate",
    "sensible-editor",
    "editor",
    "visudo-edit",
    "sudoedit",
    "vipe",
)


@rule(*_EDITORS)
def editor(invocation: Invocation) -> Verdict:
    invocation.interactive = True
    return opaque("opaque.editor", f"{invocation.name} is an editor that can run commands")


@rule("less", "more", "most", "pg")
def pager(invocation: Invocation) -> Verdict:
    if invocation.stdin.source == "terminal" or not invocation.args or invocation.stdin.source == "text":
        invocation.interactive = True
    for word in invocation.args:
        if not word.literal or (word.text.startswith("+") and any(c in word.text for c in "!|")):
            return opaque("opaque.pager", f"{invocation.name} runs commands given with +")
        if word.text.startswith(("--lesskey", "-k", "--lesskey-src")):
            return opaque("opaque.pager", f"{invocation.name} loads key bindings that can run commands")
    invocation.interactive = True
    return Verdict(REVERSIBLE, "text.pager")


@rule("man", "info", "pinfo")
def man(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic() or any(
        text.startswith(
            (
                "-P",
                "--pager",
                "-H",
                "--html",
                "-X",
                "-T",
                "--troff-device",
                "-p",
                "--preprocessor",
                "--config-file",
                "-C",
            )
        )
        for text in texts
    ):
        return opaque("opaque.pager", f"{invocation.name} runs the program given in its options")
    invocation.interactive = True
    return Verdict(REVERSIBLE, "text.manual")


@rule("sort")
def sort(invocation: Invocation) -> Verdict:
    parsed = invocation.options(
        spec(
            "bcCdfghiMmnrRsuVz",
            "ok?StT",
            long="check ignore-leading-blanks "
            "dictionary-order ignore-case general-numeric-sort ignore-nonprinting merge "
            "human-numeric-sort numeric-sort random-sort reverse stable unique "
            "version-sort zero-terminated debug month-sort",
            long_values="output compress-program key field-separator temporary-directory "
            "buffer-size parallel random-source files0-from batch-size sort",
        )
    )
    if parsed.has("--compress-program") or parsed.dynamic:
        return opaque("opaque.program_option", "sort --compress-program runs a program")
    verdict = Verdict(REVERSIBLE, "text.sort")
    for value in parsed.values("-o", "--output"):
        verdict = verdict.worst(invocation.write(Word(value, True)))
    return verdict


_PROGRAM_OPTIONS: dict[str, tuple[str, ...]] = {
    "split": ("--filter",),
    "rg": ("--pre", "--hostname-bin", "--pre-glob"),
    "ripgrep": ("--pre", "--hostname-bin"),
    "tcpdump": ("-z",),
    "zip": ("-TT", "--unzip-command", "-T"),
    "wget": ("--use-askpass", "-e", "--execute", "--config"),
    "logrotate": ("",),
    "rpm": ("--eval", "-E"),
    "git-lfs": ("",),
    "journalctl": ("--setup-keys",),
}


@rule("split", "tcpdump", "zip", "wget", "logrotate", "rg", "ripgrep")
def program_options(invocation: Invocation) -> Verdict:
    risky = _PROGRAM_OPTIONS[invocation.name]
    if invocation.name == "logrotate" and not any(w.text in ("-d", "--debug") for w in invocation.args):
        return opaque("opaque.program_option", "logrotate runs the scripts of its configuration")
    verdict = Verdict(REVERSIBLE, f"tools.{invocation.name}")
    for index, word in enumerate(invocation.args):
        if not word.literal and word.may_be_option:
            return opaque("opaque.program_option", f"{invocation.name} with an expansion among its options")
        if (
            invocation.name == "wget"
            and word.text in ("-O", "--output-document", "-o", "--output-file")
            and (index + 1 < len(invocation.args))
        ):
            target = invocation.args[index + 1]
            if target.text != "-":
                verdict = verdict.worst(invocation.write(target))
        if word.literal and any(
            option and (word.text == option or word.text.startswith(option + "=")) for option in risky
        ):
            return opaque(
                "opaque.program_option", f"{invocation.name} {word.text.split('=')[0]} runs a program"
            )
    return verdict


@rule("curl")
def curl(invocation: Invocation) -> Verdict:
    parsed = invocation.options(
        spec(
            "fsSLkvIiOJgGnqZ",
            "oXHduUAeEKbcwmrTxyYzDFC",
            long_values="output "
            "data data-raw data-binary header user config upload-file write-out "
            "dump-header cookie-jar",
            long="remote-name remote-name-all",
        )
    )
    verdict = Verdict(REVERSIBLE, "network.http")
    for value in parsed.values("-o", "--output", "-D", "--dump-header", "-c", "--cookie-jar"):
        if value != "-":
            verdict = verdict.worst(invocation.write(Word(value, True)))
    if parsed.dynamic_values:
        verdict = verdict.worst(Verdict(STATEFUL, "writes.unknown_target"))
    return verdict


_SOCKET_EXEC = re.compile(r"(?i)(?:^|[,!])(?:exec|system)[:=]")


@rule("socat", "nc", "ncat", "netcat", "nc.openbsd", "nc.traditional", "busybox-nc")
def sockets(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if (
        invocation.dynamic()
        or any(_SOCKET_EXEC.search(text) for text in texts)
        or any(
            text in ("-e", "-c", "--exec", "--sh-exec", "--lua-exec")
            or text.startswith(("--exec=", "--sh-exec="))
            for text in texts
        )
    ):
        return opaque("opaque.socket_exec", f"{invocation.name} runs a command for a connection")
    if any(
        (text.startswith("-") and "l" in text.lstrip("-")[:3]) or "LISTEN" in text.upper() for text in texts
    ):
        return Verdict(STATEFUL, "network.listener")
    return Verdict(REVERSIBLE, "network.socket")
