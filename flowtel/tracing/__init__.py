"""Tracing configuration and helpers: enable/disable, scoped control, span processors, and
carrying the trace into threads."""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from flowtel._config import ConfigError
from flowtel.delivery import destination_for
from flowtel.entities import _hooks
from flowtel.tracing import _capture, _clock, _cost, _links, _runtime
from flowtel.tracing._compat import (
    clear_active_model,
    link_traces_to_run,
    set_active_model,
    set_session_hierarchy,
    set_span_chat_tools,
)
from flowtel.tracing._distributed import (
    get_tracing_context_headers_for_http_request,
    set_tracing_context_from_http_request_headers,
)
from flowtel.tracing._notebook import disable_notebook_display, enable_notebook_display
from flowtel.tracing._scope import context

__all__ = [
    "ConfigError",
    "ThreadPoolExecutor",
    "clear_active_model",
    "configure",
    "context",
    "disable",
    "disable_notebook_display",
    "enable",
    "enable_notebook_display",
    "get_tracing_context_headers_for_http_request",
    "is_enabled",
    "link_traces_to_run",
    "reset",
    "set_active_model",
    "set_destination",
    "set_session_hierarchy",
    "set_span_chat_tools",
    "set_tracing_context_from_http_request_headers",
    "with_current_context",
]

_logger = logging.getLogger("flowtel")
T = TypeVar("T")


# -- wiring the entities to this layer -----------------------------------------------------------
def _now_ns() -> int:
    return _clock.now_ns()


_span_processors: list[Callable[[Any], Any]] = []


def _apply_span_processors(span: Any) -> None:
    for processor in _span_processors:
        try:
            result = processor(span)
        except Exception as exc:  # noqa: BLE001 - a user processor must not break the traced call
            _logger.warning("Span processor %r failed on span %r: %r", processor, span.name, exc)
            continue
        if result is not None:
            _logger.warning("Span processor %r returned a value; it is ignored.", processor)


def _before_end(span: Any) -> None:
    if _span_processors:
        _apply_span_processors(span)


# The one way this layer plugs into the entities (see flowtel.entities._hooks). span_processors
# is the same list: in-place updates are seen there.
_hooks.install(now_ns=_now_ns, before_end=_before_end, span_processors=_span_processors)
_capture.install()


# -- public API ----------------------------------------------------------------------------------
def enable() -> None:
    """Record traces again after :func:`disable`. Idempotent."""
    _runtime.enabled = True


def disable() -> None:
    """Stop recording traces in this process; traced functions run as if undecorated.

    Traces already finished are still delivered. Idempotent. For one request only, use
    ``flowtel.tracing.context(enabled=False)``.
    """
    _runtime.enabled = False


def is_enabled() -> bool:
    return _runtime.enabled


def reset() -> None:
    """Deliver what is queued, then forget all configuration (including a destination set with
    :func:`set_destination` and the active model); the next span starts afresh."""
    _span_processors.clear()
    _links.reset()
    _capture.set_policy(None)
    _cost.reset()
    _runtime.reset()


class _Configuration:
    """Returned by :func:`configure`; as a context manager it restores the previous settings."""

    def __init__(self, previous: list[Callable[[Any], Any]], previous_policy: _capture.CapturePolicy | None,
                 previous_prices: dict[str, _cost.Price] | None = None) -> None:
        self._previous = previous
        self._previous_policy = previous_policy
        self._previous_prices = previous_prices

    def __enter__(self) -> _Configuration:
        return self

    def __exit__(self, *exc: object) -> None:
        _span_processors[:] = self._previous
        if self._previous_policy is not None:
            _capture.set_policy(self._previous_policy)
        if self._previous_prices is not None:
            _cost.restore_prices(self._previous_prices)


def configure(
    span_processors: list[Callable[[Any], Any]] | None = None,
    *,
    capture_content: bool | None = None,
    redact: bool | None = None,
    capture_binary: bool | None = None,
    max_attribute_bytes: int | None = None,
    max_depth: int | None = None,
    max_items: int | None = None,
    max_string_chars: int | None = None,
    prices: Mapping[str, Mapping[str, float]] | None = None,
) -> _Configuration:
    """Configure tracing. Usable as a context manager for a temporary configuration.

    Args:
        span_processors: Functions called with each :class:`~flowtel.LiveSpan` just before it
            ends (e.g. to mask data with ``span.set_inputs(...)``). Each takes exactly one
            argument; its return value is ignored.
        capture_content: False records no inputs, outputs, messages or event payloads at all,
            from any source (decorators, integrations, user attributes, OTLP conventions);
            structure, timing, types, status, model names and token counts stay.
        redact: Replace values under credential-like keys by ``[REDACTED]`` (default on).
        capture_binary: Keep bytes / base64 media inline instead of a size marker.
        max_attribute_bytes, max_depth, max_items, max_string_chars: Capture limits; larger
            values are truncated keeping valid JSON and marked.
        prices: Model prices in USD per million tokens, ``{"my-model": {"input": 0.5,
            "output": 1.5, "cache_read": 0.05, "cache_write": 0.6}}`` (cache prices optional;
            a key ``"provider/model"`` matches one provider only). They win over the
            ``FLOWTEL_PRICES_FILE`` file, which wins over the genai-prices catalogue.

    Raises:
        ConfigError: an invalid processor, limit or price (or an unreadable ``FLOWTEL_PRICES_FILE``).
    """
    _cost.load_prices_file()  # validated here, so a bad file fails at configure time
    previous_prices = _cost.set_prices(prices) if prices is not None else None
    previous = list(_span_processors)
    if span_processors is not None:
        for processor in span_processors:
            _check_processor(processor)
        _span_processors[:] = list(span_processors)
    changes = {
        k: v for k, v in {
            "capture_content": capture_content, "redact": redact, "capture_binary": capture_binary,
            "max_attribute_bytes": max_attribute_bytes, "max_depth": max_depth, "max_items": max_items,
            "max_string_chars": max_string_chars,
        }.items() if v is not None
    }
    previous_policy = None
    if changes:
        try:
            new_policy = _capture.updated(**changes)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Invalid capture setting: {exc}") from None
        previous_policy = _capture.set_policy(new_policy)
    return _Configuration(previous, previous_policy, previous_prices)


def _check_processor(processor: Any) -> None:
    import inspect

    if not callable(processor):
        raise ConfigError(f"span_processors must be callables, got {type(processor).__name__}.")
    try:
        params = [
            p for p in inspect.signature(processor).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return
    if len(params) != 1:
        raise ConfigError(
            f"Span processor {processor!r} must take exactly one argument (the span), "
            f"it takes {len(params)}."
        )


def set_destination(*exporters: Any, context_local: bool = False) -> None:
    """Send traces to these exporters (each with its own delivery pipeline, so a slow or dead
    one never holds back the others), e.g.::

        flowtel.tracing.set_destination(
            flowtel.exporters.MlflowExporter.for_tracking_uri("http://127.0.0.1:5000"),
            flowtel.exporters.OtlpExporter(endpoint="http://collector:4318"),
        )

    With no argument, go back to the destinations configured by the environment. Traces
    already finished are delivered to the previous destinations first.

    As in MLflow, the argument may instead be one trace location,
    ``mlflow.entities.trace_location.MlflowExperimentLocation(experiment_id=...)`` (or MLflow's
    ``MlflowExperiment``, or ``flowtel.TraceLocation``): traces started from now on go to that
    experiment of the configured destination, ahead of ``set_experiment`` and the active run's
    experiment. With ``context_local=True`` only in the current context (this asyncio task or
    thread, and tasks it starts), so concurrent requests route to different experiments
    without mixing. No I/O; :func:`reset` clears it.

    Raises:
        ConfigError: neither flowtel exporters nor one MLflow experiment location.
    """
    from flowtel.delivery._exporter import TraceExporter

    if len(exporters) == 1 and not isinstance(exporters[0], TraceExporter):
        experiment_id = _links.experiment_id_of_location(exporters[0])
        if experiment_id is None:
            raise ConfigError(
                "set_destination() takes flowtel exporters (flowtel.exporters.*) or an MLflow experiment "
                f"location (MlflowExperimentLocation(experiment_id=...)), got {type(exporters[0]).__name__}."
            )
        _links.set_location(experiment_id, context_local=context_local)
        return
    if context_local:
        raise ConfigError("context_local=True routes by trace location only; exporters are process-wide.")
    for exporter in exporters:
        if not isinstance(exporter, TraceExporter):
            raise ConfigError(
                f"set_destination() takes flowtel exporters (flowtel.exporters.*), got {type(exporter).__name__}."
            )
    _runtime.set_destinations([destination_for(e) for e in exporters] or None)


def with_current_context(fn: Callable[..., T]) -> Callable[..., T]:
    """Bind ``fn`` to the current context, so spans it creates join the current trace even
    when it runs on another thread (``threading.Thread(target=with_current_context(work))``)."""
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        return ctx.copy().run(fn, *args, **kwargs)

    return run


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the context of the code that submitted
    them, so their spans are children of the span current at ``submit``/``map`` time."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)


@contextmanager
def _deterministic(seed: int | None = None, start_ns: int = 1_700_000_000_000_000_000,
                   step_ns: int = 1_000_000) -> Iterator[None]:
    """Sequential (or seeded) ids and a clock that advances ``step_ns`` per reading."""
    state = {"now": start_ns}

    def tick() -> int:
        state["now"] += step_ns
        return state["now"]

    previous_clock, previous_ids = _clock.now_ns, _runtime._id_generator.delegate
    _clock.now_ns = tick
    _runtime._id_generator.delegate = (
        _clock.SequentialIdGenerator() if seed is None else _clock.SeededIdGenerator(seed)
    )
    try:
        yield
    finally:
        _clock.now_ns = previous_clock
        _runtime._id_generator.delegate = previous_ids
