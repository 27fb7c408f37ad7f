"""What a rule is: an id, a version, a config model, the event field its state lives under, an evaluate function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from fraudrules.state import KeyState

#: What a rule sees: the payment's schema fields from the payment, the order's from the order (createTime from the
#: payment when it is there), extra fields only under names no schema uses, plus
#: ``orderId`` (int), ``joinStatus`` ("joined", "payment_only", "order_only"), ``eventTimeMs``
#: (createTime in ms since the epoch, UTC) and ``reusedOrderId`` (bool: another order, with other content, was
#: decided under this orderId within the dedup retention). A one-sided event lacks the missing side's fields.
Event = Mapping[str, Any]


class NoConfig(BaseModel):
    """The config model of a rule without options."""

    model_config = ConfigDict(frozen=True, extra="forbid")


C = TypeVar("C", bound=BaseModel)


#: A rule's own state, under the current value of its ``key`` field (e.g. one merchant): get, set, delete.
RuleState = KeyState


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule fired: its score (0-100), why in words, and the values it used."""

    score: float
    reason: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule(Generic[C]):
    """A fraud rule.

    ``evaluate(event, config, state)`` returns a :class:`Hit` or None. ``state`` is None unless ``key`` is
    set; then it is the rule's own state for the event's value of ``key`` (e.g. ``"merchantId"``), kept in
    Kafka-backed state on the partition that owns that value, so results do not depend on how many
    partitions or instances run. A rule must keep its state per key bounded.
    """

    id: str
    version: str
    description: str
    evaluate: Callable[[Event, C, RuleState | None], Hit | None]
    config_model: type[C] = NoConfig  # type: ignore[assignment]
    key: str | None = None

    def __post_init__(self) -> None:
        if not self.id.isidentifier():
            raise ValueError(f"rule id must be an identifier, got {self.id!r}")
