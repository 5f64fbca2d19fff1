"""The OpenAI Agents SDK (``openai-agents``), switched on with ``flowtel.openai.autolog()`` as in MLflow.

A run (``Runner.run`` / ``run_sync`` / ``run_streamed``) is one span tree: its root (the Agents
SDK's trace, ``Agent workflow`` unless the run config names it), an ``AGENT`` span per agent turn,
``TOOL`` spans for function tools, handoff (``CHAIN``) and guardrail (``GUARDRAIL``) spans. The
tree nests under the caller's ``@flowtel.trace`` span when there is one.

Model calls are the OpenAI integration's own ``CHAT_MODEL`` spans (the Agents SDK calls the OpenAI
client): its generation/response spans are not recorded again, so each model call is one span with
its tokens counted once. The SDK's spans are followed through its ``TracingProcessor`` hooks (each
flowtel span is current between the SDK span's start and end, in the task that runs it);
``AgentRunner.run`` is wrapped so the root span records the run's input and final output.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable
from typing import Any

from flowtel._errors import report_internal_error
from flowtel.entities import LiveSpan, NoOpSpan, SpanType
from flowtel.integrations._shared import _call
from flowtel.integrations._shared._context import tracing_on
from flowtel.integrations._shared._patch import Patcher, import_attr
from flowtel.integrations._shared._values import jsonable
from flowtel.tracing import _engine

__all__ = ["install_agents", "uninstall_agents"]

_SPAN_TYPES = {
    "agent": SpanType.AGENT,
    "function": SpanType.TOOL,
    "handoff": SpanType.CHAIN,
    "guardrail": SpanType.GUARDRAIL,
    "custom": SpanType.UNKNOWN,
    "mcp_tools": SpanType.TOOL,
}
#: Not recorded: the model call itself (the OpenAI integration's span of the client call it makes),
#: and the run's task and turn grouping (the root span and the agent spans stand for them).
_SKIPPED_SPANS = frozenset({"generation", "response", "task", "turn"})

_RUN_ROOT: contextvars.ContextVar[LiveSpan | NoOpSpan | None] = contextvars.ContextVar(
    "flowtel_agents_run", default=None
)


class _State:
    active = False
    processor: Any = None


_state = _State()
_patcher = Patcher("openai-agents")


def install_agents() -> None:
    """Register the processor (once per process) and wrap ``AgentRunner.run``; called when ``agents`` is imported."""
    from agents import tracing

    if _state.processor is None:
        _state.processor = _processor_class(tracing.TracingProcessor)()
    if not _registered(tracing, _state.processor):
        tracing.add_trace_processor(_state.processor)
    runner = import_attr("agents.run", "AgentRunner")
    if runner is not None:
        _patcher.wrap(runner, "run", _run_wrapper)
    _state.active = True


def _registered(tracing: Any, processor: Any) -> bool:
    """Whether ``processor`` is still among the SDK's (``set_trace_processors`` replaces them all)."""
    multi = getattr(tracing.get_trace_provider(), "_multi_processor", None)
    processors = getattr(multi, "_processors", None)
    return processor in processors if isinstance(processors, (list, tuple)) else False


def uninstall_agents() -> None:
    """The processor stays registered (the SDK cannot remove one) but records nothing; ``run`` is restored."""
    _state.active = False
    _patcher.restore()


# -- the run: the root span with the run's input and final output -----------------------------------
async def _run_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _state.active or not tracing_on() or _RUN_ROOT.get() is not None:
        return await wrapped(*args, **kwargs)
    agent = args[0] if args else kwargs.get("starting_agent")
    run_input = args[1] if len(args) > 1 else kwargs.get("input")
    config = kwargs.get("run_config")
    name = getattr(config, "workflow_name", None) or "Agent workflow"
    span = _call.start_llm_span(name, SpanType.AGENT, {"agent": getattr(agent, "name", None),
                                                        "input": jsonable(run_input)}, {})
    token = _engine.attach(span)
    root = _RUN_ROOT.set(span)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _RUN_ROOT.reset(root)
        _engine.detach(token)
        _engine.end_error(span, exc)
        raise
    _RUN_ROOT.reset(root)
    _engine.detach(token)
    _engine.end_ok(span, jsonable(getattr(result, "final_output", None)))
    return result


# -- the SDK's spans -----------------------------------------------------------------------------
def _processor_class(base: type) -> type:
    class FlowtelAgentsProcessor(base):  # type: ignore[misc]
        """Mirrors the Agents SDK's traces and spans as flowtel spans (thread-safe)."""

        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._open: dict[str, tuple[LiveSpan | NoOpSpan, object]] = {}
            self._roots: dict[str, LiveSpan | NoOpSpan] = {}
            self._skipped: dict[str, str | None] = {}  # SDK span id -> its parent, for spans not recorded

        def on_trace_start(self, trace: Any) -> None:
            if not _state.active or not tracing_on() or _RUN_ROOT.get() is not None:
                return  # the run's own root span (``_run_wrapper``) stands for the trace
            try:
                span = _call.start_llm_span(trace.name or "Agent workflow", SpanType.AGENT, None, {})
                # not made current: ``run_streamed`` starts the trace in the caller's context and ends
                # it in its background task; the SDK's top spans are parented to it explicitly instead
                with self._lock:
                    self._roots[trace.trace_id] = span
            except Exception as exc:  # noqa: BLE001 - the agent run goes on untraced
                report_internal_error("agents trace start", exc)

        def on_trace_end(self, trace: Any) -> None:
            with self._lock:
                root = self._roots.pop(trace.trace_id, None)
            if root is not None:
                _engine.end_ok(root, None, has_outputs=False)

        def on_span_start(self, span: Any) -> None:
            if not _state.active or not tracing_on():
                return
            try:
                data = span.span_data
                kind = data.type
                if kind in _SKIPPED_SPANS:
                    with self._lock:
                        self._skipped[span.span_id] = span.parent_id
                    return
                inputs, attributes = _describe(kind, data)
                name = getattr(data, "name", None) or _names.get(kind, kind)
                with self._lock:
                    root = self._roots.get(span.trace_id)
                parent = _engine.attach(root) if root is not None and self._top_level(span) else None
                try:
                    started = _call.start_llm_span(
                        str(name), _SPAN_TYPES.get(kind, SpanType.UNKNOWN), inputs, attributes)
                finally:
                    if parent is not None:
                        _engine.detach(parent)
                self._push(span.span_id, started)
            except Exception as exc:  # noqa: BLE001 - the agent run goes on untraced
                report_internal_error("agents span start", exc)

        def on_span_end(self, span: Any) -> None:
            with self._lock:
                self._skipped.pop(span.span_id, None)
            self._pop(span.span_id, span)

        def _top_level(self, span: Any) -> bool:
            """No recorded SDK span above it (skipped ones looked through): its parent is the trace's root."""
            parent = span.parent_id
            with self._lock:
                while parent in self._skipped:
                    parent = self._skipped[parent]
                return parent is None or parent not in self._open

        def shutdown(self) -> None:
            pass

        def force_flush(self) -> None:
            pass

        def _push(self, key: str, span: LiveSpan | NoOpSpan) -> None:
            token = _engine.attach(span)
            with self._lock:
                self._open[key] = (span, token)

        def _pop(self, key: str, sdk_span: Any) -> None:
            with self._lock:
                entry = self._open.pop(key, None)
            if entry is None:
                return
            span, token = entry
            _engine.detach(token)
            try:
                error = getattr(sdk_span, "error", None) if sdk_span is not None else None
                outputs = _outputs(sdk_span.span_data) if sdk_span is not None else None
                if sdk_span is not None and sdk_span.span_data.type in ("function", "handoff"):
                    # the SDK fills these in after the start
                    span.set_inputs(_describe(sdk_span.span_data.type, sdk_span.span_data)[0])
                if error:
                    span.set_outputs(outputs)
                    _engine.end_error(span, _AgentsError(str(error.get("message") or error)))
                else:
                    _engine.end_ok(span, outputs, has_outputs=outputs is not None)
            except Exception as exc:  # noqa: BLE001 - the span ends whatever its data holds
                report_internal_error("agents span end", exc)
                _engine.end_ok(span, None, has_outputs=False)

    return FlowtelAgentsProcessor


class _AgentsError(Exception):
    """An error the Agents SDK reported on one of its spans (tool failure, guardrail tripwire...)."""


_names = {"handoff": "Handoff", "guardrail": "Guardrail"}


def _describe(kind: str, data: Any) -> tuple[Any, dict[str, Any]]:
    if kind == "function":
        return _json(getattr(data, "input", None)), {}
    if kind == "handoff":
        return {"from_agent": data.from_agent, "to_agent": data.to_agent}, {}
    if kind == "agent":
        return None, {"openai_agents.tools": list(data.tools or []), "openai_agents.handoffs": list(data.handoffs or []),
                      "openai_agents.output_type": data.output_type}
    exported = data.export() if hasattr(data, "export") else None
    return exported, {}


def _outputs(data: Any) -> Any:
    kind = data.type
    if kind == "function":
        return _json(data.output)
    if kind == "guardrail":
        return {"triggered": bool(data.triggered)}
    if kind == "handoff":
        return {"to_agent": data.to_agent}
    return None


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return jsonable(value)
