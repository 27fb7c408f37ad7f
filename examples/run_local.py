"""Run fraudrules against a local Kafka broker (start one with `make kafka-up`).

    python examples/run_local.py

Reads `payment` and `order`, writes verdicts to `sink` and refused records to `deadletter`.
Stop it with Ctrl+C. Every setting can also come from FRAUDRULES_* variables or a TOML file.
"""

from fraudrules.app import create_app
from fraudrules.logs import configure_logging
from fraudrules.settings import KafkaSettings, RuleSettings, Settings

settings = Settings(
    kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9092"),
    consumer_group="fraudrules-example",
    join_window_seconds=30,
    rules={"merchant_category": RuleSettings(mode="shadow")},  # report its hits, never decide on them
)

configure_logging("console")
create_app(settings).run()
