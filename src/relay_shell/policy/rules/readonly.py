"""Known-safe reads: the commands that may be tier 0, each with an allowlist of options.

An option that is not listed, an ambiguous abbreviation, or an operand of the wrong kind
makes the command an ordinary tier-1 command (never worse: these lists only decide what
``readonly`` admits). The other conditions of tier 0 (plain words, the name resolving
into a system directory, a harmless environment, reading redirections only, no protected
path) are checked by the analyzer.
"""

from __future__ import annotations

from collections.abc import Callable

from relay_shell.policy.options import OptionSpec, Parsed, canonical_signal, parse_options, spec
from relay_shell.policy.rules.base import Invocation
from relay_shell.policy.rules.containers import CONTAINER_READS, KUBE_READS
from relay_shell.policy.rules.find_reads import find_read
from relay_shell.policy.rules.network import IP_READ_VERBS
from relay_shell.policy.rules.system import SYSTEMCTL_READS
from relay_shell.policy.words import Word

Checker = Callable[[Invocation], bool]
BUILTINS = {
    "echo",
    "printf",
    "test",
    "[",
    "true",
    "false",
    "pwd",
    "cd",
    "type",
    "command",
    ":",
    "exit",
    "return",
    "shift",
    "[[",
    "break",
    "continue",
    "{",
    "}",
}


def _clean(parsed: Parsed) -> bool:
    """No unknown option, no expansion, and long options spelled out (an abbreviation could be
    an option missing from the allowlist)."""
    return not (parsed.unknown or parsed.dynamic or parsed.dynamic_values or parsed.abbreviated)


def allow(
    option_spec: OptionSpec,
    *,
    max_operands: int | None = None,
    operand: Callable[[Word], bool] | None = None,
    numeric: bool = False,
) -> Checker:
    """Known-safe when every option is in ``option_spec`` (``numeric``: ``-5`` counts as a count)."""

    def check(invocation: Invocation) -> bool:
        args = invocation.args
        if numeric:
            args = [
                word
                for word in args
                if not (word.literal and word.text[1:].isdigit() and word.text[0] in "-+")
            ]
        parsed = parse_options(args, option_spec)
        if not _clean(parsed):
            return False
        if max_operands is not None and len(parsed.operands) > max_operands:
            return False
        return operand is None or all(operand(word) for word in parsed.operands)

    return check


def _anything(invocation: Invocation) -> bool:
    return all(word.plain for word in invocation.args)


_LS = spec(
    "aAbBcCdDfFgGhHiklLmnNopqQrRsStuUvwxXZ1",
    "ITw",
    long="all almost-all author escape "
    "ignore-backups directory dired classify file-type full-time group-directories-first no-group "
    "human-readable si dereference-command-line dereference-command-line-symlink-to-dir dereference "
    "inode kibibytes literal numeric-uid-gid literal hide-control-chars show-control-chars quote-name "
    "recursive reverse size zero context help version",
    long_values="block-size format hide ignore quoting-style sort time tabsize width",
    long_optional="color hyperlink indicator-style time-style classify",
)
_CAT = spec(
    "AbeEnstTuv",
    long="show-all number-nonblank show-ends number squeeze-blank show-tabs show-nonprinting help version",
)
_HEAD = spec("qvz", "cn", long="quiet silent verbose zero-terminated help version", long_values="bytes lines")
_TAIL = spec(
    "fFqvz",
    "cnsp",
    long="quiet silent verbose zero-terminated retry help version",
    long_values="bytes lines sleep-interval pid max-unchanged-stats",
    long_optional="follow",
)
_WC = spec(
    "cmlLw", long="bytes chars lines max-line-length words help version", long_values="files0-from total"
)
_GREP = spec(
    "EFGPivwxyclLoqsbHhnTZzaIrRUu",
    "efmABCd",
    long="extended-regexp fixed-strings basic-regexp "
    "perl-regexp ignore-case no-ignore-case word-regexp line-regexp null-data no-messages invert-match "
    "version help byte-offset line-number line-buffered with-filename no-filename initial-tab null "
    "count files-with-matches files-without-match only-matching quiet silent text recursive "
    "dereference-recursive",
    long_values="regexp file max-count after-context before-context context "
    "label binary-files devices directories exclude exclude-from exclude-dir include group-separator",
    long_optional="color colour no-group-separator",
)
_RG = spec(
    "aBCcEeFfgHhiIjLlMmnNopqrSsTtuUvVwx0",
    "ABCEefgjMmrTt",
    long="count count-matches "
    "files files-with-matches files-without-match fixed-strings follow hidden ignore-case invert-match "
    "json line-number no-line-number no-filename with-filename no-heading heading null only-matching "
    "pretty quiet smart-case stats text trim vimgrep word-regexp line-regexp multiline "
    "no-ignore no-ignore-vcs unrestricted sort-files case-sensitive column no-messages help version "
    "files-with-matches passthru",
    long_values="after-context before-context context glob iglob "
    "max-count max-depth type type-not encoding regexp file replace sort sortr max-columns "
    "threads color colors path-separator",
    long_optional="",
)
_STAT = spec(
    "LfteZ",
    "c",
    long="dereference file-system terse help version",
    long_values="format printf",
    long_optional="cached",
)
_FILE = spec(
    "bdEhiIkLlNnprsSvz0",
    "eFfmP",
    long="brief debug dereference no-dereference mime mime-type "
    "mime-encoding keep-going list no-buffer no-pad preserve-date print0 raw special-files help version "
    "apple extension",
    long_values="exclude exclude-quiet separator files-from magic-file parameter",
)
_DU = spec(
    "0abcDhHklLmPsSxt",
    "BdtX",
    long="null all apparent-size bytes total dereference-args human-readable "
    "si dereference count-links no-dereference separate-dirs summarize one-file-system inodes help "
    "version",
    long_values="block-size max-depth threshold exclude exclude-from files0-from time-style",
    long_optional="time",
)
_DF = spec(
    "ahHiklPTtvx",
    "Btx",
    long="all human-readable si inodes local portability print-type total help version sync no-sync",
    long_values="block-size type exclude-type",
    long_optional="output",
)
_FREE = spec(
    "bkmghltvwLS",
    "cs",
    long="bytes kilo mega giga tera peta kibi mebi gibi tebi pebi human lohi "
    "total wide committed help version line",
    long_values="count seconds",
)
_UPTIME = spec("psrhV", long="pretty since raw help version container")
_UNAME = spec(
    "asnrvmpio",
    long="all kernel-name nodename kernel-release kernel-version machine processor "
    "hardware-platform operating-system help version",
)
_ID = spec("aZgGnruz", long="context group groups name real user zero help version")
_HOSTNAME = spec(
    "aAdfiIsy", long="alias all-fqdns domain fqdn long all-ip-addresses ip-address short yp nis help version"
)
_LSBLK = spec(
    "abdDfJlmnOpPrSsTtVzAEieoQxMIN",
    "EeIoQxMN",
    long="all bytes nodeps discard fs json list "
    "perms noheadings output-all paths pairs raw scsi inverse topology ascii tree zoned help version",
    long_values="output exclude include sort width",
    long_optional="tree",
)
_JOURNAL = spec(
    "abefhklmNqrSUxtpgouDF",
    "nbpgSUutoDFIM",
    long="all boot dmesg follow no-pager pager-end "
    "reverse catalog quiet merge utc no-hostname list-boots disk-usage system user no-full full "
    "no-tail show-cursor header fields list-catalog verify",
    long_values="lines unit user-unit "
    "identifier priority grep since until output output-fields directory file field cursor "
    "after-cursor facility namespace root image",
    long_optional="case-sensitive boot lines",
)
_SS = spec(
    "hVHnralopeimsZzbE46O0tudwxSM",
    "fAF",
    long="help version no-header numeric resolve all listening "
    "options extended memory processes info summary context contexts bpf events ipv4 ipv6 packet tcp udp "
    "dccp raw unix sctp vsock xdp mptcp oneline threads tipcinfo cgroup inet-sockopt",
    long_values="family query socket filter",
)
_NETSTAT = spec(
    "rigsMvWnNeopcCFAtuwxlaZ",
    "A",
    long="route interfaces groups statistics masquerade verbose wide "
    "numeric numeric-hosts numeric-ports numeric-users symbolic extend timers program continuous "
    "listening all fib cache tcp udp raw unix help version",
    long_values="protocol",
)
_DATE = spec(
    "uRIj",
    "dfr",
    long="utc universal rfc-email debug help version",
    long_values="date file reference",
    long_optional="iso-8601 rfc-3339",
)
_PS = spec("")
_TOP = spec("bcEeHiSs1", "dnpuUowO", long="", long_values="")
_WHICH = spec(
    "as",
    long="all skip-dot skip-tilde show-dot show-tilde tty-only read-alias skip-alias "
    "read-functions skip-functions",
)
_TYPE = spec("afptP")
_CD = spec("LPe@")
_PWD = spec("LP")
_SWAPON = spec("sv", long="summary noheadings raw bytes verbose help version", long_optional="show")
_SORT = spec(
    "bcCdfghiMmnrRsuVz",
    "kStT",
    long="check ignore-leading-blanks dictionary-order ignore-case "
    "general-numeric-sort ignore-nonprinting merge human-numeric-sort numeric-sort random-sort reverse "
    "stable unique version-sort zero-terminated debug month-sort help version",
    long_values="key field-separator buffer-size parallel files0-from batch-size sort",
)
_CUT = spec(
    "nszw",
    "bcdf",
    long="complement only-delimited zero-terminated help version",
    long_values="bytes characters delimiter fields output-delimiter",
)
_TR = spec("cCdst", long="complement delete squeeze-repeats truncate-set1 help version")
_SUM = spec(
    "bctwz",
    "a",
    long="binary check tag text zero quiet status strict warn ignore-missing help version "
    "base64 raw untagged",
    long_values="algorithm length",
)
_DIFF = spec(
    "abBcdeEfHiINnpqrsStTuvwxXyZ",
    "CDFILSUWX",
    long="brief report-identical-files context unified "
    "ed normal rcs side-by-side left-column suppress-common-lines show-c-function expand-tabs "
    "initial-tab suppress-blank-empty recursive no-dereference new-file unidirectional-new-file "
    "ignore-file-name-case no-ignore-file-name-case text strip-trailing-cr ignore-case "
    "ignore-tab-expansion ignore-trailing-space ignore-space-change ignore-all-space ignore-blank-lines "
    "minimal speed-large-files help version",
    long_values="exclude exclude-from from-file to-file "
    "ignore-matching-lines label show-function-line starting-file width tabsize "
    "line-format old-line-format new-line-format unchanged-line-format horizon-lines",
    long_optional="color",
)
_SIMPLE = spec("")

SAFE: dict[str, Checker] = {
    "ls": allow(_LS), "dir": allow(_LS), "vdir": allow(_LS),
    "cat": allow(_CAT), "tac": allow(spec("bsr", long="before regex help version", long_values="separator")),
    "head": allow(_HEAD, numeric=True), "tail": allow(_TAIL, numeric=True), "wc": allow(_WC),
    "grep": allow(_GREP), "egrep": allow(_GREP), "fgrep": allow(_GREP), "rg": allow(_RG),
    "stat": allow(_STAT), "file": allow(_FILE), "du": allow(_DU), "df": allow(_DF), "free": allow(_FREE),
    "uptime": allow(_UPTIME, max_operands=0), "uname": allow(_UNAME, max_operands=0), "id": allow(_ID),
    "whoami": allow(_SIMPLE, max_operands=0), "hostname": allow(_HOSTNAME, max_operands=0),
    "ps": _anything, "lsblk": allow(_LSBLK), "ss": allow(_SS), "netstat": allow(_NETSTAT),
    "swapon": lambda inv: bool(inv.args) and allow(_SWAPON, max_operands=0)(inv),
    "journalctl": allow(_JOURNAL), "echo": _anything, "which": allow(_WHICH), "type": allow(_TYPE),
    "cd": allow(_CD, max_operands=1), "pwd": allow(_PWD, max_operands=0), "true": _anything,
    "false": _anything, ":": _anything, "{": _anything, "}": _anything,
    "date": allow(_DATE, operand=lambda word: word.text.startswith("+")),
    "sort": allow(_SORT), "uniq": allow(spec("cdDiuz", "fsw", long="count repeated ignore-case unique "
                                             "zero-terminated help version", long_values="skip-fields skip-chars "
                                             "check-chars", long_optional="all-repeated group"), max_operands=1),
    "cut": allow(_CUT), "tr": allow(_TR), "basename": allow(spec("az", "s", long="multiple zero", long_values="suffix")),
    "dirname": allow(spec("z", long="zero")), "nproc": allow(spec("", long="all", long_values="ignore")),
    "realpath": allow(spec("eEmLPqsz", long="canonicalize-existing canonicalize-missing logical physical quiet "
                           "strip no-symlinks zero", long_values="relative-to relative-base")),
    "readlink": allow(spec("efmnqsvz", long="canonicalize canonicalize-existing canonicalize-missing "
                           "no-newline quiet silent verbose zero")),
    "sha256sum": allow(_SUM), "sha1sum": allow(_SUM), "sha512sum": allow(_SUM), "md5sum": allow(_SUM),
    "b2sum": allow(_SUM), "cksum": allow(_SUM), "cmp": allow(spec("blsv", "in", long="print-bytes verbose quiet "
                                                                  "silent", long_values="ignore-initial bytes")),
    "diff": allow(_DIFF), "lscpu": allow(spec("abceJpsxyBC")), "lsmod": allow(_SIMPLE, max_operands=0),
    "getent": allow(spec("i", "s", long="no-idn", long_values="service")), "printenv": allow(spec("0", long="null")),
    "groups": _anything, "arch": allow(_SIMPLE, max_operands=0), "tty": allow(spec("s")),
    "locale": allow(spec("ackmv")), "seq": allow(spec("w", "fs", long="equal-width", long_values="format "
                                                    "separator"), numeric=True),
    "nl": allow(spec("p", "bdfhilnsvw")), "od": allow(spec("bcdfilosvx", "AjNSTtw")),
    "strings": allow(spec("afw", "nt", long="all print-file-name include-all-whitespace", long_values="bytes radix "
                          "encoding")),
    "whereis": allow(spec("bmsulf", "BMS")), "lspci": allow(spec("mtvnkDxb", "sdiA")),
    "lsusb": allow(spec("vtV", "sdD")), "pgrep": allow(spec("cdfilnorvwxaAe", "gGPstuUF")),
    "pidof": allow(spec("scxz", "o")), "findmnt": allow(spec("AbcDdefFiklmnNoOpPrsSTtuvwx", "FNoOpStTwx")),
    "vmstat": allow(spec("afmnsdDpStwy", "SpC"), numeric=True), "nice": lambda inv: not inv.args,
    "last": allow(spec("adFiowRx", "fnpst", long="dns fulltimes ip nohostname system fullnames",
                       long_values="file limit present since until time-format"), numeric=True),
    "lastb": allow(spec("adFiowRx", "fnpst"), numeric=True), "lastlog": allow(spec("", "btu")),
    "who": allow(spec("abdHlmpqrsTtuw", long="all boot dead heading login lookup mesg message process count "
                      "runlevel short time users writable")),
    "w": allow(spec("hiusfoV", long="no-header ip-addr no-current short from old-style")),
    "users": _anything, "whatis": allow(spec("dvrwl", "CLmMs")), "apropos": allow(spec("dvrweal", "CLmMs")),
    "dmesg": allow(spec("dekHLPrSTtuwxF", "flLs", long="decode kernel human nopager raw syslog ctime notime "
                        "reltime userspace follow noescape json", long_values="facility level since until "
                        "time-format file buffer-size", long_optional="color")),
    "exit": allow(_SIMPLE, max_operands=1, operand=lambda word: word.text.lstrip("-").isdigit()),
    "return": allow(_SIMPLE, max_operands=1, operand=lambda word: word.text.lstrip("-").isdigit()),
    "shift": allow(_SIMPLE, max_operands=1, operand=lambda word: word.text.isdigit()),
    "break": allow(_SIMPLE, max_operands=1), "continue": allow(_SIMPLE, max_operands=1),
}  # fmt: skip


def _printf(invocation: Invocation) -> bool:
    return bool(invocation.args) and not invocation.args[0].text.startswith("-v") and _anything(invocation)


def _test(invocation: Invocation) -> bool:
    texts = [word.text for word in invocation.args]
    if invocation.name == "[" and (not texts or texts[-1] != "]"):
        return False
    return "-v" not in texts and "-R" not in texts and _anything(invocation)


def _command(invocation: Invocation) -> bool:
    texts = [word.text for word in invocation.args]
    return bool(texts) and texts[0] in ("-v", "-V") and _anything(invocation)


def _env(invocation: Invocation) -> bool:
    return all(word.text in ("-0", "--null") for word in invocation.args)


def _top(invocation: Invocation) -> bool:
    texts = [word.text for word in invocation.args]
    return any(text.startswith("-") and "b" in text for text in texts) and allow(_TOP, max_operands=0)(
        invocation
    )


def _ip(invocation: Invocation) -> bool:
    texts = [word.text for word in invocation.args]
    index = 0
    while index < len(texts) and texts[index].startswith("-"):
        option = texts[index].lstrip("-")
        if option in ("b", "batch", "force", "rc", "rcvbuf") or option.startswith("bat"):
            return False
        index += 2 if option in ("n", "netns", "f", "family", "l", "loops") else 1
    rest = texts[index:]
    if rest[:2] == ["netns", "exec"]:
        return False
    return len(rest) <= 1 or rest[1] in IP_READ_VERBS or rest[:2] == ["route", "get"] or rest[1] in ("dev",)


def _mount(invocation: Invocation) -> bool:
    texts = [word.text for word in invocation.args]
    rest = [t for t in texts if t not in ("-l", "--show-labels", "-v")]
    return not rest or (rest[0] in ("-t", "--types") and len(rest) == 2)


def _systemctl(invocation: Invocation) -> bool:
    option_spec = spec(
        "aflqt",
        "nopPst",
        long="all full quiet no-pager no-legend plain value user system failed "
        "recursive reverse after before show-types",
        long_values="type state property lines output what timestamp",
    )
    parsed = parse_options(invocation.args, option_spec)
    if not _clean(parsed):
        return False
    verb = parsed.operands[0].text if parsed.operands else "list-units"
    return verb in SYSTEMCTL_READS - {"cat", "help"} | {"list-units"}


def _kill_list(invocation: Invocation) -> bool:
    return all(word.text in ("-l", "-L") or canonical_signal(word.text) for word in invocation.args)


SAFE.update({
    "printf": _printf, "test": _test, "[": _test, "[[": lambda inv: True, "command": _command, "env": _env,
    "find": find_read, "top": _top, "ip": _ip, "mount": _mount, "systemctl": _systemctl,
})  # fmt: skip


def known_safe(invocation: Invocation) -> bool:
    """Whether this invocation is a known-safe read by name and options (see the module docstring)."""
    if invocation.name == "git":
        from relay_shell.policy.rules.git_reads import git_read

        return git_read(invocation)
    if invocation.name in ("docker", "podman"):
        return _container_read(invocation, {"ps", "images", "inspect", "logs"} & CONTAINER_READS)
    if invocation.name == "kubectl":
        return _container_read(invocation, {"get", "describe", "logs"} & KUBE_READS)
    checker = SAFE.get(invocation.name)
    return checker is not None and checker(invocation)


def _container_read(invocation: Invocation, verbs: set[str]) -> bool:
    texts = [word.text for word in invocation.args]
    operands = [text for text in texts if not text.startswith("-")]
    if not operands or operands[0] not in verbs or texts[0] != operands[0]:
        return False
    forbidden = ("--kubeconfig", "--token", "--as", "-s", "--server", "--raw", "-H", "--host")
    return _anything(invocation) and not any(text.startswith(forbidden) for text in texts)
