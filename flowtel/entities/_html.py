"""A trace as one self-contained HTML fragment: a compact span tree/waterfall for notebooks.

Pure function of the trace (no I/O, no network, no script): inline CSS, collapsible rows through
``<details>``, every piece of span data escaped (span names, inputs and messages are the user's
or a model's text and may contain markup). Used by :meth:`Trace._repr_html_` in Jupyter and VS
Code notebooks and by ``flowtel.tracing.enable_notebook_display``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowtel.entities._constants import SpanAttributeKey, TraceMetadataKey, TraceTagKey

if TYPE_CHECKING:
    from flowtel.entities._span import Span
    from flowtel.entities._trace import Trace

__all__ = ["traces_to_html", "trace_to_html"]

MAX_SPANS = 300
"""Spans rendered per trace; the rest are counted in a note (a notebook output must stay small)."""
MAX_VALUE_CHARS = 2000
"""Characters of one input, output or message shown before it is cut with an ellipsis."""

_CSS = """
.flowtel-trace{font:12px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1f2328;
 border:1px solid #d0d7de;border-radius:6px;padding:8px 10px;margin:4px 0;max-width:1100px;background:#fff}
.flowtel-trace .ft-head{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:baseline;margin-bottom:6px}
.flowtel-trace .ft-title{font-weight:600;font-size:13px}
.flowtel-trace .ft-dim{color:#656d76}
.flowtel-trace .ft-ok{color:#1a7f37}.flowtel-trace .ft-error{color:#cf222e;font-weight:600}
.flowtel-trace details{border-top:1px solid #eaeef2}
.flowtel-trace summary{display:grid;grid-template-columns:minmax(220px,36%) 90px 1fr 70px 60px;gap:6px;
 align-items:center;cursor:pointer;padding:2px 0;list-style:none}
.flowtel-trace summary::-webkit-details-marker{display:none}
.flowtel-trace summary .ft-name::before{content:"▸ ";color:#8c959f}
.flowtel-trace details[open]>summary .ft-name::before{content:"▾ "}
.flowtel-trace .ft-name{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.flowtel-trace .ft-type{font-size:10px;border-radius:3px;padding:0 4px;background:#ddf4ff;color:#0550ae;
 justify-self:start;white-space:nowrap}
.flowtel-trace .ft-lane{position:relative;height:10px;background:#f6f8fa;border-radius:2px}
.flowtel-trace .ft-bar{position:absolute;top:0;height:10px;min-width:2px;border-radius:2px;background:#54aeff}
.flowtel-trace .ft-bar.ft-err{background:#ff8182}
.flowtel-trace .ft-num{text-align:right;font-variant-numeric:tabular-nums;color:#656d76}
.flowtel-trace .ft-body{padding:4px 0 6px 18px}
.flowtel-trace .ft-msg{margin:2px 0;padding:3px 6px;border-left:3px solid #d0d7de;background:#f6f8fa;
 white-space:pre-wrap;word-break:break-word}
.flowtel-trace .ft-role{font-weight:600;font-size:10px;text-transform:uppercase;color:#656d76;margin-right:6px}
.flowtel-trace .ft-msg.ft-assistant{border-left-color:#54aeff}.flowtel-trace .ft-msg.ft-user{border-left-color:#8c959f}
.flowtel-trace pre{margin:2px 0;padding:3px 6px;background:#f6f8fa;white-space:pre-wrap;word-break:break-word;
 font:11px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;max-height:240px;overflow:auto}
.flowtel-trace .ft-label{font-size:10px;text-transform:uppercase;color:#656d76;margin-top:4px}
"""


def trace_to_html(trace: Trace, *, ui_link: str | None = None) -> str:
    """The trace as a self-contained HTML fragment (a ``<div>`` with its own ``<style>``).

    Args:
        trace: The trace to render.
        ui_link: The trace's page in a running ``flowtel ui`` (MLflow UI); when given, the
            header links to it.
    """
    return _STYLE + _render_trace(trace, ui_link)


def traces_to_html(traces: Sequence[Trace], *, ui_links: Mapping[str, str] | None = None) -> str:
    """Several traces, one block each, sharing one stylesheet; ``ui_links`` by trace id."""
    links = ui_links or {}
    return _STYLE + "".join(_render_trace(t, links.get(t.info.trace_id)) for t in traces)


_STYLE = f"<style>{_CSS}</style>"


# -- trace -----------------------------------------------------------------------------------------
def _render_trace(trace: Trace, ui_link: str | None) -> str:
    info = trace.info
    spans = list(trace.data.spans)
    start = min((s.start_time_ns for s in spans), default=0)
    end = max((s.end_time_ns or s.start_time_ns for s in spans), default=start)
    total = max(end - start, 1)
    rows = [_render_span(span, depth, start, total) for span, depth in _walk(spans)[:MAX_SPANS]]
    if len(spans) > MAX_SPANS:
        rows.append(f'<div class="ft-dim">… {len(spans) - MAX_SPANS} more spans not shown</div>')
    return (
        f'<div class="flowtel-trace" data-trace-id="{_e(info.trace_id)}">'
        f"{_render_header(trace, ui_link)}{''.join(rows)}</div>"
    )


def _render_header(trace: Trace, ui_link: str | None) -> str:
    info = trace.info
    name = info.tags.get(TraceTagKey.TRACE_NAME) or (trace.data.spans[0].name if trace.data.spans else "trace")
    state = info.state.value
    parts = [
        f'<span class="ft-title">{_e(name)}</span>',
        f'<span class="{"ft-error" if state == "ERROR" else "ft-ok"}">{_e(state)}</span>',
        f'<span>{_e(_duration_ms(info.execution_duration))}</span>',
    ]
    usage = info.token_usage
    if usage:
        parts.append(f"<span>{_e(_tokens(usage))} tokens</span>")
    session = info.trace_metadata.get(TraceMetadataKey.TRACE_SESSION)
    if session:
        parts.append(f'<span class="ft-dim">session {_e(session)}</span>')
    parts.append(f'<span class="ft-dim">{_e(info.trace_id)}</span>')
    if ui_link:
        parts.append(f'<a href="{_e(ui_link)}" target="_blank" rel="noopener">open in flowtel ui</a>')
    return f'<div class="ft-head">{"".join(parts)}</div>'


def _walk(spans: list[Span]) -> list[tuple[Span, int]]:
    """Depth-first, children by start time; orphans (parent not in the trace) become roots."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else None, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: s.start_time_ns)
    order: list[tuple[Span, int]] = []
    stack = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        order.append((span, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(span.span_id, [])))
    return order


# -- span ------------------------------------------------------------------------------------------
def _render_span(span: Span, depth: int, start: int, total: int) -> str:
    error = span.status.status_code.value == "ERROR"
    end = span.end_time_ns if span.end_time_ns is not None else span.start_time_ns
    left = 100.0 * (span.start_time_ns - start) / total
    width = max(100.0 * (end - span.start_time_ns) / total, 0.0)
    duration = None if span.end_time_ns is None else (span.end_time_ns - span.start_time_ns) / 1e6
    usage = _safe(lambda: span.get_attribute(SpanAttributeKey.CHAT_USAGE))
    mark = "✗ " if error else ""
    summary = (
        f'<summary><span class="ft-name" style="padding-left:{depth * 14}px" title="{_e(span.name)}">'
        f'<span class="{"ft-error" if error else "ft-dim"}">{mark}</span>{_e(span.name)}</span>'
        f'<span class="ft-type">{_e(span.span_type or "UNKNOWN")}</span>'
        f'<span class="ft-lane"><span class="ft-bar{" ft-err" if error else ""}" '
        f'style="left:{left:.2f}%;width:{width:.2f}%"></span></span>'
        f'<span class="ft-num">{_e(_duration_ms(duration))}</span>'
        f'<span class="ft-num">{_e(_tokens(usage) if isinstance(usage, Mapping) else "")}</span></summary>'
    )
    return f'<details class="ft-span" data-span-id="{_e(span.span_id)}">{summary}{_render_body(span, error)}</details>'


def _render_body(span: Span, error: bool) -> str:
    parts: list[str] = []
    if error and span.status.description:
        parts.append(f'<div class="ft-error">{_e(_cut(span.status.description))}</div>')
    inputs = _safe(lambda: span.inputs)
    outputs = _safe(lambda: span.outputs)
    messages = list(_input_messages(inputs)) + list(_output_messages(outputs))
    if messages:
        parts.append('<div class="ft-label">messages</div>')
        parts.extend(_render_message(role, text) for role, text in messages)
    else:
        if inputs is not None:
            parts.append(f'<div class="ft-label">inputs</div><pre>{_e(_cut(_json(inputs)))}</pre>')
        if outputs is not None:
            parts.append(f'<div class="ft-label">outputs</div><pre>{_e(_cut(_json(outputs)))}</pre>')
    model = _safe(lambda: span.get_attribute(SpanAttributeKey.MODEL))
    if model:
        parts.append(f'<div class="ft-dim">model {_e(str(model))}</div>')
    return f'<div class="ft-body">{"".join(parts)}</div>' if parts else ""


def _render_message(role: str, text: str) -> str:
    css = "ft-assistant" if role == "assistant" else ("ft-user" if role == "user" else "")
    return f'<div class="ft-msg {css}"><span class="ft-role">{_e(role)}</span>{_e(_cut(text))}</div>'


# -- chat messages (OpenAI chat / Responses, Anthropic) ----------------------------------------------
def _input_messages(inputs: Any) -> Iterable[tuple[str, str]]:
    if not isinstance(inputs, Mapping):
        return
    system = inputs.get("system")  # Anthropic keeps the system prompt out of the messages
    if system:
        yield "system", _content_text(system)
    messages = inputs.get("messages")
    if messages is None and isinstance(inputs.get("input"), list):
        messages = inputs["input"]  # OpenAI Responses
    elif messages is None and isinstance(inputs.get("input"), str):
        yield "user", inputs["input"]
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                yield str(message.get("role") or message.get("type") or "message"), _message_text(message)


def _output_messages(outputs: Any) -> Iterable[tuple[str, str]]:
    if not isinstance(outputs, Mapping):
        return
    choices = outputs.get("choices")
    if isinstance(choices, list):  # OpenAI chat completion
        for choice in choices[:4]:
            message = choice.get("message") if isinstance(choice, Mapping) else None
            if isinstance(message, Mapping):
                yield str(message.get("role") or "assistant"), _message_text(message)
    elif outputs.get("type") == "message" and "content" in outputs:  # Anthropic message
        yield str(outputs.get("role") or "assistant"), _message_text(outputs)
    elif isinstance(outputs.get("output"), list):  # OpenAI Responses
        for item in outputs["output"]:
            if isinstance(item, Mapping):
                yield str(item.get("role") or item.get("type") or "output"), _message_text(item)


def _message_text(message: Mapping[str, Any]) -> str:
    text = _content_text(message.get("content"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping):
                text += f"\n→ {fn.get('name')}({fn.get('arguments', '')})"
    if not text and message.get("type") == "function_call":
        text = f"→ {message.get('name')}({message.get('arguments', '')})"
    return text.strip() or _json({k: v for k, v in message.items() if k != "role"})


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_part_text(p) for p in content)
    return _json(content)


def _part_text(part: Any) -> str:
    if not isinstance(part, Mapping):
        return str(part)
    kind = part.get("type")
    if isinstance(part.get("text"), str):
        return str(part["text"])
    if kind == "tool_use":
        return f"→ {part.get('name')}({_json(part.get('input'))})"
    if kind == "tool_result":
        return f"← {_content_text(part.get('content'))}"
    return f"[{kind}]" if kind else _json(part)


# -- formatting ------------------------------------------------------------------------------------
def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, indent=1, default=str)
    except (TypeError, ValueError):  # cycles or exotic keys: the repr still shows something
        return repr(value)


def _safe(read: Any) -> Any:
    """A span attribute, or ``None`` when it cannot be decoded (display must never raise)."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - a notebook display must not fail on one odd attribute
        return None


def _duration_ms(ms: float | None) -> str:
    if ms is None:
        return "–"
    if ms < 1:
        return "<1 ms" if ms == 0 else f"{ms:.2f} ms"
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _tokens(usage: Mapping[str, Any]) -> str:
    total = usage.get("total_tokens")
    if total is None:
        total = (usage.get("input_tokens") or 0) + (usage.get("output_tokens") or 0)
    return str(total)
