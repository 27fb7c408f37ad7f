"""How each step of the pipeline runs in Quix Streams, one module per node, so that ``topology.py`` only
declares the graph.

Each node has a record path (``on_record``: what one record of its input gives) and, where time must move on
without records, a timer path (``on_timer``, driven by :func:`~fraudrules.pipeline.nodes.timers.drive_timers`
from the app's run loop). The logic they call is the plain, Quix-free code the backtest runs too
(``join.py``, ``reorder.py``, ``chain.py``, ``evaluate.py``); the Quix Streams internals they need come from
``pipeline/quix.py`` only.

- ``inputs.py``: at several partitions, each input partition's reader and its progress to the join partitions;
- ``join.py``: at several partitions, the join and its watermark (heartbeats) to the rule groups;
- ``groups.py``: at several partitions, a rule group: the reorder buffer released by the heartbeats, the rules;
- ``chain.py``: at one partition, the whole chain in one node;
- ``timers.py``: the timer path's driver.
"""
