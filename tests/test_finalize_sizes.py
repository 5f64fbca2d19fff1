"""MLflow's size statistics, computed by flowtel without encoding the trace: exactly MLflow's."""

from __future__ import annotations

import json
from typing import Any

import mlflow.entities
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.tracing.utils import add_size_stats_to_trace_metadata

import flowtel
from flowtel import SpanEvent, SpanType
from flowtel.entities import Span
from flowtel.entities._json import json_len
from flowtel.testing import TraceCapture
from tests._mlflow_helpers import MLFLOW_SPAN_DICTS_HAVE_KIND
from tests._servers.mlflow_versions import run_mlflow_client

_SIZE_KEYS = ("mlflow.trace.sizeStats", "mlflow.trace.sizeBytes")

# Quotes, backslashes, control characters, DEL, non-ASCII, surrogates and astral characters.
_text = st.text(alphabet=st.sampled_from('ab"\\/\x00\x1f\x7f\n~ é✓\U0001f600') | st.characters(), max_size=400)
_scalar = st.none() | st.booleans() | st.integers() | st.floats() | _text


@settings(max_examples=300, deadline=None)
@given(st.one_of(_scalar, st.dictionaries(_text, _text), st.dictionaries(_text, _scalar), st.lists(_scalar)))
def test_json_len_is_the_length_of_json_dumps(value: Any) -> None:
    assert json_len(value) == len(json.dumps(value))


@pytest.mark.parametrize("length", [255, 256, 257, 5000])
@pytest.mark.parametrize("char", ["x", '"', "\\", "\x7f", "\x00", "\n", "é"])
def test_json_len_of_long_strings(length: int, char: str) -> None:
    text = "a" * (length - 1) + char
    assert json_len(text) == len(json.dumps(text))
    assert json_len({"k": text, "l": "y" * length}) == len(json.dumps({"k": text, "l": "y" * length}))


_span_dicts = st.fixed_dictionaries(
    {
        "trace_id": st.just("AAAAAAAAAAAAAAAAAAAAAQ=="),
        "span_id": st.just("AAAAAAAAAAI="),
        "parent_span_id": st.sampled_from([None, "AAAAAAAAAAM="]),
        "name": _text,
        "start_time_unix_nano": st.integers(1, 2**63),
        "end_time_unix_nano": st.none() | st.integers(1, 2**63),
        "status": st.fixed_dictionaries(
            {"code": st.sampled_from(["STATUS_CODE_OK", "STATUS_CODE_ERROR", "STATUS_CODE_UNSET"]),
             "message": _text}
        ),
        "attributes": st.dictionaries(_text, _text | st.integers(), max_size=6).map(
            lambda a: {**a, "mlflow.traceRequestId": '"tr-00000000000000000000000000000001"'}
        ),
        "events": st.lists(
            st.fixed_dictionaries({
                "name": _text, "time_unix_nano": st.integers(0, 2**63),
                "attributes": st.dictionaries(_text, _text | st.integers() | st.lists(st.booleans())),
            }),
            max_size=2,
        ),
    }
)


@settings(max_examples=200, deadline=None)
@given(_span_dicts)
def test_span_json_size_is_the_length_of_its_dict_json(data: dict[str, Any]) -> None:
    span = Span.from_dict(data)
    assert span._json_size() == len(json.dumps(span.to_dict()).encode("utf-8"))


def test_size_stats_equal_mlflows(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace(span_type=SpanType.TOOL)
    def tool(city: str) -> str:
        return f"Sunny in {city} ✓ \"quoted\" \x7f"

    @flowtel.trace(span_type=SpanType.AGENT)
    def agent(question: str) -> str:
        flowtel.update_current_trace(tags={"app": "démo"}, metadata={"k": "v" * 300}, client_request_id="r-1")
        with flowtel.start_span("chat", span_type=SpanType.CHAT_MODEL) as span:
            span.set_inputs({"messages": [{"role": "user", "content": question * 50}]})
            span.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 12, "output_tokens": 4})
            span.add_event(SpanEvent("retry", attributes={"attempt": 1, "ok": True, "tags": ["a", "é"]}))
        return tool("Paris")

    @flowtel.trace
    def fails() -> None:
        raise ValueError("bad \n news")

    agent('Weather in "Paris"?\n')
    with pytest.raises(ValueError):
        fails()
    with flowtel.start_span("empty"):
        pass

    traces = flowtel_traces.traces
    assert len(traces) == 3
    dicts = [json.loads(trace.to_json()) for trace in traces]
    ours = [[data["info"]["trace_metadata"].pop(key) for key in _SIZE_KEYS] for data in dicts]
    if MLFLOW_SPAN_DICTS_HAVE_KIND:
        theirs = []
        for data in dicts:
            trace = mlflow.entities.Trace.from_dict(data)
            add_size_stats_to_trace_metadata(trace)
            theirs.append([trace.info.trace_metadata[key] for key in _SIZE_KEYS])
    else:  # sizes count the span ``kind`` since 3.18: measured by a 3.18 client
        theirs = run_mlflow_client("3.18.0", _SIZES_SCRIPT, {"dicts": dicts, "keys": list(_SIZE_KEYS)})
    assert ours == theirs


_SIZES_SCRIPT = """
import json, sys
import mlflow.entities
from mlflow.tracing.utils import add_size_stats_to_trace_metadata
payload = json.load(sys.stdin)
result = []
for data in payload["dicts"]:
    trace = mlflow.entities.Trace.from_dict(data)
    add_size_stats_to_trace_metadata(trace)
    result.append([trace.info.trace_metadata[key] for key in payload["keys"]])
print(json.dumps(result))
"""
