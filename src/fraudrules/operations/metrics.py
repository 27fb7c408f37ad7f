"""Prometheus metrics of a running pipeline (``fraudrules run --metrics-port 9464``).

:class:`Metrics` is the topology's :class:`~fraudrules.pipeline.observer.PipelineObserver` and the rule set's
:class:`~fraudrules.rules.engine.RuleObserver`: it counts in the live adapter only, never in the pure steps
(the backtest has no metrics). Gauges that are state rather than events (open orders, consumer lag, the rule
set in force) are read when scraped. Names follow Prometheus conventions: ``fraudrules_`` prefix, base units
(seconds), ``_total`` on counters.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from fraudrules.operations.lag import LagMonitor
from fraudrules.pipeline.model import DeadLetter, Side, Verdict, is_deadletter
from fraudrules.pipeline.topology import Topology
from fraudrules.settings import Settings

#: Rule calls take microseconds; a slow one (``isolation.slow_ms``, 50 ms) must still land in a bucket.
RULE_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.25, float("inf"))
#: From the later side's Kafka timestamp to the verdict; one-sided orders wait out the join window (60 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))


class Metrics:
    """Every metric of one process, in a registry of its own; :meth:`serve` exposes it over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.records_in = Counter("fraudrules_records_in", "Input records read, by topic.", ["topic"], registry=r)
        self.deadletters = Counter(
            "fraudrules_deadletters", "Records sent to the dead-letter topic, by reason.", ["reason"], registry=r
        )
        self.verdicts = Counter("fraudrules_verdicts", "Verdicts written, by decision.", ["decision"], registry=r)
        self.rule_hits = Counter(
            "fraudrules_rule_hits",
            "Rule hits in verdicts, by rule and mode (enforce, shadow).",
            ["rule", "mode"],
            registry=r,
        )
        self.list_hits = Counter(
            "fraudrules_list_hits",
            "Orders on an allow, review or decline list, in verdicts, by list and action.",
            ["list", "action"],
            registry=r,
        )
        self.rule_errors = Counter(
            "fraudrules_rule_errors",
            "Rule errors in verdicts (raised, slow, suspended), by rule.",
            ["rule"],
            registry=r,
        )
        self.rule_suspensions = Counter(
            "fraudrules_rule_suspensions", "Times a rule was suspended after repeated failures.", ["rule"], registry=r
        )
        self.rule_seconds = _RuleTimes()
        r.register(self.rule_seconds)
        self.latency = Histogram(
            "fraudrules_verdict_latency_seconds",
            "From the Kafka timestamp of an order's later side to its verdict, by join status.",
            ["join"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ruleset_changes = Counter(
            "fraudrules_ruleset_changes",
            "Rule sets read from the control topic, by outcome (applied, rejected).",
            ["outcome"],
            registry=r,
        )
        self.state = _StateCollector()
        r.register(self.state)
        # labelled children cached: a label lookup costs more than the increment
        self._records_in: dict[str, Any] = {}
        self._deadletters: dict[str, Any] = {}
        self._verdicts: dict[str, Any] = {}
        self._latency: dict[str, Any] = {}
        self._hits: dict[tuple[str, str], Any] = {}
        self._list_hits: dict[tuple[str, str], Any] = {}
        self._errors: dict[str, Any] = {}
        self._server: Any = None

    # --- serving ------------------------------------------------------------------------------------------

    def serve(self, port: int, address: str = "0.0.0.0") -> int:
        """Start the HTTP endpoint (``/metrics``) in a thread; returns the port (0 picks a free one)."""
        self._server, _ = start_http_server(port, address, registry=self.registry)
        bound: int = self._server.server_port
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bind(self, topology: Topology, settings: Settings) -> LagMonitor:
        """Read state gauges from ``topology`` (each in-process restart builds a new one); returns the lag
        monitor of its consumer group, not yet started."""
        topics = settings.topics
        monitor = LagMonitor(settings.kafka, settings.consumer_group, [topics.payment, topics.order])
        self.state.topology, self.state.lag = topology, monitor
        topology.steps.evaluator.ruleset.observer = self
        return monitor

    # --- PipelineObserver ---------------------------------------------------------------------------------

    def admitted(self, topic: str, result: Side | DeadLetter) -> None:
        child = self._records_in.get(topic)
        if child is None:
            child = self._records_in[topic] = self.records_in.labels(topic)
        child.inc()
        if is_deadletter(result):
            self._deadletter(result["reason"])

    def joined(self, outputs: list[Any]) -> None:
        self.state.sides_joined += 1
        for output in outputs:
            if is_deadletter(output):
                self._deadletter(output["reason"])

    def verdict(self, verdict: Verdict) -> None:
        decision = verdict["decision"]
        child = self._verdicts.get(decision)
        if child is None:
            child = self._verdicts[decision] = self.verdicts.labels(decision)
        child.inc()
        status = verdict["join"]["status"]
        latency = self._latency.get(status)
        if latency is None:
            latency = self._latency[status] = self.latency.labels(status)
        latency.observe(max(0.0, verdict["latencyMs"] / 1000))
        for mode, hits in (("enforce", verdict["hits"]), ("shadow", verdict["shadowHits"])):
            for hit in hits:
                key = (hit["rule"], mode)
                counter = self._hits.get(key)
                if counter is None:
                    counter = self._hits[key] = self.rule_hits.labels(*key)
                counter.inc()
        for listed in verdict.get("lists", ()):
            key = (listed["list"], listed["action"])
            counter = self._list_hits.get(key)
            if counter is None:
                counter = self._list_hits[key] = self.list_hits.labels(*key)
            counter.inc()
        for error in verdict["errors"]:
            counter = self._errors.get(error["rule"])
            if counter is None:
                counter = self._errors[error["rule"]] = self.rule_errors.labels(error["rule"])
            counter.inc()

    def _deadletter(self, reason: str) -> None:
        child = self._deadletters.get(reason)
        if child is None:
            child = self._deadletters[reason] = self.deadletters.labels(reason)
        child.inc()

    # --- RuleObserver -------------------------------------------------------------------------------------

    def rule_call(self, rule_id: str, seconds: float) -> None:
        self.rule_seconds.observe(rule_id, seconds)

    def rule_suspended(self, rule_id: str) -> None:
        self.rule_suspensions.labels(rule_id).inc()

    # --- the control topic --------------------------------------------------------------------------------

    def ruleset_change(self, outcome: str) -> None:
        self.ruleset_changes.labels(outcome).inc()


class _RuleTimes(Collector):
    """``fraudrules_rule_evaluation_seconds``: a histogram per rule, kept in plain lists.

    Every rule call lands here (several per order), and ``prometheus_client``'s Histogram takes a lock and
    walks its buckets on each observation (~1.5 µs, measured): this costs a bisect and two additions. Only
    the processing thread writes; a scrape reads a snapshot that may be one observation behind.
    """

    def __init__(self) -> None:
        self._bounds = list(RULE_BUCKETS)
        #: rule -> [count per bucket (not cumulative)..., sum]
        self._rules: dict[str, list[float]] = {}

    def observe(self, rule_id: str, seconds: float) -> None:
        counts = self._rules.get(rule_id)
        if counts is None:
            counts = self._rules[rule_id] = [0.0] * (len(self._bounds) + 1)
        counts[bisect_left(self._bounds, seconds)] += 1
        counts[-1] += seconds

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        family = HistogramMetricFamily(
            "fraudrules_rule_evaluation_seconds", "Wall time of each rule call, by rule.", labels=["rule"]
        )
        for rule_id, counts in sorted(self._rules.items()):
            snapshot = list(counts)
            cumulative, buckets = 0.0, []
            for bound, count in zip(self._bounds, snapshot, strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric([rule_id], buckets, sum_value=snapshot[-1])
        yield family


class _StateCollector(Collector):
    """Gauges read at scrape time: open orders in the join, consumer lag, the rule set in force."""

    def __init__(self) -> None:
        self.topology: Topology | None = None
        self.lag: LagMonitor | None = None
        #: Sides that entered the join in this process.
        self.sides_joined = 0

    def describe(self) -> list[Any]:
        return []  # collected on demand: the metrics appear once a topology is bound

    def collect(self) -> Iterator[Any]:
        topology = self.topology
        if topology is not None:
            join = topology.steps.join_totals
            # every side entering the join opens an order, closes one, repeats one or is refused; an order
            # open before a restart of this process is not counted (hence the floor at 0)
            opened = self.sides_joined - join.replayed - join.deadlettered - join.joined
            open_orders = GaugeMetricFamily(
                "fraudrules_join_open_orders", "Orders waiting in the join for their other side (this process)."
            )
            open_orders.add_metric([], max(0, opened - join.joined - join.expired))
            yield open_orders
            info = topology.steps.evaluator.ruleset_info
            ruleset = InfoMetricFamily("fraudrules_ruleset", "The rule set in force: id and control-topic version.")
            ruleset.add_metric([], {"id": info["id"], "version": str(info.get("version", ""))})
            yield ruleset
        if self.lag is not None:
            lag = GaugeMetricFamily(
                "fraudrules_consumer_lag",
                "Input records not yet committed by the consumer group, by topic and partition.",
                labels=["topic", "partition"],
            )
            for (topic, partition), value in sorted(self.lag.lags.items()):
                lag.add_metric([topic, str(partition)], value)
            yield lag
