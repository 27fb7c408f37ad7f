"""The one settings object: defaults, then a TOML config file, then ``FRAUDRULES_*`` environment variables.

Nested fields use ``__`` in environment variables, e.g. ``FRAUDRULES_TOPICS__SINK=verdicts`` or
``FRAUDRULES_KAFKA__SASL_PASSWORD=...``. The config file is named by ``--config`` or ``FRAUDRULES_CONFIG``.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ProcessingGuarantee = Literal["at-least-once", "exactly-once"]
RuleMode = Literal["enforce", "shadow"]
#: What a list decides for an event whose field value is on it (``rules/lists.py``).
ListAction = Literal["approve", "review", "decline"]
#: The checkpoint interval by default (``Settings.commit_interval``): under at-least-once, and under exactly-once
#: (measured in BENCHMARKS "Changes and gains": at 4 partitions and 2 instances 1 s left the two waiting on each
#: other's transactions).
COMMIT_INTERVAL_S = 1.0
EXACTLY_ONCE_COMMIT_INTERVAL_S = 0.5


class ConfigError(Exception):
    """The settings do not fit what is installed: a rule they name does not exist, or its config is invalid."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicNames(Frozen):
    payment: str = "payment"
    order: str = "order"
    sink: str = "sink"
    deadletter: str = "deadletter"
    labels: str = "labels"
    #: The compacted control topic: the rule set in force (``fraudrules rules set``) and each instance's status.
    rules: str = "fraudrules-rules"


class KafkaSettings(Frozen):
    """How to reach Kafka. Security options are passed to the client (librdkafka) as they are."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    #: A killed instance's partitions wait this long for it before the consumer group gives them to another
    #: (librdkafka's ``session.timeout.ms``, 45 s by default; the broker allows 6-1,800 s by default). A restart
    #: of the same instance does not wait for it (see ``instance_id``).
    session_timeout_seconds: float = Field(default=10.0, ge=1, le=1800)
    #: A name for this instance that survives its restarts (say the pod name of a StatefulSet), unique in its
    #: consumer group: its ``group.instance.id`` and, under exactly-once, its ``transactional.id``, so that a
    #: restarted instance takes its partitions back at once and aborts the transaction its predecessor left
    #: open. By default: the consumer group, host name and state directory (which two running instances cannot
    #: share: the second one falls back to a random name and a warning).
    instance_id: str | None = Field(default=None, min_length=1, max_length=200)
    #: Extra librdkafka settings for every client (consumer, producer, admin): only properties all of them know,
    #: such as ``client.id`` or ``socket.keepalive.enable``, or librdkafka warns about the others at start-up.
    extra: dict[str, str] = Field(default_factory=dict)
    #: Extra librdkafka settings for the consumers only (e.g. ``fetch.max.bytes``); override ``extra``.
    consumer_extra: dict[str, str] = Field(default_factory=dict)
    #: Extra librdkafka settings for the producers only (e.g. ``transaction.timeout.ms``); override ``extra``.
    producer_extra: dict[str, str] = Field(default_factory=dict)

    def client_config(self) -> dict[str, str]:
        """librdkafka settings for security (secrets revealed here only, for the client)."""
        config: dict[str, str] = {"security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        config.update(self.extra)
        return config

    def consumer_config(self) -> dict[str, str]:
        """:meth:`client_config` with the consumer-only extras."""
        return {**self.client_config(), **self.consumer_extra}

    def producer_config(self) -> dict[str, str]:
        """:meth:`client_config` with the producer-only extras."""
        return {**self.client_config(), **self.producer_extra}


class RuleSettings(Frozen):
    """Per-rule switches; ``config`` is validated by the rule's own config model."""

    enabled: bool = True
    mode: RuleMode = "enforce"
    config: dict[str, Any] = Field(default_factory=dict)


class ExpressionSettings(Frozen):
    """A rule written as a CEL expression (``[expressions.NAME]``, ``rules/expressions.py``): when ``when`` is
    true for an event, it hits with ``score`` and ``reason``."""

    when: str = Field(min_length=1, max_length=4_000)
    score: float = Field(ge=0, le=100)
    reason: str = Field(default="", max_length=500)
    mode: RuleMode = "enforce"
    enabled: bool = True


class ListSettings(Frozen):
    """A named list of one event field's values, and what it decides (``[lists.NAME]``, ``rules/lists.py``)."""

    field: str = Field(min_length=1, max_length=200)
    action: ListAction
    #: Entries from the settings file (no expiry); ``fraudrules lists add`` adds more at runtime.
    values: list[str | int | float | bool] = Field(default_factory=list)
    #: The reason a verdict gives for an entry from ``values``.
    reason: str = Field(default="settings file", max_length=500)


class ScoringSettings(Frozen):
    """Score >= ``decline_at`` declines, >= ``review_at`` sends to review, else approves.

    A payment whose order never arrives is scored by the ``orphan_payment`` rule (its ``score`` config).
    """

    review_at: int = Field(default=40, ge=0, le=100)
    decline_at: int = Field(default=80, ge=0, le=100)


class StateMemorySettings(Frozen):
    """RocksDB's memory for the state stores (the join, each rule group).

    Quix Streams' defaults allow a 1 GiB block cache and 3 x 64 MiB write buffers per store: RSS grows towards
    that whatever the state holds. fraudrules' working state is small (a few MB per 100,000 orders: open
    orders, decided orderIds for the dedup retention, bounded per-key rule state), so the defaults here cap
    RocksDB at ``block_cache_mb + stores * write_buffers * write_buffer_mb`` (64 + 4 * 2 * 8 = 128 MB at one
    partition); raise them for very large retentions.
    """

    #: One block cache shared by every store partition of the process.
    block_cache_mb: int = Field(default=64, ge=8, le=65_536)
    #: Size of each store partition's memtable ...
    write_buffer_mb: int = Field(default=8, ge=1, le=1_024)
    #: ... and how many of them it may hold before writes wait for a flush.
    write_buffers: int = Field(default=2, ge=2, le=16)


class IsolationSettings(Frozen):
    """What happens to rules that raise or are slow (README.md, "Rules"; ``rules/engine.py`` applies it)."""

    #: A rule call slower than this counts as a failure (the result is still used).
    slow_ms: float = Field(default=50.0, gt=0)
    #: After this many consecutive failures a rule is suspended ...
    max_consecutive_failures: int = Field(default=20, ge=1)
    #: ... for this many events, then tried again.
    suspend_events: int = Field(default=1000, ge=1)


class PluginSettings(Frozen):
    #: Only these plugins are loaded (entry-point names); empty means all.
    allow: list[str] = Field(default_factory=list)
    #: These plugins are never loaded.
    block: list[str] = Field(default_factory=list)
    #: Fail start-up on a plugin that cannot be imported or whose hook raises.
    strict: bool = False
    #: Modules to load as plugins by import name, besides installed entry points (local, unpackaged rules).
    modules: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FRAUDRULES_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    consumer_group: str = "fraudrules"
    topics: TopicNames = TopicNames()
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    processing_guarantee: ProcessingGuarantee = "at-least-once"
    state_dir: Path = Path(".state")
    state_memory: StateMemorySettings = StateMemorySettings()
    #: How long (Kafka-timestamp stream time) a side waits for its partner before a one-sided verdict.
    join_window_seconds: float = Field(default=60.0, gt=0)
    #: How long a decided orderId is remembered so that repeated records do not make a second verdict.
    dedup_retention_seconds: float = Field(default=3600.0, gt=0)
    #: An input partition that has held the watermark back, without moving, for this long (wall time), and whose
    #: reader has read all of it, stops holding it back; the rule groups apply the same to the join partitions
    #: (``pipeline/watermark.py``).
    join_idle_seconds: float = Field(default=30.0, gt=0)
    #: With every record there is read (no consumer lag), how long (wall time) the inputs must stay still before
    #: the last orders go out without waiting for later records (``OrderJoin.tick``): the longest a record may
    #: take from its producer's timestamp to being read and still count as on time (later ones are decided as
    #: late). A verdict waits for later records on every input, or this long once they stop: in a stream of
    #: less than an order a second most verdicts wait this long; lower it there.
    join_quiet_seconds: float = Field(default=2.0, gt=0)
    #: How far (ms) a record's Kafka timestamp may fall behind earlier records of its input partition and still
    #: reach the stateful rules in event-time order (``pipeline/reorder.py``); later ones are evaluated at once
    #: and their verdict says ``late``. One producer per partition never needs it; several producers writing
    #: one partition interleave by their linger (5-100 ms by default in Kafka clients) plus clock skew, hence
    #: 100 ms. It is also the least latency every verdict with stateful rules pays.
    reorder_bound_ms: int = Field(default=100, ge=0, le=600_000)
    #: Larger input values are dead-lettered. A verdict carries both records, so this keeps verdicts (and the
    #: internal topics) far below Kafka's default 1 MB message limit; the seed's records are ~150 bytes.
    max_record_bytes: int = Field(default=65_536, ge=1_024, le=409_600)
    #: Deeper records are dead-lettered (``too_deep``). orjson writes at most 254 levels and Quix Streams'
    #: per-record copy fails near 495, so anything deeper could not be carried through state or topics.
    max_nesting_depth: int = Field(default=64, ge=2, le=200)
    #: Dead-letter records keep at most this many bytes of the raw value (hash and size of all of it). With the
    #: base64 and the key limit, a dead letter stays below the producer's 1 MB ``message.max.bytes``.
    deadletter_max_raw_bytes: int = Field(default=262144, ge=0, le=524_288)
    #: ... and of the record's key (a longer key is cut, with its size and SHA-256; the dead letter's own key is
    #: then null).
    deadletter_max_key_bytes: int = Field(default=1024, ge=0, le=65_536)
    #: How often a checkpoint commits (state, offsets, and under exactly-once the transaction). None: 1 s under
    #: at-least-once, 0.5 s under exactly-once, where what an instance writes to the internal topics is readable
    #: downstream only once its transaction commits, so each hop between partitions waits up to this long
    #: (Kafka Streams shortens its own default under exactly-once for the same reason). See :meth:`commit_interval`.
    commit_interval_seconds: float | None = Field(default=None, gt=0)
    #: Compression of what the app produces. ``none`` by default so that any client reads ``sink`` and
    #: ``deadletter`` (kafka-python, for one, reads lz4, snappy and zstd only with extra packages). The app has one
    #: producer for all topics, so its internal (repartition, changelog) topics get the same.
    output_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    rules: dict[str, RuleSettings] = Field(default_factory=dict)
    #: Rules written as CEL expressions, by name (``[expressions.NAME]``).
    expressions: dict[str, ExpressionSettings] = Field(default_factory=dict)
    #: Allow, review and decline lists, by name (``[lists.NAME]``).
    lists: dict[str, ListSettings] = Field(default_factory=dict)
    scoring: ScoringSettings = ScoringSettings()
    isolation: IsolationSettings = IsolationSettings()
    plugins: PluginSettings = PluginSettings()
    #: Take rule changes from ``topics.rules`` while running (and the latest one at start-up).
    live_rules: bool = True
    #: Serve Prometheus metrics on this port (``fraudrules run --metrics-port``); None: no metrics.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_address: str = "0.0.0.0"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        path = _config_file.get()
        if path is not None:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=path),)
        return sources

    def rule(self, rule_id: str) -> RuleSettings:
        return self.rules.get(rule_id, RuleSettings())

    def commit_interval(self) -> float:
        """The checkpoint interval in force (seconds): ``commit_interval_seconds``, or the guarantee's default."""
        if self.commit_interval_seconds is not None:
            return self.commit_interval_seconds
        return EXACTLY_ONCE_COMMIT_INTERVAL_S if self.processing_guarantee == "exactly-once" else COMMIT_INTERVAL_S


_config_file: ContextVar[Path | None] = ContextVar("fraudrules_config_file", default=None)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides``, then ``FRAUDRULES_*`` variables, then the TOML file, then defaults.

    The file is ``config_file`` or, if that is None, ``$FRAUDRULES_CONFIG`` (if set).
    """
    path = config_file or (Path(os.environ["FRAUDRULES_CONFIG"]) if os.environ.get("FRAUDRULES_CONFIG") else None)
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)
