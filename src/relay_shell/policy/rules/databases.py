"""Database clients and administration commands: SQL given inline or on stdin, drops, restores.

Family ``sql``: statements given inline or on visible stdin are classified
(:func:`scripts.sql_verdict`); statements from a file, an expansion or stdin the classifier
cannot see are opaque; a client at the terminal is interactive. Dropping a database, a
cluster or its data is tier 3, other administration tier 2, reads and help tier 1.
"""

from __future__ import annotations

from relay_shell.policy.model import IRREVERSIBLE, REVERSIBLE, STATEFUL, Verdict, opaque
from relay_shell.policy.options import spec
from relay_shell.policy.rules.base import Invocation, inline_code, rule, run_file, stdin_code
from relay_shell.policy.rules.scripts import sql_verdict

_SQL = {
    "psql": (
        spec(
            "aAbeEHlnqsStxXwW",
            "cdfhLoPpRTUvF",
            long_values="command file dbname host port username "
            "output log-file pset set variable field-separator record-separator",
            long="no-psqlrc",
        ),
        ("-c", "--command"),
        ("-f", "--file"),
    ),
    "mysql": (
        spec(
            "BCEfGHnNqrstvVwX",
            "DehPSuWpO",
            long="batch force html xml silent table vertical",
            long_values="execute database host port user password socket init-command",
        ),
        ("-e", "--execute"),
        (),
    ),
    "mariadb": (
        spec("BCEfGHnNqrstvVwX", "DehPSuWpO", long_values="execute database host port user password"),
        ("-e", "--execute"),
        (),
    ),
    "sqlcmd": (spec("bEeIrvXy", "QqidSUPHo"), ("-Q", "-q"), ("-i",)),
    "clickhouse-client": (
        spec("mnt", "qdhu", long_values="query queries-file host user password database"),
        ("-q", "--query"),
        ("--queries-file",),
    ),
    "cqlsh": (
        spec("C", "efuk", long_values="execute file username keyspace"),
        ("-e", "--execute"),
        ("-f", "--file"),
    ),
    "cockroach": (
        spec("", "e", long_values="execute file url host user database"),
        ("-e", "--execute"),
        ("-f",),
    ),
}


@rule(*_SQL, "sqlite3", "sqlite", "duckdb", "pgcli", "mycli", "litecli", "usql")
def sql_client(invocation: Invocation) -> Verdict:
    name = invocation.name
    if name in _SQL:
        option_spec, inline_options, file_options = _SQL[name]
        parsed = invocation.options(option_spec)
        inline = parsed.values(*inline_options)
        if parsed.dynamic_values and any(option in inline_options for option in parsed.dynamic_values):
            return opaque("opaque.sql_client", f"{name} runs SQL given as an expansion")
        if file_options and parsed.has(*file_options):
            return run_file(invocation, "an SQL file")
    else:
        parsed = invocation.options(spec(long_values="cmd init"))
        texts = [word for word in invocation.args if not word.text.startswith("-")]
        inline = [word.text for word in texts[1:]] + parsed.values("--cmd")
        if any(not word.literal for word in texts[1:]):
            return opaque("opaque.sql_client", f"{name} runs SQL given as an expansion")
        if any(word.text in ("-init", "--init", "-cmd") for word in invocation.args):
            return run_file(invocation, "an SQL file")
    if inline:
        return sql_verdict("\n".join(inline))
    return _sql_stdin(invocation)


def _sql_stdin(invocation: Invocation) -> Verdict:
    stdin = invocation.stdin
    if stdin.text is not None:
        return sql_verdict(stdin.text)
    if stdin.source == "empty":
        return Verdict(REVERSIBLE, "sql.client")
    if stdin.source == "terminal":
        invocation.interactive = True
        return Verdict(REVERSIBLE, "sql.client")
    return opaque("opaque.sql_client", f"{invocation.name} runs SQL read from {stdin.label}")


@rule("redis-cli", "valkey-cli", "keydb-cli")
def redis(invocation: Invocation) -> Verdict:
    words = [word.text.upper() for word in invocation.args if word.literal]
    if invocation.dynamic() or "FLUSHALL" in words or "FLUSHDB" in words:
        return Verdict(IRREVERSIBLE, "sql.redis_flush")
    if {
        "SHUTDOWN",
        "CONFIG",
        "DEBUG",
        "EVAL",
        "EVALSHA",
        "SCRIPT",
        "MODULE",
        "FUNCTION",
        "SLAVEOF",
        "REPLICAOF",
        "DEL",
        "UNLINK",
    } & set(words):
        return Verdict(STATEFUL, "sql.redis_change")
    operands = [text for text in words if not text.startswith("-")]
    if not operands and invocation.stdin.text is not None:
        return sql_verdict(invocation.stdin.text)
    return Verdict(REVERSIBLE, "sql.client")


@rule("mongo", "mongosh")
def mongo(invocation: Invocation) -> Verdict:
    parsed = invocation.options(
        spec("", "", long_values="eval host port username password file", long="quiet nodb norc shell")
    )
    if parsed.values("--eval"):
        return inline_code(invocation, "\n".join(parsed.values("--eval")), "JavaScript")
    if any(word.text.endswith(".js") for word in parsed.operands) or parsed.has("--file"):
        return run_file(invocation, "a script")
    code = stdin_code(invocation, "code")
    return Verdict(REVERSIBLE, "sql.client") if code is None else code


_HELP = frozenset({"--help", "-?", "--version", "-V"})


@rule("dropdb", "dropuser", "dropdb.mysql")
def dropdb(invocation: Invocation) -> Verdict:
    if invocation.args and all(word.literal and word.text in _HELP for word in invocation.args):
        return Verdict(REVERSIBLE, "sql.client")
    return Verdict(IRREVERSIBLE, f"sql.{invocation.name}")


@rule("createdb", "createuser", "pg_ctl", "pg_ctlcluster", "pg_dropcluster", "pg_upgrade", "pg_resetwal")
def pg_admin(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if texts and all(text in _HELP for text in texts):
        return Verdict(REVERSIBLE, "sql.client")
    if invocation.name in ("pg_dropcluster", "pg_resetwal") or (
        invocation.name == "pg_ctl" and "kill" in texts
    ):
        return Verdict(IRREVERSIBLE, f"sql.{invocation.name}")
    return Verdict(STATEFUL, f"sql.{invocation.name}")


@rule("pg_restore")
def pg_restore(invocation: Invocation) -> Verdict:
    parsed = invocation.options(
        spec(
            "acCeFjlLnOPsStxv1",
            "dfhIjLnNpPStTUW",
            long="clean create exit-on-error if-exists single-transaction",
        )
    )
    if parsed.has("-c", "--clean"):
        return Verdict(IRREVERSIBLE, "sql.restore_clean")
    if parsed.has("-d", "--dbname"):
        return Verdict(STATEFUL, "sql.restore")
    return Verdict(REVERSIBLE, "sql.client")  # without a database it prints a script


_MYSQLADMIN_READS = frozenset(
    {"status", "ping", "version", "variables", "processlist", "extended-status", "debug"}
)


@rule("mysqladmin", "mariadb-admin")
def mysqladmin(invocation: Invocation) -> Verdict:
    parsed = invocation.options(spec("fsvVE?", "hPSuOcpw", long="force silent verbose"))
    if parsed.dynamic or not parsed.literal_operands:
        return Verdict(IRREVERSIBLE, "sql.mysqladmin_drop")
    verbs = [word.text.lower() for word in parsed.operands]
    if "drop" in verbs:
        return Verdict(IRREVERSIBLE, "sql.mysqladmin_drop")
    if all(verb in _MYSQLADMIN_READS for verb in verbs):
        return Verdict(REVERSIBLE, "sql.client")
    return Verdict(STATEFUL, "sql.mysqladmin")


@rule("influx")
def influx(invocation: Invocation) -> Verdict:
    parsed = invocation.options(spec("", "", long_values="execute host port username password database"))
    texts = invocation.literal_texts()
    inline = parsed.values("--execute") + [
        texts[index + 1] for index, text in enumerate(texts[:-1]) if text == "-execute"
    ]
    if invocation.dynamic():
        return opaque("opaque.sql_client", "influx with expansions among its arguments")
    if inline:
        return sql_verdict("\n".join(inline))
    if "delete" in texts:
        return Verdict(IRREVERSIBLE, "sql.influx_delete")
    if {"write", "create", "update", "restore", "setup", "apply", "import"} & set(texts):
        return Verdict(STATEFUL, "sql.influx")
    return Verdict(REVERSIBLE, "sql.client")


@rule("etcdctl")
def etcdctl(invocation: Invocation) -> Verdict:
    texts = invocation.literal_texts()
    if invocation.dynamic():
        return Verdict(IRREVERSIBLE, "sql.etcd_delete")
    operands = [text for text in texts if not text.startswith("-")]
    verb = operands[0] if operands else ""
    if verb in ("del", "delete") or (verb in ("snapshot", "defrag", "compaction") and verb != "snapshot"):
        return Verdict(IRREVERSIBLE, "sql.etcd_delete")
    if verb == "snapshot" and operands[1:2] == ["restore"]:
        return Verdict(IRREVERSIBLE, "sql.etcd_restore")
    if verb in ("get", "watch", "version", "endpoint", "member", "alarm", "check", "help", "snapshot"):
        return (
            Verdict(REVERSIBLE, "sql.client")
            if verb != "member" or "list" in operands
            else Verdict(STATEFUL, "sql.etcd")
        )
    return Verdict(STATEFUL, "sql.etcd")
