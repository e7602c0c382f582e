"""The table of programs whose arguments or standard input carry a secret.

Read by :mod:`.programs`: :data:`PROGRAMS` maps a program's base name to its :class:`Rule`
(options, Windows-style prefixes, positionals after a subcommand, keyword pairs);
:data:`WRAPPERS` names the programs that run another one; :data:`STDIN_PROGRAMS` those that
read a secret on standard input. Adding a form is adding a row here, with a test row in
``tests/governance/test_redaction_forms.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

type Mode = Literal["whole", ":", ",", "%", "/"]


@dataclass(frozen=True)
class Positional:
    """The secret is the ``index``-th (``-1``: last) non-option word after ``path`` (the
    subcommand words, matched case-insensitively, in order); ``takes_value`` options skip
    their value when counting. With ``after``, counting starts past the first such word that
    begins with one of these prefixes (a share: ``net use \\\\h\\s PW``); with
    ``adjacent`` too, the secret is the word right after it, if that is no option
    (``smbclient //h/s PW``)."""

    path: tuple[str, ...]
    index: int
    mode: Mode = "whole"
    takes_value: frozenset[str] = frozenset()
    slash_options: bool = False  # Windows: /add, /domain are options
    after: tuple[str, ...] = ()
    adjacent: bool = False
    variables: bool = False  # PowerShell: a bare $name is a variable, not the secret itself


@dataclass(frozen=True)
class Rule:
    """The secret forms of one program. ``when``: a word that must be among the arguments
    for the options to apply (``az login -p``), empty for always. ``ignore_case``: options
    and prefixes (written in lower case) match in any case (Windows: ``/PASSWORD:``)."""

    options: dict[str, Mode] = field(default_factory=dict)
    prefixes: dict[str, Mode] = field(default_factory=dict)
    positionals: tuple[Positional, ...] = ()
    keywords: bool = False
    when: frozenset[str] = frozenset()
    ignore_case: bool = False


def _opts(flags: str, mode: Mode = "whole") -> dict[str, Mode]:
    return dict.fromkeys(flags.split(), mode)


_BW_VALUES: Final = frozenset({"--passwordenv", "--passwordfile", "--session", "--method", "--code"})
_SNMP = Rule(options=_opts("-c -A -X --community"))
_SQLCMD = Rule(options=_opts("-P"))
_DASH_P = Rule(options=_opts("-p"))
_NET = Rule(
    positionals=(
        Positional(("user",), 1, slash_options=True),
        Positional(("rpc", "password"), 1, slash_options=True),
        # net use [Z: | *] \\host\share [PW | *] [/user:NAME] [/persistent:no]: PW may follow the options
        Positional(("use",), 0, slash_options=True, after=("\\\\", "//")),
    ),
    options=_opts("-U --user", "%"),
)
_SMBCLIENT = Rule(positionals=(Positional((), 0, after=("//", "\\\\"), adjacent=True),))  # //host/share PW
_PUTTY = Rule(options=_opts("-pw"))
_SECURE_STRING_KEYS: Final = frozenset({"-key", "-Key", "-KEY", "-securekey", "-SecureKey", "-SECUREKEY"})
_ORACLE = Rule(positionals=(Positional((), 0, "/", frozenset({"-L", "-M", "-R"})),))
_FREERDP = Rule(prefixes={"/p:": "whole", "/password:": "whole", "/pth:": "whole", "/gp:": "whole"})

PROGRAMS: Final[dict[str, tuple[Rule, ...]]] = {
    **dict.fromkeys(("sqlcmd", "mssql-cli", "bcp", "osql", "mosquitto_pub", "mosquitto_sub"), (_SQLCMD,)),
    "isql": (_SQLCMD, Rule(positionals=(Positional((), 2),))),
    "ipmitool": (
        Rule(options=_opts("-P -k -y -K")),
        Rule(positionals=(Positional(("user", "set", "password"), 1),)),
    ),
    "rabbitmqctl": (
        Rule(
            positionals=(
                Positional(("add_user",), 1),
                Positional(("change_password",), 1),
                Positional(("authenticate_user",), 1),
            )
        ),
    ),
    "rabbitmqadmin": (_DASH_P,),
    "lftp": (Rule(options=_opts("-u --user", ",")),),
    "open": (Rule(options=_opts("-u --user", ",")),),  # lftp's own command, in lftp -c / -e
    **dict.fromkeys(("ncftp", "ncftpget", "ncftpput", "ncftpls"), (_DASH_P,)),
    **dict.fromkeys(
        [
            "snmpwalk",
            "snmpget",
            "snmpset",
            "snmpbulkwalk",
            "snmpbulkget",
            "snmpgetnext",
            "snmptable",
            "snmptrap",
            "snmpinform",
            "snmpdelta",
            "snmpdf",
            "snmpstatus",
            "snmpnetstat",
            "snmpusm",
            "snmpvacm",
            "snmptest",
            "snmpcheck",
            "onesixtyone",
        ],
        (_SNMP,),
    ),
    "nmcli": (Rule(keywords=True),),
    "wpa_cli": (Rule(keywords=True),),
    "iwctl": (Rule(options=_opts("--passphrase -P")),),
    "wpa_passphrase": (Rule(positionals=(Positional((), 1),)),),
    "az": (Rule(options=_opts("-p"), when=frozenset({"login"})),),
    "vault": (Rule(positionals=(Positional(("login",), 0, takes_value=frozenset({"-method"})),)),),
    "bw": (
        Rule(
            positionals=(
                Positional(("unlock",), 0, takes_value=_BW_VALUES),
                Positional(("login",), 1, takes_value=_BW_VALUES),
            )
        ),
    ),
    "op": (Rule(positionals=(Positional(("signin",), -1),), when=frozenset({"--raw-password"})),),
    **dict.fromkeys(("useradd", "usermod", "groupadd", "groupmod"), (_DASH_P,)),
    "mysqladmin": (Rule(positionals=(Positional(("password",), 0),)),),
    **dict.fromkeys(("net", "net.exe"), (_NET,)),
    "smbclient": (_SMBCLIENT,),
    **dict.fromkeys(
        ("mongodump", "mongorestore", "mongoexport", "mongoimport", "mongostat", "mongotop", "mongofiles"),
        (_DASH_P,),
    ),
    **dict.fromkeys(("plink", "pscp", "psftp", "plink.exe", "pscp.exe", "psftp.exe"), (_PUTTY,)),
    **dict.fromkeys(
        ("winrs", "winrs.exe"),
        (
            Rule(
                prefixes=dict.fromkeys(("-p:", "-password:", "/p:", "/password:"), "whole"), ignore_case=True
            ),
        ),
    ),
    **dict.fromkeys(("wmic", "wmic.exe"), (Rule(prefixes={"/password:": "whole"}, ignore_case=True),)),
    **dict.fromkeys(
        ("sc", "sc.exe"), (Rule(options={"password=": "whole"}, ignore_case=True),)
    ),  # password= PW
    **dict.fromkeys(
        ("netdom", "netdom.exe"),
        (
            Rule(
                prefixes=dict.fromkeys(("/passwordd:", "/passwordo:", "/pd:", "/po:"), "whole"),
                ignore_case=True,
            ),
        ),
    ),
    **dict.fromkeys(("certutil", "certutil.exe"), (Rule(options=_opts("-p"), ignore_case=True),)),
    **dict.fromkeys(("smbmap", "enum4linux", "enum4linux-ng"), (_DASH_P,)),
    "convertto-securestring": (
        Rule(
            positionals=(Positional((), 0, takes_value=_SECURE_STRING_KEYS, variables=True),),
            when=frozenset({"-AsPlainText", "-asplaintext", "-ASPLAINTEXT", "-asPlainText"}),
        ),
    ),
    "mc": (Rule(positionals=(Positional(("alias", "set"), 3), Positional(("config", "host", "add"), 3))),),
    "smbpasswd": (Rule(options=_opts("-w")),),
    "ssh-keygen": (Rule(options=_opts("-N -P")),),
    **dict.fromkeys(("rar", "unrar"), (Rule(prefixes={"-p": "whole"}),)),
    **dict.fromkeys(("xfreerdp", "wlfreerdp", "sdl-freerdp", "xfreerdp3", "sdl-freerdp3"), (_FREERDP,)),
    "cmdkey": (Rule(prefixes={"/pass:": "whole"}),),
    **dict.fromkeys(
        ("rdesktop", "evil-winrm", "crackmapexec", "netexec", "nxc", "hydra", "medusa"), (_DASH_P,)
    ),
    **dict.fromkeys(("psexec", "psexec.exe", "winexe", "cqlsh", "racadm"), (_DASH_P,)),
    "schtasks": (Rule(options=_opts("/rp /p")),),
    **dict.fromkeys(("http", "https", "httpie"), (Rule(options=_opts("-a --auth", ":")),)),
    "security": (
        Rule(
            options=_opts("-w -p"),
            when=frozenset(
                ["add-generic-password", "add-internet-password", "unlock-keychain", "create-keychain"]
            ),
        ),
    ),
    **dict.fromkeys(("kadmin", "kadmin.local"), (Rule(options=_opts("-w -pw")),)),
    "dscl": (Rule(positionals=(Positional(("-passwd",), 1),)),),
    "mkpasswd": (Rule(positionals=(Positional((), 0, takes_value=frozenset({"-m", "-S", "-R", "-P"})),)),),
    "openssl": (Rule(positionals=(Positional(("passwd",), 0, takes_value=frozenset({"-salt", "-in"})),)),),
    "redis-cli": (Rule(positionals=(Positional(("auth",), -1),)),),
    "dotnet": (Rule(positionals=(Positional(("user-secrets", "set"), 1),)),),
    **dict.fromkeys(("sqlplus", "rman", "expdp", "impdp", "exp", "imp", "sqlldr", "dgmgrl"), (_ORACLE,)),
    "glab": (Rule(options=_opts("-t"), when=frozenset({"login"})),),
    "doctl": (Rule(options=_opts("-t")),),
    "wget": (Rule(options=_opts("--password --http-password --ftp-password --proxy-password")),),
}

# Wrappers run the program named after their own options; each maps to the options that
# take a value (and how many leading operands are not the program: timeout's duration).
WRAPPERS: Final[dict[str, tuple[frozenset[str], int]]] = {
    "sudo": (frozenset(["-u", "-g", "-p", "-C", "-D", "-h", "-r", "-t", "-U", "-T"]), 0),
    "doas": (frozenset({"-u", "-C"}), 0),
    "env": (frozenset({"-u", "-C", "-S"}), 0),
    "nice": (frozenset({"-n"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "-t"}), 0),
    "timeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "chroot": (frozenset({"--userspec", "--groups"}), 1),
    "runuser": (frozenset({"-u", "-g", "-G"}), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "watch": (frozenset({"-n", "-d"}), 0),
    **dict.fromkeys(
        (":", "nohup", "command", "exec", "time", "builtin", "setsid", "torsocks"), (frozenset(), 0)
    ),
}

# Programs that read a secret on standard input when it is not a terminal, and how: "line"
# (the first line), "pairs" (``name:secret`` lines), "all" (every line: new and repeated).
type StdinMode = Literal["line", "pairs", "all"]
STDIN_PROGRAMS: Final[dict[str, StdinMode]] = {
    "chpasswd": "pairs",
    "chgpasswd": "pairs",
    "passwd": "all",
    "smbpasswd": "all",
    "vncpasswd": "all",
    "x11vnc": "all",
    "kinit": "line",
    "cryptsetup": "line",
    "su": "line",
    "wpa_passphrase": "line",
    "htpasswd": "line",
}
