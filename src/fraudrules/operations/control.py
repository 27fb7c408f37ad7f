"""Rule changes without a restart: the compacted control topic (``topics.rules``, ``fraudrules-rules``).

Records (JSON), one partition, ``cleanup.policy=compact``:

- key ``ruleset``: the whole rule configuration, ``{"version": n, "rules": {rule id: {"enabled", "mode",
  "config"}}, "scoring": {"review_at", "decline_at"}, "setAt", "setBy", "change"}``. Every record is complete
  (compaction keeps only the latest); ``rules`` and ``scoring`` replace the settings' own, validated by the
  same models (:class:`~fraudrules.settings.RuleSettings`, :class:`~fraudrules.settings.ScoringSettings`) and
  :meth:`RuleSet.build <fraudrules.rules.engine.RuleSet.build>` as a settings file. ``version`` must rise.
  It also holds the expression rules (``expressions``, as ``[expressions.NAME]``) and the lists defined at
  runtime (``lists``: name -> ``{"field", "action"}``, added to the settings' ``[lists.NAME]``).
- key ``list/<name>/<value>``: one list entry, ``{"list", "value", "reason", "expiresAt" (ms or null),
  "addedAt", "addedBy"}``, or its removal, ``{"list", "value", "removed": true, "at", "by"}`` (not a tombstone:
  a removal must outlive compaction, or a settings file's value would come back). The command line writes the
  entries of a change first, then the ruleset record that puts them in force: an instance stages entries and
  applies them with the next ruleset record, so every record is decided with all of a change or none of it.
- key ``audit/<version>`` (and ``audit/refused/<time>``): who changed what and when, kept by compaction
  because every key is new: ``fraudrules rules history``.
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
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from fraudrules.rules.lists import Change, Entry, Lists, iso, text_of
from fraudrules.rules.registry import RegisteredRule
from fraudrules.settings import (
    ConfigError,
    ExpressionSettings,
    KafkaSettings,
    ListAction,
    ListSettings,
    RuleSettings,
    ScoringSettings,
    Settings,
)

log = structlog.get_logger(__name__)

RULESET_KEY = "ruleset"
STATUS_PREFIX = "status/"
LIST_PREFIX = "list/"
AUDIT_PREFIX = "audit/"


class ListDefinition(BaseModel):
    """A list defined at runtime: the event field it holds values of, and its action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(min_length=1, max_length=200)
    action: ListAction


class RulesetRecord(BaseModel):
    """The value of a ``ruleset`` record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(ge=1)
    rules: dict[str, RuleSettings] = Field(default_factory=dict)
    scoring: ScoringSettings = ScoringSettings()
    expressions: dict[str, ExpressionSettings] = Field(default_factory=dict)
    lists: dict[str, ListDefinition] = Field(default_factory=dict)
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
    record: RulesetRecord,
    settings: Settings,
    registered: Mapping[str, RegisteredRule],
    current: int | None,
    lists: Lists | None = None,
) -> InForce:
    """``record`` applied to ``settings`` and built; :class:`ConfigError` if it cannot run here. ``lists``: the
    lists in force, which the rule set will use (the settings' own if None)."""
    if current is not None and record.version <= current:
        raise ConfigError(f"ruleset version {record.version} is not above the version in force ({current})")
    if record.scoring.decline_at < record.scoring.review_at:
        raise ConfigError(
            f"scoring.decline_at ({record.scoring.decline_at}) is below scoring.review_at ({record.scoring.review_at})"
        )
    defined = dict(settings.lists)
    for name, definition in record.lists.items():
        listed = defined.get(name)
        defined[name] = (listed or ListSettings(field=definition.field, action=definition.action)).model_copy(
            update={"field": definition.field, "action": definition.action}
        )
    update = {"rules": record.rules, "scoring": record.scoring, "expressions": record.expressions, "lists": defined}
    applied = settings.model_copy(update=update)
    ruleset = RuleSet.build(registered, applied, lists)
    return InForce(applied, ruleset, record.version)


def definitions(settings: Settings) -> dict[str, tuple[str, ListAction]]:
    """Every list's field and action, as a rule set's settings define them."""
    return {name: (listed.field, listed.action) for name, listed in settings.lists.items()}


def entry_change(message: Message) -> tuple[Change, int] | None:
    """A ``list/...`` record as a change to a list, with the position after it; None if unreadable."""
    try:
        value = codec.loads(message.value() or b"")
        name, text = str(value["list"]), str(value["value"])
        if value.get("removed"):
            return (name, text, None), message.offset() + 1
        expires = value.get("expiresAt")
        described = (
            str(value.get("reason") or ""),
            int(expires) if expires is not None else None,
            value.get("addedAt"),
            value.get("addedBy"),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable list entry on the control topic; skipped", offset=message.offset())
        return None
    entry = _ENTRIES.get(described)
    if entry is None:  # the entries of one command share one (a list of 1,000,000 values holds one Entry)
        if len(_ENTRIES) > 10_000:
            _ENTRIES.clear()
        entry = _ENTRIES[described] = Entry(*described)
    return (name, sys.intern(text) if len(text) < 64 else text, entry), message.offset() + 1


_ENTRIES: dict[tuple[str, int | None, str | None, str | None], Entry] = {}


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
    """Every record of the control topic now (for ``fraudrules rules show`` and ``set``); gives up after
    ``timeout`` seconds without a record (a long list takes as long as it takes)."""
    ensure_topic(kafka, topic)
    consumer, end = control_consumer(kafka, topic)
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while (not messages or messages[-1].offset() < end - 1) and end > 0 and time.monotonic() < deadline:
            batch = [message for message in consumer.consume(10_000, 0.2) if message.error() is None]
            if batch:
                messages += batch
                deadline = time.monotonic() + timeout
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
        #: The lists every rule set of this instance shares; changed on the evaluating thread only, once running.
        self.lists = self.in_force.ruleset.lists
        #: List entries read since the last ruleset record, and the position after the last of them.
        self._staged: list[Change] = []
        self._staged_revision = 0
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
        deadline = time.monotonic() + 30  # without a record; a long list takes as long as it takes
        position = 0
        while position < end and time.monotonic() < deadline:
            batch = self._consumer.consume(10_000, 0.2)
            if batch:
                deadline = time.monotonic() + 30
            for message in batch:
                if message.error() is not None:
                    continue
                position = message.offset() + 1
                key = key_of(message)
                if key == RULESET_KEY:
                    self._consider(message, running=False)
                elif key.startswith(LIST_PREFIX):
                    self._stage(message)
            # before it runs, entries go straight into the lists (a list of 1,000,000 is never held twice)
            self.lists.update({}, self._staged, self._staged_revision)
            self._staged = []
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
            if message is None or message.error() is not None:
                continue
            key = key_of(message)
            if key == RULESET_KEY:
                self._consider(message, running=True)
            elif key.startswith(LIST_PREFIX):
                self._stage(message)

    def _stage(self, message: Message) -> None:
        read = entry_change(message)
        if read is not None:
            self._staged.append(read[0])
            self._staged_revision = read[1]

    def _consider(self, message: Message, running: bool) -> None:
        """Validate one ruleset record; put it in force (or hand it to the evaluator) or reject it."""
        version: int | None = None
        try:
            record = parse(message.value())
            version = record.version
            candidate = build(record, self.settings, self.registered, self.in_force.version, self.lists)
            update = (definitions(candidate.settings), self._staged, self._staged_revision)
            if running:
                assert self._evaluator is not None
                info = self._evaluator.offer(candidate.ruleset, candidate.settings.scoring, candidate.version, update)
            else:
                self.lists.update(*update)
            self._staged = []
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
    """What the control topic holds: the latest ruleset record that builds here, the highest version seen, each
    instance's latest status, the runtime list entries (name -> value -> record) and the audit trail."""

    record: RulesetRecord | None
    highest: int
    statuses: dict[str, dict[str, Any]]
    end: int
    entries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)


def view(settings: Settings, registered: Mapping[str, RegisteredRule]) -> TopicView:
    record: RulesetRecord | None = None
    highest = 0
    statuses: dict[str, dict[str, Any]] = {}
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    audit: list[dict[str, Any]] = []
    messages = read_all(settings.kafka, settings.topics.rules)
    for message in messages:
        key = key_of(message)
        if key == RULESET_KEY:
            try:
                candidate = parse(message.value())
                highest = max(highest, candidate.version)
                build(candidate, settings, registered, record.version if record else None)
            except ConfigError:
                continue
            record = candidate
            continue
        try:
            value = codec.loads(message.value() or b"")
        except ValueError:
            continue
        if key.startswith(STATUS_PREFIX):
            statuses[key[len(STATUS_PREFIX) :]] = value
        elif key.startswith(LIST_PREFIX) and isinstance(value, dict) and "list" in value and "value" in value:
            entries.setdefault(str(value["list"]), {})[str(value["value"])] = value
        elif key.startswith(AUDIT_PREFIX) and isinstance(value, dict):
            audit.append(value)
    end = messages[-1].offset() + 1 if messages else 0
    return TopicView(record, highest, statuses, end, entries, audit)


def current(settings: Settings, record: RulesetRecord | None) -> RulesetRecord:
    """The configuration in force (the settings' own if nothing was published), as version 0 if none."""
    if record is not None:
        return record
    return RulesetRecord.model_construct(
        version=0,
        rules=dict(settings.rules),
        scoring=settings.scoring,
        expressions=dict(settings.expressions),
        lists={},
    )


def apply_assignments(config: RulesetRecord, assignments: list[tuple[str, Any]]) -> RulesetRecord:
    """``rule.enabled``, ``rule.mode``, ``rule.<config key>``, ``expression.<when|score|reason|mode|enabled>``
    and ``scoring.<field>`` set to values."""
    rules, scoring, expressions = dict(config.rules), config.scoring, dict(config.expressions)
    for path, value in assignments:
        head, _, name = path.partition(".")
        if not name:
            raise ConfigError(f"expected RULE.FIELD=VALUE or scoring.FIELD=VALUE, got {path!r}")
        try:
            if head == "scoring":
                scoring = ScoringSettings(**{**scoring.model_dump(), name: value})
            elif head in expressions:
                expressions[head] = ExpressionSettings(**{**expressions[head].model_dump(), name: value})
            elif name in ("enabled", "mode"):
                rules[head] = RuleSettings(**{**rules.get(head, RuleSettings()).model_dump(), name: value})
            else:
                current_rule = rules.get(head, RuleSettings())
                rules[head] = current_rule.model_copy(update={"config": {**current_rule.config, name: value}})
        except ValidationError as exc:
            raise ConfigError(f"invalid value for {path}: {exc.errors()[0]['msg']}") from None
    return config.model_copy(update={"rules": rules, "scoring": scoring, "expressions": expressions})


def list_definition(settings: Settings, config: RulesetRecord, name: str) -> ListDefinition | None:
    """List ``name`` as ``config`` (then the settings file) defines it, or None."""
    if name in config.lists:
        return config.lists[name]
    listed = settings.lists.get(name)
    return None if listed is None else ListDefinition(field=listed.field, action=listed.action)


def lists_in_force(settings: Settings, topic: TopicView, now_ms: int) -> dict[str, dict[str, Any]]:
    """Every list with its field, action and entries in force at ``now_ms``: the settings file's values, then the
    topic's additions and removals."""
    config = current(settings, topic.record)
    names = sorted({*settings.lists, *config.lists})
    shown: dict[str, dict[str, Any]] = {}
    for name in names:
        definition = list_definition(settings, config, name)
        assert definition is not None
        entries: dict[str, dict[str, Any]] = {}
        if name in settings.lists:
            listed = settings.lists[name]
            for text in filter(None, map(text_of, listed.values)):
                entries[text] = {"value": text, "reason": listed.reason, "expiresAt": None}
        for text, record in topic.entries.get(name, {}).items():
            expires = record.get("expiresAt")
            if record.get("removed") or (expires is not None and expires <= now_ms):
                entries.pop(text, None)
                continue
            entries[text] = {
                "value": text,
                "reason": record.get("reason", ""),
                "expiresAt": iso(expires) if expires is not None else None,
                "addedAt": record.get("addedAt"),
                "addedBy": record.get("addedBy"),
            }
        shown[name] = {
            "field": definition.field,
            "action": definition.action,
            "size": len(entries),
            "entries": list(entries.values()),
        }
    return shown


def publish(
    settings: Settings,
    registered: Mapping[str, RegisteredRule],
    config: RulesetRecord,
    version: int,
    change: str,
    entries: list[dict[str, Any]] | None = None,
) -> tuple[RulesetRecord, str]:
    """Validate ``config`` as ``version`` and write it, after the list ``entries`` it puts in force, with its
    audit record; returns it with its ruleset id. :class:`ConfigError` if invalid (nothing written)."""
    record = RulesetRecord(
        **{**config.model_dump(exclude={"version", "setAt", "setBy", "change"})},
        version=version,
        setAt=now_iso(),
        setBy=who(),
        change=change,
    )
    built = build(record, settings, registered, None)
    ruleset_id = built.ruleset.ruleset_id(built.settings.scoring)
    producer = Producer(client_config(settings.kafka, **{"linger.ms": 5}))
    for entry in entries or ():
        key = f"{LIST_PREFIX}{entry['list']}/{entry['value']}"
        while True:
            try:
                producer.produce(settings.topics.rules, key=key, value=codec.dumps(entry))
                break
            except BufferError:  # a long list: wait for the queue to drain
                producer.poll(0.5)
        producer.poll(0)
    producer.produce(settings.topics.rules, key=RULESET_KEY, value=codec.dumps(record.model_dump(mode="json")))
    audit = {"version": version, "at": record.setAt, "by": record.setBy, "change": change, "rulesetId": ruleset_id}
    producer.produce(settings.topics.rules, key=f"{AUDIT_PREFIX}{version:010d}", value=codec.dumps(audit))
    if producer.flush(60):
        raise ConfigError(f"the rule change could not be written to {settings.topics.rules}")
    return record, ruleset_id


def refused(settings: Settings, change: str, error: str) -> None:
    """Keep a refused change in the audit trail (``audit/refused/<time>``): who tried what, and why not."""
    at = now_iso()
    value = {"status": "refused", "at": at, "by": who(), "change": change, "error": error}
    producer = Producer(client_config(settings.kafka, **{"linger.ms": 0}))
    producer.produce(settings.topics.rules, key=f"{AUDIT_PREFIX}refused/{at}", value=codec.dumps(value))
    producer.flush(10)


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
