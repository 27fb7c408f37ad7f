"""Fraud rules: the plugin hooks, the rule model, the engine that runs rules on events, and scoring."""

from fraudrules.rules.hookspecs import hookimpl, hookspec
from fraudrules.rules.model import Event, Hit, NoConfig, Rule, RuleState

__all__ = ["Event", "Hit", "NoConfig", "Rule", "RuleState", "hookimpl", "hookspec"]
