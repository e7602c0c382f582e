"""Generate ``docs/tools.md`` from the tools, prompt and resources the server registers.

::

    .venv/bin/python -m relay_shell.docs_gen            # rewrite docs/tools.md
    .venv/bin/python -m relay_shell.docs_gen --check    # exit 1 when docs/tools.md is stale

The server is built in-process with its audit file and SSH files in a temporary directory
(no ssh_config, no inventory), and listed the way a client would list it (``list_tools``,
``list_prompts``, ``list_resources``, ``list_resource_templates``). Names, descriptions,
annotations and schemas come from the SDK's answers; the one thing a schema cannot say is
how a call gets its tier, which :data:`TIER_RULES` states per tool next to this generator
(``tests/test_docs.py`` checks it covers every registered tool, names real parameters and
matches the tier fixed-tier tools report). The output is deterministic: sorted, no
timestamps, no version number.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from mcp_types import Prompt, Resource, ResourceTemplate, Tool, ToolAnnotations

from relay_shell.docs_schema import (
    cell,
    constraints_text,
    field_descriptions,
    length_limits,
    output_rows,
    parameter_rows,
    type_text,
)
from relay_shell.tools.base import hint
from relay_shell.vocabulary import ErrorKind, Tier

if TYPE_CHECKING:
    from relay_shell.app import RelayServer

__all__ = [
    "DOC_PATH",
    "REGENERATE_COMMAND",
    "TIER_RULES",
    "Catalog",
    "TierRule",
    "cell",
    "collect",
    "constraints_text",
    "generate",
    "main",
    "render",
    "type_text",
]

REGENERATE_COMMAND = ".venv/bin/python -m relay_shell.docs_gen"
DOC_PATH = Path("docs") / "tools.md"
_SESSION_HOST = "the session's host (SSH sessions)"
_HOST_TARGETS = "the host as given, its resolved name, `user@host:port` and every jump hop"


_PATTERN_TABLE = "the highest matching rule of the pattern table"
_LOCAL_PATH = "tier 3 (refused in every mode) when the local path names the relay's own files"


@dataclass(frozen=True)
class TierRule:
    """How a tool's calls get their tier (docs/policy-patterns.md).

    ``fixed`` is the tier of a tool that runs no text. Otherwise the call is classified
    from the text of the parameters in ``classified_from`` (tier ``floor`` when no rule
    matches). ``targets`` says what, besides the text, the deny list reads.
    """

    fixed: int | None = None
    classified_from: tuple[str, ...] = ()
    floor: int = 1
    targets: str = ""
    raised: tuple[int, str] | None = None  # a fixed tier's exception: (tier, when)
    how: str = "the highest tier of its parsed commands (opaque ones flagged)"
    """What the classification reads (the parse by default)."""

    def describe(self) -> str:
        """One line of Markdown for the reference."""
        if self.fixed is not None:
            text = f"fixed: {self.fixed} ({Tier(self.fixed).name})"
            if self.raised is not None:
                tier, when = self.raised
                text += f", {tier} ({Tier(tier).name}) {when}"
        else:
            sources = ", ".join(f"`{name}`" for name in self.classified_from)
            text = f"classified from {sources}: {self.how}, at least {self.floor} ({Tier(self.floor).name})"
        if self.targets:
            text += f"; the deny list also reads {self.targets}"
        return text


TIER_RULES: Mapping[str, TierRule] = {
    "audit_tail": TierRule(fixed=0),
    "server_info": TierRule(fixed=0),
    "session_kill": TierRule(fixed=1, targets=_SESSION_HOST),
    "session_list": TierRule(fixed=0),
    "session_recv": TierRule(fixed=0, targets=_SESSION_HOST),
    "session_resize": TierRule(fixed=1, targets=_SESSION_HOST),
    "session_send": TierRule(classified_from=("data", "keys"), floor=0, targets=_SESSION_HOST),
    "shell_exec": TierRule(classified_from=("command", "stdin", "env", "cwd"), floor=0),
    "shell_script": TierRule(classified_from=("interpreter", "script", "env", "cwd"), floor=0),
    "shell_spawn": TierRule(classified_from=("command", "env")),
    "ssh_check": TierRule(
        fixed=0,
        raised=(1, "when a host is not an inventory or ssh_config host on its configured port and route"),
        targets=f"each host: {_HOST_TARGETS}",
    ),
    "ssh_download": TierRule(
        classified_from=("remote_path", "local_path"), floor=2, how=_LOCAL_PATH, targets=_HOST_TARGETS
    ),
    "ssh_exec": TierRule(classified_from=("command", "stdin"), floor=0, targets=_HOST_TARGETS),
    "ssh_fanout": TierRule(
        classified_from=("command",),
        floor=0,
        targets=f"each host ({_HOST_TARGETS}), each host on its own: the deny list, the mode and the "
        "allow list at the call's tier; a refused host is reported `denied`, the others run",
    ),
    "ssh_forward": TierRule(
        classified_from=("spec", "bind"),
        floor=2,
        how=_PATTERN_TABLE,
        targets=f"{_HOST_TARGETS}, the destination host and `host:port`; each SOCKS destination "
        "passes the same policy decision (as tier 2) before its channel opens",
    ),
    "ssh_forward_close": TierRule(fixed=1, targets="the forward's host"),
    "ssh_forward_list": TierRule(fixed=0),
    "ssh_hosts": TierRule(fixed=0),
    "ssh_keyscan": TierRule(fixed=1, targets="each host as given and, for an alias, its address"),
    "ssh_spawn": TierRule(classified_from=("command",), targets=_HOST_TARGETS),
    "ssh_upload": TierRule(
        classified_from=("local_path", "remote_path"),
        floor=2,
        how=_LOCAL_PATH,
        targets=f"{_HOST_TARGETS}; with `hosts`, each host on its own (deny list, mode, allow list at "
        "the call's tier), a refused host is reported `denied`",
    ),
}
"""One entry per registered tool; a tool without one fails ``tests/test_docs.py``."""


@dataclass(frozen=True)
class Catalog:
    """What the server offers a client: tools, prompts, resources, templates, instructions."""

    tools: Sequence[Tool]
    prompts: Sequence[Prompt]
    resources: Sequence[Resource]
    templates: Sequence[ResourceTemplate]
    instructions: str
    output_descriptions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per tool, its result fields' descriptions (from the output model; the wire schema has none)."""
    length_limits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Per tool, its parameters' length limits (from the argument model; the wire schema has none)."""


def _scratch_server(root: Path) -> RelayServer:
    """The server with its files under ``root`` (no ssh_config, no inventory) and its whole surface."""
    from relay_shell.app import build_server
    from relay_shell.config import load_settings

    settings = load_settings(
        _env_file=None,
        transport="stdio",
        auth_enabled=False,
        audit_path=root / "audit.jsonl",
        ssh_config=root / "no-ssh-config",
        inventory=None,
        ssh_known_hosts_file=root / "known_hosts",
        auth_state_dir=root / "oauth",
        confirm_tier3="token",  # the whole surface: confirm_token is listed only under token
    )
    return build_server(settings)


async def listing_text() -> str:
    """``src/relay_shell/tools/listing.json`` as it should be now (derived from the tools' code)."""
    from relay_shell.tools import listing

    with tempfile.TemporaryDirectory(prefix="relay-shell-docs-") as scratch:
        server = _scratch_server(Path(scratch))
        try:
            return listing.render(server._tool_manager.list_tools())
        finally:
            await server.services.aclose()


async def collect() -> Catalog:
    """Build the server in a temporary directory and list what it registers."""
    with tempfile.TemporaryDirectory(prefix="relay-shell-docs-") as scratch:
        server = _scratch_server(Path(scratch))
        try:
            registered = server._tool_manager.list_tools()
            described = {tool.name: field_descriptions(tool.fn_metadata.output_model) for tool in registered}
            limits = {tool.name: length_limits(tool.fn_metadata.arg_model) for tool in registered}
            return Catalog(
                tools=sorted(await server.list_tools(), key=lambda tool: tool.name),
                prompts=sorted(await server.list_prompts(), key=lambda prompt: prompt.name),
                resources=sorted(await server.list_resources(), key=lambda resource: str(resource.uri)),
                templates=sorted(
                    await server.list_resource_templates(), key=lambda template: template.uri_template
                ),
                instructions=server.instructions or "",
                output_descriptions=described,
                length_limits=limits,
            )
        finally:
            await server.services.aclose()


def _hints(annotations: ToolAnnotations | None) -> tuple[str, str, str, str]:
    """Each hint as a client reads it (a hint left out has the protocol's default)."""
    if annotations is None:
        return ("unset",) * 4
    names = ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint")
    values = tuple("yes" if hint(annotations, name) else "no" for name in names)
    return values[0], values[1], values[2], values[3]


def _tier_rule(name: str) -> TierRule | None:
    return TIER_RULES.get(name)


def _short_tier(name: str) -> str:
    rule = _tier_rule(name)
    if rule is None:
        return "(no entry in TIER_RULES)"
    if rule.fixed is not None:
        return str(rule.fixed) if rule.raised is None else f"{rule.fixed} or {rule.raised[0]}"
    return f"classified, ≥ {rule.floor}"


# --- the document ---------------------------------------------------------------------------------


def _preamble() -> list[str]:
    kinds = ", ".join(f"`{kind.value}`" for kind in ErrorKind)
    return [
        "# Tool reference",
        "",
        "<!-- Generated by relay_shell.docs_gen from the registered tools. Do not edit by hand. -->",
        "",
        "Generated from the tools, prompt and resources relay-shell registers, as a client lists",
        f"them. Do not edit by hand: regenerate with `{REGENERATE_COMMAND}` after changing a tool,",
        "its description (`src/relay_shell/guidance/tools.md`), its schema or its tier rule",
        "(`TIER_RULES` in `src/relay_shell/docs_gen.py`); `tests/test_docs.py` fails while this",
        "file is stale.",
        "",
        "How to read it:",
        "",
        "- **Tier**: 0 READ_ONLY, 1 REVERSIBLE, 2 STATEFUL, 3 IRREVERSIBLE. A fixed tier",
        "  belongs to tools that run no text; the others are classified from everything the executor",
        "  will see (`docs/policy-patterns.md`). The tier then meets the policy mode, the deny and",
        "  allow lists, the token's scope and, for tier 3 and opaque calls, the confirmation setting.",
        "- **Annotations** are the MCP hints the tool declares: read-only, destructive, idempotent,",
        "  open world (reaches beyond this host). A hint equal to the protocol's default (not",
        "  read-only, destructive, not idempotent, open world) is left out of `tools/list`.",
        "- **Results**: one readable text block and `structuredContent` matching the output schema.",
        "  Every tool's results also have `tier` (the tier the call was classified as; in every result,",
        "  null when a call was refused before it was classified), `notes` (strings: clamped bounds",
        "  and other remarks) and, when `isError` is true, `error`:",
        "  `{kind, message, tier?, reason?, rule?, mode?, subcommand?, opaque?, argument?,",
        f"  confirm_token?}}` with `kind` one of {kinds}. A denial names its `rule` and `mode`; an",
        "  invalid argument is named in `argument`; an unknown argument (a misspelled name) is",
        "  invalid too. A command that ran and exited non-zero is a result (`exit_code`), not an",
        "  error; one killed by signal N exits 128+N and names the `signal`. The error object is the",
        "  same in every tool, so it is described here once: each output schema names `error` in the",
        "  failure branch of its `anyOf` without declaring it (docs/adr/0020-tool-listing-budget.md).",
        "- **In every result** says whether a successful result always carries a field (the schema's",
        "  `anyOf`: a result has every such field, or `error`); a failed call carries `tier`, `error`",
        "  and whatever partial output it collected. The wire schemas are compact (no titles, no",
        "  descriptions in output schemas); the descriptions here come from the tools' output models.",
        "- **Protocol errors**: calling a tool that does not exist, reading an unknown resource URI",
        "  or fetching an unknown prompt is a JSON-RPC error `-32602`; a refused or failed read or",
        "  fetch is `-32603`, with the error's fields in `data`.",
        "- An optional parameter without a default: omitted means the configured default (an explicit",
        "  `null` means the same).",
        "- `timeout` and `max_output` (where present): omitted means the configured default, a value",
        "  above the ceiling is clamped (and a note says so), zero or negative is `invalid`.",
        "- `confirm_token` (where present) is listed only when the server runs with",
        "  `RELAY_SHELL_CONFIRM_TIER3=token` (otherwise it is an unknown argument): re-issue the",
        "  identical call with the token a tier-3 refusal returned.",
        "",
    ]


def _summary(catalog: Catalog) -> list[str]:
    rows = [
        "## Summary",
        "",
        "| Tool | Tier | Read-only | Destructive | Idempotent | Open world |",
        "|---|---|---|---|---|---|",
    ]
    for tool in catalog.tools:
        hints = " | ".join(_hints(tool.annotations))
        rows.append(f"| [`{tool.name}`](#{tool.name}) | {_short_tier(tool.name)} | {hints} |")
    return [*rows, ""]


def _tool_section(tool: Tool, descriptions: Mapping[str, str], limits: Mapping[str, int]) -> list[str]:
    rule = _tier_rule(tool.name)
    read_only, destructive, idempotent, open_world = _hints(tool.annotations)
    return [
        f"### {tool.name}",
        "",
        (tool.description or "(no description)").strip(),
        "",
        f"- **Tier:** {rule.describe() if rule else '(no entry in TIER_RULES)'}",
        f"- **Annotations:** read-only {read_only} · destructive {destructive} · "
        f"idempotent {idempotent} · open world {open_world}",
        "",
        "Parameters:",
        "",
        *parameter_rows(tool.input_schema, limits),
        "",
        "Result (`structuredContent`):",
        "",
        *output_rows(tool.output_schema, descriptions),
        "",
    ]


def _prompts_and_resources(catalog: Catalog) -> list[str]:
    lines = [
        "## Prompts",
        "",
        "A prompt fetch is a tier-0 call through the pipeline, audited as `prompt_get`.",
        "",
    ]
    for prompt in catalog.prompts:
        arguments = ", ".join(f"`{argument.name}`" for argument in prompt.arguments or []) or "none"
        lines += [f"- `{prompt.name}` (arguments: {arguments}): {prompt.description or ''}".rstrip()]
    lines += [
        "",
        "## Resources",
        "",
        "A resource read is a tier-0 call through the pipeline, audited as `resource_read`.",
        "",
        "| URI | Name | MIME type | Description |",
        "|---|---|---|---|",
    ]
    for resource in catalog.resources:
        lines.append(
            f"| `{resource.uri}` | {resource.name} | {resource.mime_type or ''} | "
            f"{cell(resource.description or '')} |"
        )
    for template in catalog.templates:
        lines.append(
            f"| `{template.uri_template}` (template) | {template.name} | {template.mime_type or ''} | "
            f"{cell(template.description or '')} |"
        )
    return [*lines, ""]


HOST_PATTERNS = """\
## Host patterns

The `hosts` of `ssh_fanout`, `ssh_check`, `ssh_upload` and `ssh_keyscan`, and the `pattern`
of `ssh_hosts`, select hosts with one grammar (`src/relay_shell/ssh/hostpatterns.py`). Terms
are separated by commas or whitespace, or given as a list:

| Term | Selects |
|---|---|
| `web1` | an inventory or ssh_config alias |
| `web*`, `web[1-3]`, `db?` | the aliases the glob matches |
| `deploy@10.0.0.5:2222`, `host.example.com`, `10.0.0.5` | a host outside the inventory (a bare single-label name must be an alias) |
| `@web`, `@stag*` | the hosts of an inventory tag (a glob over tag names) |
| `failed:<fanout_id>` | the hosts of an earlier fan-out that ended failed, timeout or unreachable (never a denied one) |
| `ok:<fanout_id>`, `skipped:<fanout_id>` | the hosts of an earlier fan-out that ended ok / were skipped |
| `&term` | intersection: keep only the hosts `term` also selects |
| `!term` | exclusion: remove the hosts `term` selects (names, and hosts by address: `!10.0.0.5`) |

Evaluation is Ansible's: the union of the plain terms (the whole inventory when there is
none), then every `&` term, then every `!` term; the result keeps the order of first
appearance and names each host once. A term that selects nothing (a glob or tag with no
match, an exclusion that matches no known host, an unknown fan-out) is `invalid` and the
error names it; so is a selection that ends up empty. `ssh_fanout` and a multi-host
`ssh_upload` return a `fanout_id`; the last `RELAY_SHELL_FANOUT_HISTORY` of them are
remembered for `failed:`, `ok:` and `skipped:` terms. A fan-out belongs to the principal that
ran it: a term naming another principal's fan-out is refused (`denied`, rule `owner`; an
admin may use any). Example: `@web,&@prod,!web3`.
"""


def render(catalog: Catalog) -> str:
    """The whole Markdown document."""
    lines = [*_preamble(), *_summary(catalog), *HOST_PATTERNS.splitlines(), "", "## Tools", ""]
    for tool in catalog.tools:
        lines += _tool_section(
            tool, catalog.output_descriptions.get(tool.name, {}), catalog.length_limits.get(tool.name, {})
        )
    lines += _prompts_and_resources(catalog)
    lines += [
        "## Server instructions",
        "",
        "Sent to the client at initialize (`src/relay_shell/guidance/instructions.md`):",
        "",
        *(f"> {line}".rstrip() for line in catalog.instructions.splitlines()),
        "",
    ]
    return "\n".join(lines)


async def generate() -> str:
    """``docs/tools.md`` as it should be now."""
    return render(await collect())


def repository_root() -> Path:
    """The source checkout this module lives in (``src/relay_shell/docs_gen.py``)."""
    return Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay_shell.docs_gen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale, write nothing")
    parser.add_argument("--output", type=Path, help=f"where to write (default: {DOC_PATH} in the checkout)")
    args = parser.parse_args(argv)
    target: Path = args.output or repository_root() / DOC_PATH
    if not _write_listing(args.check):
        return 1
    text = anyio.run(generate)
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            print(f"{target} is stale: run {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({len(catalog_names(text))} tools)")
    return 0


def _write_listing(check: bool) -> bool:
    """Regenerate the tools' wire schemas (``tools/listing.json``) before the document that lists
    them; with ``check``, only say whether the file is current."""
    from relay_shell.tools import listing

    text = anyio.run(listing_text)
    current = listing.LISTING_PATH.read_text(encoding="utf-8") if listing.LISTING_PATH.is_file() else ""
    if check:
        if current != text:
            print(f"{listing.LISTING_PATH} is stale: run {REGENERATE_COMMAND}", file=sys.stderr)
            return False
        return True
    if current != text:
        listing.LISTING_PATH.write_text(text, encoding="utf-8")
        listing.forget_loaded()
        print(f"wrote {listing.LISTING_PATH}")
    return True


def catalog_names(text: str) -> list[str]:
    """The tool names a generated document lists (its ``### name`` headings)."""
    return [line[4:] for line in text.splitlines() if line.startswith("### ")]


if __name__ == "__main__":
    sys.exit(main())
