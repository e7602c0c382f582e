"""Wrappers: commands that run another command (``env``, ``nice``, ``sudo``, ``timeout``...).

Each wrapper is read with its own options (so ``sudo -u bob -E rm -rf x``, ``timeout -s
KILL 5 rm -rf x``, ``nice -n 5 rm``, ``env -i PATH=/x rm`` all find ``rm``), contributes
its own verdict (``sudo``, ``doas``, ``su``, ``setpriv``... are privilege escalation,
tier 2) and hands back the command it runs, the variables it sets for it and a new working
directory. A wrapper whose command cannot be told from its options (an expansion where an
option or the command could be) is opaque.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from relay_shell.policy.model import REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import OptionSpec, first_operand_index, parse_options, spec
from relay_shell.policy.rules.base import Invocation, stdin_code
from relay_shell.policy.words import Word

_ASSIGNMENT_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass
class Unwrapped:
    """What a wrapper amounts to: its verdict, the command it runs, the variables it sets."""

    verdict: Verdict
    command: list[Word] | None
    assignments: list[tuple[str, Word]] = field(default_factory=list)
    cwd: str | None = None
    label: str = ""


Wrapper = Callable[[Invocation], Unwrapped]
PLAIN_WRAPPER = Verdict(REVERSIBLE, "wrappers.run")
PRIVILEGE = Verdict(STATEFUL, "privilege.escalate")


def _unclear(invocation: Invocation) -> Unwrapped:
    return Unwrapped(
        opaque("opaque.wrapper", f"{invocation.name} with expansions where its command could be"), None
    )


def assignment_name(word: Word) -> str | None:
    """``NAME`` when ``word`` is ``NAME=value`` (the name literal), else None."""
    name, equals, _ = word.text.partition("=")
    if not equals or not name or name[0].isdigit() or not set(name) <= _ASSIGNMENT_CHARS:
        return None
    if not word.literal and any(char in name for char in "$`"):
        return None
    return name


def _take_assignments(words: list[Word]) -> tuple[list[tuple[str, Word]], list[Word]]:
    assignments: list[tuple[str, Word]] = []
    index = 0
    while index < len(words):
        name = assignment_name(words[index])
        if name is None:
            break
        value_text = words[index].text.partition("=")[2]
        assignments.append((name, Word(value_text, words[index].literal, may_split=words[index].may_split)))
        index += 1
    return assignments, words[index:]


def options_then_command(
    option_spec: OptionSpec,
    verdict: Verdict = PLAIN_WRAPPER,
    leading: int = 0,
    no_command: tuple[str, ...] = (),
) -> Wrapper:
    """A wrapper read as: options, ``leading`` operands (a duration, a priority), the command.

    Any option in ``no_command`` means the wrapper acts on something else (``-p PID``).
    """

    def unwrap(invocation: Invocation) -> Unwrapped:
        index = first_operand_index(invocation.args, option_spec)
        if index is None:
            return _unclear(invocation)
        parsed = parse_options(invocation.args[:index], option_spec)
        if no_command and parsed.has(*no_command):
            return Unwrapped(verdict, None)
        operands = invocation.args[index:]
        if any(not word.literal and word.may_split for word in operands[: leading + 1]):
            return _unclear(invocation)
        command = operands[leading:]
        return Unwrapped(verdict, command or None)

    return unwrap


def generic(verdict: Verdict = PLAIN_WRAPPER, leading: int = 0) -> Wrapper:
    """Options we do not model: skip ``-x`` words; what follows is the command (the tail scan
    of an unknown command catches a value mistaken for the command)."""

    def unwrap(invocation: Invocation) -> Unwrapped:
        words = invocation.args
        index = 0
        while index < len(words) and (not words[index].literal or words[index].text.startswith("-")):
            if not words[index].literal and (words[index].may_be_option or words[index].may_split):
                return _unclear(invocation)
            index += 1
            if words[index - 1].text == "--":
                break
        command = words[index + leading :]
        return Unwrapped(verdict, command or None)

    return unwrap


_ENV = spec(
    "0iv",
    "uCS",
    long="ignore-environment null debug list-signal-handling",
    long_values="unset chdir split-string",
    long_optional="block-signal default-signal ignore-signal",
    permute=False,
)


def env(invocation: Invocation) -> Unwrapped:
    words = invocation.args
    index = first_operand_index(words, _ENV)
    if index is None:
        return _unclear(invocation)
    parsed = parse_options(words[:index], _ENV)
    split = parsed.values("-S", "--split-string")
    if split:
        if parsed.dynamic_values or not all(word.literal for word in words[index:]):
            return Unwrapped(opaque("opaque.wrapper", "env -S splits an expansion into a command"), None)
        text = " ".join([split[0], *(word.text for word in words[index:])])
        return Unwrapped(invocation.nested.shell(text, "env -S", stdin=invocation.stdin), None)
    assignments, command = _take_assignments(list(words[index:]))
    chdir = parsed.values("-C", "--chdir")
    return Unwrapped(PLAIN_WRAPPER, command or None, assignments, chdir[-1] if chdir else None)


_SUDO = spec(
    "AbEHiKklnPSsVveBN",
    "CDghpRrTtUu",
    long="askpass background edit help set-home login "
    "remove-timestamp reset-timestamp list non-interactive preserve-groups stdin shell validate version "
    "bell",
    long_values="close-from chdir group host prompt chroot role type command-timeout other-user user",
    long_optional="preserve-env",
    permute=False,
)


def sudo(invocation: Invocation) -> Unwrapped:
    words = invocation.args
    index = first_operand_index(words, _SUDO)
    if index is None:
        return _unclear(invocation)
    parsed = parse_options(words[:index], _SUDO)
    if parsed.has("-e", "--edit") or invocation.name == "sudoedit":
        return Unwrapped(PRIVILEGE.worst(opaque("opaque.editor", "sudoedit starts an editor")), None)
    assignments, command = _take_assignments(list(words[index:]))
    if parsed.has("-s", "--shell", "-i", "--login"):
        return _shell_of(invocation, command, PRIVILEGE, assignments)
    if parsed.has("-h", "--host", "-R", "--chroot"):
        return Unwrapped(PRIVILEGE.worst(opaque("opaque.wrapper", "sudo runs the command elsewhere")), None)
    chdir = parsed.values("-D", "--chdir")
    return Unwrapped(PRIVILEGE, command or None, assignments, chdir[-1] if chdir else None)


def _shell_of(
    invocation: Invocation, command: list[Word], verdict: Verdict, assignments: list[tuple[str, Word]]
) -> Unwrapped:
    """``sudo -s CMD`` / ``doas -s``: the command runs through a shell; without one, the shell
    reads its commands from stdin (the terminal, text, a pipe...)."""
    if not command:
        return Unwrapped(stdin_shell(invocation, verdict), None, assignments)
    if not all(word.literal for word in command):
        return Unwrapped(
            verdict.worst(opaque("opaque.shell", f"{invocation.name} -s runs an expansion")), None
        )
    text = " ".join(word.text for word in command)
    return Unwrapped(
        verdict.worst(invocation.nested.shell(text, f"{invocation.name} shell")), None, assignments
    )


def stdin_shell(invocation: Invocation, verdict: Verdict) -> Verdict:
    """A shell started without a command: it runs what it reads on stdin."""
    code = stdin_code(invocation, "shell")
    return verdict if code is None else verdict.worst(code)


def doas(invocation: Invocation) -> Unwrapped:
    option_spec = spec("nsL", "Cu", permute=False)
    index = first_operand_index(invocation.args, option_spec)
    if index is None:
        return _unclear(invocation)
    parsed = parse_options(invocation.args[:index], option_spec)
    command = list(invocation.args[index:])
    if parsed.has("-s") or (not command and not parsed.has("-C", "-L")):
        return _shell_of(invocation, command if parsed.has("-s") else [], PRIVILEGE, [])
    return Unwrapped(PRIVILEGE, command or None)


_SU = spec(
    "lmpfP",
    "cgGsw",
    long="login preserve-environment pty",
    long_values="command session-command group supp-group shell whitelist-environment",
)


def su(invocation: Invocation) -> Unwrapped:
    words = [word for word in invocation.args if word.text != "-"]
    user_form = invocation.name == "runuser" and any(word.text in ("-u", "--user") for word in words)
    if user_form:
        option_spec = spec(
            "lmp", "gGuws", long_values="user group supp-group shell whitelist-environment", permute=False
        )
        index = first_operand_index(words, option_spec)
        if index is None:
            return _unclear(invocation)
        return Unwrapped(PRIVILEGE, list(words[index:]) or None)
    parsed = parse_options(words, _SU)
    if parsed.dynamic or parsed.dynamic_values:
        return _unclear(invocation)
    verdict = PRIVILEGE
    shells = parsed.values("-s", "--shell")
    if shells and shells[-1].rsplit("/", 1)[-1] not in ("sh", "bash", "dash", "zsh", "ksh"):
        verdict = verdict.worst(opaque("opaque.run_file", f"{invocation.name} -s runs {shells[-1]}"))
    commands = parsed.values("-c", "--command", "--session-command")
    if commands:
        return Unwrapped(verdict.worst(invocation.nested.shell(commands[-1], f"{invocation.name} -c")), None)
    return Unwrapped(stdin_shell(invocation, verdict), None)


def capsh(invocation: Invocation) -> Unwrapped:
    words = invocation.args
    for index, word in enumerate(words):
        if not word.literal:
            return _unclear(invocation)
        if word.text == "--":
            return Unwrapped(PRIVILEGE, [Word("bash", True), *words[index + 1 :]])
        if word.text == "==":
            return Unwrapped(PRIVILEGE, [Word("capsh", True), *words[index + 1 :]])
    return Unwrapped(PRIVILEGE, None)


def command_builtin(invocation: Invocation) -> Unwrapped:
    option_spec = spec("pvV", permute=False)
    index = first_operand_index(invocation.args, option_spec)
    if index is None:
        return _unclear(invocation)
    if parse_options(invocation.args[:index], option_spec).has("-v", "-V"):
        return Unwrapped(PLAIN_WRAPPER, None, label="lookup")
    return Unwrapped(PLAIN_WRAPPER, list(invocation.args[index:]) or None)


def exec_builtin(invocation: Invocation) -> Unwrapped:
    option_spec = spec("cl", "a", permute=False)
    index = first_operand_index(invocation.args, option_spec)
    if index is None:
        return _unclear(invocation)
    command = list(invocation.args[index:])
    if command:
        invocation.taints = True
    return Unwrapped(PLAIN_WRAPPER, command or None)


def coproc(invocation: Invocation) -> Unwrapped:
    words = list(invocation.args)
    if len(words) > 1 and words[1].text in ("{", "("):
        words = words[2:]
    elif words and words[0].text in ("{", "("):
        words = words[1:]
    return Unwrapped(PLAIN_WRAPPER, words or None)


def busybox(invocation: Invocation) -> Unwrapped:
    words = invocation.args
    if not words or (words[0].literal and words[0].text.startswith("-")):
        return Unwrapped(PLAIN_WRAPPER, None)
    return Unwrapped(PLAIN_WRAPPER, list(words))


def privileged_generic(leading: int = 0) -> Wrapper:
    return generic(PRIVILEGE, leading)


_NICE = spec("", "n", long_values="adjustment", permute=False)
_TIMEOUT = spec(
    "v", "sk", long="foreground preserve-status verbose", long_values="signal kill-after", permute=False
)
_STDBUF = spec("", "ioe", long_values="input output error", permute=False)
_SETSID = spec("cfw", long="ctty fork wait", permute=False)
_CHRT = spec(
    "abdefimoprRv",
    "TPD",
    long="all-tasks batch deadline fifo idle other pid rr reset-on-fork verbose max",
    long_values="sched-runtime sched-period sched-deadline",
    permute=False,
)
_TASKSET = spec("acp", long="all-tasks cpu-list pid", permute=False)
_IONICE = spec("t", "cnpPu", long="ignore", long_values="class classdata pid pgid uid", permute=False)
_PRLIMIT = spec(
    "",
    "po",
    short_optional="ACcdefilmnqrstuvxy",
    long="noheadings raw verbose",
    long_values="pid output",
    long_optional="as core cpu data fsize locks memlock msgqueue nice "
    "nofile nproc rss rtprio rttime sigpending stack",
    permute=False,
)
_SETPRIV = spec(
    "d",
    "",
    long="clear-groups init-groups keep-groups nnp no-new-privs reset-env dump",
    long_values="groups inh-caps ambient-caps bounding-set securebits pdeathsig selinux-label "
    "apparmor-profile reuid regid euid egid ruid rgid landlock-access landlock-rule seccomp-filter "
    "rlimit ptracer",
    permute=False,
)
_TIME = spec(
    "pavq", "of", long="append verbose quiet portability", long_values="output format", permute=False
)
_NSENTER = spec(
    "aFZ",
    "tSGe",
    short_optional="muinpCUTrw",
    long="all no-fork preserve-credentials join-cgroup",
    long_values="target setuid setgid env",
    long_optional="mount uts ipc net pid cgroup user time root wd",
    permute=False,
)
_UNSHARE = spec(
    "cfrUcmuinpCT",
    "SGR",
    long="fork kill-child mount-proc map-root-user map-current-user map-auto keep-caps",
    long_values="propagation setgroups root wd setuid setgid map-user map-group",
    long_optional="mount uts ipc net pid user cgroup time kill-child mount-proc",
    permute=False,
)


_TRACE = spec("cCdDfFhikqrtTvVwxyzZSnN", "abeEIoOpPsuUXA", permute=False)


def tracer(invocation: Invocation) -> Unwrapped:
    """``strace``/``ltrace``: ``-E VAR=VALUE`` sets the traced command's environment, ``-o`` writes."""
    unwrapped = options_then_command(_TRACE, no_command=("-p",))(invocation)
    parsed = parse_options(invocation.args, _TRACE)
    for value in parsed.values("-E"):
        name = assignment_name(Word(value, True))
        if name is not None:
            unwrapped.assignments.append((name, Word(value.partition("=")[2], True)))
    for value in parsed.values("-o"):
        if value.startswith(("|", "!")):
            # strace -o '|CMD' / '!CMD' pipes the trace into a shell command
            reason = f"{invocation.name} -o {value[:1]}COMMAND pipes its output into a shell command"
            unwrapped.verdict = unwrapped.verdict.worst(opaque("opaque.trace_pipe", reason))
            continue
        unwrapped.verdict = unwrapped.verdict.worst(invocation.write(Word(value, True)))
    return unwrapped


def fakeroot(invocation: Invocation) -> Unwrapped:
    """``fakeroot -l LIB`` preloads a library of the caller's choice."""
    if any(word.text in ("-l", "--lib") or word.text.startswith("--lib=") for word in invocation.args):
        return Unwrapped(opaque("opaque.preload", f"{invocation.name} -l preloads a library"), None)
    return generic()(invocation)


def time_wrapper(invocation: Invocation) -> Unwrapped:
    unwrapped = options_then_command(_TIME)(invocation)
    parsed = parse_options(invocation.args, _TIME)
    for value in parsed.values("-o", "--output"):
        unwrapped.verdict = unwrapped.verdict.worst(invocation.write(Word(value, True)))
    return unwrapped


WRAPPERS: dict[str, Wrapper] = {
    "env": env,
    "sudo": sudo,
    "sudoedit": sudo,
    "doas": doas,
    "su": su,
    "runuser": su,
    "capsh": capsh,
    "command": command_builtin,
    "builtin": options_then_command(spec(permute=False)),
    "exec": exec_builtin,
    "coproc": coproc,
    "busybox": busybox,
    "toybox": busybox,
    "nice": options_then_command(_NICE),
    "nohup": options_then_command(spec(permute=False)),
    "timeout": options_then_command(_TIMEOUT, leading=1),
    "gtimeout": options_then_command(_TIMEOUT, leading=1),
    "stdbuf": options_then_command(_STDBUF),
    "setsid": options_then_command(_SETSID),
    "chrt": options_then_command(_CHRT, leading=1, no_command=("-p", "--pid", "-m", "--max")),
    "taskset": options_then_command(_TASKSET, leading=1, no_command=("-p", "--pid")),
    "ionice": options_then_command(_IONICE, no_command=("-p", "--pid", "-P", "--pgid", "-u", "--uid")),
    "prlimit": options_then_command(_PRLIMIT, no_command=("-p", "--pid")),
    "setpriv": options_then_command(_SETPRIV, PRIVILEGE),
    "pkexec": options_then_command(
        spec("", "", long="disable-internal-agent help version", long_values="user", permute=False), PRIVILEGE
    ),
    "run0": generic(PRIVILEGE),
    "time": time_wrapper,
    "nsenter": options_then_command(_NSENTER, Verdict(STATEFUL, "privilege.namespace")),
    "unshare": options_then_command(_UNSHARE, Verdict(STATEFUL, "privilege.namespace")),
    "systemd-run": generic(Verdict(STATEFUL, "services.systemd_run")),
    "gosu": privileged_generic(leading=1),
    "su-exec": privileged_generic(leading=1),
    "chpst": privileged_generic(),
    "setuidgid": privileged_generic(leading=1),
    "faketime": generic(leading=1),
    "strace": tracer,
    "ltrace": tracer,
    "fakeroot": fakeroot,
    "fakechroot": fakeroot,
}
for _name in (
    "eatmydata",
    "caffeinate",
    "nocache",
    "catchsegv",
    "chronic",
    "ifne",
    "proxychains",
    "proxychains4",
    "torsocks",
    "tsocks",
    "firejail",
    "xvfb-run",
    "dbus-run-session",
    "systemd-inhibit",
    "numactl",
    "cgexec",
    "setarch",
    "linux32",
    "linux64",
    "unbuffer",
    "valgrind",
    "tini",
    "dumb-init",
    "daemonize",
    "lckdo",
    "ssh-agent",
    "dbus-launch",
    "rlwrap",
    "trickle",
    "cpulimit",
):
    WRAPPERS.setdefault(_name, generic())
