"""Notebook display: a Trace renders itself as self-contained HTML (escaped, no script, no
network), a real Jupyter kernel shows a cell's traces under it, and Chromium renders the spans."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

import flowtel
from flowtel import SpanType
from flowtel.entities import Trace
from flowtel.entities._html import MAX_VALUE_CHARS, trace_to_html
from tests._ui_helpers import ROOT, child_env, dump_dom

HOSTILE = '<script>alert("x")</script>'


def _agent_trace(flowtel_traces: object) -> Trace:
    @flowtel.trace(span_type=SpanType.CHAT_MODEL)
    def chat(messages: list[dict[str, str]], model: str = "gpt-test") -> dict[str, object]:
        span = flowtel.get_current_active_span()
        span.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17})
        return {"choices": [{"message": {"role": "assistant", "content": "Paris, <b>of course</b>"}}]}

    @flowtel.trace(span_type=SpanType.TOOL, name=HOSTILE)
    def hostile_tool(x: str) -> str:
        return x

    @flowtel.trace(span_type=SpanType.AGENT)
    def agent(question: str) -> str:
        hostile_tool(HOSTILE)
        reply = chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}])
        with flowtel.start_span("failing") as span:
            span.set_status("ERROR")
        return str(reply)

    agent("Capital of France?")
    [trace] = flowtel_traces.traces  # type: ignore[attr-defined]
    return trace


def test_the_html_shows_spans_types_durations_tokens_and_messages(flowtel_traces: object) -> None:
    trace = _agent_trace(flowtel_traces)
    markup = trace._repr_html_()
    for span in trace.data.spans:
        assert f'data-span-id="{span.span_id}"' in markup
    assert ">agent<" in markup and ">chat<" in markup and ">failing<" in markup
    for kind in ("AGENT", "CHAT_MODEL", "TOOL"):
        assert f'class="ft-type">{kind}<' in markup
    assert ">17<" in markup  # the LLM span's tokens
    assert "Be brief." in markup and "Capital of France?" in markup
    assert "Paris, &lt;b&gt;of course&lt;/b&gt;" in markup  # the assistant message, escaped
    assert "ft-error" in markup and "✗" in markup
    assert trace.info.trace_id in markup
    assert re.search(r"\d+ ms|<1 ms|\d\.\d\d ms", markup)


def test_the_html_is_self_contained_and_escapes_hostile_span_data(flowtel_traces: object) -> None:
    markup = _agent_trace(flowtel_traces)._repr_html_()
    assert "<script" not in markup.lower()
    assert html.escape(HOSTILE) in markup
    assert not re.search(r"(src|href)\s*=|@import|url\(|https?://", markup)  # nothing fetched


def test_long_values_are_cut(flowtel_traces: object) -> None:
    @flowtel.trace
    def big(text: str) -> int:
        return len(text)

    big("y" * (MAX_VALUE_CHARS * 3))
    [trace] = flowtel_traces.traces  # type: ignore[attr-defined]
    markup = trace_to_html(trace)
    assert "y" * MAX_VALUE_CHARS not in markup and "…" in markup


def test_chromium_renders_the_spans_of_the_notebook_html(flowtel_traces: object, tmp_path: Path) -> None:
    trace = _agent_trace(flowtel_traces)
    page = tmp_path / "trace.html"
    page.write_text(f"<!doctype html><meta charset=utf-8><body>{trace._repr_html_()}</body>", encoding="utf-8")
    dom = dump_dom(page.as_uri(), tmp_path / "profile", budget_ms=2000)
    for span in trace.data.spans:
        assert f'data-span-id="{span.span_id}"' in dom
    assert "flowtel-trace" in dom and "CHAT_MODEL" in dom
    assert "<script>alert" not in dom  # the hostile name stayed text


def test_a_jupyter_kernel_shows_the_traces_a_cell_produced(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat", reason="needs the test extra (nbformat, nbclient, ipykernel)")
    nbclient = pytest.importorskip("nbclient", reason="needs the test extra (nbformat, nbclient, ipykernel)")
    pytest.importorskip("ipykernel", reason="needs the test extra (nbformat, nbclient, ipykernel)")
    import os

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import flowtel, flowtel.tracing\nflowtel.tracing.enable_notebook_display()"),
        nbformat.v4.new_code_cell(
            "@flowtel.trace(span_type='CHAIN')\n"
            "def notebook_pipeline(x):\n"
            "    return notebook_step(x) + 1\n"
            "@flowtel.trace(span_type='TOOL')\n"
            "def notebook_step(x):\n"
            "    return x * 2\n"
            "notebook_pipeline(20)"
        ),
        nbformat.v4.new_code_cell("1 + 1"),
        nbformat.v4.new_code_cell("flowtel.flush()\nflowtel.get_trace(flowtel.get_last_active_trace_id())"),
    ]
    saved = dict(os.environ)
    os.environ.update(child_env(tmp_path / "traces.db"))
    try:
        client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    traced, plain, shown = notebook.cells[1], notebook.cells[2], notebook.cells[3]
    htmls = [o["data"]["text/html"] for o in traced.outputs if "text/html" in o.get("data", {})]
    assert len(htmls) == 1, traced.outputs
    assert "flowtel-trace" in htmls[0] and "notebook_pipeline" in htmls[0] and "notebook_step" in htmls[0]
    assert any(o.get("data", {}).get("text/plain") == "41" for o in traced.outputs)
    assert not any("text/html" in o.get("data", {}) for o in plain.outputs)  # no trace, no display
    assert any("notebook_pipeline" in o.get("data", {}).get("text/html", "") for o in shown.outputs)


def test_traces_link_to_a_running_flowtel_ui(flowtel_traces: object, tmp_path: Path) -> None:
    import json
    import os

    from flowtel.entities._html import traces_to_html
    from flowtel.tracing._notebook import ui_links

    trace = _agent_trace(flowtel_traces)
    assert ui_links([trace], tmp_path) == {}  # no UI running
    state = {"url": "http://127.0.0.1:5051", "pid": os.getpid(), "experiments": {"0": "7"}}
    (tmp_path / "server.json").write_text(json.dumps(state))
    links = ui_links([trace], tmp_path)
    assert links == {trace.info.trace_id: f"http://127.0.0.1:5051/#/experiments/7/traces?traceId={trace.info.trace_id}"}
    assert f'href="{links[trace.info.trace_id]}"' in traces_to_html([trace], ui_links=links)
