"""Rules on enriched events: one result per rule group (rules keyed by the same event field), then the
verdict once every group has given its own.

The rule set can be replaced while the pipeline runs (``fraudrules.operations.control``): another thread
:meth:`Evaluator.offer` s a ready one, and the pipeline calls :meth:`Evaluator.apply_pending` between input
records, so each record is decided under one rule set and every verdict names it.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from fraudrules.pipeline.model import Enriched, Partial, RuleResults, RulesetInfo, Verdict
from fraudrules.pipeline.verdict import build_verdict
from fraudrules.rules.engine import RuleSet
from fraudrules.rules.lists import ListsUpdate
from fraudrules.rules.model import Event
from fraudrules.rules.scoring import score_results, with_lists
from fraudrules.settings import ConfigError, ScoringSettings
from fraudrules.state import KeyState

#: Group key for an event that lacks the group's field (e.g. merchantId of a payment without its order).
MISSING_KEY = "-"
_NO_RESULTS: RuleResults = {"hits": [], "errors": []}

log = structlog.get_logger(__name__)


class Evaluator:
    def __init__(self, ruleset: RuleSet, scoring: ScoringSettings, version: int | None = None) -> None:
        """``version``: the control topic's version of this rule set, if it came from there."""
        self.ruleset = ruleset
        self.scoring = scoring
        self.ruleset_info = _info(ruleset, scoring, version)
        #: Fixed for the life of the topology: a new rule set must not need another group.
        self.group_fields = sorted(ruleset.groups)
        #: A rule set offered by another thread, applied at the next record boundary (None: nothing new).
        self.pending: tuple[RuleSet, ScoringSettings, int | None, ListsUpdate | None] | None = None
        self._lock = threading.Lock()

    def offer(
        self,
        ruleset: RuleSet,
        scoring: ScoringSettings,
        version: int | None = None,
        lists: ListsUpdate | None = None,
    ) -> RulesetInfo:
        """Have ``ruleset`` replace the one in force at the next :meth:`apply_pending` (any thread), with
        ``lists`` (the lists' definitions, entry changes and revision) applied to its lists then.

        Raises :class:`ConfigError` if it needs a rule group the running topology lacks (a restart builds it).
        """
        missing = sorted(set(ruleset.groups) - set(self.group_fields))
        if missing:
            raise ConfigError(
                f"rules keyed by {', '.join(missing)} need a rule group this running pipeline does not have: "
                "restart it to apply this rule set"
            )
        ruleset.observer = self.ruleset.observer
        with self._lock:
            self.pending = (ruleset, scoring, version, lists)
        return _info(ruleset, scoring, version, lists)

    def apply_pending(self) -> RulesetInfo | None:
        """Put the offered rule set in force (the pipeline's thread, between records); its info, or None."""
        with self._lock:
            pending, self.pending = self.pending, None
        if pending is None:
            return None
        self.ruleset, self.scoring, version, lists = pending
        if lists is not None:
            self.ruleset.lists.update(*lists)
        self.ruleset_info = _info(self.ruleset, self.scoring, version)
        log.info("rule set in force", ruleset=self.ruleset_info["id"], version=version)
        return self.ruleset_info

    @staticmethod
    def group_key(field: str) -> Any:
        def key(enriched: Enriched) -> Any:
            return enriched["event"].get(field, MISSING_KEY)

        return key

    def partial(self, field: str, enriched: Enriched, state: KeyState) -> Partial:
        """Results of the rules keyed by ``field``; ``state`` is the field value's state."""
        return {
            "orderId": enriched["orderId"],
            "verdictId": enriched["verdictId"],
            "group": field,
            "results": self.group_results(field, enriched["event"], state),
            "enriched": enriched,
        }

    def group_results(self, field: str, event: Event, state: KeyState) -> RuleResults:
        """Hits and errors of the rules keyed by ``field`` on ``event`` (none if it has no such field)."""
        if field not in event:
            return {"hits": [], "errors": []}
        return self.ruleset.evaluate(self.ruleset.groups.get(field, []), event, state)

    def verdict(self, enriched: Enriched, group_results: list[RuleResults]) -> Verdict:
        """Stateless rules, scoring, the lists and the verdict."""
        ruleset = self.ruleset
        stateless = ruleset.evaluate_stateless(enriched) if ruleset.stateless else None
        results = group_results if stateless is None else [*group_results, stateless]
        scored = score_results(results, self.scoring)
        if ruleset.lists:
            scored = with_lists(scored, ruleset.lists.match(enriched["event"]))
        return build_verdict(enriched, scored, self.ruleset_info)

    def evaluate(self, enriched: Enriched, state_of: Any) -> Verdict:
        """Every rule group in turn, then the verdict: the whole of rule evaluation in one process (the
        backtest, ``fraudrules.testing``). ``state_of(field, key)`` gives the state of one group key."""
        event = enriched["event"]
        results = [
            self.group_results(field, event, state_of(field, event.get(field, MISSING_KEY)))
            for field in self.group_fields
        ]
        return self.verdict(enriched, results)


def _info(
    ruleset: RuleSet, scoring: ScoringSettings, version: int | None, update: ListsUpdate | None = None
) -> RulesetInfo:
    """What verdicts say of the rule set (with its lists as ``update`` will leave them, if given)."""
    info: RulesetInfo = {"id": ruleset.ruleset_id(scoring, update), "rules": dict(sorted(ruleset.versions.items()))}
    if version is not None:
        info["version"] = version
    revision = max(ruleset.lists.revision, update[2] if update else 0)
    if revision:
        info["lists"] = revision
    return info
