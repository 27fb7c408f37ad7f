"""The write-back cache in front of a partition's state (``state.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fraudrules.state import UnstorableValue, WriteBackStates, create
from fraudrules.testing import MemoryState
from tests.fixtures import DictPartitionStates


class CountingStates(DictPartitionStates):
    """Partition state in dicts that counts the operations reaching it."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: list[tuple[str, Any, Any]] = []

    def for_key(self, key: Any) -> MemoryState:
        inner, log, prefix = super().for_key(key), self.operations, key

        class Counted(MemoryState):
            def get(self, name: Any, default: Any = None) -> Any:
                log.append(("get", prefix, name))
                return inner.get(name, default)

            def set(self, name: Any, value: Any) -> None:
                log.append(("set", prefix, name))
                inner.set(name, value)

            def delete(self, name: Any) -> None:
                log.append(("delete", prefix, name))
                inner.delete(name)

        return Counted()


def test_each_value_is_read_once_and_written_once_per_flush_however_often_it_is_touched() -> None:
    backing = CountingStates()
    backing.by_key[7] = {"join": {"done": False}}
    states = WriteBackStates(backing)

    for n in range(5):
        entry = states.for_key(7).get("join")
        states.for_key(7).set("join", {**entry, "n": n})
    assert states.for_key(8).get("join") is None
    assert states.for_key(8).get("join", "nothing") == "nothing"  # a known absence is not asked again
    assert backing.operations == [("get", 7, "join"), ("get", 8, "join")]
    assert backing.by_key[7] == {"join": {"done": False}}  # nothing reaches it before the flush

    assert states.flush() == 1
    assert backing.operations[2:] == [("set", 7, "join")]
    assert backing.by_key[7] == {"join": {"done": False, "n": 4}}


def test_a_value_written_and_deleted_between_flushes_is_only_deleted_and_deletes_reach_the_backing() -> None:
    backing = CountingStates()
    backing.by_key["index"] = {1: [10, 11]}
    states = WriteBackStates(backing)
    index = states.for_key("index")
    index.set(2, [12])
    index.delete(2)
    index.delete(1)
    assert index.get(1) is None
    assert index.get(2) is None

    assert states.flush() == 2
    assert backing.by_key["index"] == {}


def test_a_key_known_to_be_new_and_deleted_before_the_flush_never_reaches_the_backing() -> None:
    backing = CountingStates()
    backing.by_key["reorder"] = {"old": 1}
    states = WriteBackStates(backing)
    reorder = states.for_key("reorder")
    create(reorder, "made", 2)  # the caller knows it is new: a new bucket, a waiting event
    assert reorder.get("read") is None  # read as absent: new too
    reorder.set("read", 3)
    reorder.delete("old")  # in the backing: deleted there
    create(reorder, "old", 4)  # new to the state, but the backing still holds it until the flush
    for key in ("made", "read", "old"):
        reorder.delete(key)

    assert states.flush() == 1
    assert backing.operations == [("get", "reorder", "read"), ("delete", "reorder", "old")]
    assert backing.by_key["reorder"] == {}


def test_a_key_created_and_kept_is_written_and_create_on_plain_state_sets() -> None:
    backing = CountingStates()
    states = WriteBackStates(backing)
    create(states.for_key("index"), 5, [1])
    assert states.flush() == 1
    assert backing.by_key["index"] == {5: [1]}
    plain = MemoryState()
    create(plain, "bucket", [2])
    assert plain.data == {"bucket": [2]}


def test_after_a_flush_values_are_read_again_from_the_new_backing() -> None:
    first, second = CountingStates(), CountingStates()
    states = WriteBackStates(first)
    states.for_key("k").set("a", 1)
    states.flush()
    second.by_key["k"] = {"a": 2}  # what the next transaction sees (say, another writer's)

    states.rebind(second)
    assert states.for_key("k").get("a") == 2
    assert states.flush() == 0
    assert second.operations == [("get", "k", "a")]


def test_the_steps_see_the_objects_they_stored_as_over_plain_dicts() -> None:
    states = WriteBackStates(DictPartitionStates())
    stored = {"count": 1}
    states.for_key("m").set("rules", stored)
    assert states.for_key("m").get("rules") is stored


def test_a_value_the_backing_cannot_store_is_named_at_the_flush() -> None:
    class JsonStates(DictPartitionStates):
        def for_key(self, key: Any) -> MemoryState:
            class Json(MemoryState):
                def set(self, name: Any, value: Any) -> None:
                    json.dumps(value)

            return Json()

    states = WriteBackStates(JsonStates())
    states.for_key("fraudrules:rules:merchantId:7").set("rules", {"seen": {1, 2}})
    with pytest.raises(UnstorableValue, match=r"fraudrules:rules:merchantId:7.*'rules'.*not JSON serializable"):
        states.flush()


def test_what_keep_names_stays_cached_across_a_flush_and_the_rest_is_read_again() -> None:
    first, second = CountingStates(), CountingStates()
    states = WriteBackStates(first, keep=lambda prefix, key, _: prefix == "index" and key > 0)
    index = states.for_key("index")
    index.set(1, [7])
    index.set(-1, [8])
    states.for_key(7).set("join", {"done": True})
    assert index.get(2) is None  # a known absence, forgotten at the flush
    assert states.flush() == 3

    states.rebind(second)
    second.by_key["index"] = {1: [7], -1: [8]}
    second.by_key[7] = {"join": {"done": True}}
    assert states.for_key("index").get(1) == [7]  # kept: not read again
    assert states.for_key("index").get(-1) == [8]
    assert states.for_key(7).get("join") == {"done": True}
    assert states.for_key("index").get(2) is None
    assert second.operations == [("get", "index", -1), ("get", 7, "join"), ("get", "index", 2)]


def test_a_kept_value_written_and_deleted_after_a_flush_reaches_the_backing_each_time() -> None:
    backing = CountingStates()
    states = WriteBackStates(backing, keep=lambda *_: True)
    create(states.for_key("index"), 1, [7])
    states.flush()
    assert backing.by_key["index"] == {1: [7]}

    states.for_key("index").set(1, [7, 9])  # kept, so changed in place of the stored value
    states.flush()
    assert backing.by_key["index"] == {1: [7, 9]}
    states.for_key("index").delete(1)  # stored now: the delete must reach the backing
    assert states.flush() == 1
    assert backing.by_key["index"] == {}
    assert states.for_key("index").get(1) is None
    assert [op for op in backing.operations if op[0] != "set"] == [("delete", "index", 1), ("get", "index", 1)]


def test_keep_is_told_whether_the_flush_wrote_the_value() -> None:
    backing = CountingStates()
    states = WriteBackStates(backing, keep=lambda prefix, key, written: written)
    states.for_key("index").set(-1, [7])
    states.for_key("index").set(-2, [8])
    states.flush()
    states.for_key("index").set(-2, [8, 9])
    states.flush()  # -1 was not written by this flush: forgotten
    assert states.for_key("index").get(-2) == [8, 9]
    assert states.for_key("index").get(-1) == [7]
    assert ("get", "index", -2) not in backing.operations
    assert ("get", "index", -1) in backing.operations


def test_only_the_kept_prefixes_are_asked_about_and_kept() -> None:
    backing, asked = CountingStates(), []

    def keep(prefix: object, key: object, written: bool) -> bool:
        asked.append(prefix)
        return True

    states = WriteBackStates(backing, keep=keep, kept_prefixes=frozenset({"index"}))
    states.for_key("index").set(1, [7])
    states.for_key(7).set("join", {"done": True})
    states.flush()
    assert asked == ["index"]  # the order's entry is forgotten without a look at its values
    assert states.for_key("index").get(1) == [7]
    assert states.for_key(7).get("join") == {"done": True}
    assert [op for op in backing.operations if op[0] == "get"] == [("get", 7, "join")]
