"""Running fraudrules: Prometheus metrics, the ``top`` live view, rule changes through the control topic."""
