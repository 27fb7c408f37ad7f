"""The streaming pipeline, in the order a record flows through it:

decode (bytes -> validated record or a reason) -> deadletter (invalid records, with where they came from)
-> join (payment + order by orderId, in state) -> evaluate (rules, per state key) -> verdict -> sink.
``topology.py`` wires these into one Quix Streams application.
"""
