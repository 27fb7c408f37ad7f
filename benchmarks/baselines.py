"""The two ceilings fraudrules is measured against, each run as its own process by ``benchmarks/run.py``.

- ``raw``: a confluent-kafka consume -> produce loop over both input topics, one output record per input
  record, no parsing (what the Kafka client alone can move on this machine).
- ``quix``: a bare Quix Streams application with fraudrules' shape (both topics re-keyed by orderId,
  joined in state, one output per joined order) and no validation, rules or verdicts.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

from confluent_kafka import Consumer, Producer
from quixstreams import Application, State

from fraudrules.settings import Settings


def raw_loop(args: argparse.Namespace) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "fetch.wait.max.ms": 20,  # as fraudrules and the Quix baseline
        }
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5, "compression.type": "lz4"})
    consumer.subscribe([args.payment, args.order])
    running = True

    def stop(*_: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    while running:
        for message in consumer.consume(500, timeout=0.01):
            if message.error() is None:
                while True:
                    try:
                        producer.produce(args.sink, value=message.value(), key=message.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
        producer.poll(0)
    producer.flush(30)
    consumer.close()


def bare_quix(args: argparse.Namespace) -> None:
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee=args.guarantee,
        state_dir=args.state_dir,
        loglevel=None,
        # the settings fraudrules runs with by default (app.py, Settings.commit_interval), so that latencies
        # and rates compare like for like
        commit_interval=Settings(processing_guarantee=args.guarantee).commit_interval(),
        consumer_poll_timeout=0.01,
        consumer_extra_config={"fetch.wait.max.ms": "20"},
        producer_extra_config={"linger.ms": "5"},
    )
    sink = app.topic(args.sink, value_serializer="json", key_serializer="str")

    def side(name: str, topic: str) -> Any:
        sdf = app.dataframe(app.topic(topic, value_deserializer="json"))
        sdf = sdf.apply(lambda record: {"side": name, "record": record})
        return sdf.group_by(lambda value: int(value["record"]["orderId"]), name="orderId")

    def join(value: dict[str, Any], state: State[Any, Any]) -> dict[str, Any] | None:
        pending = state.get("pending")
        if pending is None:
            state.set("pending", value)
            return None
        if pending["side"] == value["side"]:
            return None
        state.delete("pending")
        return {
            "orderId": value["record"]["orderId"],
            value["side"]: value["record"],
            pending["side"]: pending["record"],
        }

    joined = side("payment", args.payment).concat(side("order", args.order)).apply(join, stateful=True)
    joined.filter(lambda value: value is not None).to_topic(sink, key=lambda value: str(value["orderId"]))
    app.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["raw", "quix"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--payment", required=True)
    parser.add_argument("--order", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--guarantee", default="at-least-once")
    parser.add_argument("--state-dir", default=".state-bench")
    args = parser.parse_args()
    raw_loop(args) if args.kind == "raw" else bare_quix(args)


if __name__ == "__main__":
    main()
