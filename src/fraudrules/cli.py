"""The ``fraudrules`` command line."""

from __future__ import annotations

import click

from fraudrules import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fraudrules")
def cli() -> None:
    """Real-time fraud rules on Kafka: validate, join payments with orders, run rules, emit verdicts."""


def main() -> None:
    cli(prog_name="fraudrules")
