"""``fraudrules generate``: seed-compatible data with labelled fraud scenarios, to Kafka or to files."""
