"""Allow, review and decline lists: named sets of one event field's values that decide an order outright.

A list holds values of one event field (``merchantId``, ``userId``, ...) and has an action. After the rules
have scored an order, every list whose field the event has is looked up:

- a matching ``approve`` list decides approve, whatever the rules scored (their hits are still reported);
- otherwise a matching ``decline`` list decides decline;
- otherwise a matching ``review`` list raises an approve to review (it never lowers a decline).

Entries come from the settings file (``[lists.NAME] values = [...]``, no expiry) and, at runtime, from the
control topic (``fraudrules lists add|remove``, ``operations/control.py``), each with its reason and an
optional expiry. An entry is in force for events whose time (``eventTimeMs``) is before its expiry, so a
replay decides as the live run did. Values are compared by their text: ``42``, ``42.0`` and ``"42"`` are one
entry (what an analyst types is text; the field's JSON form varies by producer).

Lookups cost one dict lookup per list whose field the event has; the lists live in memory (measured in
BENCHMARKS.md: a list of 1,000,000 values).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from fraudrules.pipeline.model import Decision
from fraudrules.settings import ListAction, ListSettings


@dataclass(frozen=True, slots=True)
class Entry:
    """Why a value is on a list, and until when (ms since the epoch; None: for good)."""

    reason: str
    expires_ms: int | None = None
    added_at: str | None = None
    added_by: str | None = None


class ListHit(TypedDict):
    """A list that matched the event, in the verdict's ``lists``."""

    list: str
    action: ListAction
    field: str
    value: Any
    reason: str
    expiresAt: NotRequired[str]


#: One change to one entry: (list name, value as text, the entry or None to remove it).
Change = tuple[str, str, Entry | None]
#: A runtime change to the lists: every list's (field, action) by name, entry changes, the revision they bring.
ListsUpdate = tuple[dict[str, tuple[str, ListAction]], list[Change], int]


def text_of(value: Any) -> str | None:
    """The text a value is listed under (None: a value no list can hold, such as an object)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


class NamedList:
    __slots__ = ("action", "entries", "field", "name")

    def __init__(self, name: str, field: str, action: ListAction, entries: dict[str, Entry] | None = None) -> None:
        self.name = name
        self.field = field
        self.action: ListAction = action
        self.entries: dict[str, Entry] = entries if entries is not None else {}

    def find(self, value: Any, time_ms: int) -> Entry | None:
        """The entry in force for ``value`` at ``time_ms``, or None."""
        text = value if isinstance(value, str) else text_of(value)
        if text is None:
            return None
        entry = self.entries.get(text)
        if entry is None or (entry.expires_ms is not None and time_ms >= entry.expires_ms):
            return None
        return entry


_PRECEDENCE: dict[ListAction, int] = {"approve": 0, "decline": 1, "review": 2}


class Lists:
    """Every list in force. Changed only on the thread that evaluates (between records), by :meth:`update`."""

    def __init__(self, lists: Iterable[NamedList] = (), settings_digest: str = "", revision: int = 0) -> None:
        self.by_name: dict[str, NamedList] = {named.name: named for named in lists}
        #: Identifies the settings file's values (hashed once, at start-up).
        self.settings_digest = settings_digest
        #: The control topic's position of the last runtime change applied (0: none): the same at every instance.
        self.revision = revision
        #: Entries of lists not defined (yet): the command line writes a new list's entries before its definition.
        self._undefined: dict[str, dict[str, Entry]] = {}
        self._index()

    @classmethod
    def from_settings(cls, lists: Mapping[str, ListSettings]) -> Lists:
        digest = hashlib.sha256()
        built = []
        for name, listed in sorted(lists.items()):
            entry = Entry(listed.reason)
            entries: dict[str, Entry] = {}
            for value in listed.values:
                text = text_of(value)
                assert text is not None  # the settings model admits scalars only
                entries[text] = entry
                digest.update(text.encode() + b"\0")
            digest.update(f"{name}\0{listed.field}\0{listed.action}\0{listed.reason}\n".encode())
            built.append(NamedList(name, listed.field, listed.action, entries))
        return cls(built, digest.hexdigest()[:16] if lists else "")

    def _index(self) -> None:
        self._ordered = sorted(self.by_name.values(), key=lambda named: (_PRECEDENCE[named.action], named.name))

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def define(self, name: str, field: str, action: ListAction) -> None:
        """Add a list, or change an existing one's field or action (its entries stay)."""
        named = self.by_name.get(name)
        if named is None:
            self.by_name[name] = NamedList(name, field, action, self._undefined.pop(name, None))
        else:
            named.field, named.action = field, action
        self._index()

    def update(
        self, definitions: Mapping[str, tuple[str, ListAction]], changes: Iterable[Change], revision: int
    ) -> None:
        """Apply lists defined at runtime and entry changes (the evaluating thread, between records)."""
        for name, text, entry in changes:
            named = self.by_name.get(name)
            entries = named.entries if named is not None else self._undefined.setdefault(name, {})
            if entry is None:
                entries.pop(text, None)
            else:
                entries[text] = entry
        for name, (field, action) in definitions.items():
            named = self.by_name.get(name)
            if named is None or (named.field, named.action) != (field, action):
                self.define(name, field, action)
        self.revision = max(self.revision, revision)

    def describe(
        self, revision: int | None = None, defined: Mapping[str, tuple[str, ListAction]] | None = None
    ) -> list[Any]:
        """What the ruleset id hashes: the lists' names, fields and actions (``defined``, default: theirs), and
        which entries they hold (the settings' values and the runtime changes up to ``revision``, default:
        theirs)."""
        if defined is None:
            defined = {named.name: (named.field, named.action) for named in self._ordered}
        shape = sorted([name, field, action] for name, (field, action) in defined.items())
        return [shape, self.settings_digest, self.revision if revision is None else revision]

    def match(self, event: Mapping[str, Any]) -> list[ListHit]:
        """The lists the event is on, most decisive first (approve, decline, review; then by name)."""
        hits: list[ListHit] = []
        time_ms = event.get("eventTimeMs", 0)
        for named in self._ordered:
            if named.field not in event:
                continue
            value = event[named.field]
            entry = named.find(value, time_ms)
            if entry is None:
                continue
            hit: ListHit = {
                "list": named.name,
                "action": named.action,
                "field": named.field,
                "value": value,
                "reason": entry.reason,
            }
            if entry.expires_ms is not None:
                hit["expiresAt"] = iso(entry.expires_ms)
            hits.append(hit)
        return hits

    def members(self, name: str, candidates: Iterable[Any], time_ms: int) -> dict[Any, bool]:
        """Of ``candidates``, those on list ``name`` at ``time_ms``: what an expression's ``lists.NAME`` holds."""
        named = self.by_name[name]
        return {value: True for value in candidates if named.find(value, time_ms) is not None}


def decide(decision: Decision, hits: list[ListHit]) -> Decision:
    """The decision once the lists the event is on are applied to the rules' ``decision``."""
    actions = {hit["action"] for hit in hits}
    if "approve" in actions:
        return "approve"
    if "decline" in actions:
        return "decline"
    if "review" in actions and decision == "approve":
        return "review"
    return decision


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
