"""The fraudrules application: settings -> plugins and rules -> Quix Streams application -> run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog
from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.state.rocksdb import RocksDBOptions

from fraudrules import collector
from fraudrules.instance import instance_id
from fraudrules.pipeline.offsets import ConsumerOffsets
from fraudrules.pipeline.quix import check_version, consumer_statistics, recover_promptly
from fraudrules.pipeline.topology import Topology, build_topology
from fraudrules.rules.engine import RuleSet
from fraudrules.rules.registry import Registry, discover_configured
from fraudrules.settings import KafkaSettings, Settings

if TYPE_CHECKING:
    from fraudrules.operations.control import RuleControl
    from fraudrules.operations.metrics import Metrics

log = structlog.get_logger(__name__)


SECURITY_PROTOCOLS: dict[str, Literal["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]] = {
    "PLAINTEXT": "plaintext",
    "SSL": "ssl",
    "SASL_PLAINTEXT": "sasl_plaintext",
    "SASL_SSL": "sasl_ssl",
}


def connection_config(kafka: KafkaSettings) -> ConnectionConfig:
    """Quix's connection settings (used by its consumer, producer and admin) from ours."""
    return ConnectionConfig(
        bootstrap_servers=kafka.bootstrap_servers,
        security_protocol=SECURITY_PROTOCOLS[kafka.security_protocol],
        sasl_mechanism=kafka.sasl_mechanism,
        sasl_username=kafka.sasl_username,
        sasl_password=kafka.sasl_password,
        ssl_ca_location=kafka.ssl_ca_location,
        ssl_certificate_location=kafka.ssl_certificate_location,
        ssl_key_location=kafka.ssl_key_location,
        ssl_key_password=kafka.ssl_key_password,
    )


def load_ruleset(settings: Settings, registry: Registry | None = None) -> RuleSet:
    """The enabled rules of the installed plugins, configured by ``settings``."""
    plugins = settings.plugins
    registry = registry or discover_configured(plugins)
    return RuleSet.build(registry.rules(strict=plugins.strict), settings)


@dataclass
class FraudRulesApp:
    """A ready-to-run pipeline: the Quix application and what was wired into it."""

    settings: Settings
    app: Application
    topology: Topology
    #: Background services while running: the control topic's reader, the metrics' lag monitor.
    control: RuleControl | None = None
    metrics: Metrics | None = field(default=None, repr=False)

    def run(self, **stop: Any) -> list[dict[str, Any]]:
        """Run until stopped (SIGINT/SIGTERM), or, with ``timeout``/``count``, as ``Application.run``."""
        lag = self.metrics.bind(self.topology, self.settings).start() if self.metrics is not None else None
        if self.control is not None:
            self.control.start(self.topology.steps.evaluator)
        log.info(
            "fraudrules starting",
            bootstrap=self.settings.kafka.bootstrap_servers,
            group=self.settings.consumer_group,
            guarantee=self.settings.processing_guarantee,
            rules=sorted(self.topology.steps.evaluator.ruleset.versions),
            ruleset=self.topology.steps.evaluator.ruleset_info["id"],
        )
        try:
            with collector.processing(collector.LIVE_THRESHOLDS):
                collected: list[dict[str, Any]] = self.app.run(**stop) or []
        finally:
            if self.control is not None:
                self.control.stop()
            if lag is not None:
                lag.stop()
            counters = self.topology.counters
            join = self.topology.steps.join_totals
            log.info(
                "fraudrules stopped",
                records_in=counters.records_in,
                valid=counters.records_in - counters.deadlettered,
                invalid=counters.deadlettered,
                refused_by_join=join.deadlettered,
                deadlettered=counters.deadlettered + join.deadlettered,
                joined=join.joined,
                expired=join.expired,
                replayed=join.replayed,
                reused_order_ids=join.reused,
            )
        return collected


def client_configs(settings: Settings, instance: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Extra librdkafka settings of the consumer and of the producer: each gets only its own properties
    (librdkafka warns about the others at start-up, and ignores them).

    ``instance`` is this instance's stable name (:mod:`fraudrules.instance`): a restart under the same name
    takes the killed instance's partitions back and aborts its open transaction at once.
    """
    kafka = settings.kafka
    consumer = {
        "group.instance.id": instance,
        "session.timeout.ms": str(round(kafka.session_timeout_seconds * 1000)),
        # On assignment (and again in state recovery) Quix asks for the offsets of every input, internal and
        # changelog partition, one request at a time, and each waits behind the long-poll fetch on the same
        # connection (librdkafka's 500 ms): 5 s before the first record after a restart at 2 partitions. At
        # 20 ms an idle instance sends ~50 small fetch requests a second.
        "fetch.wait.max.ms": "20",
        # librdkafka hands over a fetch partition by partition: with its 1 MB per partition, an instance reading
        # a backlog at several partitions read each input partition a megabyte at a time, ~3,000 records and
        # (on make bench's data) over an hour of event time, while the join's watermark waited for the others.
        # 64 KB interleaves them (BENCHMARKS "Changes and gains": changelog records per order 7.7 -> 5.5 at
        # 4 x 1 on 20,000 orders; not seen on 40,000). A producer's batch larger than this comes whole (KIP-74).
        "max.partition.fetch.bytes": "65536",
        **kafka.extra,
        **kafka.consumer_extra,
    }
    producer = {
        "linger.ms": "5",
        "compression.type": settings.output_compression,
        **(exactly_once_producer(instance) if settings.processing_guarantee == "exactly-once" else {}),
        **kafka.extra,
        **kafka.producer_extra,
        # what goes to an internal topic is routed by key (``nodes/packets.py``, ``nodes/routing.py``): Kafka's
        # murmur2, as Quix Streams sets it, whatever the extras say
        "partitioner": "murmur2",
    }
    return consumer, producer


def exactly_once_producer(instance: str) -> dict[str, str]:
    """The producer settings of exactly-once: its ``transactional.id``, and a short first retry.

    A transaction's commit returns before its coordinator has written the markers, and meanwhile it answers the
    next transaction's registration of a partition (AddPartitionsToTxn) with CONCURRENT_TRANSACTIONS: in
    librdkafka's ``eos`` debug log that was about half the transactions of a producer committing in a loop on
    the local broker. librdkafka retries after ``retry.backoff.ms``, 100 ms by default (doubling up to
    ``retry.backoff.max.ms``), and each checkpoint's flush waited for it, right after the one before: at 4
    partitions x 2 instances the flush took 11-12 % of each instance's samples, against 1.0-1.5 % with a 10 ms
    backoff (BENCHMARKS "Changes and gains"). ``producer_extra`` overrides it."""
    return {"transactional.id": instance, "retry.backoff.ms": "10"}


#: See create_app.
CONSUMER_POLL_TIMEOUT_S = 0.01


def rocksdb_options(settings: Settings) -> RocksDBOptions:
    """RocksDB options of every state store, with the memory caps of ``settings.state_memory``."""
    memory = settings.state_memory
    mib = 1024 * 1024
    return RocksDBOptions(
        block_cache_size=memory.block_cache_mb * mib,
        write_buffer_size=memory.write_buffer_mb * mib,
        max_write_buffer_number=memory.write_buffers,
    )


def create_app(settings: Settings, ruleset: RuleSet | None = None, metrics: Metrics | None = None) -> FraudRulesApp:
    """Build the pipeline described by ``settings`` (rules from the installed plugins unless given).

    Without a given rule set and with ``live_rules``, the rules come from the control topic (its latest rule
    set, else the settings') and follow its changes while running; ``metrics`` counts what happens.
    """
    check_version()  # before anything touches Quix Streams' private parts
    instance = instance_id(settings)
    control: RuleControl | None = None
    rule_settings, version = settings, None
    if ruleset is None:
        registry = discover_configured(settings.plugins)
        registered = registry.rules(strict=settings.plugins.strict)
        if settings.live_rules:
            from fraudrules.operations.control import RuleControl

            on_change = metrics.ruleset_change if metrics is not None else None
            control = RuleControl(settings, registered, instance, on_change)
            in_force = control.initial()
            ruleset, rule_settings, version = in_force.ruleset, in_force.settings, in_force.version
        else:
            ruleset = RuleSet.build(registered, settings)
    consumer_config, producer_config = client_configs(settings, instance)
    offsets = ConsumerOffsets()
    consumer_statistics(consumer_config, offsets)
    app = Application(
        broker_address=connection_config(settings.kafka),
        consumer_group=settings.consumer_group,
        auto_offset_reset=settings.auto_offset_reset,
        processing_guarantee=settings.processing_guarantee,
        state_dir=settings.state_dir,
        rocksdb_options=rocksdb_options(settings),
        commit_interval=settings.commit_interval(),
        consumer_extra_config=consumer_config,
        producer_extra_config=producer_config,
        loglevel=None,
        broker_availability_timeout=0,
        # The longest the run loop waits for a record before its periodic tasks run again (the join's timers,
        # the readers' progress); the app's batch read returns at the first record (``quix.py`` item 10).
        # Idle it costs ~100 polls/s.
        consumer_poll_timeout=CONSUMER_POLL_TIMEOUT_S,
    )
    recover_promptly(app)
    topology = build_topology(app, rule_settings, ruleset, offsets, metrics)
    if version is not None:  # the control topic's version, named in every verdict
        topology.steps.evaluator.offer(ruleset, rule_settings.scoring, version)
        topology.steps.evaluator.apply_pending()
    return FraudRulesApp(settings, app, topology, control, metrics)
