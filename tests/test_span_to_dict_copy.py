"""Span.to_dict() copies its cached dict by hand: equal to a deepcopy, sharing nothing mutable."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from opentelemetry.trace import Link, SpanContext, TraceFlags

import flowtel
from flowtel import SpanEvent, SpanType
from flowtel.entities import Span
from flowtel.entities._span import _copy_span_dict
from flowtel.testing import TraceCapture

_LINKED = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def _rich_trace(flowtel_traces: TraceCapture) -> list[Span]:
    @flowtel.trace(span_type=SpanType.TOOL)
    def failing_tool(x: int) -> int:
        raise ValueError(f"bad {x}")

    @flowtel.trace(span_type=SpanType.CHAT_MODEL)
    def llm(messages: list[dict[str, str]]) -> dict[str, Any]:
        return {"choices": [{"message": {"role": "assistant", "content": "hé"}}], "n": 1.5}

    with flowtel.start_span(
        "root", span_type=SpanType.AGENT,
        attributes={"s": "v", "i": 3, "f": 2.5, "b": True, "none": None, "l": [1, "x"], "d": {"k": [1]}},
        links=[Link(_LINKED, {"why": "retry", "n": 2, "tags": ("a", "b"), "ok": False})],
    ) as root:
        root.set_inputs({"q": "what?"})
        root.add_event(SpanEvent("checkpoint", attributes={
            "step": 2, "ratio": 0.5, "ok": True, "name": "s", "ints": [1, 2], "strs": ["a", "b"],
            "floats": [0.1], "bools": [True, False], "obj": {"nested": [1, {"x": 2}]},
        }))
        root.add_event(SpanEvent("bare"))
        llm([{"role": "user", "content": "hi"}])
        with pytest.raises(ValueError):
            failing_tool(1)
        with flowtel.start_span("linked_twice", links=[Link(_LINKED), Link(_LINKED, {"k": "v"})]):
            pass
        with pytest.raises(ZeroDivisionError):
            with flowtel.start_span("raises"):
                1 / 0  # noqa: B018
        root.set_outputs(["done", 1])
    spans = flowtel_traces.last.data.spans
    assert len(spans) == 5
    assert all(type(span) is Span for span in spans)
    return spans


def _containers(value: Any) -> list[Any]:
    """Every dict and list inside ``value`` (``value`` included), innermost last."""
    found: list[Any] = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found.extend(_containers(item))
    elif isinstance(value, (list, tuple)):
        if isinstance(value, list):
            found.append(value)
        for item in value:
            found.extend(_containers(item))
    return found


def _mutate_everything(result: dict[str, Any]) -> None:
    containers = _containers(result)
    assert containers
    for container in reversed(containers):  # innermost first, so outer ones still reach them
        if isinstance(container, dict):
            for key in list(container):
                container[key] = "mutated"
            container["added"] = ["x"]
        else:
            for index in range(len(container)):
                container[index] = "mutated"
            container.append("added")


def _assert_independent(result: dict[str, Any], cached: dict[str, Any]) -> None:
    cached_ids = {id(c) for c in _containers(cached)}
    shared = [c for c in _containers(result) if id(c) in cached_ids]
    assert not shared, f"to_dict() shares {shared!r} with its cache"


def test_equal_to_deepcopy_of_the_cache(flowtel_traces: TraceCapture) -> None:
    spans = _rich_trace(flowtel_traces)
    for span in spans:
        expected = copy.deepcopy(span._build_dict())
        first = span.to_dict()  # fills the cache
        assert first == expected
        assert span.to_dict() == expected  # from the cache
        assert span.to_dict() == copy.deepcopy(span._to_dict_shared())
        assert Span.from_dict(span.to_dict()).to_dict() == expected

    by_name = {span.name: span.to_dict() for span in spans}
    root = by_name["root"]
    assert [e["name"] for e in root["events"]] == ["checkpoint", "bare"]
    checkpoint = root["events"][0]["attributes"]
    assert checkpoint["ints"] == [1, 2] or checkpoint["ints"] == (1, 2)
    assert root["links"] and root["links"][0]["attributes"]["why"] == "retry"
    assert by_name["linked_twice"]["links"][0]["attributes"] is None
    assert any(e["name"] == "exception" for e in by_name["failing_tool"]["events"])
    assert any(e["name"] == "exception" for e in by_name["raises"]["events"])
    assert by_name["raises"]["status"]["code"] == "STATUS_CODE_ERROR"


def test_mutating_the_result_leaves_later_results_unchanged(flowtel_traces: TraceCapture) -> None:
    for span in _rich_trace(flowtel_traces):
        for _ in range(2):  # the first call builds the cache, the second copies it
            expected = copy.deepcopy(span._to_dict_shared() if "_dict_cache" in span.__dict__ else span._build_dict())
            result = span.to_dict()
            _assert_independent(result, span._to_dict_shared())
            _mutate_everything(result)
            assert span.to_dict() == expected
            assert span._to_dict_shared() == expected


def test_from_dict_span_with_list_and_tuple_attributes() -> None:
    data = {
        "trace_id": "AAAAAAAAAAAAAAAAAAAAAQ==",
        "span_id": "AAAAAAAAAAI=",
        "parent_span_id": None,
        "name": "restored",
        "start_time_unix_nano": 1,
        "end_time_unix_nano": 2,
        "events": [
            {"name": "e", "time_unix_nano": 1, "attributes": {"l": [1, 2], "t": ("a",), "s": "x"}},
            {"name": "exception", "time_unix_nano": 2, "attributes": {
                "exception.type": "ValueError", "exception.message": "m", "exception.stacktrace": "tb",
                "exception.escaped": "False"}},
        ],
        "status": {"code": "STATUS_CODE_ERROR", "message": "m"},
        "attributes": {"mlflow.traceRequestId": '"tr-1"', "plain": 5, "lst": ["a", 1]},
        "links": [{"trace_id": "tr-00000000000000000000000000000001", "span_id": "0000000000000003",
                   "attributes": {"k": ["v"]}}],
    }
    span = Span.from_dict(data)
    expected = copy.deepcopy(span._build_dict())
    for _ in range(3):
        result = span.to_dict()
        assert result == expected
        _assert_independent(result, span._to_dict_shared())
        _mutate_everything(result)
    assert span.to_dict() == expected


class _Opaque:
    def __init__(self, items: list[int]) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Opaque) and other.items == self.items


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["attributes"].__setitem__("obj", _Opaque([1])),
        lambda d: d["attributes"].__setitem__("nested", {"a": [1]}),
        lambda d: d["attributes"].__setitem__("deep", [[1]]),
        lambda d: d["events"][0]["attributes"].__setitem__("nested", [{"a": 1}]),
        lambda d: d["events"][0].__setitem__("extra", [1]),
        lambda d: d.__setitem__("extra", {"a": [1]}),
        lambda d: d.__setitem__("name", ["not", "a", "str"]),
        lambda d: d.__setitem__("events", ({"name": "t", "time_unix_nano": 0, "attributes": {}},)),
        lambda d: d["links"].append({"trace_id": "t", "span_id": "s", "attributes": {"x": {1: 2}}}),
        lambda d: d["status"].__setitem__(1, "int key"),
        lambda d: d.__setitem__("attributes", None),
    ],
)
def test_unexpected_shapes_fall_back_to_deepcopy(change: Any) -> None:
    cached: dict[str, Any] = {
        "trace_id": "t", "span_id": "s", "parent_span_id": None, "name": "n",
        "start_time_unix_nano": 1, "end_time_unix_nano": None,
        "events": [{"name": "e", "time_unix_nano": 1, "attributes": {"a": [1, 2]}}],
        "status": {"code": "STATUS_CODE_UNSET", "message": ""},
        "attributes": {"k": '"v"'},
        "links": [],
    }
    change(cached)
    expected = copy.deepcopy(cached)
    result = _copy_span_dict(cached)
    assert result == expected
    assert [type(c) for c in _containers(result)] == [type(c) for c in _containers(expected)]
    _assert_independent(result, cached)
    for value in result["attributes"].values() if isinstance(result.get("attributes"), dict) else ():
        if isinstance(value, _Opaque):
            value.items.append(2)
    _mutate_everything(result)
    assert cached == expected


def test_tuples_of_scalars_stay_tuples() -> None:
    cached: dict[str, Any] = {
        "trace_id": "t", "span_id": "s", "parent_span_id": "p", "name": "n",
        "start_time_unix_nano": 1, "end_time_unix_nano": 2,
        "events": [{"name": "e", "time_unix_nano": 1, "attributes": {"t": (1, "a", 0.5, True)}}],
        "status": {"code": "STATUS_CODE_OK", "message": ""},
        "attributes": {"k": '"v"', "t": ("x",), "l": ["y"]},
        "links": [{"trace_id": "t", "span_id": "s", "attributes": None}],
    }
    result = _copy_span_dict(cached)
    assert result == copy.deepcopy(cached)
    assert type(result["events"][0]["attributes"]["t"]) is tuple
    assert type(result["attributes"]["t"]) is tuple
    assert type(result["attributes"]["l"]) is list
    assert result["attributes"]["l"] is not cached["attributes"]["l"]
    assert list(result) == list(cached)
