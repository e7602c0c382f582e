"""What flows through the pipeline: who calls, what the call is (a :class:`Plan`), what it produced.

A tool body validates its arguments into a typed request and returns a :class:`Plan`
naming a module-level executor function; the pipeline classifies and admits the plan,
then runs ``plan.executor(plan.request, call)``, which returns an :class:`Outcome`. None
of these types is an MCP wire type: the MCP adapter (``relay_shell.tools.adapter``) maps
the pipeline's :class:`Reply` to the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from relay_shell.background import JobTicket
from relay_shell.capture import OutputTap
from relay_shell.errors import RelayError
from relay_shell.policy.model import Analysis, CallText
from relay_shell.vocabulary import Tier

log = logging.getLogger("relay_shell.pipeline")


@dataclass(frozen=True)
class Identity:
    """Who is calling: the MCP request, the client, and the authenticated principal (HTTP+OAuth)."""

    request_id: str | None = None
    client_id: str | None = None
    subject: str | None = None
    max_tier: int | None = None  # scope ceiling; None when no OAuth

    def who(self) -> str:
        return f"{self.subject or '-'}|{self.client_id or '-'}"


@dataclass(frozen=True)
class CallArguments:
    """A call's arguments twice: as the client sent them (audited) and as the tool runs them.

    ``effective`` has every default resolved, so a confirmation token bound to it matches
    the same call re-sent with its defaults spelled out.
    """

    raw: Mapping[str, object]
    effective: Mapping[str, object]

    @classmethod
    def same(cls, arguments: Mapping[str, object]) -> CallArguments:
        """Arguments that have no defaults to resolve (resource reads, prompt fetches)."""
        return cls(raw=arguments, effective=arguments)


ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class Call:
    """What the execute stage hands to an executor, besides its request."""

    tool: str
    tier: Tier
    timeout_s: float | None
    identity: Identity
    progress: ProgressFn
    denied_targets: Mapping[str, str] = field(default_factory=dict)
    """Per-target refusals (:attr:`Plan.per_target`): key -> the reason; the executor skips them."""
    call_id: str | None = None
    """The server-made id of a call above tier 0 (on its audit records and its job's)."""
    tap: OutputTap | None = None
    """Set when the call may become a job: the executor feeds its output here as it arrives."""
    analysis: Analysis | None = None
    """The parse of the plan's :attr:`Plan.call` (its ``exec_env`` is applied by the executor)."""

    async def report(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Send a progress notification when the client asked for them; never raises."""
        try:
            await self.progress(progress, total, message)
        except Exception:  # a broken progress channel must not fail the call
            log.debug("progress notification failed", exc_info=True)


@dataclass
class Outcome:
    """What an executor produced: readable text, structured fields, and audit extras."""

    text: str
    data: dict[str, object] = field(default_factory=dict)
    exit_code: int | None = None
    stream_sha256: str | None = None
    stream_len: int | None = None
    truncated: bool = False
    audit_extra: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Remarks the execute stage adds (shown after the plan's notes)."""
    job: JobTicket | None = None
    """Set when the call returned while its work goes on as a job (``status: running``)."""


@dataclass(frozen=True)
class Background:
    """How a command-running call may hand its work to a job (docs/adr/0017-jobs-and-tasks.md).

    ``after_s`` is the call's ``yield_after`` (``None``: never yield); ``label`` and ``host``
    describe the job in ``session_list``; ``split`` keeps stdout and stderr apart in its
    live stream; ``budget`` bounds the output the yielded result carries.
    """

    after_s: float | None
    label: str
    host: str | None
    split: bool
    budget: int


@dataclass(frozen=True)
class Detach:
    """What the transport asks of a call that may become a job (MCP Tasks).

    ``task``: give the job a task id (the client takes a task handle instead of
    ``status: running``). ``at_once``: detach as soon as the call executes (a 2025-11-25
    task-augmented request), whatever ``yield_after`` says.
    """

    task: bool = False
    at_once: bool = False


type Executor[R] = Callable[[R, Call], Awaitable[Outcome]]
"""A module-level ``async def execute(request, call) -> Outcome``: the one place a call acts."""


@dataclass(frozen=True)
class TargetGroup:
    """One target of a call that is admitted or refused on its own (a fan-out host).

    ``key`` names it in :attr:`Call.denied_targets`; ``targets`` is what the deny list reads
    for it (the name as given, the resolved name, the jump chain).
    """

    key: str
    targets: Sequence[str]


@dataclass(frozen=True)
class Plan[R]:
    """A validated description of one call, and the executor that carries it out.

    ``text`` is everything the executor will see (command, stdin, env, script, keys...): the
    raw probe the deny list reads. ``call`` is the same, by channel, for the grammar-aware
    classifier (:mod:`relay_shell.policy`); without it ``text`` is classified by the regex
    table. ``targets`` are hosts, remote paths, forward destinations and resource URIs.
    ``tier`` fixes the tier for tools that do not run text (read-only tools are 0);
    ``min_tier`` is a floor for those that do (0 lets a known-safe read be tier 0).
    ``per_target`` lists targets the policy judges one by one: a refused one is reported to
    the executor in :attr:`Call.denied_targets` instead of refusing the whole call.
    """

    executor: Executor[R]
    request: R
    text: str = ""
    targets: Sequence[str] = ()
    per_target: Sequence[TargetGroup] = ()
    tier: Tier | None = None
    min_tier: Tier = Tier.REVERSIBLE
    timeout_s: float | None = None
    notes: Sequence[str] = ()
    confirm_summary: str = ""
    background: Background | None = None
    """Set by the command-running tools: the work may go on as a job past ``yield_after``."""
    call: CallText | None = None
    """What the executor will run, by channel, for the parse (built once by the planner)."""


type Planner[R] = Callable[[], Plan[R]]
"""Builds the plan inside the pipeline, so that a validation failure is shaped and audited."""


@dataclass(frozen=True)
class Reply:
    """The pipeline's answer to one call, in our own terms.

    ``text`` is the one text block a model reads and ``data`` the structured fields a program
    reads; ``error`` is set when the call failed (``isError`` on the wire), and is the
    exception itself, so nothing downstream re-reads the text to learn what happened.
    """

    text: str
    data: Mapping[str, object]
    error: RelayError | None = None
    job: JobTicket | None = None
    """Set when the call's work goes on as a job (the reply says ``status: running``)."""


@dataclass(frozen=True)
class AwaitingInput:
    """A tier-3 question handed to the client inside the result; it retries with the answer.

    The transport's confirmer holds the question it asked (``Confirmer.pending_result``).
    """


type CallResult = Reply | AwaitingInput
