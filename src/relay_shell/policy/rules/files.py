"""Files: deletion, permissions, writes into sensitive places, in-place edits.

Families: ``deletion`` (tier 3: ``rm -r/-f`` in every spelling, ``find -delete``,
``find -exec rm``, ``tar --remove-files``, ``rsync --delete``, ``shred``),
``permissions`` (tier 2: ``chmod``, ``chown``, ``install -m``, ``cp -p/-a``...; setuid and
setgid bits tier 3), ``etc_writes`` (tier 2: a write whose target is in ``/etc``, a system
directory, ``~/.ssh``, a crontab, a systemd unit, a shell start-up file or git hooks; a
device is tier 3), ``inplace_edit`` (tier 2: ``sed -i``, ``ed``, ``ex``), and plain writes
(tier 1). An expansion among the arguments reads as the rule's worst case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque, worst_of
from relay_shell.policy.options import Parsed, parse_options, spec
from relay_shell.policy.rules.base import Invocation, rule, run_file
from relay_shell.policy.rules.scripts import sed_danger
from relay_shell.policy.words import Word

DELETERS = {"rm", "unlink", "rmdir", "shred", "wipe", "srm"}
_RM = spec(
    "dfiIrRv",
    long="force one-file-system no-preserve-root recursive dir verbose help version",
    long_optional="interactive preserve-root",
)
_SIMPLE_TARGETS = spec(
    "pvmfZ", "mt", long="parents verbose ignore-fail-on-non-empty", long_values="mode context"
)
_CHMOD = spec(
    "cfvR",
    long="changes silent quiet verbose no-preserve-root preserve-root recursive help version",
    long_values="reference",
)
_CHOWN = spec(
    "cfvRhHLP",
    long="changes silent quiet verbose dereference no-dereference no-preserve-root preserve-root recursive",
    long_values="reference from",
)
_SETUID_NUMERIC = re.compile(r"0*[2-7][0-7]{3}")
_MODE = re.compile(r"[ugoa]*[-+=][rwxXstugo]*(?:,[ugoa]*[-+=][rwxXstugo]*)*|[0-7]{1,5}")
_CP = spec(
    "abdfHilLnPprRsStTuvxZ",
    "St",
    long="archive attributes-only copy-contents dereference force interactive link no-dereference "
    "no-clobber no-target-directory one-file-system parents recursive remove-destination "
    "strip-trailing-slashes symbolic-link update verbose debug",
    long_values="suffix target-directory",
    long_optional="preserve no-preserve backup reflink sparse context update",
)
_MV = spec(
    "bfinStTuvZ",
    "St",
    long="force interactive no-clobber strip-trailing-slashes no-target-directory update verbose "
    "exchange no-copy debug",
    long_values="suffix target-directory",
    long_optional="backup context update",
)
_INSTALL = spec(
    "bcCdDpsvTZ",
    "gmotS",
    long="compare directory preserve-timestamps strip verbose no-target-directory debug",
    long_values="group mode owner target-directory suffix strip-program",
    long_optional="backup context",
)
_LN = spec(
    "bdfFiLnPrsTv",
    "St",
    long="directory force interactive logical no-dereference physical relative symbolic verbose "
    "no-target-directory",
    long_values="suffix target-directory",
    long_optional="backup",
)
_TEE = spec("aip", long="append ignore-interrupts", long_optional="output-error")
_TOUCH = spec("acfhm", "drt", long="no-create no-dereference", long_values="date reference time")
_TRUNCATE = spec("co", "rs", long="no-create io-blocks", long_values="reference size")
_TAR = spec(
    "AcdrtuxjJzZaBGhiklmMOpPsSUvwW",
    "bCfFgHIKLNTVX",
    long="create extract get list append update diff compare delete concatenate catenate verbose "
    "gzip bzip2 xz lzma zstd lzip lzop compress auto-compress same-permissions "
    "preserve-permissions same-owner numeric-owner overwrite keep-old-files remove-files "
    "to-stdout totals absolute-names dereference verify",
    long_values="file directory exclude files-from use-compress-program to-command info-script "
    "new-volume-script rsh-command rmt-command owner group mode transform xform",
    long_optional="checkpoint-action checkpoint",
)
_TAR_OPAQUE = {
    "--to-command": "tar --to-command runs a command for every file",
    "--use-compress-program": "tar --use-compress-program runs a program",
    "-I": "tar -I runs a compression program",
    "--info-script": "tar --info-script runs a script",
    "--new-volume-script": "tar --new-volume-script runs a script",
    "-F": "tar -F runs a script",
    "--rsh-command": "tar --rsh-command runs a command",
    "--rmt-command": "tar --rmt-command runs a command",
}
_RSYNC = spec(
    "vqcarRbuldLkKHpEAXogDtOJSnWxzhPie",
    "BTfMe",
    long="delete delete-before delete-during delete-delay delete-after delete-excluded "
    "delete-missing-args del remove-source-files archive recursive perms owner group executability "
    "acls xattrs times dry-run verbose quiet checksum compress progress partial inplace append "
    "update links copy-links hard-links devices specials",
    long_values="rsh rsync-path chmod chown usermap groupmap filter exclude include files-from "
    "exclude-from include-from backup-dir suffix log-file temp-dir partial-dir compare-dest "
    "copy-dest link-dest out-format password-file port",
)
_SED = spec(
    "nrEsuzl",
    "efl",
    long="quiet silent regexp-extended separate unbuffered null-data zero-terminated posix sandbox "
    "follow-symlinks debug binary",
    long_values="expression file line-length",
    short_optional="i",
    long_optional="in-place",
)
_DD_OPERAND = re.compile(r"(if|of)=(.*)", re.DOTALL)


def _operand_targets(
    invocation: Invocation, words: Sequence[Word], base: Verdict, *, modify: bool
) -> Verdict:
    """``base``, raised by what writing (or, ``modify``, removing/changing) each target is."""
    verdicts = [base]
    for word in words:
        verdict = invocation.write(word)
        if modify and verdict.rule in ("writes.unknown_target", "disk.write_device"):
            verdict = Verdict(STATEFUL, "etc_writes.unknown_target")
        verdicts.append(verdict if verdict.tier > REVERSIBLE else Verdict(REVERSIBLE, base.rule))
    return worst_of(verdicts, base)


@rule("rm", worst=Verdict(IRREVERSIBLE, "deletion.rm_recursive"))
def remove(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_RM)
    if parsed.dynamic:
        return Verdict(IRREVERSIBLE, "deletion.rm_recursive")
    if parsed.has("-r", "-R", "--recursive", "--no-preserve-root"):
        return Verdict(IRREVERSIBLE, "deletion.rm_recursive")
    if parsed.has("-f", "--force"):
        return Verdict(IRREVERSIBLE, "deletion.rm_forced")
    return _operand_targets(invocation, parsed.operands, Verdict(REVERSIBLE, "files.remove"), modify=True)


@rule("rmdir", "unlink", "mkdir", "mkfifo")
def simple_targets(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_SIMPLE_TARGETS)
    return _operand_targets(invocation, parsed.operands, Verdict(REVERSIBLE, "files.change"), modify=True)


@rule("mknod")
def make_node(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "disk.make_device_node")


@rule("shred", "wipe", "srm")
def shred(invocation: Invocation) -> Verdict:
    return Verdict(IRREVERSIBLE, "disk.shred")


@rule("touch")
def touch(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_TOUCH)
    return _operand_targets(invocation, parsed.operands, Verdict(REVERSIBLE, "files.touch"), modify=True)


@rule("truncate")
def truncate(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_TRUNCATE)
    return _operand_targets(invocation, parsed.operands, Verdict(REVERSIBLE, "files.truncate"), modify=False)


@rule("tee")
def tee(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_TEE)
    return _operand_targets(invocation, parsed.operands, Verdict(REVERSIBLE, "files.tee"), modify=False)


@rule("dd")
def dd(invocation: Invocation) -> Verdict:
    verdict = Verdict(REVERSIBLE, "files.dd")
    for word in invocation.args:
        match = _DD_OPERAND.match(word.text)
        if not word.literal and (match is None or match.group(1) == "of" or word.may_split):
            verdict = verdict.worst(Verdict(IRREVERSIBLE, "disk.dd_to_device"))
        elif match is not None and match.group(1) == "of":
            target = invocation.write(Word(match.group(2), True))
            if target.rule == "disk.write_device":
                target = Verdict(IRREVERSIBLE, "disk.dd_to_device")
            verdict = verdict.worst(target)
    return verdict


def _mode_verdict(mode: Word | None) -> Verdict:
    if mode is None or not mode.literal:
        return Verdict(IRREVERSIBLE, "permissions.setuid")
    text = mode.text
    if _SETUID_NUMERIC.fullmatch(text) or ("s" in text and not text.isdigit()):
        return Verdict(IRREVERSIBLE, "permissions.setuid")
    return Verdict(STATEFUL, "permissions.change")


@rule("chmod", worst=Verdict(IRREVERSIBLE, "permissions.setuid"))
def chmod(invocation: Invocation) -> Verdict:
    args = [word for word in invocation.args if not (word.literal and _MODE.fullmatch(word.text))]
    modes = [word for word in invocation.args if word.literal and _MODE.fullmatch(word.text)]
    parsed = invocation.options(_CHMOD)
    if parsed.dynamic and not modes:
        return Verdict(IRREVERSIBLE, "permissions.setuid")
    if parsed.has("--reference"):
        return Verdict(IRREVERSIBLE, "permissions.setuid")
    verdict = worst_of((_mode_verdict(mode) for mode in modes[:1]), _mode_verdict(None))
    for word in args:
        if not word.literal and word.may_be_option:
            verdict = verdict.worst(Verdict(IRREVERSIBLE, "permissions.setuid"))
    return verdict


@rule("chown", "chgrp", "lchown")
def chown(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "permissions.ownership")


@rule("setfacl", "chattr", "chcon", "setfattr", "restorecon")
def attributes(invocation: Invocation) -> Verdict:
    return Verdict(STATEFUL, "permissions.attributes")


@rule("setcap")
def setcap(invocation: Invocation) -> Verdict:
    return Verdict(IRREVERSIBLE, "permissions.capabilities")


def _destination(parsed: Parsed) -> list[Word]:
    """The destination of cp/mv/install/ln: ``-t DIR`` or the last operand."""
    targets = [Word(value, True) for value in parsed.values("-t", "--target-directory")]
    if targets:
        return targets
    return parsed.operands[-1:]


@rule("cp", worst=Verdict(STATEFUL, "permissions.preserve"))
def copy(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_CP)
    verdict = Verdict(REVERSIBLE, "files.copy")
    if parsed.dynamic:
        return Verdict(STATEFUL, "permissions.preserve")
    preserve = parsed.values("--preserve")
    if parsed.has("-p", "-a", "--archive") or any(_preserves_mode(value) for value in preserve):
        verdict = Verdict(STATEFUL, "permissions.preserve")
    return _operand_targets(invocation, _destination(parsed), verdict, modify=False)


def _preserves_mode(value: str) -> bool:
    return not value or any(part in ("mode", "ownership", "all") for part in value.split(","))


@rule("mv")
def move(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_MV)
    if parsed.dynamic:
        return Verdict(STATEFUL, "etc_writes.unknown_target")
    return _operand_targets(invocation, parsed.operands, Verdict(REVERSIBLE, "files.move"), modify=False)


@rule("install", worst=Verdict(IRREVERSIBLE, "permissions.setuid"))
def install(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_INSTALL)
    if parsed.dynamic:
        return Verdict(IRREVERSIBLE, "permissions.setuid")
    verdict = Verdict(REVERSIBLE, "files.install")
    modes = parsed.values("-m", "--mode")
    if modes:
        verdict = worst_of((_mode_verdict(Word(mode, True)) for mode in modes), verdict)
    if parsed.has("-o", "--owner", "-g", "--group"):
        verdict = verdict.worst(Verdict(STATEFUL, "permissions.ownership"))
    targets = parsed.operands if parsed.has("-d", "--directory") else _destination(parsed)
    return _operand_targets(invocation, targets, verdict, modify=False)


@rule("ln", "link")
def link(invocation: Invocation) -> Verdict:
    """A link is a write at its name, and a way to write at its target later: a link to
    ``/etc`` (or another sensitive place) is tier 2 like a write there."""
    parsed = invocation.options(_LN)
    verdict = _operand_targets(
        invocation, _destination(parsed), Verdict(REVERSIBLE, "files.link"), modify=False
    )
    targets = parsed.operands if parsed.values("-t", "--target-directory") else parsed.operands[:-1]
    for target in targets:
        into = invocation.write(target)
        if into.tier >= STATEFUL:
            verdict = verdict.worst(Verdict(STATEFUL, "etc_writes.link_into"))
    return verdict


@rule(
    "find",
    worst=Verdict(IRREVERSIBLE, "deletion.find_delete", "opaque: find with an expansion in its expression"),
)
def find(invocation: Invocation) -> Verdict:
    verdict = Verdict(REVERSIBLE, "files.find")
    args = invocation.args
    index = 0
    while index < len(args):
        word = args[index]
        text = word.text
        if not word.literal:
            if word.may_be_option or word.may_split:
                verdict = verdict.worst(
                    opaque("opaque.find_expression", "find with an expansion in its expression", 3)
                )
            index += 1
            continue
        if text == "-delete":
            verdict = verdict.worst(Verdict(IRREVERSIBLE, "deletion.find_delete"))
        elif text in ("-exec", "-ok", "-execdir", "-okdir"):
            verdict, index = _find_exec(invocation, index, verdict)
            continue
        elif text in ("-fprint", "-fprint0", "-fprintf", "-fls"):
            verdict = verdict.worst(opaque("opaque.find_writes", f"find {text} writes a file"))
        index += 1
    return verdict


def _find_exec(invocation: Invocation, index: int, verdict: Verdict) -> tuple[Verdict, int]:
    args = invocation.args
    action = args[index].text
    end = index + 1
    while end < len(args) and not (args[end].literal and args[end].text in (";", "+")):
        end += 1
    more = end < len(args) and args[end].text == "+"
    command = [Word("{}", False) if word.text == "{}" else word for word in args[index + 1 : end]]
    if not command:
        return verdict, end + 1
    nested = invocation.nested.argv(command, f"find {action}", more_arguments=more)
    verdict = verdict.worst(nested)
    name = command[0].text.rsplit("/", 1)[-1]
    if not command[0].literal or name in DELETERS:
        verdict = verdict.worst(Verdict(IRREVERSIBLE, "deletion.find_exec_rm"))
    if action in ("-execdir", "-okdir"):
        verdict = verdict.worst(
            opaque("opaque.find_execdir", f"find {action} runs a command in each directory")
        )
    return verdict, end + 1


@rule("tar", "bsdtar", "gtar", worst=opaque("opaque.tar", "tar with expansions among its options", 3))
def tar(invocation: Invocation) -> Verdict:
    args = list(invocation.args)
    if args and args[0].literal and args[0].text and not args[0].text.startswith("-"):
        args[0] = Word("-" + args[0].text, True, may_be_option=True)
    parsed = parse_options(args, _TAR)
    if parsed.dynamic:
        return opaque("opaque.tar", "tar with expansions among its options", IRREVERSIBLE)
    verdict = Verdict(REVERSIBLE, "files.tar")
    if parsed.has("--remove-files"):
        verdict = Verdict(IRREVERSIBLE, "deletion.tar_remove_files")
    for option, reason in _TAR_OPAQUE.items():
        if parsed.has(option):
            verdict = verdict.worst(opaque("opaque.tar", reason))
    for value in parsed.values("--checkpoint-action"):
        if "exec" in value or not value:
            verdict = verdict.worst(opaque("opaque.tar", "tar --checkpoint-action=exec runs a command"))
    if parsed.has("-x", "--extract", "--get"):
        for directory in parsed.values("-C", "--directory") or ["."]:
            target = invocation.write(Word(directory, True))
            if directory.rstrip("/") in ("",) or target.tier >= STATEFUL:
                verdict = verdict.worst(Verdict(STATEFUL, "etc_writes.tar_extract"))
    return verdict


@rule("rsync", worst=Verdict(IRREVERSIBLE, "deletion.rsync_delete"))
def rsync(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_RSYNC)
    if parsed.dynamic:
        return Verdict(IRREVERSIBLE, "deletion.rsync_delete")
    verdict = Verdict(REVERSIBLE, "files.rsync")
    if any(option.startswith("--del") for option, _ in parsed.options):
        verdict = Verdict(IRREVERSIBLE, "deletion.rsync_delete")
    if parsed.has("--remove-source-files"):
        verdict = verdict.worst(Verdict(IRREVERSIBLE, "deletion.rsync_remove_source"))
    if parsed.has("-a", "--archive", "-p", "--perms", "-o", "--owner", "-g", "--group", "--chmod", "--chown"):
        verdict = verdict.worst(Verdict(STATEFUL, "permissions.preserve"))
    for command in parsed.values("-e", "--rsh"):
        verdict = verdict.worst(invocation.nested.shell(command, "rsync -e"))
    for command in parsed.values("--rsync-path"):
        verdict = verdict.worst(invocation.nested.shell(command, "rsync --rsync-path", remote=True))
    if len(parsed.operands) > 1 and ":" not in parsed.operands[-1].text:
        verdict = _operand_targets(invocation, parsed.operands[-1:], verdict, modify=False)
    return verdict


@rule("sed", "gsed", worst=opaque("opaque.sed", "sed with an expansion in its script or options"))
def sed(invocation: Invocation) -> Verdict:
    parsed = invocation.options(_SED)
    verdict = Verdict(REVERSIBLE, "files.sed")
    if parsed.has("-i", "--in-place"):
        verdict = Verdict(STATEFUL, "inplace_edit.sed")
    if parsed.dynamic or parsed.dynamic_values:
        return verdict.worst(opaque("opaque.sed", "sed with an expansion in its script or options"))
    if parsed.has("-f", "--file"):
        return verdict.worst(run_file(invocation, "a sed script file"))
    scripts = parsed.values("-e", "--expression")
    operands = parsed.operands
    if not scripts and operands:
        scripts, operands = [operands[0].text], operands[1:]
        if not parsed.operands[0].literal:
            return verdict.worst(opaque("opaque.sed", "sed script is an expansion"))
    if not parsed.has("--sandbox"):
        for script in scripts:
            reason = sed_danger(script)
            if reason:
                verdict = verdict.worst(opaque("opaque.sed", reason))
    if verdict.tier >= STATEFUL and verdict.rule == "inplace_edit.sed":
        verdict = _operand_targets(invocation, operands, verdict, modify=True)
    return verdict


@rule("ed", "red", "ex")
def line_editor(invocation: Invocation) -> Verdict:
    """``ed``/``red``/``ex``: in-place edits (tier 2); opaque when they can run a shell command:
    ``!`` in the commands they read, a file argument ``!CMD`` (ed reads the command's output),
    and ``ex`` (vim) options that carry commands (``-c``, ``+CMD``, ``-S``, ``--cmd``, ``-u``)."""
    verdict = Verdict(STATEFUL, "inplace_edit.ed")
    for word in invocation.args:
        if not word.literal or word.text.startswith("!"):
            return verdict.worst(opaque("opaque.editor", f"{invocation.name} !FILE runs a shell command"))
        if (
            invocation.name == "ex"
            and word.text.startswith(("+", "-"))
            and word.text not in ("-", "-s", "--")
        ):
            return verdict.worst(opaque("opaque.editor", f"ex {word.text[:2]} runs editor commands"))
    stdin = invocation.stdin
    if stdin.text is not None:
        if "!" in stdin.text:
            return verdict.worst(opaque("opaque.editor", f"{invocation.name} ! runs a shell command"))
        return verdict
    if stdin.source == "empty":
        return verdict
    if stdin.source == "terminal":
        invocation.interactive = True
    return verdict.worst(opaque("opaque.editor", f"{invocation.name} reads its commands from {stdin.label}"))


@rule("patch")
def patch(invocation: Invocation) -> Verdict:
    return Verdict(REVERSIBLE, "files.patch")
