"""Containers and clusters, virtual machines, infrastructure and cloud command lines.

Families: ``containers`` (tier 2: any docker/podman/kubectl/helm/crictl subcommand that is
not a known read; the command a container or pod is told to run is classified as a command
of its own), ``cloud`` (recursive removals tier 3, deletions tier 2).
"""

from __future__ import annotations

import posixpath
import shlex

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import parse_options, spec
from relay_shell.policy.rules.base import Invocation, rule, text_floor
from relay_shell.policy.words import Word

CONTAINER_READS = {
    "ps",
    "images",
    "logs",
    "inspect",
    "stats",
    "top",
    "version",
    "info",
    "events",
    "history",
    "port",
    "diff",
    "search",
    "ls",
    "list",
    "df",
    "config",
    "help",
    "show",
    "du",
    "--help",
    "--version",
    "-v",
}
_CONTAINER_OBJECTS = {
    "container",
    "image",
    "volume",
    "network",
    "system",
    "context",
    "plugin",
    "node",
    "service",
    "stack",
    "secret",
    "config",
    "builder",
    "buildx",
    "manifest",
    "trust",
    "compose",
    "pod",
    "machine",
    "generate",
}
_CONTAINER_VALUES = frozenset(
    {
        "-H",
        "--host",
        "-c",
        "--context",
        "--config",
        "-l",
        "--log-level",
        "-f",
        "--file",
        "-p",
        "--project-name",
        "--project-directory",
        "--env-file",
        "--url",
        "--connection",
        "--root",
        "--runroot",
        "--storage-driver",
    }
)
KUBE_READS = {
    "get",
    "describe",
    "logs",
    "top",
    "explain",
    "api-resources",
    "api-versions",
    "version",
    "cluster-info",
    "auth",
    "diff",
    "events",
    "wait",
    "completion",
    "plugin",
    "kustomize",
    "options",
    "help",
    "--help",
    "--version",
}
_KUBE_VALUES = frozenset(
    {
        "-n",
        "--namespace",
        "--context",
        "--cluster",
        "--kubeconfig",
        "--user",
        "-s",
        "--server",
        "--as",
        "-l",
        "--selector",
        "-o",
        "--output",
        "--as-group",
        "--token",
        "--request-timeout",
        "-c",
        "--container",
    }
)
_HELM_READS = {
    "list",
    "ls",
    "status",
    "get",
    "history",
    "hist",
    "show",
    "inspect",
    "search",
    "template",
    "lint",
    "version",
    "env",
    "repo",
    "dependency",
    "dep",
    "verify",
    "completion",
    "help",
    "pull",
    "fetch",
    "package",
    "create",
}
_CRICTL_READS = {
    "ps",
    "images",
    "img",
    "pods",
    "inspect",
    "inspecti",
    "inspectp",
    "logs",
    "stats",
    "statsp",
    "info",
    "version",
    "config",
    "imagefsinfo",
    "help",
}


def _subcommands(invocation: Invocation, values: frozenset[str]) -> list[str]:
    """Operands in order, skipping ``-x VALUE`` pairs named in ``values``; ``?`` for an expansion."""
    result: list[str] = []
    args = invocation.args
    index = 0
    while index < len(args):
        word = args[index]
        if not word.literal:
            result.append("?")
        elif word.text.startswith("-"):
            index += 2 if word.text in values else 1
            continue
        else:
            result.append(word.text)
        index += 1
    return result


@rule("docker", "podman", "nerdctl", "docker-compose", "podman-compose", "finch", "lima")
def docker(invocation: Invocation) -> Verdict:
    operands = _subcommands(invocation, _CONTAINER_VALUES)
    if invocation.name.endswith("-compose"):
        operands = ["compose", *operands]
    if operands and operands[0] in _CONTAINER_OBJECTS and len(operands) > 1:
        operands = operands[1:]
    if not operands:
        return Verdict(REVERSIBLE, "containers.query")
    if operands[0] in CONTAINER_READS:
        return Verdict(REVERSIBLE, "containers.query")
    return container_command(invocation, Verdict(STATEFUL, "containers.docker"))


@rule("kubectl", "oc", "kubecolor", "k3s", "microk8s", "microk8s.kubectl")
def kubectl(invocation: Invocation) -> Verdict:
    operands = _subcommands(invocation, _KUBE_VALUES)
    if invocation.name in ("k3s", "microk8s") and operands and operands[0] in ("kubectl", "ctr", "crictl"):
        operands = operands[1:]
    if not operands:
        return Verdict(REVERSIBLE, "containers.query")
    verb = operands[0]
    if verb in KUBE_READS or (verb == "rollout" and operands[1:2] in (["status"], ["history"])):
        return Verdict(REVERSIBLE, "containers.query")
    if verb == "config" and operands[1:2] and operands[1].startswith(("view", "get", "current")):
        return Verdict(REVERSIBLE, "containers.query")
    return kube_command(invocation, Verdict(STATEFUL, "containers.kubectl"))


@rule("helm")
def helm(invocation: Invocation) -> Verdict:
    operands = _subcommands(invocation, frozenset({"-n", "--namespace", "--kube-context", "--kubeconfig"}))
    if not operands or operands[0] in _HELM_READS:
        return Verdict(REVERSIBLE, "containers.query")
    return Verdict(STATEFUL, "containers.helm")


@rule("crictl", "ctr")
def crictl(invocation: Invocation) -> Verdict:
    operands = _subcommands(
        invocation, frozenset({"-r", "--runtime-endpoint", "-i", "--image-endpoint", "-n", "--namespace"})
    )
    if not operands or operands[0] in _CRICTL_READS:
        return Verdict(REVERSIBLE, "containers.query")
    return text_floor(invocation, Verdict(STATEFUL, "containers.crictl"))


@rule("virsh", "lxc", "incus", "vagrant", "qm", "pct")
def virtual_machines(invocation: Invocation) -> Verdict:
    operands = _subcommands(invocation, frozenset({"-c", "--connect"}))
    if operands and operands[0] in (
        "destroy",
        "undefine",
        "delete",
        "rm",
        "purge",
        "vol-delete",
        "pool-delete",
    ):
        return Verdict(IRREVERSIBLE, "containers.vm_destroy")
    if not operands or operands[0] in (
        "list",
        "ls",
        "info",
        "dominfo",
        "status",
        "show",
        "version",
        "help",
        "domstate",
        "config",
    ):
        return Verdict(REVERSIBLE, "containers.query")
    return text_floor(invocation, Verdict(STATEFUL, "containers.vm"))


@rule("terraform", "tofu", "pulumi")
def infrastructure(invocation: Invocation) -> Verdict:
    operands = _subcommands(invocation, frozenset({"-chdir", "-var", "-var-file"}))
    verb = operands[0] if operands else None
    if verb in ("destroy", "?"):
        return Verdict(IRREVERSIBLE, "containers.infrastructure_destroy")
    if verb in (
        None,
        "plan",
        "validate",
        "fmt",
        "show",
        "output",
        "version",
        "providers",
        "graph",
        "preview",
        "stack",
        "whoami",
        "about",
    ):
        return Verdict(REVERSIBLE, "containers.query")
    return Verdict(STATEFUL, "containers.infrastructure")


@rule("aws", "gsutil", "gcloud", "az", "s3cmd", "rclone", "mc")
def cloud(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    recursive = {"--recursive", "-r", "-R", "--force", "-f", "purge", "rb", "rm", "delete", "deletebucket"}
    if (
        invocation.dynamic()
        or ("rm" in texts and recursive & set(texts) - {"rm"})
        or _any_word(
            texts, ("purge", "rb", "rmdir", "deletebucket", "delete-bucket", "sync --delete", "--delete")
        )
    ):
        return Verdict(IRREVERSIBLE, "deletion.cloud_recursive")
    if any(text.startswith(("delete", "terminate", "remove", "destroy", "rm")) for text in texts):
        return text_floor(invocation, Verdict(STATEFUL, "containers.cloud_delete"))
    return text_floor(invocation, Verdict(REVERSIBLE, "containers.cloud"))


def _any_word(texts: list[str], words: tuple[str, ...]) -> bool:
    joined = " " + " ".join(texts) + " "
    return any(f" {word} " in joined for word in words)


# -- commands run inside containers and pods ----------------------------------------------------

_RUN_VERBS = frozenset({"run", "exec", "create"})
_DOCKER_RUN = spec(
    "dithPqQ",
    "aceghlmpuvw",
    long=(
        "detach interactive tty rm privileged init publish-all read-only no-healthcheck "
        "oom-kill-disable quiet disable-content-trust use-api-socket replace rootfs env-host "
        "systemd no-hosts read-only-tmpfs tls-verify http-proxy sig-proxy help"
    ),
    long_values=(
        "attach add-host annotation blkio-weight blkio-weight-device cap-add cap-drop cgroup-parent "
        "cgroupns cidfile cpu-count cpu-percent cpu-period cpu-quota cpu-rt-period cpu-rt-runtime "
        "cpu-shares cpus cpuset-cpus cpuset-mems device device-cgroup-rule device-read-bps "
        "device-read-iops device-write-bps device-write-iops dns dns-option dns-opt dns-search "
        "domainname entrypoint env env-file expose gpus group-add health-cmd health-interval "
        "health-retries health-start-interval health-start-period health-timeout hostname "
        "io-maxbandwidth io-maxiops ip ip6 ipc isolation kernel-memory label label-file link "
        "link-local-ip log-driver log-opt mac-address memory memory-reservation memory-swap "
        "memory-swappiness mount name network net network-alias net-alias oom-score-adj pid "
        "pids-limit platform publish pull restart runtime security-opt shm-size stop-signal "
        "stop-timeout storage-opt sysctl tmpfs ulimit user userns uts volume volume-driver "
        "volumes-from workdir detach-keys pod arch os variant secret hooks-dir uidmap gidmap "
        "subuidname subgidname tz umask authfile creds decryption-key pidfile conmon-pidfile "
        "preserve-fds requires sdnotify seccomp-policy timeout personality passwd-entry "
        "group-entry image-volume init-path cgroups cgroup-conf index service-ports "
        "use-aliases"
    ),
    permute=False,
)
_HOST_TREES = frozenset(
    {"/", "/etc", "/root", "/boot", "/dev", "/sys", "/proc", "/usr", "/var", "/run", "/var/run/docker.sock",
     "/run/docker.sock", "/home", "/lib", "/bin", "/sbin"}
)  # fmt: skip
_KUBE_COMMAND_VERBS = frozenset({"exec", "run", "debug", "attach"})


def _verb_index(invocation: Invocation, values: frozenset[str]) -> int | None:
    """The index in ``invocation.args`` of the first operand (after global options)."""
    args = invocation.args
    index = 0
    while index < len(args):
        word = args[index]
        if not word.literal:
            return None
        if not word.text.startswith("-"):
            return index
        index += 2 if word.text in values else 1
    return None


def _inside(invocation: Invocation, words: list[Word], what: str) -> Verdict:
    """Classify a command run inside a container or pod: as remote text (its own files)."""
    if not words:
        return Verdict(STATEFUL, "containers.docker")
    if not all(word.literal for word in words):
        return opaque("opaque.container_command", f"the command {what} is built from expansions")
    text = " ".join(shlex.quote(word.text) for word in words)
    return invocation.nested.shell(text, what, remote=True, stdin=invocation.stdin)


def container_command(invocation: Invocation, fallback: Verdict) -> Verdict:
    """``docker run|exec|create [OPTIONS] IMAGE|CONTAINER [COMMAND...]`` (and ``compose run|exec
    SERVICE``): the command is classified (the worst of it and ``fallback``)."""
    start = _verb_index(invocation, _CONTAINER_VALUES)
    if start is None:
        return fallback
    args = invocation.args[start:]
    if args[0].text in _CONTAINER_OBJECTS or args[0].text == "compose":
        args = args[1:]
        while args and args[0].literal and args[0].text.startswith("-"):
            args = args[1 + (args[0].text in _CONTAINER_VALUES) :]
    if not args or not args[0].literal or args[0].text not in _RUN_VERBS:
        return fallback
    parsed = parse_options(args[1:], _DOCKER_RUN)
    what = f"{invocation.name} {args[0].text} runs"
    if parsed.unknown or parsed.dynamic or parsed.dynamic_values:
        return fallback.worst(
            opaque("opaque.container_command", f"{what} a command after options the classifier cannot read")
        )
    words = list(parsed.operands[1:])
    entrypoint = parsed.values("--entrypoint")
    if entrypoint and entrypoint[-1]:
        words = [Word(entrypoint[-1], True), *words]
    verdict = fallback
    sources = [value.split(":", 1)[0] for value in parsed.values("-v", "--volume")]
    for value in parsed.values("--mount"):
        fields = dict(item.partition("=")[::2] for item in value.split(","))
        sources.append(fields.get("source") or fields.get("src") or "")
    if any(posixpath.normpath(source or ".") in _HOST_TREES for source in sources):
        verdict = verdict.worst(Verdict(IRREVERSIBLE, "containers.host_mount"))
    if parsed.has("--privileged") or "host" in parsed.values("--pid"):
        verdict = verdict.worst(Verdict(IRREVERSIBLE, "containers.privileged"))
    if not words:
        return verdict
    return verdict.worst(_inside(invocation, words, f"{what} inside the container"))


def kube_command(invocation: Invocation, fallback: Verdict) -> Verdict:
    """``kubectl exec|run|debug ... -- COMMAND``: the command is classified."""
    start = _verb_index(invocation, _KUBE_VALUES)
    if start is None:
        return fallback
    args = invocation.args[start:]
    if args[0].text not in _KUBE_COMMAND_VERBS:
        return fallback
    what = f"{invocation.name} {args[0].text} runs"
    for index, word in enumerate(args):
        if word.literal and word.text == "--":
            return fallback.worst(_inside(invocation, list(args[index + 1 :]), f"{what} in the pod"))
    if args[0].text != "exec":
        return fallback
    # the old form without ``--``: the pod then the command (options could hide where it starts)
    operands = [word for word in args[1:] if not (word.literal and word.text.startswith("-"))]
    if any(not word.literal for word in args[1:]) or any(
        word.literal and word.text.startswith("-") and "=" not in word.text for word in args[1:]
    ):
        return fallback.worst(
            opaque("opaque.container_command", f"{what} a command the classifier cannot find")
        )
    return fallback.worst(_inside(invocation, operands[1:], f"{what} in the pod"))
