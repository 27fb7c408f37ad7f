"""fraudrules: a real-time fraud rules engine on Kafka, built on Quix Streams and pluggy."""

__version__ = "0.1.0"

__all__ = ["__version__"]
