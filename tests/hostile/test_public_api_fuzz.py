"""Property test over the whole recording API with hostile values: no exception from flowtel
reaches the caller, no span is left open, nothing hangs, and the user's own exceptions and
return values pass through unchanged. Read APIs may refuse bad arguments, but only with a
``FlowtelException`` / ``ValueError`` / ``TypeError`` that says what is wrong."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowtel
from flowtel import _errors
from flowtel.tracing import _runtime


class Hostile:
    """An object whose every protocol method raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # for hypothesis's own reports
        printer.text("Hostile()")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __iter__(self) -> Any:
        raise RuntimeError("iter")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"getattr {name}")


def _cyclic() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True), st.text(), st.binary(max_size=64),
    st.sampled_from(["", "\x00", "\ud800", "a" * 5000, "ERROR", "OK", "CHAT_MODEL", "tr-" + "0" * 32]),
)
# Plain data only (no object whose own methods raise): for APIs that may refuse an argument.
hostile_data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=6,
)
hostile = st.recursive(
    st.one_of(scalars, st.builds(Hostile), st.builds(_cyclic), st.just(object()), st.just(math)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none()), inner, max_size=4),
    ),
    max_leaves=8,
)
span_methods = st.sampled_from([
    "set_inputs", "set_outputs", "set_attributes", "set_attribute", "set_status", "add_event",
    "record_exception", "set_span_type", "set_description", "set_log_level",
])
trace_fields = st.sampled_from([
    "tags", "metadata", "client_request_id", "request_preview", "response_preview", "state",
    "model_id", "session_id", "user",
])


def _open_traces() -> int:
    return int(flowtel.get_delivery_stats()["open_traces"])


@pytest.fixture(autouse=True)
def in_memory() -> Any:
    from flowtel.exporters import InMemoryExporter

    _runtime.set_destinations([_runtime.Destination(exporter=InMemoryExporter())])
    yield
    _runtime.set_destinations(None)


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.timeout(600)
@FUZZ
@given(name=hostile, span_type=hostile, attributes=hostile, calls=st.lists(
    st.tuples(span_methods, hostile, hostile), max_size=6), end_args=hostile)
def test_spans_and_their_setters_never_raise(name: Any, span_type: Any, attributes: Any,
                                             calls: list[tuple[str, Any, Any]], end_args: Any) -> None:
    with flowtel.start_span(name, span_type=span_type, attributes=attributes) as span:
        for method, first, second in calls:
            _call_span_method(span, method, first, second)
    free = flowtel.start_span_no_context(name, span_type=span_type, attributes=attributes, tags=attributes,
                                         metadata=end_args, inputs=end_args, start_time_ns=_maybe_int(end_args),
                                         log_level=end_args, description=end_args)
    for method, first, second in calls:
        _call_span_method(free, method, first, second)
    free.end(outputs=end_args, attributes=attributes, status=end_args)
    assert _open_traces() == 0
    assert flowtel.flush(30)


def _call_span_method(span: Any, method: str, first: Any, second: Any) -> None:
    fn = getattr(span, method)
    if method == "set_attribute":
        fn(first, second)
    elif method == "add_event":
        fn(flowtel.SpanEvent(first if isinstance(first, str) else "event", attributes=second)
           if isinstance(second, dict) else first)
    else:
        fn(first)


def _maybe_int(value: Any) -> Any:
    return value if isinstance(value, int) else None


@pytest.mark.timeout(600)
@FUZZ
@given(fields=st.dictionaries(trace_fields, hostile, max_size=5), result=hostile)
def test_update_current_trace_never_raises(fields: dict[str, Any], result: Any) -> None:
    @flowtel.trace
    def user_code() -> Any:
        flowtel.update_current_trace(**fields)
        return result

    assert user_code() is result  # the user's value, unchanged
    flowtel.update_current_trace(**fields)  # outside a trace too
    assert _open_traces() == 0


class UserError(Exception):
    pass


@pytest.mark.timeout(600)
@FUZZ
@given(name=hostile, span_type=hostile, attributes=hostile, argument=hostile, enabled=st.booleans())
def test_the_decorator_passes_everything_through(name: Any, span_type: Any, attributes: Any, argument: Any,
                                                 enabled: bool) -> None:
    (flowtel.tracing.enable if enabled else flowtel.tracing.disable)()
    try:
        sentinel = object()

        @flowtel.trace(name=name, span_type=span_type, attributes=attributes)
        def sync(x: Any) -> Any:
            return sentinel

        @flowtel.trace(name=name, span_type=span_type, attributes=attributes)
        def failing(x: Any) -> Any:
            raise UserError(x)

        @flowtel.trace(name=name, span_type=span_type, attributes=attributes)
        def gen(x: Any) -> Any:
            received = yield x
            yield received

        @flowtel.trace(name=name, span_type=span_type, attributes=attributes)
        async def agen(x: Any) -> Any:
            try:
                yield x
                yield x
            except UserError:
                yield "caught"

        assert sync(argument) is sentinel
        with pytest.raises(UserError) as raised:
            failing(argument)
        assert raised.value.args[0] is argument
        g = gen(argument)
        next(g)
        assert g.send(sentinel) is sentinel
        g.close()
        asyncio.run(_drive_async_generator(agen(argument)))
        assert _open_traces() == 0
    finally:
        flowtel.tracing.enable()


async def _drive_async_generator(agen: Any) -> None:
    await agen.__anext__()
    assert await agen.athrow(UserError("thrown in")) == "caught"
    await agen.aclose()


@pytest.mark.timeout(600)
@FUZZ
@given(timeout=hostile, headers=hostile, trace_id=hostile)
def test_module_level_helpers_never_raise(timeout: Any, headers: Any, trace_id: Any) -> None:
    assert isinstance(flowtel.flush(timeout), bool)
    flowtel.get_current_active_span()
    flowtel.get_active_trace_id()
    flowtel.get_last_active_trace_id()
    flowtel.get_tracing_context_headers_for_http_request()
    try:
        with flowtel.set_tracing_context_from_http_request_headers(headers):
            flowtel.get_active_trace_id()
    except flowtel.FlowtelException as exc:  # documented refusal: no valid traceparent
        assert "header" in str(exc)
    flowtel.get_delivery_stats()
    flowtel.flush_trace_async_logging()


ALLOWED_REFUSALS = (flowtel.FlowtelException, ValueError, TypeError)
filters = st.builds(
    lambda field, op, number: f"{field} {op} {number}",
    st.sampled_from(["timestamp_ms", "execution_time_ms", "attributes.timestamp_ms", "tags.x", "status"]),
    st.sampled_from(["=", "<", ">=", "!=", "LIKE", "IN"]),
    st.one_of(st.integers().map(str), st.integers(min_value=2**64, max_value=2**400).map(str),
              st.sampled_from(["1e999", "nan", "-0", "'x'", "('a', 'b')", "9" * 400])),
)


@pytest.mark.timeout(600)
@FUZZ
@given(filter_string=st.one_of(hostile_data, filters), max_results=hostile_data, order_by=hostile_data,
       trace_id=hostile_data)
def test_read_api_refuses_clearly(filter_string: Any, max_results: Any, order_by: Any, trace_id: Any,
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    _runtime.set_destinations(None)
    for call in (
        lambda: flowtel.search_traces(filter_string=filter_string, return_type="list"),
        lambda: flowtel.search_traces(max_results=max_results, order_by=order_by, return_type="list"),
        lambda: flowtel.get_trace(trace_id),
        lambda: flowtel.set_trace_tag(trace_id, filter_string, max_results),
        lambda: flowtel.delete_trace_tag(trace_id, filter_string),
    ):
        try:
            call()
        except ALLOWED_REFUSALS as exc:
            assert str(exc), "a refusal must say what is wrong"


def test_misuse_is_reported_as_a_warning_not_an_internal_error(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    monkeypatch.setattr(_errors, "_listeners", [lambda where, exc: seen.append(where)])
    monkeypatch.setattr(_errors, "_counts", Counter())  # expected errors: not counted for later tests
    with flowtel.start_span("s") as span:
        span.set_attributes(["not", "a", "dict"])  # type: ignore[arg-type]
        flowtel.update_current_trace(tags=["a", "b"])  # type: ignore[arg-type]
    span2 = flowtel.start_span_no_context("free", tags=["x"])  # type: ignore[arg-type]
    span2.end()
    assert _open_traces() == 0
    assert seen == []
