"""The one settings object, built at the entry point (cli/compose.py) from the environment and `.env`; each part
below the CLI is handed the narrow object it reads, built with `.of(settings)`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.reply_template import DEFAULT_CUSTOMER_REPLY
from core.vocabulary import EMBEDDED_MODEL


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Every variable of the contract; `.env.example` lists them with comments."""

    # An empty line copied from .env.example (`SLACK_APP_TOKEN=`) means "not set", never an empty secret.
    # Only the contract's names are read: with populate_by_name, the field `home` took $HOME.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    home: Path = Field(Path(".switchboard"), validation_alias=_env("SWITCHBOARD_HOME"))
    database_url_override: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    base_model: str = Field(EMBEDDED_MODEL, validation_alias=_env("SWITCHBOARD_BASE_MODEL"))

    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(None, validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL"))

    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    baseline_model: str = Field("gpt-4o", validation_alias=_env("SWITCHBOARD_BASELINE_MODEL"))

    retrain_cron: str = Field("0 2 * * *", validation_alias=_env("SWITCHBOARD_RETRAIN_CRON"))
    retrain_after_labels: int = Field(200, ge=1, validation_alias=_env("SWITCHBOARD_RETRAIN_AFTER_LABELS"))
    gate_max_department_drop: float = Field(0.05, ge=0, le=1,
                                            validation_alias=_env("SWITCHBOARD_GATE_MAX_DEPARTMENT_DROP"))
    gate_confidence: float = Field(0.9, gt=0.5, lt=1, validation_alias=_env("SWITCHBOARD_GATE_CONFIDENCE"))
    shadow_messages: int = Field(200, ge=0, validation_alias=_env("SWITCHBOARD_SHADOW_MESSAGES"))
    promotion: Literal["auto", "approve"] = Field("auto", validation_alias=_env("SWITCHBOARD_PROMOTION"))
    audit_rate: float = Field(0.1, ge=0, le=1, validation_alias=_env("SWITCHBOARD_AUDIT_RATE"))
    cold_start_audit_rate: float = Field(0.5, ge=0, le=1, validation_alias=_env("SWITCHBOARD_COLD_START_AUDIT_RATE"))
    distil_budget_usd: float = Field(0.0, ge=0, validation_alias=_env("SWITCHBOARD_DISTIL_BUDGET_USD"))
    implicit_after_hours: float = Field(24.0, ge=0, validation_alias=_env("SWITCHBOARD_IMPLICIT_AFTER_HOURS"))
    implicit_weight: float = Field(0.5, ge=0, le=1, validation_alias=_env("SWITCHBOARD_IMPLICIT_WEIGHT"))
    ask_rate: float = Field(0.05, ge=0, le=1, validation_alias=_env("SWITCHBOARD_ASK_RATE"))
    host_usd_per_hour: float = Field(0.10, ge=0, validation_alias=_env("SWITCHBOARD_HOST_USD_PER_HOUR"))

    confidence_threshold: float = Field(0.5, ge=0, le=1, validation_alias=_env("SWITCHBOARD_CONFIDENCE_THRESHOLD"))
    confidence_margin: float = Field(0.1, ge=0, le=1, validation_alias=_env("SWITCHBOARD_CONFIDENCE_MARGIN"))
    triage_channel: str | None = Field(None, validation_alias=_env("SWITCHBOARD_TRIAGE_CHANNEL"))
    support_channels: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias=_env("SWITCHBOARD_SUPPORT_CHANNELS"))
    out_of_scope_emoji: str = Field("no_entry_sign", min_length=1,
                                    validation_alias=_env("SWITCHBOARD_OUT_OF_SCOPE_EMOJI"))

    reply_style: Literal["customer", "internal"] = Field("customer", validation_alias=_env("SWITCHBOARD_REPLY_STYLE"))
    customer_reply: str = Field(DEFAULT_CUSTOMER_REPLY, min_length=1,
                                validation_alias=_env("SWITCHBOARD_CUSTOMER_REPLY"))

    inference_url: str | None = Field(None, validation_alias=_env("SWITCHBOARD_INFERENCE_URL"))
    alert_channel: str | None = Field(None, validation_alias=_env("SWITCHBOARD_ALERT_CHANNEL"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("SWITCHBOARD_LOG_FORMAT"))

    train_precision: Literal["auto", "fp32", "bf16", "4bit"] = Field(
        "auto", validation_alias=_env("SWITCHBOARD_TRAIN_PRECISION"))
    redact: Literal["baseline", "baseline+store", "off"] = Field(
        "baseline", validation_alias=_env("SWITCHBOARD_REDACT"))
    redact_patterns: str | None = Field(None, validation_alias=_env("SWITCHBOARD_REDACT_PATTERNS"))
    redact_regions: str = Field("US,GB", validation_alias=_env("SWITCHBOARD_REDACT_REGIONS"))
    # Off by default and whatever SWITCHBOARD_REDACT says: PCI DSS forbids storing full card numbers.
    store_card_numbers: bool = Field(False, validation_alias=_env("SWITCHBOARD_STORE_CARD_NUMBERS"))
    retention_days: int | None = Field(None, ge=1, validation_alias=_env("SWITCHBOARD_RETENTION_DAYS"))

    admins: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias=_env("SWITCHBOARD_ADMINS")
    )
    agents: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), validation_alias=_env("SWITCHBOARD_AGENTS")
    )
    agents_from_department_channels: bool = Field(
        False, validation_alias=_env("SWITCHBOARD_AGENTS_FROM_DEPARTMENT_CHANNELS"))

    @field_validator("admins", "agents", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("admins", "agents", mode="after")
    @classmethod
    def _members_or_groups(cls, value: frozenset[str]) -> frozenset[str]:
        """Member ids (`U…`, `W…`) and user group ids (`S…`), as Slack writes them; a name or a handle is refused."""
        if wrong := sorted(part for part in value if not re.fullmatch(r"[UWS][A-Z0-9]+", part)):
            raise ValueError(f"not a member id (U…, W…) or user group id (S…): {', '.join(wrong)}")
        return value

    @field_validator("customer_reply", mode="after")
    @classmethod
    def _reply_template(cls, value: str) -> str:
        from core.reply_template import check_template

        return check_template(value)

    @field_validator("support_channels", mode="before")
    @classmethod
    def _split_channels(cls, value: object) -> object:
        """Comma-separated channel ids; none: every channel the bot is in (bot/channels.py)."""
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("redact_patterns", mode="after")
    @classmethod
    def _patterns_compile(cls, value: str | None) -> str | None:
        from core.redact import parse_patterns

        parse_patterns(value)  # a RedactionError (a ValueError) names the bad pattern
        return value

    @field_validator("redact_regions", mode="after")
    @classmethod
    def _regions_known(cls, value: str) -> str:
        from core.redact import check_regions

        check_regions(value)
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        """Resolved once, at start: adapter paths stored in the registry then work from any folder."""
        return value.expanduser().resolve()

    @property
    def database_url(self) -> str:
        return self.database_url_override or f"sqlite:///{self.home / 'switchboard.db'}"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def baseline_configured(self) -> bool:
        """A key, or a base URL of a server that needs none (a local OpenAI-compatible one)."""
        return self.openai_api_key is not None or bool(self.openai_base_url)


def default_of(field: str) -> Any:
    """A setting's default, for the objects that carry a few settings (the gate's rules, the schedule):
    every default is written once, above."""
    return Settings.model_fields[field].default
