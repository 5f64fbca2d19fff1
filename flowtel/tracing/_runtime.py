"""Process-wide tracing state: the isolated OTel provider, trace assembly and destinations.

Built lazily on first use and rebuilt by configuration calls. Nothing here does I/O on the
user's thread: destinations open connections and files on their delivery workers.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from flowtel import _config
from flowtel._errors import report_internal_error
from flowtel._version import __version__
from flowtel.delivery import _lifecycle as lifecycle
from flowtel.delivery._destination import (
    Destination,
    create_destination,
    with_pipelines,
)
from flowtel.entities import Trace
from flowtel.tracing import _capture, _clock, _experiments, _links, _scope
from flowtel.tracing._finalize import finalize
from flowtel.tracing._processor import TraceAssembler, TraceRecord
from flowtel.tracing._sampling import make_sampler, trace_id_sampled
from flowtel.tracing._spans import SpanStarter
from flowtel.tracing._timeouts import TraceTimeouts, resolve_timeout

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from flowtel.delivery._pipeline import DeliveryStats
    from flowtel.delivery._store import TraceStore

_logger = logging.getLogger("flowtel")
_modules = sys.modules
_MLFLOW_FLUENT = _links._MLFLOW_FLUENT

hand_off_observers: list[Callable[[PendingTrace], None]] = []
"""Called (on the thread that ended the trace) with each finished trace; e.g. notebook display."""


def _notify(pending: PendingTrace) -> None:
    for observer in hand_off_observers:
        try:
            observer(pending)
        except Exception as exc:  # noqa: BLE001 - an observer must not break the traced call
            report_internal_error("hand-off observer failed", exc)


class PendingTrace:
    """A finished trace on its way to the destinations; finalised once, on first need."""

    __slots__ = ("_record", "_runtime", "_trace", "_refs", "size_estimate")

    # Shared by all pending traces (one lock object per trace would cost every traced call):
    # finalising is CPU work under the GIL anyway, and the reference count is a short section.
    _finalize_lock = threading.RLock()
    _refs_lock = threading.RLock()  # reentrant: release() runs on the user's thread (signals)

    def __init__(self, record: TraceRecord, runtime: Runtime, refs: int) -> None:
        self.size_estimate: int | None = None  # the delivery pipelines' memory estimate
        self._record = record
        self._runtime = runtime
        self._trace: Trace | None = None
        self._refs = refs

    @property
    def trace_id(self) -> str:
        return self._record.trace_id

    def trace(self) -> Trace:
        trace = self._trace
        if trace is not None:
            return trace
        with self._finalize_lock:
            if self._trace is None:
                self._trace = finalize(
                    self._record,
                    default_experiment_id=self._runtime.experiment_id(),
                    env_metadata=self._runtime.env_metadata(),
                    size_stats=self._runtime.needs_size_stats(),
                )
            return self._trace

    def record(self) -> TraceRecord:
        return self._record

    def release(self) -> None:
        with self._refs_lock:
            self._refs -= 1
            last = self._refs <= 0
        if last:
            self._runtime.pending.pop(self._record.otel_trace_id, None)


@dataclass
class Runtime:
    provider: TracerProvider
    tracer: Tracer
    assembler: TraceAssembler
    destinations: list[Destination] = field(default_factory=list)
    pending: dict[int, PendingTrace] = field(default_factory=dict)  # by OTel trace id
    experiment_id_resolver: Callable[[], str] = lambda: "0"
    timeouts: TraceTimeouts | None = None
    root_sampler: Any = None
    starter: SpanStarter | None = None
    sampled_out: int = 0
    _pipelines: tuple[Any, ...] | None = None  # of destinations, fixed for the runtime's life
    _env_metadata: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.starter is None:  # a runtime built without one: the SDK's own start_span throughout
            self.starter = SpanStarter(self.provider, self.tracer, always_sample=False)

    def experiment_id(self) -> str:
        return self.experiment_id_resolver()

    def needs_size_stats(self) -> bool:
        """MLflow's size statistics cost a JSON dump of every span; only compute them when a
        destination keeps them (MLflow, the embedded store, memory), not for OTLP-only setups."""
        return not self.destinations or any(
            getattr(d.exporter, "needs_size_stats", True) for d in self.destinations
        )

    def env_metadata(self) -> dict[str, str]:
        if self._env_metadata is None:
            from flowtel.tracing._environment import resolve_environment_metadata

            self._env_metadata = resolve_environment_metadata()
        return self._env_metadata

    @property
    def store(self) -> TraceStore | None:
        return next((d.store for d in self.destinations if d.store is not None), None)

    def hand_off(self, record: TraceRecord) -> None:
        if self.root_sampler is not None and self.root_sampler.keep_errors and not _keep(record, self.root_sampler):
            self.sampled_out += 1
            return
        pipelines = self._pipelines
        if pipelines is None:
            pipelines = self._pipelines = tuple(d.pipeline for d in self.destinations if d.pipeline is not None)
        pending = PendingTrace(record, self, refs=max(len(pipelines), 1))
        self.pending[record.otel_trace_id] = pending
        if hand_off_observers:
            _notify(pending)
        if not pipelines:
            pending.release()
            return
        for pipeline in pipelines:
            pipeline.submit(pending)

    def on_root_start(self, record: TraceRecord) -> None:
        scope = _scope.current.get()
        if scope.tags or scope.metadata:
            _apply_scope(record, scope)
        if not _links.idle or _MLFLOW_FLUENT in _modules:  # (the common case: nothing to link)
            _links.apply_on_root_start(record)  # run, model, set_destination(location): before set_experiment
        if _experiments._active is not None:
            _experiments.on_root_start(record)
        timeouts = self.timeouts
        if timeouts is not None and timeouts._thread is None:  # its watcher starts with the first trace
            timeouts.on_root_start(record)

    def flush(self, timeout: float | None = None) -> bool:
        # One deadline for all: pipelines work in parallel, so waiting on them in turn is fine.
        deadline = deadline_after(timeout)
        ok = True
        for dest in self.destinations:
            if dest.pipeline is not None:
                ok = dest.pipeline.flush(_remaining(deadline)) and ok
        return ok

    def shutdown(self, timeout: float | None = None) -> bool:
        """Drain within ``timeout`` overall; each pipeline spools or drops (and reports) the rest."""
        if self.timeouts is not None:
            self.timeouts.stop()
        deadline = deadline_after(timeout)
        ok = True
        for dest in self.destinations:
            if dest.pipeline is not None:
                ok = dest.pipeline.shutdown(_remaining(deadline)) and ok
            if dest.store is not None:
                try:
                    dest.store.close()
                except Exception as exc:  # noqa: BLE001 - shutdown must not raise
                    report_internal_error("store close", exc)
        self.provider.shutdown()
        return ok

    def delivery_stats(self) -> list[DeliveryStats]:
        return [d.pipeline.stats() for d in self.destinations if d.pipeline is not None]


# -- global state --------------------------------------------------------------------------------
_lock = threading.RLock()
_runtime: Runtime | None = None
enabled: bool = True
_id_generator = _clock.SwappableIdGenerator()
_destination_override: list[Destination] | None = None
_config_error: _config.ConfigError | None = None
_config_error_reported = False


class RuntimeBusy(Exception):
    """The runtime is being built by this very thread (a signal handler or a callback ran
    traced code in the middle of it): that call runs untraced, counted in ``untraced_calls``."""


untraced_calls = 0  # traced calls that ran untraced because the runtime was being built
_builder: int | None = None  # thread id building the runtime right now


def get_runtime() -> Runtime:
    """The runtime, built on first use. Raises ConfigError for invalid configuration, and
    RuntimeBusy when called again by the thread that is building it."""
    global _config_error, _builder, untraced_calls
    runtime = _runtime
    if runtime is not None:
        return runtime
    if _builder == threading.get_ident():
        untraced_calls += 1
        raise RuntimeBusy()
    with _lock:
        if _runtime is None:
            if _config_error is not None:
                raise _config_error  # already reported; rebuilt after the user fixes and resets
            _builder = threading.get_ident()
            try:
                _install(_build_runtime())
            except _config.ConfigError as exc:
                _config_error = exc
                raise
            finally:
                _builder = None
        assert _runtime is not None
        return _runtime


def report_config_error(exc: _config.ConfigError) -> None:
    """Invalid configuration met while tracing (env vars read at first use): one clear line,
    once; traced code keeps running untraced until the setting is fixed and
    ``flowtel.tracing.reset()`` is called."""
    global _config_error_reported
    if not _config_error_reported:
        _config_error_reported = True
        _logger.error("flowtel is not recording traces: %s Fix the setting, then call flowtel.tracing.reset().", exc)


def peek_runtime() -> Runtime | None:
    return _runtime


def reset(destinations: list[Destination] | None = None, *, keep_override: bool = False) -> None:
    """Shut the current runtime down (draining it) and forget it; the next span builds anew."""
    global _runtime, _destination_override, _config_error, _config_error_reported
    with _lock:
        old, _runtime = _runtime, None
        _config_error, _config_error_reported = None, False
        _links.forget_environment()
        if not keep_override:
            _destination_override = destinations
    if old is not None:
        old.shutdown(timeout=_config.FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS.get_or_default())


def set_destinations(destinations: list[Destination] | None) -> None:
    reset(destinations)


def _install(runtime: Runtime) -> None:
    global _runtime
    _runtime = runtime


def _build_runtime() -> Runtime:
    _config.validate_all()  # every setting, now: never first on a path that must not fail
    _import_worker_modules()
    ratio = _config.MLFLOW_TRACE_SAMPLING_RATIO.get()
    sampler, root_sampler = make_sampler(ratio, keep_errors=_config.FLOWTEL_SAMPLING_KEEP_ERRORS.get())
    max_open = _config.FLOWTEL_MAX_OPEN_TRACES.get()
    destinations = _destination_override if _destination_override is not None else default_destinations()
    resource = Resource.create({"telemetry.sdk.name": "flowtel", "telemetry.sdk.version": __version__})
    provider = TracerProvider(
        resource=resource,
        sampler=sampler,
        id_generator=_id_generator,
        # Attribute values are JSON documents: OTel must never cut them (flowtel's own capture
        # limits truncate them structure-aware), so the value length limit is explicitly unset.
        span_limits=SpanLimits(
            max_events=10_000, max_attributes=1_000, max_links=1_000,
            max_attribute_length=SpanLimits.UNSET, max_span_attribute_length=SpanLimits.UNSET,
        ),
    )
    holder: dict[str, Runtime] = {}
    assembler = TraceAssembler(
        _unconnected,  # connected to the runtime below
        max_open_traces=max_open,
        monotonic=lambda: _clock.monotonic(),
    )
    provider.add_span_processor(assembler)
    tracer = provider.get_tracer("flowtel", __version__)
    runtime = Runtime(
        provider=provider,
        tracer=tracer,
        assembler=assembler,
        destinations=with_pipelines(destinations),
        experiment_id_resolver=lambda: _experiments.resolve_default_experiment_id(holder["rt"].store),
        root_sampler=root_sampler,
        starter=SpanStarter(provider, tracer, always_sample=ratio >= 1.0),
    )
    runtime.timeouts = TraceTimeouts(
        assembler, runtime.hand_off, timeout=resolve_timeout(),
        monotonic=lambda: _clock.monotonic(), now_ns=lambda: _clock.now_ns(),
    )
    holder["rt"] = runtime
    assembler.connect(runtime.hand_off, on_root_start=runtime.on_root_start)
    return runtime


def _import_worker_modules() -> None:
    """Modules the delivery workers would otherwise import lazily, on their thread: a fork in
    the middle of such an import leaves the child a half-initialised module, locked for good."""
    import flowtel.entities._assessment  # noqa: F401 - Trace.from_dict / TraceInfo
    import flowtel.tracing._environment  # noqa: F401 - env_metadata() on the first finalise


def _unconnected(record: TraceRecord) -> None:
    raise RuntimeError("TraceAssembler used before connect()")


def _keep(record: TraceRecord, root_sampler: Any) -> bool:
    """Keep-errors sampling, decided when the trace ends: ERROR traces always stay."""
    ratio = root_sampler.ratios.pop(record.otel_trace_id, None)
    if ratio is None or trace_id_sampled(record.otel_trace_id, ratio) or record.state == "ERROR":
        return True
    root = record.finished.get(record.root_span_id)
    return root is not None and root.status.status_code.name == "ERROR"


def _apply_scope(record: TraceRecord, scope: Any) -> None:
    """Tags and metadata of ``flowtel.tracing.context(...)`` blocks apply to traces started there."""
    if scope.tags:
        record.tags.update(scope.tags)
    if scope.metadata:
        record.metadata.update(scope.metadata)


def default_destinations() -> list[Destination]:
    """Destinations from the environment: an MLflow server URI, or the embedded local store."""
    from flowtel.tracing._tracking import resolve_tracking_uri

    uri = resolve_tracking_uri()
    if uri is None:
        destinations = [create_destination("local", path=_config.FLOWTEL_STORE_PATH.get())]
    else:
        destinations = [create_destination("mlflow", tracking_uri=uri)]
    if otlp_export_enabled():
        destinations.append(create_destination("otlp"))
    if otlp_metrics_enabled():
        destinations.append(create_destination("otlp_metrics"))
    return destinations


def otlp_export_enabled() -> bool:
    """OTLP export is on when an OTLP endpoint is configured, unless FLOWTEL_OTLP_EXPORT=false."""
    setting = _config.FLOWTEL_OTLP_EXPORT.get()
    if setting is not None:
        return setting
    return _config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.is_set() or _config.OTEL_EXPORTER_OTLP_ENDPOINT.is_set()


def otlp_metrics_enabled() -> bool:
    """Metrics are on when OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set, or FLOWTEL_OTLP_METRICS=true
    (then to OTEL_EXPORTER_OTLP_ENDPOINT); FLOWTEL_OTLP_METRICS=false turns them off."""
    setting = _config.FLOWTEL_OTLP_METRICS.get()
    return setting if setting is not None else _config.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT.is_set()


def _drain_at_exit() -> None:
    runtime = _runtime
    if runtime is None:
        return
    try:
        # Each pipeline warns about what it could not send, and spools it if it has a spool.
        runtime.shutdown(timeout=_config.FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS.get_or_default())
    except Exception as exc:  # noqa: BLE001 - never raise during interpreter exit
        report_internal_error("exit drain", exc)


def deadline_after(timeout: object) -> float | None:
    """Monotonic deadline of a user-given timeout: ``None`` (or infinite) waits without limit;
    nan, negative or anything that is not a number means "do not wait"."""
    if timeout is None:
        return None
    try:
        seconds = float(timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return time.monotonic()
    if seconds == float("inf"):
        return None
    return time.monotonic() + (seconds if seconds > 0 else 0.0)  # nan > 0 is False


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _after_fork_in_child() -> None:
    global _lock, _builder
    _builder = None
    # Another thread of the parent may have held these at the moment of the fork (building the
    # runtime, finalising a trace): the child's copies would stay locked forever.
    _lock = threading.RLock()
    PendingTrace._finalize_lock = threading.RLock()
    PendingTrace._refs_lock = threading.RLock()
    _capture.after_fork_in_child()
    # Open and pending traces belong to the parent, which finishes and delivers them.
    runtime = _runtime
    if runtime is not None:
        runtime.pending.clear()
        runtime.assembler.after_fork_in_child()
        if runtime.timeouts is not None:
            runtime.timeouts.after_fork_in_child()


lifecycle.on_exit(_drain_at_exit)
lifecycle.on_fork_child(_after_fork_in_child)
