"""The one settings model: every ``RELAY_SHELL_*`` variable (documented in ``.env.example``).

Every knob is a ``RELAY_SHELL_*`` environment variable (case-insensitive, also read from a
``.env`` in the working directory). The model is frozen; an invalid value fails at start
with a message naming the variable (see :func:`load_settings`). Every limit has an upper
bound so a typo cannot turn into a 10 GiB output budget.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relay_shell import config_env
from relay_shell.config_env import DOTENV_DEFAULT, ConfigProblem, ConfigSources, SettingsInvalid

ENV_PREFIX = config_env.ENV_PREFIX


class Transport(StrEnum):
    STDIO = "stdio"
    HTTP = "http"


class PolicyMode(StrEnum):
    OPEN = "open"
    GUARDED = "guarded"
    READONLY = "readonly"


class AuditFormat(StrEnum):
    JSONL = "jsonl"
    CEF = "cef"
    LEEF = "leef"


class KnownHostsMode(StrEnum):
    STRICT = "strict"
    ACCEPT_NEW = "accept-new"
    IGNORE = "ignore"


class AuthMode(StrEnum):
    BUILTIN = "builtin"
    JWT = "jwt"


class ConfirmMode(StrEnum):
    OFF = "off"
    ELICIT = "elicit"
    TOKEN = "token"


class ContainmentMode(StrEnum):
    """How the processes a call starts are tracked and killed (ADR on containment)."""

    AUTO = "auto"
    CGROUP = "cgroup"
    SUBREAPER = "subreaper"


class Scope(StrEnum):
    """OAuth scopes, from narrowest to widest."""

    READ = "relay-shell:read"
    OPERATE = "relay-shell:operate"
    ADMIN = "relay-shell:admin"


_LOG_SINK = re.compile(r"\A(?:off|auto|journald(?::/\S+)?|syslog\+(?:tcp|tls)://[^\s/]+:\d{1,5})\Z")


MIB = 1024 * 1024
DAY = 86400

Seconds = Annotated[float, Field(gt=0)]


def default_audit_path() -> Path:
    """``/var/log/relay-shell/audit.jsonl`` for root, else under ``$XDG_STATE_HOME``."""
    if os.geteuid() == 0:
        return Path("/var/log/relay-shell/audit.jsonl")
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "relay-shell" / "audit.jsonl"


class Settings(BaseSettings):
    """Effective configuration. Field names are the variables without the prefix."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_file=DOTENV_DEFAULT,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    transport: Transport = Transport.STDIO
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    http_allowed_hosts: Annotated[str | None, Field(max_length=4096)] = None

    max_output: Annotated[int, Field(ge=1024, le=64 * MIB)] = 65536
    max_output_hard: Annotated[int, Field(ge=1024, le=64 * MIB)] = MIB
    default_timeout: Annotated[float, Field(gt=0, le=7 * DAY)] = 60.0
    max_timeout: Annotated[float, Field(gt=0, le=7 * DAY)] = 900.0

    max_sessions: Annotated[int, Field(ge=1, le=4096)] = 64
    session_idle_timeout: Annotated[float, Field(gt=0, le=30 * DAY)] = 1800.0
    session_max_lifetime: Annotated[float, Field(gt=0, le=365 * DAY)] = 86400.0
    session_buffer_bytes: Annotated[int, Field(ge=4096, le=256 * MIB)] = 262144

    policy_mode: PolicyMode = PolicyMode.OPEN
    policy_deny: Annotated[str | None, Field(max_length=65536)] = None
    policy_allow: Annotated[str | None, Field(max_length=65536)] = None

    audit_path: Path = Field(default_factory=default_audit_path)
    audit_format: AuditFormat = AuditFormat.JSONL
    audit_stderr: bool = False
    audit_chain: bool = True
    audit_required: bool = True

    ssh_config: Path = Path("~/.ssh/config")
    inventory: Path | None = None
    ssh_known_hosts: KnownHostsMode = KnownHostsMode.ACCEPT_NEW
    ssh_known_hosts_file: Path = Path("~/.ssh/known_hosts")
    ssh_connect_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    ssh_keepalive: Annotated[float, Field(ge=0, le=3600)] = 30.0
    ssh_idle_timeout: Annotated[float, Field(gt=0, le=30 * DAY)] = 1800.0
    max_conns: Annotated[int, Field(ge=1, le=10000)] = 256
    max_forwards: Annotated[int, Field(ge=1, le=4096)] = 64
    fanout_max_hosts: Annotated[int, Field(ge=1, le=100000)] = 1000
    fanout_max_concurrency: Annotated[int, Field(ge=1, le=4096)] = 256

    auth_enabled: bool = False
    auth_mode: AuthMode = AuthMode.BUILTIN
    auth_issuer: Annotated[str, Field(min_length=1, max_length=2048)] = "http://127.0.0.1:8080"
    auth_state_dir: Path = Path("/var/lib/relay-shell/oauth")
    auth_access_ttl: Annotated[int, Field(ge=30, le=DAY)] = 3600
    auth_refresh_ttl: Annotated[int, Field(ge=60, le=365 * DAY)] = 2592000
    auth_code_ttl: Annotated[int, Field(ge=10, le=3600)] = 300
    auth_jwks_url: Annotated[str | None, Field(max_length=2048)] = None
    auth_jwt_issuer: Annotated[str | None, Field(max_length=2048)] = None
    auth_audience: Annotated[str | None, Field(max_length=2048)] = None
    auth_jwt_algorithms: Annotated[str, Field(min_length=1, max_length=256)] = "RS256,ES256,EdDSA"

    confirm_tier3: ConfirmMode = ConfirmMode.OFF
    policy_allow_protected: bool = False
    env_file: Path | None = None

    yield_after: Annotated[float, Field(ge=0, le=7 * DAY)] = 40.0
    max_jobs: Annotated[int, Field(ge=1, le=4096)] = 32
    job_retention: Annotated[float, Field(gt=0, le=30 * DAY)] = 600.0
    max_input_bytes: Annotated[int, Field(ge=1024, le=256 * MIB)] = MIB
    containment: ContainmentMode = ContainmentMode.AUTO

    audit_anchor: Annotated[str, Field(min_length=1, max_length=1024)] = "auto"
    audit_anchor_interval: Annotated[float, Field(gt=0, le=DAY)] = 10.0
    audit_ship: Annotated[str, Field(min_length=1, max_length=1024)] = "off"
    audit_tls_ca: Path | None = None

    session_record_dir: Path | None = None
    session_record_input: bool = False
    session_record_max_bytes: Annotated[int, Field(ge=4096, le=64 * 1024 * MIB)] = 64 * MIB
    fanout_history: Annotated[int, Field(ge=1, le=100000)] = 64

    auth_operator_hash: Annotated[str | None, Field(max_length=1024)] = None
    auth_max_scope: Scope = Scope.ADMIN
    metrics_token: Annotated[str | None, Field(min_length=16, max_length=1024)] = None

    @field_validator("policy_deny", "policy_allow", "http_allowed_hosts", "auth_jwks_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty variable means "unset" (``None``), never an empty regex that matches everything."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator(
        "inventory",
        "auth_jwt_issuer",
        "auth_audience",
        "env_file",
        "session_record_dir",
        "auth_operator_hash",
        "metrics_token",
        "audit_tls_ca",
        mode="before",
    )
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("audit_path", mode="before")
    @classmethod
    def _blank_audit_path_is_default(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return default_audit_path()
        return value

    @field_validator("policy_deny", "policy_allow")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("audit_anchor", "audit_ship")
    @classmethod
    def _log_sink_form(cls, value: str) -> str:
        """``off``, ``auto`` (anchor only), ``journald[:SOCKET]``, ``syslog+tcp://HOST:PORT`` or ``syslog+tls://HOST:PORT``."""
        if not _LOG_SINK.match(value.strip()):
            raise ValueError(
                f"{value!r} is not off, auto, journald, journald:/SOCKET, syslog+tcp://HOST:PORT or syslog+tls://HOST:PORT"
            )
        return value.strip()

    @field_validator("auth_jwt_algorithms")
    @classmethod
    def _algorithms_allowed(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        bad = [name for name in names if name not in allowed]
        if bad or not names:
            raise ValueError(f"unsupported JWT algorithms {bad or value!r}; allowed: {sorted(allowed)}")
        return ",".join(names)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_output > self.max_output_hard:
            raise ValueError("RELAY_SHELL_MAX_OUTPUT must not exceed RELAY_SHELL_MAX_OUTPUT_HARD")
        if self.default_timeout > self.max_timeout:
            raise ValueError("RELAY_SHELL_DEFAULT_TIMEOUT must not exceed RELAY_SHELL_MAX_TIMEOUT")
        if self.audit_ship == "auto":
            raise ValueError("RELAY_SHELL_AUDIT_SHIP: auto is only a value of RELAY_SHELL_AUDIT_ANCHOR")
        if self.auth_enabled and self.auth_mode is AuthMode.JWT and not self.auth_jwks_url:
            raise ValueError("RELAY_SHELL_AUTH_JWKS_URL is required when RELAY_SHELL_AUTH_MODE=jwt")
        if self.auth_enabled and self.auth_mode is AuthMode.BUILTIN:
            _check_builtin_issuer(self.auth_issuer)
        return self

    @property
    def resource_url(self) -> str:
        """The protected resource URL (issuer base + ``/mcp``), the default JWT audience."""
        return self.auth_issuer.rstrip("/") + "/mcp"

    @property
    def jwt_algorithms(self) -> tuple[str, ...]:
        return tuple(self.auth_jwt_algorithms.split(","))

    def expand(self, path: Path) -> Path:
        """``~`` expanded; settings keep the path as written so it can be reported."""
        return path.expanduser()


def _check_builtin_issuer(issuer: str) -> None:
    """The builtin authorization server's issuer: https (http only on a loopback name), no query or fragment.

    OAuth metadata requires it (RFC 8414); checked here so the server refuses to start with a
    clear message instead of failing when the HTTP app is built.
    """
    parts = urlsplit(issuer)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"RELAY_SHELL_AUTH_ISSUER {issuer!r} is not an http(s) URL")
    if parts.scheme != "https" and not loopback:
        raise ValueError(
            f"RELAY_SHELL_AUTH_ISSUER {issuer!r} must be https with builtin OAuth "
            "(plain http only on localhost, 127.0.0.1 or [::1])"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"RELAY_SHELL_AUTH_ISSUER {issuer!r} must not have a query or a fragment")


def load_settings(**overrides: object) -> Settings:
    """Load settings from the environment (and ``.env``), naming the variable and its source on failure.

    A ``RELAY_SHELL_*`` name no setting reads (other than ``RELAY_SHELL_EDGE_*``) is an error,
    reported with the closest known name, together with any invalid value. ``overrides`` are
    field values (they win over the environment) and pydantic-settings' ``_env_file``.

    Raises:
        SettingsInvalid: a :class:`ConfigError` with one problem per bad variable, rendered
            ``RELAY_SHELL_<NAME> (from the environment|.env): <problem>``.
    """
    env_file = overrides.get("_env_file", DOTENV_DEFAULT)
    sources = ConfigSources.read(os.environ, env_file if isinstance(env_file, str | Path) else None)
    problems = sources.unknown(Settings.model_fields)
    settings: Settings | None = None
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems.extend(_value_problems(exc, sources, overrides))
    if problems or settings is None:
        raise SettingsInvalid(problems)
    return settings


def _sources_named(message: str, sources: ConfigSources) -> str:
    """`` (RELAY_SHELL_X from .env, ...)`` for the variables a cross-field message names and that were set."""
    named = dict.fromkeys(re.findall(rf"{ENV_PREFIX}([A-Z0-9_]+)", message))
    found = [(ENV_PREFIX + name, sources.source_of(name.lower())) for name in named]
    shown = [
        f"{variable} from {'the environment' if source == 'environment' else '.env'}"
        for variable, source in found
        if source
    ]
    return f" ({', '.join(shown)})" if shown else ""


def _value_problems(
    exc: ValidationError, sources: ConfigSources, overrides: dict[str, object]
) -> list[ConfigProblem]:
    """One problem per failed field: the variable and where its value came from."""
    problems = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"] if isinstance(part, str)]
        message = error["msg"].removeprefix("Value error, ")
        if not location:
            problems.append(ConfigProblem("configuration", message + _sources_named(message, sources)))
        else:
            source = None if location[0] in overrides else sources.source_of(location[0])
            problems.append(ConfigProblem(ENV_PREFIX + location[0].upper(), message, source))
    return problems
