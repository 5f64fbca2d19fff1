"""Cost of LLM spans and traces (``mlflow.llm.cost``, ``mlflow.trace.cost``), priced in the client:
the real OpenAI / Anthropic SDKs against the scripted endpoint, the genai-prices catalogue, user
prices from ``configure(prices=...)`` and ``FLOWTEL_PRICES_FILE``."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from decimal import Decimal
from typing import Any

import pytest

import flowtel
from flowtel.tracing import ConfigError, configure
from flowtel.tracing._cost import UNPRICED_ATTRIBUTE, UNPRICED_SPANS_METADATA
from tests._servers.llm import ScriptedLLMServer

needs_catalogue = pytest.mark.skipif(
    importlib.util.find_spec("genai_prices") is None, reason="the genai-prices catalogue (flowtel[cost]) is not installed"
)

USER = [{"role": "user", "content": "What is the capital of France?"}]


def _rates(model: str, provider: str) -> Any:
    """The catalogue's prices (USD per million tokens) for the model."""
    import genai_prices

    return genai_prices.calc_price(genai_prices.Usage(input_tokens=1), model, provider_id=provider).model_price


def _mtok(value: Decimal | None) -> float:
    return float(value or 0) / 1_000_000


def _trace_cost(trace: flowtel.Trace) -> dict[str, float]:
    return json.loads(trace.info.trace_metadata["mlflow.trace.cost"])  # type: ignore[no-any-return]


def _assert_cost(actual: dict[str, float], input_cost: float, output_cost: float) -> None:
    assert math.isclose(actual["input_cost"], input_cost, rel_tol=1e-9), actual
    assert math.isclose(actual["output_cost"], output_cost, rel_tol=1e-9), actual
    assert math.isclose(actual["total_cost"], input_cost + output_cost, rel_tol=1e-9), actual


# -- the integrations, priced from the catalogue ---------------------------------------------------
@needs_catalogue
@pytest.mark.usefixtures("openai_autolog")
def test_openai_chat_is_priced_with_cached_tokens(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat(
        content="Paris", model="gpt-4o-mini-2024-07-18",
        usage={"prompt_tokens": 2000, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1200},
               "completion_tokens_details": {"reasoning_tokens": 100}},
    )
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    trace = flowtel_traces.last
    (span,) = trace.data.spans
    rates = _rates("gpt-4o-mini-2024-07-18", "openai")
    expected_input = 800 * _mtok(rates.input_mtok) + 1200 * _mtok(rates.cache_read_mtok)
    expected_output = 300 * _mtok(rates.output_mtok)  # reasoning tokens are output tokens
    _assert_cost(span.llm_cost, expected_input, expected_output)
    _assert_cost(_trace_cost(trace), expected_input, expected_output)
    assert UNPRICED_SPANS_METADATA not in trace.info.trace_metadata


@needs_catalogue
@pytest.mark.usefixtures("anthropic_autolog")
def test_anthropic_message_is_priced_with_cache_reads_and_writes(
    llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_anthropic_message(
        "Paris", model="claude-sonnet-4-5-20250929",
        usage={"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 3000,
               "cache_creation_input_tokens": 500},
    )
    anthropic_client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=USER)

    trace = flowtel_traces.last
    (span,) = trace.data.spans
    rates = _rates("claude-sonnet-4-5-20250929", "anthropic")
    expected_input = (100 * _mtok(rates.input_mtok.base if hasattr(rates.input_mtok, "base") else rates.input_mtok)
                      + 3000 * _mtok(getattr(rates.cache_read_mtok, "base", rates.cache_read_mtok))
                      + 500 * _mtok(getattr(rates.cache_write_mtok, "base", rates.cache_write_mtok)))
    expected_output = 50 * _mtok(getattr(rates.output_mtok, "base", rates.output_mtok))
    assert span.get_attribute("mlflow.chat.tokenUsage")["input_tokens"] == 3600
    _assert_cost(span.llm_cost, expected_input, expected_output)
    _assert_cost(_trace_cost(trace), expected_input, expected_output)


@needs_catalogue
@pytest.mark.usefixtures("openai_autolog")
def test_agent_with_three_llm_calls_costs_their_sum(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    for prompt, completion in ((100, 10), (200, 20), (400, 40)):
        llm_server.enqueue_openai_chat(
            content="ok", model="gpt-4o-2024-08-06",
            usage={"prompt_tokens": prompt, "completion_tokens": completion},
        )

    @flowtel.trace(span_type="AGENT")
    def agent() -> None:
        for _ in range(3):
            openai_client.chat.completions.create(model="gpt-4o", messages=USER)

    agent()
    trace = flowtel_traces.last
    llm_spans = [s for s in trace.data.spans if s.span_type == "CHAT_MODEL"]
    root = next(s for s in trace.data.spans if s.span_type == "AGENT")
    assert len(llm_spans) == 3
    assert root.llm_cost is None  # the agent is not priced on top of its children
    total = _trace_cost(trace)
    for key in ("input_cost", "output_cost", "total_cost"):
        assert math.isclose(total[key], sum(s.llm_cost[key] for s in llm_spans), rel_tol=1e-12)
    rates = _rates("gpt-4o-2024-08-06", "openai")
    _assert_cost(total, 700 * _mtok(rates.input_mtok), 70 * _mtok(rates.output_mtok))


@needs_catalogue
@pytest.mark.usefixtures("openai_autolog")
def test_unknown_model_is_marked_unpriced_not_zero(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat(content="hi", model="acme-llm-9000",
                                   usage={"prompt_tokens": 10, "completion_tokens": 5})
    openai_client.chat.completions.create(model="acme-llm-9000", messages=USER)

    trace = flowtel_traces.last
    (span,) = trace.data.spans
    assert span.llm_cost is None
    assert "acme-llm-9000" in span.get_attribute(UNPRICED_ATTRIBUTE)
    assert "mlflow.trace.cost" not in trace.info.trace_metadata
    assert trace.info.trace_metadata[UNPRICED_SPANS_METADATA] == "1"


@pytest.mark.usefixtures("openai_autolog")
def test_without_the_catalogue_spans_are_unpriced_with_the_reason(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any, monkeypatch: Any
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # as if flowtel[cost] were not installed
    llm_server.enqueue_openai_chat(content="hi", model="gpt-4o-mini", usage={"prompt_tokens": 10, "completion_tokens": 5})
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    trace = flowtel_traces.last
    assert trace.data.spans[0].llm_cost is None
    assert "install flowtel[cost]" in trace.data.spans[0].get_attribute(UNPRICED_ATTRIBUTE)
    assert trace.info.trace_metadata[UNPRICED_SPANS_METADATA] == "1"


# -- user prices --------------------------------------------------------------------------------
def _llm_call(model: str, usage: dict[str, int], provider: str = "acme") -> None:
    with flowtel.start_span("llm", span_type="LLM") as span:
        span.set_attributes({"mlflow.llm.model": model, "mlflow.llm.provider": provider,
                             "mlflow.chat.tokenUsage": usage})


def test_configured_prices_win_and_price_cache_tokens(flowtel_traces: Any) -> None:
    configure(prices={"acme-llm-9000": {"input": 2.0, "output": 8.0, "cache_read": 0.5},
                      "openai/gpt-4o-mini": {"input": 1.0, "output": 1.0}})
    _llm_call("acme-llm-9000", {"input_tokens": 1_000_000, "output_tokens": 500_000,
                                "cache_read_input_tokens": 400_000, "total_tokens": 1_500_000})
    _llm_call("gpt-4o-mini", {"input_tokens": 1_000_000, "output_tokens": 0}, provider="openai")

    first, second = flowtel_traces.traces
    _assert_cost(first.data.spans[0].llm_cost, 600_000 * 2.0 / 1e6 + 400_000 * 0.5 / 1e6, 4.0)
    _assert_cost(second.data.spans[0].llm_cost, 1.0, 0.0)


def test_prices_file_from_the_environment(flowtel_traces: Any, tmp_path: Any, monkeypatch: Any) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"acme-llm-9000": {"input": 1.0, "output": 3.0}}))
    monkeypatch.setenv("FLOWTEL_PRICES_FILE", str(path))
    configure()
    _llm_call("acme-llm-9000", {"input_tokens": 2_000_000, "output_tokens": 1_000_000})
    _assert_cost(flowtel_traces.last.data.spans[0].llm_cost, 2.0, 3.0)


def test_user_set_cost_is_kept_and_other_span_types_are_not_priced(flowtel_traces: Any) -> None:
    configure(prices={"acme": {"input": 1.0, "output": 1.0}})
    with flowtel.start_span("root", span_type="AGENT") as root:
        root.set_attributes({"mlflow.llm.model": "acme", "mlflow.chat.tokenUsage": {"input_tokens": 10}})
        with flowtel.start_span("llm", span_type="LLM") as span:
            span.set_attributes({"mlflow.llm.model": "acme", "mlflow.chat.tokenUsage": {"input_tokens": 10},
                                 "mlflow.llm.cost": {"input_cost": 7.0, "output_cost": 0.0, "total_cost": 7.0}})
    trace = flowtel_traces.last
    assert _trace_cost(trace) == {"input_cost": 7.0, "output_cost": 0.0, "total_cost": 7.0}


@pytest.mark.parametrize("prices, message", [
    ({"m": {"input": float("nan"), "output": 1}}, "finite, non-negative"),
    ({"m": {"input": float("inf"), "output": 1}}, "finite, non-negative"),
    ({"m": {"input": -1, "output": 1}}, "finite, non-negative"),
    ({"m": {"input": "1", "output": 1}}, "must be a number"),
    ({"m": {"input": 1}}, "needs an 'output' price"),
    ({"m": {"input": 1, "output": 1, "cached": 1}}, "unknown keys"),
    ({"": {"input": 1, "output": 1}}, "non-empty"),
    (["m"], "must be a mapping"),
])
def test_bad_prices_raise_one_clear_error(prices: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        configure(prices=prices)


def test_bad_prices_file_raises_at_configure(tmp_path: Any, monkeypatch: Any) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"m": {"input": NaN, "output": 1}}')
    monkeypatch.setenv("FLOWTEL_PRICES_FILE", str(path))
    with pytest.raises(ConfigError, match="FLOWTEL_PRICES_FILE"):
        configure()
    monkeypatch.setenv("FLOWTEL_PRICES_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="cannot be read"):
        configure()


# -- where the cost shows: OTLP backends and an MLflow server ------------------------------------
@pytest.mark.parametrize("conventions", ["mlflow", "genai", "both"])
def test_cost_travels_in_otlp_export(otlp_http_receiver: Any, conventions: str) -> None:
    from flowtel.exporters import OtlpExporter

    configure(prices={"acme-llm-9000": {"input": 1.0, "output": 2.0}})
    flowtel.tracing.set_destination(OtlpExporter(otlp_http_receiver.endpoint, conventions=conventions))
    with flowtel.start_span("agent", span_type="AGENT"):
        _llm_call("acme-llm-9000", {"input_tokens": 1_000_000, "output_tokens": 1_000_000})
    flowtel.flush()

    received = otlp_http_receiver.wait_for_spans(2)
    llm = next(s for s in received if s.parent_span_id is not None)
    root = next(s for s in received if s.parent_span_id is None)
    # The OTel GenAI conventions define no cost attribute: MLflow's travels in every convention.
    assert json.loads(llm.attributes["mlflow.llm.cost"]) == {"input_cost": 1.0, "output_cost": 2.0, "total_cost": 3.0}
    # The trace's cost, like its token usage, is derived from the spans by the backend.
    assert "mlflow.llm.cost" not in root.attributes


def test_mlflow_server_keeps_flowtel_cost(mlflow_server: Any) -> None:
    """A price the server's own table disagrees with (gpt-4o-mini at $1000/MTok) survives: the
    server prices a span only when it has no ``mlflow.llm.cost``, and keeps the trace metadata."""
    pytest.register_assert_rewrite("tests._mlflow_helpers")
    from tests._mlflow_helpers import flowtel_to, new_experiment

    client = mlflow_server.client()
    experiment = new_experiment(client, "cost")
    configure(prices={"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}})
    with flowtel_to(mlflow_server.url, experiment):
        with flowtel.start_span("agent", span_type="AGENT"):
            _llm_call("gpt-4o-mini", {"input_tokens": 1000, "output_tokens": 1000}, provider="openai")
            _llm_call("acme-llm-9000", {"input_tokens": 10, "output_tokens": 10})
        trace_id = flowtel.get_last_active_trace_id()

    stored = client.get_trace(trace_id)
    llm = next(s for s in stored.data.spans if s.get_attribute("mlflow.llm.model") == "gpt-4o-mini")
    assert llm.get_attribute("mlflow.llm.cost") == {"input_cost": 1.0, "output_cost": 1.0, "total_cost": 2.0}
    unpriced = next(s for s in stored.data.spans if s.get_attribute("mlflow.llm.model") == "acme-llm-9000")
    assert unpriced.get_attribute("mlflow.llm.cost") is None
    assert "acme-llm-9000" in unpriced.get_attribute(UNPRICED_ATTRIBUTE)
    assert json.loads(stored.info.trace_metadata["mlflow.trace.cost"]) == {
        "input_cost": 1.0, "output_cost": 1.0, "total_cost": 2.0}
    assert stored.info.trace_metadata[UNPRICED_SPANS_METADATA] == "1"
