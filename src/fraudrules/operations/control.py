"""Rule changes without a restart: the compacted control topic (``topics.rules``, ``fraudrules-rules``).

Records (JSON), one partition, ``cleanup.policy=compact``:

- key ``ruleset``: the whole rule configuration, ``{"version": n, "rules": {rule id: {"enabled", "mode",
  "config"}}, "scoring": {"review_at", "decline_at"}, "setAt", "setBy", "change"}``. Every record is complete
  (compaction keeps only the latest); ``rules`` and ``scoring`` replace the settings' own, validated by the
  same models (:class:`~fraudrules.settings.RuleSettings`, :class:`~fraudrules.settings.ScoringSettings`) and
  :meth:`RuleSet.build <fraudrules.rules.engine.RuleSet.build>` as a settings file. ``version`` must rise.
- key ``status/<instance>``: what an instance made of the latest ruleset record: ``{"instance", "version",
  "status": "applied" | "rejected", "rulesetId", "error", "at"}``.

Each running instance reads the topic in a background thread (:class:`RuleControl`). A valid rule set is
built there and handed to the evaluator, which puts it in force before the next input record (one attribute
read per record); an invalid one is logged, answered with a ``rejected`` status, and the rules in force stay.
At start-up an instance reads the whole topic first and starts with the last rule set it accepts, as a running
instance would have. Rule state is kept by rule id under the rule's key (merchantId, provinceId): a change of
config, mode or enablement keeps it (a rule disabled for a while finds its state as it left it); a rule's key
is part of its code, so it changes only with a new plugin version, which needs a restart anyway.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fraudrules import codec
from fraudrules.connect import client_config
from fraudrules.pipeline.evaluate import Evaluator
from fraudrules.rules.engine import RuleSet
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import ConfigError, KafkaSettings, RuleSettings, ScoringSettings, Settings

log = structlog.get_logger(__name__)

RULESET_KEY = "ruleset"
STATUS_PREFIX = "status/"


class RulesetRecord(BaseModel):
    """The value of a ``ruleset`` record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=1)
    rules: dict[str, RuleSettings] = Field(default_factory=dict)
    scoring: ScoringSettings = ScoringSettings()
    setAt: str | None = None
    setBy: str | None = None
    #: What changed, in words (``amount_spike.min_history=12``).
    change: str | None = None


@dataclass(frozen=True)
class InForce:
    """A rule set ready to run: the settings with its rules and scoring, the built rules, its version."""

    settings: Settings
    ruleset: RuleSet
    version: int | None


def parse(value: bytes | None) -> RulesetRecord:
    """A ``ruleset`` record's value, or :class:`ConfigError` saying what is wrong with it."""
    if value is None:
        raise ConfigError("empty ruleset record (a tombstone): nothing to apply")
    try:
        return RulesetRecord.model_validate(codec.loads(value))
    except ValueError as exc:  # orjson and pydantic errors both
        raise ConfigError(f"invalid ruleset record: {exc}") from None


def build(
    record: RulesetRecord, settings: Settings, registered: Mapping[str, RegisteredRule], current: int | None
) -> InForce:
    """``record`` applied to ``settings`` and built; :class:`ConfigError` if it cannot run here."""
    if current is not None and record.version <= current:
        raise ConfigError(f"ruleset version {record.version} is not above the version in force ({current})")
    if record.scoring.decline_at < record.scoring.review_at:
        raise ConfigError(
            f"scoring.decline_at ({record.scoring.decline_at}) is below scoring.review_at ({record.scoring.review_at})"
        )
    applied = settings.model_copy(update={"rules": record.rules, "scoring": record.scoring})
    ruleset = RuleSet.build(registered, applied)
    return InForce(applied, ruleset, record.version)


def ensure_topic(kafka: KafkaSettings, topic: str) -> None:
    """Create the control topic (1 partition, compacted) if it does not exist."""
    admin = AdminClient(client_config(kafka))
    if topic in admin.list_topics(timeout=10).topics:
        return
    new = NewTopic(topic, 1, -1, config={"cleanup.policy": "compact"})
    for future in admin.create_topics([new]).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def control_consumer(kafka: KafkaSettings, topic: str) -> tuple[Consumer, int]:
    """A consumer at the start of ``topic`` (no consumer group, commits nothing) and the topic's end offset."""
    consumer = Consumer(
        client_config(
            kafka,
            **{
                "group.id": f"fraudrules-control-{os.getpid()}-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
            },
        )
    )
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    return consumer, end


def read_all(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> list[Message]:
    """Every record of the control topic now (for ``fraudrules rules show`` and ``set``)."""
    ensure_topic(kafka, topic)
    consumer, end = control_consumer(kafka, topic)
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while (not messages or messages[-1].offset() < end - 1) and end > 0 and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def key_of(message: Message) -> str:
    key = message.key()
    return key.decode(errors="replace") if isinstance(key, bytes) else ""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class RuleControl:
    """One instance's reader of the control topic: the rule set to start with, then changes while it runs."""

    def __init__(
        self,
        settings: Settings,
        registered: Mapping[str, RegisteredRule],
        instance: str,
        on_change: Any = None,
    ) -> None:
        """``on_change(outcome)`` is told "applied" or "rejected" for every ruleset record read while running."""
        self.settings = settings
        self.registered = registered
        self.instance = instance
        self.topic = settings.topics.rules
        self.on_change = on_change
        self.in_force = InForce(settings, RuleSet.build(registered, settings), None)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._evaluator: Evaluator | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def initial(self) -> InForce:
        """Read the topic to its end: the rule set to start with (the settings' own if it holds none)."""
        kafka = self.settings.kafka
        ensure_topic(kafka, self.topic)
        self._consumer, end = control_consumer(kafka, self.topic)
        deadline = time.monotonic() + 30
        position = 0
        while position < end and time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            position = message.offset() + 1
            if key_of(message) == RULESET_KEY:
                self._consider(message, running=False)
        if self.in_force.version is not None:
            log.info("rule set from the control topic", topic=self.topic, version=self.in_force.version)
        return self.in_force

    def start(self, evaluator: Evaluator) -> None:
        """Follow the topic in a thread, handing each valid rule set to ``evaluator``."""
        self._evaluator = evaluator
        self._producer = Producer(client_config(self.settings.kafka, **{"linger.ms": 0}))
        self._thread = threading.Thread(target=self._run, name="fraudrules-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._producer is not None:
            self._producer.flush(5)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _run(self) -> None:
        assert self._consumer is not None
        while not self._stop.is_set():
            try:
                message = self._consumer.poll(0.2)
            except RuntimeError:  # closed under us at shutdown
                return
            if message is None or message.error() is not None or key_of(message) != RULESET_KEY:
                continue
            self._consider(message, running=True)

    def _consider(self, message: Message, running: bool) -> None:
        """Validate one ruleset record; put it in force (or hand it to the evaluator) or reject it."""
        version: int | None = None
        try:
            record = parse(message.value())
            version = record.version
            candidate = build(record, self.settings, self.registered, self.in_force.version)
            if running:
                assert self._evaluator is not None
                info = self._evaluator.offer(candidate.ruleset, candidate.settings.scoring, candidate.version)
        except ConfigError as exc:
            log.error(
                "rule change rejected; the rules in force stay",
                topic=self.topic,
                offset=message.offset(),
                version=version,
                in_force=self.in_force.version,
                error=str(exc),
            )
            if running:
                self._status(version, "rejected", error=str(exc))
            return
        self.in_force = candidate
        if running:
            log.info("rule change accepted", version=record.version, ruleset=info["id"], change=record.change)
            self._status(record.version, "applied", ruleset_id=info["id"])

    def _status(
        self, version: int | None, status: str, ruleset_id: str | None = None, error: str | None = None
    ) -> None:
        if self.on_change is not None:
            self.on_change(status)
        if self._producer is None:
            return
        value = {
            "instance": self.instance,
            "version": version,
            "status": status,
            "rulesetId": ruleset_id,
            "inForce": self.in_force.version,
            "error": error,
            "at": now_iso(),
        }
        try:
            self._producer.produce(self.topic, key=STATUS_PREFIX + self.instance, value=codec.dumps(value))
            self._producer.poll(0)
        except (BufferError, KafkaException) as exc:
            log.warning("rule change status not written", error=str(exc))


# --- the command line's side: read the rule set in force, publish a new one -------------------------------


@dataclass
class TopicView:
    """What the control topic holds: the latest ruleset record that builds here, the highest version seen,
    and each instance's latest status."""

    record: RulesetRecord | None
    highest: int
    statuses: dict[str, dict[str, Any]]
    end: int


def view(settings: Settings, registered: Mapping[str, RegisteredRule]) -> TopicView:
    record: RulesetRecord | None = None
    highest = 0
    statuses: dict[str, dict[str, Any]] = {}
    messages = read_all(settings.kafka, settings.topics.rules)
    for message in messages:
        key = key_of(message)
        if key.startswith(STATUS_PREFIX) and message.value():
            try:
                statuses[key[len(STATUS_PREFIX) :]] = codec.loads(message.value())
            except ValueError:
                continue
        elif key == RULESET_KEY:
            try:
                candidate = parse(message.value())
                highest = max(highest, candidate.version)
                build(candidate, settings, registered, record.version if record else None)
            except ConfigError:
                continue
            record = candidate
    end = messages[-1].offset() + 1 if messages else 0
    return TopicView(record, highest, statuses, end)


def current_rules(settings: Settings, record: RulesetRecord | None) -> tuple[dict[str, RuleSettings], ScoringSettings]:
    if record is None:
        return dict(settings.rules), settings.scoring
    return dict(record.rules), record.scoring


def apply_assignments(
    rules: dict[str, RuleSettings], scoring: ScoringSettings, assignments: list[tuple[str, Any]]
) -> tuple[dict[str, RuleSettings], ScoringSettings]:
    """``rule.enabled``, ``rule.mode``, ``rule.<config key>`` and ``scoring.<field>`` set to values."""
    rules = dict(rules)
    for path, value in assignments:
        head, _, name = path.partition(".")
        if not name:
            raise ConfigError(f"expected RULE.FIELD=VALUE or scoring.FIELD=VALUE, got {path!r}")
        try:
            if head == "scoring":
                scoring = ScoringSettings(**{**scoring.model_dump(), name: value})
                continue
            current = rules.get(head, RuleSettings())
            if name in ("enabled", "mode"):
                rules[head] = RuleSettings(**{**current.model_dump(), name: value})
            else:
                rules[head] = current.model_copy(update={"config": {**current.config, name: value}})
        except ValidationError as exc:
            raise ConfigError(f"invalid value for {path}: {exc.errors()[0]['msg']}") from None
    return rules, scoring


def publish(
    settings: Settings,
    registered: Mapping[str, RegisteredRule],
    rules: dict[str, RuleSettings],
    scoring: ScoringSettings,
    version: int,
    change: str,
) -> tuple[RulesetRecord, str]:
    """Validate and write a ruleset record; returns it with its ruleset id. :class:`ConfigError` if invalid."""
    record = RulesetRecord(version=version, rules=rules, scoring=scoring, setAt=now_iso(), setBy=who(), change=change)
    built = build(record, settings, registered, None)
    producer = Producer(client_config(settings.kafka, **{"linger.ms": 0}))
    producer.produce(settings.topics.rules, key=RULESET_KEY, value=codec.dumps(record.model_dump(mode="json")))
    if producer.flush(30):
        raise ConfigError(f"the rule change could not be written to {settings.topics.rules}")
    return record, built.ruleset.ruleset_id(built.settings.scoring)


def wait_for_statuses(
    settings: Settings, version: int, start: int, instances: int | None, timeout: float
) -> dict[str, dict[str, Any]]:
    """Status records about ``version`` from ``start`` on, until ``instances`` answered or ``timeout``."""
    consumer, _ = control_consumer(settings.kafka, settings.topics.rules)
    consumer.assign([TopicPartition(settings.topics.rules, 0, start)])
    answers: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (instances is None or len(answers) < instances):
            message = consumer.poll(0.2)
            if message is None or message.error() is not None or not key_of(message).startswith(STATUS_PREFIX):
                continue
            try:
                status = codec.loads(message.value())
            except ValueError:
                continue
            if status.get("version") == version:
                answers[status.get("instance", key_of(message))] = status
    finally:
        consumer.close()
    return answers
