"""Kafka tooling shared by ``fraudrules demo``, the benchmarks and the tests.

- :mod:`fraudrules.kafka_tools.localkafka`: a real single-node broker on ``java``, without Docker (standard
  library only: the Makefile runs it as a script before anything is installed).
- :mod:`fraudrules.kafka_tools.harness`: topics, paced producing, a stable consumer group, reading a topic,
  ``fraudrules run`` in a child process, percentiles.

This module imports nothing, so that the launcher stays usable without the project's dependencies.
"""
