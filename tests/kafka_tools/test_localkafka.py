"""The project's own broker: its settings, the launcher as a script, and on the running broker plain produce/consume,
Quix Streams state and group_by, transactions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Message, Producer
from quixstreams import Application, State

from fraudrules.kafka_tools import localkafka
from fraudrules.kafka_tools.harness import at_least, read_topic
from fraudrules.kafka_tools.localkafka import LocalKafka
from tests.conftest import Broker


def consume_all(bootstrap: str, topic: str, expected: int, *, timeout: float = 30.0, **config: Any) -> list[Message]:
    """Up to ``expected`` records of ``topic`` from its start, as many as arrive within ``timeout``."""
    return read_topic(bootstrap, topic, until=at_least(expected), timeout=timeout, **config)


def test_server_properties_name_every_listener_and_single_node_internal_topics(tmp_path: Path) -> None:
    broker = LocalKafka(tmp_path, port=9101, controller_port=9102, sasl_port=9103)
    properties = dict(line.split("=", 1) for line in broker._server_properties().splitlines())

    assert properties["listeners"] == (
        "PLAINTEXT://127.0.0.1:9101,CONTROLLER://127.0.0.1:9102,SASL_PLAINTEXT://127.0.0.1:9103"
    )
    assert properties["offsets.topic.replication.factor"] == properties["transaction.state.log.min.isr"] == "1"
    assert 'user_fraudrules="fraudrules-secret"' in properties["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert (broker.bootstrap, broker.sasl_bootstrap) == ("127.0.0.1:9101", "127.0.0.1:9103")


def test_a_quick_jit_broker_compiles_with_c1_only_and_keeps_kafkas_own_options(tmp_path: Path) -> None:
    full, quick = LocalKafka(tmp_path)._jvm_options(), LocalKafka(tmp_path, quick_jit=True)._jvm_options()

    assert "-XX:TieredStopAtLevel=1" not in full
    assert quick == [*full, "-XX:TieredStopAtLevel=1"]


def test_the_launcher_runs_as_a_script_with_the_standard_library_only() -> None:
    """``make kafka-fetch/kafka-up`` run it with the system python, before the virtualenv exists."""
    completed = subprocess.run(
        [sys.executable, "-I", "-S", str(Path(localkafka.__file__)), "--help"], capture_output=True, text=True
    )

    assert completed.returncode == 0, completed.stderr
    assert "{up,down,fetch}" in completed.stdout


def test_produced_record_is_consumed_back(kafka: Broker, unique: str) -> None:
    topic = f"roundtrip-{unique}"
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(15) == 0

    [message] = consume_all(kafka.bootstrap, topic, 1)

    assert (message.key(), message.value()) == (b"k", b"hello")


def test_quix_application_regroups_and_keeps_state(kafka: Broker, unique: str, tmp_path: Path) -> None:
    app = Application(
        broker_address=kafka.bootstrap,
        consumer_group=f"app-{unique}",
        auto_offset_reset="earliest",
        state_dir=tmp_path / "state",
    )
    source = app.topic(f"source-{unique}", value_deserializer="json")
    output = app.topic(f"output-{unique}", value_serializer="json")

    def running_total(value: dict[str, Any], state: State[str, Any]) -> dict[str, Any]:
        total = state.get("total", 0) + value["amount"]
        state.set("total", total)
        return {"merchant": value["merchant"], "total": total}

    sdf = app.dataframe(source).group_by("merchant").apply(running_total, stateful=True).to_topic(output)
    assert sdf is not None

    with app.get_producer() as producer:
        for merchant, amount in [("a", 1), ("b", 10), ("a", 2), ("b", 20), ("a", 3)]:
            producer.produce(source.name, value=f'{{"merchant": "{merchant}", "amount": {amount}}}')

    collected = app.run(count=5, timeout=30, metadata=True)

    totals = {(row["_key"], row["total"]) for row in collected}
    assert totals == {("a", 1), ("b", 10), ("a", 3), ("b", 30), ("a", 6)}
    assert len(consume_all(kafka.bootstrap, output.name, 5)) == 5


def test_aborted_transaction_is_invisible_to_read_committed(kafka: Broker, unique: str) -> None:
    topic = f"txn-{unique}"
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"txn-{unique}"})
    producer.init_transactions(30)

    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(15)
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)

    committed = consume_all(kafka.bootstrap, topic, 2, timeout=8, **{"isolation.level": "read_committed"})
    uncommitted = consume_all(kafka.bootstrap, topic, 2, timeout=15, **{"isolation.level": "read_uncommitted"})

    assert [m.value() for m in committed] == [b"committed"]
    assert [m.value() for m in uncommitted] == [b"aborted", b"committed"]


def test_consumer_group_commits_offsets(kafka: Broker, unique: str) -> None:
    topic = f"group-{unique}"
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(3):
        producer.produce(topic, value=str(i).encode())
    producer.flush(15)
    group: dict[str, Any] = {"group.id": f"g-{unique}"}

    first = consume_all(kafka.bootstrap, topic, 2, **group, **cast(dict[str, Any], {"enable.auto.commit": "true"}))
    assert len(first) >= 2
    second = consume_all(kafka.bootstrap, topic, 3, timeout=5, **group)

    assert len(first) + len(second) == 3
