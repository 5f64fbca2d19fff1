"""The user-facing tracing API: ``@trace``, ``start_span``, trace lookups and updates.

Spans are started, made current and ended by the span engine (:mod:`flowtel.tracing._engine`),
whose functions are bound here under their old private names (``_start_span``, ``_attach``,
``_end_ok``, ``_record_of``, ``_store``, ...): module globals, so the decorator's hot path has no
extra call layer, and integrations that still use ``_fluent._<name>`` keep working.

Everything that runs inside user code is guarded: a failure in tracing is reported through
:func:`report_internal_error` and the user's function runs on, untouched. The user's own
exceptions propagate unchanged (same object, same traceback).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Link

from flowtel._errors import report_internal_error
from flowtel._exceptions import ConfigError, FlowtelException, InvalidParameterError
from flowtel.entities import (
    LiveSpan,
    NoOpSpan,
    SpanEvent,
    SpanStatus,
    SpanStatusCode,
    SpanType,
    Trace,
    TraceMetadataKey,
    TraceState,
    _hooks,
)
from flowtel.entities._constants import SpanAttributeKey
from flowtel.tracing import _capture, _clock, _runtime, _scope
from flowtel.tracing._engine import IMMUTABLE_TYPES as _IMMUTABLE_TYPES
from flowtel.tracing._engine import READ_FLUSH_TIMEOUT_S as _READ_FLUSH_TIMEOUT_S
from flowtel.tracing._engine import attach as _attach
from flowtel.tracing._engine import detach as _detach
from flowtel.tracing._engine import encode as _encode
from flowtel.tracing._engine import end_error as _end_error
from flowtel.tracing._engine import end_ok as _end_ok
from flowtel.tracing._engine import pending_trace as _pending
from flowtel.tracing._engine import record_of as _record_of
from flowtel.tracing._engine import safe_str as _safe_str
from flowtel.tracing._engine import settle as _settle
from flowtel.tracing._engine import start_attributes as _start_attributes
from flowtel.tracing._engine import start_live_span as _start_span
from flowtel.tracing._engine import trace_store as _store
from flowtel.tracing._engine import tracing_on as _tracing_on
from flowtel.tracing._sampling import SAMPLING_OVERRIDE_ATTRIBUTE

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    from flowtel.tracing._processor import TraceRecord

    P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_logger = logging.getLogger("flowtel")
_CHUNK_EVENT_PREFIX = "mlflow.chunk.item."
_CHUNK_VALUE_KEY = "mlflow.chunk.value"


# -- @trace ---------------------------------------------------------------------------------------
class _Options:
    __slots__ = (
        "name", "span_type", "attributes", "output_reducer", "sampling_ratio", "log_level",
        "links", "description", "experiment_id", "binder", "extra", "_static", "_static_encoder", "_static_policy",
    )

    def __init__(self, fn: Callable[..., Any], name: str | None, span_type: str,
                 attributes: dict[str, Any] | None, output_reducer: Callable[[list[Any]], Any] | None,
                 sampling_ratio: float | None, log_level: int | str | None,
                 links: list[Link] | None, description: str | None, experiment_id: str | None) -> None:
        self.name = name if type(name) is str and name else (
            _safe_str(name) if name is not None else getattr(fn, "__name__", "span")
        )
        self.span_type = span_type
        self.attributes = attributes
        self.output_reducer = output_reducer
        self.sampling_ratio = sampling_ratio
        self.log_level = log_level
        self.links = links
        self.description = description
        self.experiment_id = experiment_id
        self.binder = _Binder(fn)
        extra: dict[str, str] = {}
        if log_level is not None:
            level = _misuse_safe(lambda: _log_level_value(log_level), "log_level", "@trace")
            if level is not None:
                extra[SpanAttributeKey.LOG_LEVEL] = _encode(SpanAttributeKey.LOG_LEVEL, level)
        if description is not None:
            extra[SpanAttributeKey.DESCRIPTION] = _encode(SpanAttributeKey.DESCRIPTION, description)
        self.extra = extra
        self._static: dict[str, str] | None = None
        self._static_encoder: Any = None
        self._static_policy: Any = None

    def static_attributes(self) -> dict[str, str]:
        """The attributes that are the same for every call (encoded once). Not to be mutated."""
        static = self._static
        if static is None or _hooks.encode_attribute is not self._static_encoder or _capture._policy is not self._static_policy:
            static = _start_attributes(
                self.span_type, self.attributes, function_name=self.binder.function_name, extra=self.extra
            )
            self._static, self._static_encoder, self._static_policy = static, _hooks.encode_attribute, _capture._policy
        return static

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> LiveSpan | NoOpSpan:
        try:
            attrs = self.static_attributes()
            if self.sampling_ratio is not None and not _has_active_span():
                attrs = {**attrs, SAMPLING_OVERRIDE_ATTRIBUTE: self.sampling_ratio}  # type: ignore[dict-item]
            span = _start_span(self.name, self.span_type, attrs, links=self.links)
            if type(span) is LiveSpan:
                _record_inputs(span, self.binder, args, kwargs)
                if self.experiment_id is not None:
                    _set_experiment_for_root(span, self.experiment_id)
            return span
        except Exception as exc:  # noqa: BLE001 - tracing must never break the user's call
            report_internal_error("@trace span start", exc)
            return NoOpSpan()


def _record_inputs(span: LiveSpan, binder: _Binder, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The call's bound arguments as the span's inputs. When every value is immutable (str,
    numbers, bool, None) the JSON encoding is left to the delivery worker: the bound dict is
    fresh, nothing can change it, and the result is the same."""
    policy = _capture._policy or _capture.policy()
    if not policy.capture_content:
        span._set_raw(SpanAttributeKey.INPUTS, _capture._NOT_RECORDED_JSON)  # arguments not even looked at
        return
    bound = binder.bind(args, kwargs)
    if span._direct and _IMMUTABLE_TYPES.issuperset(map(type, bound.values())):
        span._defer(SpanAttributeKey.INPUTS, bound, policy)
    else:
        span._set_raw(SpanAttributeKey.INPUTS, _encode(SpanAttributeKey.INPUTS, bound))


def _has_active_span() -> bool:
    return otel_trace.get_current_span().get_span_context().is_valid


def _log_level_value(level: int | str) -> int:
    if isinstance(level, str):
        from flowtel.entities import SpanLogLevel

        return int(getattr(SpanLogLevel, level.upper()))
    return int(level)


class _Binder:
    """Maps call arguments to parameter names fast (inspect.Signature.bind is slow)."""

    __slots__ = ("function_name", "_signature", "_positional", "_defaults", "_simple", "_drop_cls")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.function_name = getattr(fn, "__name__", None)
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self._signature = None
        params = list(self._signature.parameters.values()) if self._signature else []
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self._simple = self._signature is not None and all(
            p.kind in kinds or p.kind is inspect.Parameter.KEYWORD_ONLY for p in params
        )
        self._positional = tuple(p.name for p in params if p.kind in kinds)
        self._defaults = tuple(
            (p.name, p.default) for p in params if p.default is not inspect.Parameter.empty
        )
        self._drop_cls = bool(self._positional) and self._positional[0] == "cls"

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._simple and len(args) <= len(self._positional):
            bound = dict(zip(self._positional, args))
            if kwargs:
                bound.update(kwargs)
            for name, default in self._defaults:
                if name not in bound:
                    bound[name] = default
        elif self._signature is not None:
            try:
                ba = self._signature.bind(*args, **kwargs)
                ba.apply_defaults()
                bound = dict(ba.arguments)
            except TypeError:
                bound = {"args": list(args), "kwargs": kwargs}
        else:
            bound = {"args": list(args), "kwargs": kwargs}
        bound.pop("self", None)
        if self._drop_cls and inspect.isclass(bound.get("cls")):
            bound.pop("cls", None)
        return bound


@overload
def trace(func: F) -> F: ...


@overload
def trace(
    func: None = None,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: dict[str, Any] | None = None,
    output_reducer: Callable[[list[Any]], Any] | None = None,
    trace_destination: Any = None,
    sampling_ratio_override: float | None = None,
    log_level: int | str | None = None,
    links: list[Link] | None = None,
    description: str | None = None,
) -> Callable[[F], F]: ...


def trace(
    func: Callable[..., Any] | None = None,
    name: str | None = None,
    span_type: str = SpanType.UNKNOWN,
    attributes: dict[str, Any] | None = None,
    output_reducer: Callable[[list[Any]], Any] | None = None,
    trace_destination: Any = None,
    sampling_ratio_override: float | None = None,
    log_level: int | str | None = None,
    links: list[Link] | None = None,
    description: str | None = None,
) -> Any:
    """Trace a function: each call becomes a span, nested calls become child spans.

    Works on sync and async functions, generators and async generators, methods,
    classmethods and staticmethods, with or without parentheses. Inputs are the bound
    arguments (without ``self``/``cls``), outputs the return value; a generator's outputs are
    its yielded items (or ``output_reducer(items)``) and its span lasts until it is exhausted,
    closed, raises, or is garbage-collected.

    The user's exceptions pass through unchanged; tracing failures never reach the caller.
    When tracing is disabled the function is called directly.

    Args:
        func: The function (when used without parentheses).
        name: Span name; defaults to the function's ``__name__``.
        span_type: A :class:`~flowtel.SpanType` value or any custom string.
        attributes: Extra span attributes.
        output_reducer: For generators: turns the list of yielded items into the output.
        trace_destination: Experiment location for a trace this call starts
            (``MlflowExperimentLocation``) or an experiment id string.
        sampling_ratio_override: Sampling ratio for traces this function starts.
        log_level: Span log level (``"DEBUG"``, ``"INFO"``, ... or an int).
        links: OpenTelemetry links to other spans.
        description: Span description.
    """
    if sampling_ratio_override is not None and not 0.0 <= float(sampling_ratio_override) <= 1.0:
        raise InvalidParameterError(
            f"sampling_ratio_override must be between 0.0 and 1.0, got {sampling_ratio_override!r}."
        )

    def decorator(fn: Callable[..., Any]) -> Any:
        if isinstance(fn, (classmethod, staticmethod)):
            return type(fn)(decorator(fn.__func__))
        if not callable(fn):
            raise TypeError(f"@flowtel.trace decorates functions, got {type(fn).__name__}.")
        opts = _Options(
            fn, name, span_type, attributes, output_reducer, sampling_ratio_override,
            log_level, links, description, _experiment_id_of(trace_destination),
        )
        if inspect.isasyncgenfunction(fn):
            wrapper = _wrap_async_generator(fn, opts)
        elif inspect.isgeneratorfunction(fn):
            wrapper = _wrap_generator(fn, opts)
        elif inspect.iscoroutinefunction(fn):
            wrapper = _wrap_coroutine(fn, opts)
        else:
            wrapper = _wrap_function(fn, opts)
        functools.update_wrapper(wrapper, fn)
        wrapper.__flowtel_traced__ = True  # type: ignore[attr-defined]
        return wrapper

    return decorator(func) if func is not None else decorator


def _experiment_id_of(destination: Any) -> str | None:
    if destination is None:
        return None
    if isinstance(destination, str):
        return destination
    exp = getattr(destination, "experiment_id", None)
    if exp is None:
        raise InvalidParameterError(
            f"trace_destination must be an MlflowExperimentLocation or an experiment id, got {destination!r}."
        )
    return str(exp)


def _wrap_function(fn: Callable[..., Any], opts: _Options) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _runtime.enabled or not _scope.current.get().enabled:
            return fn(*args, **kwargs)
        span = opts.start(args, kwargs)
        token = _attach(span)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _detach(token)
            _end_error(span, exc)
            raise
        _detach(token)
        _end_ok(span, result)
        return result

    return wrapper


def _wrap_coroutine(fn: Callable[..., Any], opts: _Options) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _runtime.enabled or not _scope.current.get().enabled:
            return await fn(*args, **kwargs)
        span = opts.start(args, kwargs)
        token = _attach(span)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            _detach(token)
            _end_error(span, exc)
            raise
        _detach(token)
        _end_ok(span, result)
        return result

    return wrapper


class _Chunks:
    """Collects a generator's items and records each as an ``mlflow.chunk.item.<i>`` event."""

    __slots__ = ("items", "span")

    def __init__(self, span: LiveSpan | NoOpSpan) -> None:
        self.items: list[Any] = []
        self.span = span

    def add(self, item: Any) -> None:
        try:
            if type(self.span) is LiveSpan:
                index = len(self.items)
                self.span.add_event(
                    SpanEvent(f"{_CHUNK_EVENT_PREFIX}{index}", _clock.now_ns(),
                              {_CHUNK_VALUE_KEY: _encode(_CHUNK_VALUE_KEY, item)})
                )
            self.items.append(item)
        except Exception as exc:  # noqa: BLE001 - recording a chunk must not break iteration
            report_internal_error("generator chunk", exc)

    def outputs(self, reducer: Callable[[list[Any]], Any] | None) -> Any:
        if reducer is None:
            return self.items
        try:
            return reducer(self.items)
        except Exception as exc:  # noqa: BLE001 - a failing user reducer must not break iteration
            _logger.warning("output_reducer failed (%r); recording the raw items instead.", exc)
            return self.items


def _end_closed(span: LiveSpan | NoOpSpan, chunks: _Chunks, opts: _Options) -> None:
    try:
        if type(span) is LiveSpan:
            span.add_event(SpanEvent("generator.closed", _clock.now_ns(), {"items_yielded": len(chunks.items)}))
        _end_ok(span, chunks.outputs(opts.output_reducer))
    except Exception as exc:  # noqa: BLE001 - closing must not raise into user code
        report_internal_error("generator close", exc)


def _wrap_generator(fn: Callable[..., Any], opts: _Options) -> Callable[..., Any]:
    # Context is attached only while the inner generator runs (around each step), never across
    # a yield: a consumer may resume us from another context, or never again.
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        if not _runtime.enabled or not _scope.current.get().enabled:
            return (yield from fn(*args, **kwargs))
        span = opts.start(args, kwargs)
        chunks = _Chunks(span)
        token = _attach(span)
        try:
            gen = fn(*args, **kwargs)
        except BaseException as exc:
            _detach(token)
            _end_error(span, exc)
            raise
        _detach(token)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            token = _attach(span)
            try:
                if to_throw is not None:
                    pending, to_throw = to_throw, None
                    item = gen.throw(pending)
                else:
                    item = gen.send(to_send)
            except StopIteration as stop:
                _detach(token)
                _end_ok(span, chunks.outputs(opts.output_reducer))
                return stop.value
            except BaseException as exc:
                _detach(token)
                _end_error(span, exc)
                raise
            _detach(token)
            chunks.add(item)
            try:
                to_send = yield item
            except GeneratorExit:
                token = _attach(span)
                try:
                    gen.close()
                finally:
                    _detach(token)
                    _end_closed(span, chunks, opts)
                raise
            except BaseException as exc:  # noqa: BLE001 - handed back into the user's generator as is
                to_throw = exc

    return wrapper


def _wrap_async_generator(fn: Callable[..., Any], opts: _Options) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        if not _runtime.enabled or not _scope.current.get().enabled:
            # Untraced, yet a faithful proxy: asend, athrow and aclose reach the user's generator.
            inner = fn(*args, **kwargs)
            sending: Any = None
            throwing: BaseException | None = None
            while True:
                try:
                    if throwing is not None:
                        thrown, throwing = throwing, None
                        value = await inner.athrow(thrown)
                    else:
                        value = await inner.asend(sending)
                except StopAsyncIteration:
                    return
                try:
                    sending = yield value
                except GeneratorExit:
                    await inner.aclose()
                    raise
                except BaseException as exc:  # noqa: BLE001 - handed back into the user's generator
                    throwing = exc
        span = opts.start(args, kwargs)
        chunks = _Chunks(span)
        token = _attach(span)
        try:
            agen = fn(*args, **kwargs)
        except BaseException as exc:
            _detach(token)
            _end_error(span, exc)
            raise
        _detach(token)
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            token = _attach(span)
            try:
                if to_throw is not None:
                    pending, to_throw = to_throw, None
                    item = await agen.athrow(pending)
                else:
                    item = await agen.asend(to_send)
            except StopAsyncIteration:
                _detach(token)
                _end_ok(span, chunks.outputs(opts.output_reducer))
                return
            except BaseException as exc:
                _detach(token)
                _end_error(span, exc)
                raise
            _detach(token)
            chunks.add(item)
            try:
                to_send = yield item
            except GeneratorExit:
                token = _attach(span)
                try:
                    await agen.aclose()
                finally:
                    _detach(token)
                    _end_closed(span, chunks, opts)
                raise
            except BaseException as exc:  # noqa: BLE001 - handed back into the user's generator as is
                to_throw = exc

    return wrapper


# -- start_span ----------------------------------------------------------------------------------
class _SpanContextManager:
    """``with start_span(...) as span``: the span is current inside the block."""

    __slots__ = ("_args", "_span", "_token")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self._args = args
        self._span: LiveSpan | NoOpSpan = NoOpSpan()
        self._token: object = None

    def __enter__(self) -> LiveSpan | NoOpSpan:
        if _tracing_on():
            self._span = _start_from_args(*self._args)
            self._token = _attach(self._span)
        return self._span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if self._token is not None:
            _detach(self._token)
            if exc is not None:
                _end_error(self._span, exc)
            else:
                _end_ok(self._span, None, has_outputs=False)
        return False

    async def __aenter__(self) -> LiveSpan | NoOpSpan:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


def _start_from_args(
    name: str, span_type: str | None, attributes: dict[str, Any] | None, trace_destination: Any,
    log_level: int | str | None, links: list[Link] | None, description: str | None, run_id: str | None = None,
) -> LiveSpan | NoOpSpan:
    try:
        extra: dict[str, str] = {}
        if log_level is not None:
            extra[SpanAttributeKey.LOG_LEVEL] = _encode(SpanAttributeKey.LOG_LEVEL, _log_level_value(log_level))
        if description is not None:
            extra[SpanAttributeKey.DESCRIPTION] = _encode(SpanAttributeKey.DESCRIPTION, description)
        attrs = _start_attributes(span_type, attributes, extra=extra)
        span = _start_span(name, span_type, attrs, links=links)
        experiment_id = _experiment_id_of(trace_destination)
        if experiment_id is not None and type(span) is LiveSpan:
            _set_experiment_for_root(span, experiment_id)
        if run_id is not None and type(span) is LiveSpan:
            _link_root_to_run(span, str(run_id))
        return span
    except Exception as exc:  # noqa: BLE001 - tracing must never break the user's code
        report_internal_error("start_span", exc)
        return NoOpSpan()


def start_span(
    name: str = "span",
    span_type: str | None = SpanType.UNKNOWN,
    attributes: dict[str, Any] | None = None,
    trace_destination: Any = None,
    log_level: int | str | None = None,
    run_id: str | None = None,
    links: list[Link] | None = None,
    description: str | None = None,
) -> _SpanContextManager:
    """Context manager that opens a span, current for the ``with`` block, ended on exit.

    An exception inside the block marks the span ERROR (with an ``exception`` event) and
    propagates unchanged. Usable with ``with`` and ``async with``. ``run_id`` links the trace
    a root span starts to that MLflow run (``mlflow.sourceRun``; ``search_traces(run_id=)``).
    """
    return _SpanContextManager((name, span_type, attributes, trace_destination, log_level, links, description, run_id))


def start_span_no_context(
    name: str,
    span_type: str = SpanType.UNKNOWN,
    parent_span: LiveSpan | NoOpSpan | None = None,
    inputs: Any = None,
    attributes: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    experiment_id: str | None = None,
    start_time_ns: int | None = None,
    log_level: int | str | None = None,
    links: list[Link] | None = None,
    description: str | None = None,
) -> LiveSpan | NoOpSpan:
    """Start a span that is NOT made current; end it yourself with ``span.end(...)``.

    Without ``parent_span`` it starts a new trace (``tags``, ``metadata`` and
    ``experiment_id`` then apply to that trace). Used by integrations and callbacks.
    """
    if not _tracing_on():
        return NoOpSpan()
    try:
        if parent_span is not None and isinstance(parent_span, NoOpSpan):
            return NoOpSpan(parent_span._span)
        parent_ctx = (
            otel_trace.set_span_in_context(parent_span._span)
            if parent_span is not None
            else otel_context.Context()
        )
        extra: dict[str, str] = {}
        if log_level is not None:
            level = _misuse_safe(lambda: _log_level_value(log_level), "log_level")
            if level is not None:
                extra[SpanAttributeKey.LOG_LEVEL] = _encode(SpanAttributeKey.LOG_LEVEL, level)
        if description is not None:
            extra[SpanAttributeKey.DESCRIPTION] = _encode(SpanAttributeKey.DESCRIPTION, description)
        if start_time_ns is not None:
            start_time_ns = _misuse_safe(lambda: _valid_time_ns(start_time_ns), "start_time_ns")
            if start_time_ns is not None:
                extra[SpanAttributeKey.START_TIME_NS] = _encode(SpanAttributeKey.START_TIME_NS, start_time_ns)
        attrs = _start_attributes(
            span_type, attributes, inputs=inputs, has_inputs=inputs is not None, extra=extra
        )
        span = _start_span(name, span_type, attrs, parent=parent_ctx, start_time_ns=start_time_ns, links=links)
        if type(span) is LiveSpan and parent_span is None:
            record = _record_of(span.trace_id)
            if record is not None:
                record.tags.update(_string_map(tags, "start_span_no_context", "tags"))
                record.metadata.update(_string_map(metadata, "start_span_no_context", "metadata"))
                if experiment_id is not None:
                    record.experiment_id = _safe_str(experiment_id)
        return span
    except Exception as exc:  # noqa: BLE001 - tracing must never break the user's code
        report_internal_error("start_span_no_context", exc)
        return NoOpSpan()


def _misuse_safe(convert: Callable[[], Any], what: str, api: str = "start_span_no_context") -> Any:
    """``convert()``, or None (with a warning) when the user's argument cannot be converted."""
    try:
        return convert()
    except Exception as exc:  # noqa: BLE001 - misuse is logged, never raised
        _logger.warning("%s(%s=...) ignored: %s.", api, what, type(exc).__name__)
        return None


def _valid_time_ns(value: Any) -> int:
    """A start time OTel and every destination can hold: an int in [0, 2**63)."""
    nanoseconds = int(value)
    if not 0 <= nanoseconds < 2**63:
        raise OverflowError("start_time_ns out of range")
    return nanoseconds


def _string_map(value: Any, api: str, what: str) -> dict[str, str]:
    """``value`` as tags/metadata (str -> str); anything that is no mapping is ignored, with a
    warning: a wrong type must neither raise nor leave the span just started open."""
    if value is None:
        return {}
    try:
        if not isinstance(value, Mapping):
            raise TypeError(type(value).__name__)
        return {_safe_str(k): _safe_str(v) for k, v in value.items()}
    except Exception:  # noqa: BLE001 - misuse is logged, never raised
        _logger.warning("%s(%s=...) ignored: expected a dict of strings, got %s.", api, what, type(value).__name__)
        return {}


def _link_root_to_run(span: LiveSpan, run_id: str) -> None:
    """``start_span(run_id=...)``: as in MLflow, only a root span links its trace to a run."""
    record = _record_of(span.trace_id)
    context = span._span.get_span_context()
    if record is not None and context is not None and record.root_span_id == context.span_id:
        record.metadata[TraceMetadataKey.SOURCE_RUN] = run_id
    else:
        _logger.warning(
            "The `run_id` parameter can only be used for root spans, but the span %r is not a root "
            "span. The specified value %r will be ignored.", span.name, run_id,
        )


def _set_experiment_for_root(span: LiveSpan, experiment_id: str) -> None:
    record = _record_of(span.trace_id)
    if record is not None and record.root_span_id == span._span.get_span_context().span_id:
        record.experiment_id = experiment_id
        span.set_attribute(SpanAttributeKey.EXPERIMENT_ID, experiment_id)


# -- active span and trace -----------------------------------------------------------------------
def get_current_active_span() -> LiveSpan | None:
    """The innermost flowtel span that is current in this context, or None."""
    runtime = _runtime.peek_runtime()
    if runtime is None:
        return None
    ctx = otel_trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    record = runtime.assembler.record_for(ctx.trace_id)
    return record.live.get(ctx.span_id) if record is not None else None


def get_active_trace_id() -> str | None:
    """Id of the trace the current span belongs to, or None outside a trace."""
    span = get_current_active_span()
    return span.trace_id if span is not None else None


def get_last_active_trace_id(thread_local: bool = False) -> str | None:
    """Id of the most recently finished trace (in this thread when ``thread_local``)."""
    runtime = _runtime.peek_runtime()
    if runtime is None:
        return None
    return runtime.assembler.last_trace_id_of_thread() if thread_local else runtime.assembler.last_trace_id


def _current_record(api: str) -> TraceRecord | None:
    span = get_current_active_span()
    if span is None:
        _logger.warning("%s() was called outside a trace; there is no active trace to update.", api)
        return None
    return _record_of(span.trace_id)


def update_current_trace(
    tags: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    client_request_id: str | None = None,
    request_preview: str | None = None,
    response_preview: str | None = None,
    state: TraceState | str | None = None,
    model_id: str | None = None,
    session_id: str | None = None,
    user: str | None = None,
) -> None:
    """Update the trace the current span belongs to (tags, metadata, previews, state, ...).

    ``state`` may be ``"OK"`` or ``"ERROR"`` and wins over the root span's status.
    """
    try:
        _update_current_trace(tags, metadata, client_request_id, request_preview, response_preview,
                              state, model_id, session_id, user)
    except Exception as exc:  # noqa: BLE001 - misuse is logged, never raised into user code
        _logger.warning("update_current_trace() ignored an invalid argument (%s).", type(exc).__name__)


def _update_current_trace(
    tags: Any, metadata: Any, client_request_id: Any, request_preview: Any, response_preview: Any,
    state: Any, model_id: Any, session_id: Any, user: Any,
) -> None:
    record = _current_record("update_current_trace")
    if record is None:
        return
    record.tags.update(_string_map(tags, "update_current_trace", "tags"))
    record.metadata.update(_string_map(metadata, "update_current_trace", "metadata"))
    if client_request_id is not None:
        record.client_request_id = str(client_request_id)
    if request_preview is not None:
        record.request_preview = str(request_preview)
    if response_preview is not None:
        record.response_preview = str(response_preview)
    if model_id is not None:
        record.metadata[TraceMetadataKey.MODEL_ID] = str(model_id)
    if session_id is not None:
        record.metadata[TraceMetadataKey.TRACE_SESSION] = _session_value(session_id)
    if user is not None:
        record.metadata[TraceMetadataKey.TRACE_USER] = str(user)
    if state is not None:
        value = state.value if isinstance(state, TraceState) else str(state).upper()
        if value not in ("OK", "ERROR"):
            _logger.warning("update_current_trace(state=%r) ignored: use 'OK' or 'ERROR'.", state)
        else:
            record.state = value


def _session_value(session_id: Any) -> str:
    if isinstance(session_id, (list, tuple)):
        import json

        return json.dumps([str(s) for s in session_id], separators=(",", ":"))
    return str(session_id)


# -- stored traces -------------------------------------------------------------------------------
def get_trace(trace_id: str, silent: bool = False, flush: bool = False) -> Trace | None:
    """The trace with this id: from memory if it is still being delivered, else the store.

    Returns None (with a warning unless ``silent``) when it does not exist.
    """
    if type(trace_id) is not str and silent:
        return None
    _check_trace_id(trace_id)
    pending = _pending(trace_id)
    if pending is not None:
        return pending.trace()
    if flush:
        flush_trace_async_logging()
    try:
        result = _store().get_trace(trace_id)
    except ConfigError:
        raise  # invalid configuration is never silenced, even with silent=True
    except FlowtelException:
        if not silent:
            raise
        return None
    if result is None and not silent:
        _logger.warning("Trace %r not found.", trace_id)
    return result


def set_trace_tag(trace_id: str, key: str, value: str) -> None:
    """Set a tag on a trace: in progress, being delivered, or stored."""
    _check_trace_id(trace_id)
    record = _record_of(trace_id)
    if record is not None:
        record.tags[str(key)] = str(value)
        return
    _settle(trace_id)
    _store().set_trace_tag(trace_id, str(key), str(value))


def delete_trace_tag(trace_id: str, key: str) -> None:
    """Delete a tag from a trace: in progress, being delivered, or stored."""
    _check_trace_id(trace_id)
    record = _record_of(trace_id)
    if record is not None:
        if record.tags.pop(str(key), None) is None:
            raise FlowtelException(f"No tag with name: {key} in trace with ID {trace_id}.", "RESOURCE_DOES_NOT_EXIST")
        return
    _settle(trace_id)
    _store().delete_trace_tag(trace_id, str(key))


def _check_trace_id(trace_id: Any) -> None:
    if type(trace_id) is not str:
        raise InvalidParameterError(f"trace_id must be a string like 'tr-...', got {type(trace_id).__name__}.")


def search_traces(
    experiment_ids: list[str] | None = None,
    filter_string: str | None = None,
    max_results: int | None = None,
    order_by: list[str] | None = None,
    extract_fields: list[str] | None = None,
    run_id: str | None = None,
    return_type: Literal["pandas", "list"] | None = None,
    model_id: str | None = None,
    sql_warehouse_id: str | None = None,
    include_spans: bool = True,
    locations: list[str] | None = None,
    flush: bool = True,
) -> Any:
    """Traces matching an MLflow filter string, newest first by default.

    Args:
        experiment_ids / locations: Experiments to search (default: the current one).
        filter_string: MLflow grammar, e.g. ``"status = 'ERROR' AND tags.env = 'prod'"``.
        max_results: At most this many (default: all).
        order_by: e.g. ``["timestamp_ms DESC"]``.
        run_id: Only traces linked to this run.
        return_type: ``"list"`` of Trace, or ``"pandas"`` DataFrame (default when pandas is
            installed).
        include_spans: Load span data (False is faster).
        flush: Deliver traces still in flight first, so a trace just finished is found.
    """
    if return_type not in (None, "list", "pandas"):
        raise InvalidParameterError(f"return_type must be 'list' or 'pandas', got {return_type!r}.")
    if return_type is None:
        return_type = "pandas" if _pandas_available() else "list"
    if return_type == "pandas" and not _pandas_available():
        raise FlowtelException("return_type='pandas' needs pandas: pip install 'flowtel[pandas]'.")
    if max_results is not None and max_results <= 0:
        raise InvalidParameterError(f"max_results must be a positive integer, got {max_results!r}.")
    if flush:
        _runtime.get_runtime().flush(_READ_FLUSH_TIMEOUT_S)
    experiments = list(locations or experiment_ids or []) or [_runtime.get_runtime().experiment_id()]
    filters = [f for f in (filter_string, f"metadata.`{TraceMetadataKey.SOURCE_RUN}` = '{run_id}'" if run_id else None,
                           f"metadata.`{TraceMetadataKey.MODEL_ID}` = '{model_id}'" if model_id else None) if f]
    combined = " AND ".join(f"{f}" for f in filters) or None
    traces = _search_all(experiments, combined, order_by, max_results, include_spans)
    if return_type == "list":
        return traces
    return _to_pandas(traces)


def _search_all(experiments: list[str], filter_string: str | None, order_by: list[str] | None,
                max_results: int | None, include_spans: bool) -> list[Trace]:
    store = _store()
    results: list[Trace] = []
    token: str | None = None
    while True:
        page_size = 500 if max_results is None else min(500, max_results - len(results))
        page, token = store.search_traces(
            experiment_ids=experiments, filter_string=filter_string, order_by=order_by,
            max_results=page_size, page_token=token, include_spans=include_spans,
        )
        results.extend(page)
        if not token or (max_results is not None and len(results) >= max_results):
            return results


def _pandas_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pandas") is not None


def _to_pandas(traces: list[Trace]) -> Any:
    import pandas as pd

    return pd.DataFrame([t.to_pandas_dataframe_row() for t in traces], columns=Trace.pandas_dataframe_columns())


# -- add_trace / log_trace -----------------------------------------------------------------------
def add_trace(trace: Trace | dict[str, Any], target: LiveSpan | None = None) -> None:
    """Merge a finished trace (e.g. returned by a remote service) under a span of this trace.

    Without ``target``, under the current span; with no current span, under a new root span
    named ``Remote Trace <root name>``.

    Raises:
        FlowtelException: the trace is not a valid trace dict, or is not finished.
    """
    if not _tracing_on():
        return
    if isinstance(trace, dict):
        try:
            trace = Trace.from_dict(trace)
        except ValueError as exc:
            raise InvalidParameterError(
                f"Failed to load a trace from the given dictionary: {exc}"
            ) from None
    if not isinstance(trace, Trace):
        raise InvalidParameterError(f"add_trace() takes a Trace or its dict, got {type(trace).__name__}.")
    if trace.info.state not in (TraceState.OK, TraceState.ERROR):
        raise InvalidParameterError(
            f"The trace must be ended before adding it to another trace. Current state: {trace.info.state.value}."
        )
    if not trace.data.spans:
        return
    target_span = target or get_current_active_span()
    if target_span is not None:
        _merge_spans(trace, target_span)
        return
    remote_root = trace.data.spans[0]
    span = start_span_no_context(
        name=f"Remote Trace <{remote_root.name}>",
        inputs=remote_root.inputs,
        attributes={k: v for k, v in remote_root.attributes.items() if k != SpanAttributeKey.REQUEST_ID},
        start_time_ns=remote_root.start_time_ns - 1,
    )
    if isinstance(span, LiveSpan):
        _merge_spans(trace, span)
    span.end(
        outputs=remote_root.outputs,
        status=SpanStatus(SpanStatusCode.ERROR if trace.info.state == TraceState.ERROR else SpanStatusCode.OK),
        end_time_ns=remote_root.end_time_ns,
    )


def _merge_spans(trace: Trace, target: LiveSpan) -> None:
    from flowtel.tracing._merge import merge_spans_into

    runtime = _runtime.get_runtime()
    record = _record_of(target.trace_id)
    if record is None:
        _logger.warning("add_trace(): the target span's trace is no longer in progress; nothing merged.")
        return
    merge_spans_into(runtime.assembler, record, trace, target)


def log_trace(
    name: str = "Task",
    request: Any = None,
    response: Any = None,
    intermediate_outputs: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    start_time_ms: int | None = None,
    execution_time_ms: int | None = None,
) -> str:
    """Record a trace with a single root span from a (request, response) pair; returns its id."""
    attributes = dict(attributes or {})
    if intermediate_outputs:
        attributes[SpanAttributeKey.INTERMEDIATE_OUTPUTS] = intermediate_outputs
    span = start_span_no_context(
        name=name, inputs=request, attributes=attributes, tags=tags,
        start_time_ns=start_time_ms * 1_000_000 if start_time_ms else None,
    )
    end_ns = (start_time_ms + execution_time_ms) * 1_000_000 if start_time_ms and execution_time_ms else None
    span.end(outputs=response, end_time_ns=end_ns)
    return span.trace_id


# -- delivery control ----------------------------------------------------------------------------
def flush(timeout: float | None = 30.0) -> bool:
    """Wait until every finished trace was handled by every destination. True if in time."""
    runtime = _runtime.peek_runtime()
    return True if runtime is None else runtime.flush(timeout)


def flush_trace_async_logging(terminate: bool = False) -> None:
    """MLflow-compatible name: deliver everything queued; with ``terminate``, also stop the
    delivery workers (they restart on the next trace)."""
    if terminate:
        _runtime.reset(keep_override=True)
    else:
        flush()
