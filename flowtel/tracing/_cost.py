"""Cost of LLM spans and traces, computed in the client from model, provider and token usage.

Names and roll-up follow MLflow (``mlflow/tracing/utils``): a priced span carries
``mlflow.llm.cost`` = ``{"input_cost", "output_cost", "total_cost"}`` in USD; the trace carries the
sum in the ``mlflow.trace.cost`` metadata, skipping a span whose ancestor is already priced (no
double counting). Only LLM, CHAT_MODEL and EMBEDDING spans with token usage are priced, so an
AGENT span is never priced on top of its children; a cost the user set on a span is kept.

Prices come from the user's overrides (:func:`set_prices`, ``FLOWTEL_PRICES_FILE``) first, then
from pydantic's ``genai-prices`` catalogue (extra ``flowtel[cost]``), which ships its data in the
wheel: no network at run time. A span that cannot be priced gets ``flowtel.llm.costUnpriced``
(the reason) instead of a silent zero, and the trace counts them in ``flowtel.trace.unpricedSpans``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flowtel._config import FLOWTEL_PRICES_FILE, ConfigError
from flowtel.entities._constants import SpanAttributeKey, TokenUsageKey, TraceMetadataKey
from flowtel.entities._json import load_json
from flowtel.entities._span import plain_attributes

_logger = logging.getLogger(__name__)

UNPRICED_ATTRIBUTE = "flowtel.llm.costUnpriced"
UNPRICED_SPANS_METADATA = "flowtel.trace.unpricedSpans"
PRICED_SPAN_TYPES = frozenset({"LLM", "CHAT_MODEL", "EMBEDDING"})
_COST_KEYS = ("input_cost", "output_cost", "total_cost")
_PER = 1_000_000
_PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True)
class Price:
    """A user price in USD per million tokens. Cache prices default to the input price."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Mapping[str, int]) -> dict[str, float]:
        cache_read = usage.get(TokenUsageKey.CACHE_READ_INPUT_TOKENS, 0)
        cache_write = usage.get(TokenUsageKey.CACHE_CREATION_INPUT_TOKENS, 0)
        uncached = max(usage.get(TokenUsageKey.INPUT_TOKENS, 0) - cache_read - cache_write, 0)
        read_price = self.input if self.cache_read is None else self.cache_read
        write_price = self.input if self.cache_write is None else self.cache_write
        input_cost = (uncached * self.input + cache_read * read_price + cache_write * write_price) / _PER
        output_cost = usage.get(TokenUsageKey.OUTPUT_TOKENS, 0) * self.output / _PER
        return _cost_dict(input_cost, output_cost)


# -- user prices ---------------------------------------------------------------------------------
_lock = threading.Lock()
_user_prices: dict[str, Price] = {}
_file_prices: dict[str, Price] | None = None  # None: FLOWTEL_PRICES_FILE not read yet


def parse_prices(prices: Mapping[str, Any], *, source: str = "prices") -> dict[str, Price]:
    """Validate a ``{model: {"input": usd_per_mtok, "output": ..., "cache_read"?, "cache_write"?}}``
    mapping. Keys are a model name, or ``provider/model`` to match one provider only.

    Raises:
        ConfigError: a key or price that is not a finite, non-negative number.
    """
    if not isinstance(prices, Mapping):
        raise ConfigError(f"{source} must be a mapping of model name to prices, got {type(prices).__name__}.")
    return {_model_key(key, source): _price(key, value, source) for key, value in prices.items()}


def set_prices(prices: Mapping[str, Any] | None) -> dict[str, Price]:
    """Install the user's prices (validated); returns the previous ones. Thread-safe."""
    parsed = parse_prices(prices) if prices is not None else {}
    with _lock:
        previous = dict(_user_prices)
        _user_prices.clear()
        _user_prices.update(parsed)
    return previous


def restore_prices(previous: Mapping[str, Price]) -> None:
    with _lock:
        _user_prices.clear()
        _user_prices.update(previous)


def load_prices_file() -> dict[str, Price]:
    """Read and validate the file named by ``FLOWTEL_PRICES_FILE`` (empty when unset).

    Raises:
        ConfigError: the file cannot be read, is not JSON, or holds an invalid price.
    """
    global _file_prices
    path = FLOWTEL_PRICES_FILE.get()
    if not path:
        parsed: dict[str, Price] = {}
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle, parse_constant=_reject_constant)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{FLOWTEL_PRICES_FILE.name}={path!r} cannot be read as JSON: {exc}") from None
        parsed = parse_prices(data, source=f"{FLOWTEL_PRICES_FILE.name} ({path})")
    with _lock:
        _file_prices = parsed
    return parsed


def reset() -> None:
    global _file_prices
    with _lock:
        _user_prices.clear()
        _file_prices = None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a price")


def _model_key(key: Any, source: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(f"{source}: model names must be non-empty strings, got {key!r}.")
    return key.strip()


def _price(model: str, value: Any, source: str) -> Price:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{source}[{model!r}] must be a mapping like {{'input': 0.15, 'output': 0.6}} (USD per million tokens)."
        )
    unknown = set(value) - set(_PRICE_FIELDS)
    if unknown:
        raise ConfigError(f"{source}[{model!r}] has unknown keys {sorted(unknown)}; use {list(_PRICE_FIELDS)}.")
    for required in ("input", "output"):
        if required not in value:
            raise ConfigError(f"{source}[{model!r}] needs an {required!r} price (USD per million tokens).")
    numbers = {field: _number(model, field, value[field], source) for field in _PRICE_FIELDS if field in value}
    return Price(**numbers)


def _number(model: str, field: str, value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{source}[{model!r}][{field!r}] must be a number, got {value!r}.")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"{source}[{model!r}][{field!r}] must be a finite, non-negative number, got {value!r}.")
    return number


def _user_price(model: str, provider: str | None) -> Price | None:
    global _file_prices
    if _file_prices is None:
        try:
            load_prices_file()
        except ConfigError as exc:
            # Read lazily on the delivery worker: a bad file must not stop delivery. configure()
            # raises the same error up front; here it is logged once and the file ignored.
            _logger.warning("flowtel: %s; its prices are ignored.", exc)
            with _lock:
                _file_prices = {}
    for table in (_user_prices, _file_prices or {}):
        if provider and (price := table.get(f"{provider}/{model}")) is not None:
            return price
        if (price := table.get(model)) is not None:
            return price
    return None


# -- the catalogue -------------------------------------------------------------------------------
class _Unpriced(Exception):
    """The reason a span has no cost."""


def catalogue_cost(model: str, provider: str | None, usage: Mapping[str, int],
                   when: datetime | None = None) -> dict[str, float]:
    """Cost from genai-prices' bundled data; raises :class:`_Unpriced` with the reason."""
    try:
        import genai_prices
    except ImportError:
        raise _Unpriced(
            "no price catalogue: install flowtel[cost] (genai-prices) or give prices to configure(prices=...)"
        ) from None
    catalogue_usage = _catalogue_usage(genai_prices, usage)
    provider_id = _PROVIDER_IDS.get(provider or "", provider) or None
    try:
        result = genai_prices.calc_price(
            catalogue_usage, model, provider_id=provider_id, genai_request_timestamp=when,
        )
    except LookupError:
        if provider_id is None:
            raise _Unpriced(_unknown(model, provider)) from None
        try:  # a provider name the catalogue spells differently: look the model up alone
            result = genai_prices.calc_price(catalogue_usage, model, genai_request_timestamp=when)
        except LookupError:
            raise _Unpriced(_unknown(model, provider)) from None
    return _cost_dict(float(result.input_price), float(result.output_price), float(result.total_price))


# flowtel / MLflow provider names that genai-prices spells differently.
_PROVIDER_IDS = {"gemini": "google", "vertex_ai": "google", "bedrock": "aws", "mistralai": "mistral"}


def _unknown(model: str, provider: str | None) -> str:
    import genai_prices

    where = f" (provider {provider!r})" if provider else ""
    return f"model {model!r}{where} is not in genai-prices {genai_prices.__version__}; add it with configure(prices=...)"


def _catalogue_usage(genai_prices: Any, usage: Mapping[str, int]) -> Any:
    # MLflow's input_tokens include cache reads and writes, like genai-prices' input_tokens:
    # the catalogue prices the cached part at the cache rates and the rest at the input rate.
    fields = {
        "input_tokens": usage.get(TokenUsageKey.INPUT_TOKENS),
        "output_tokens": usage.get(TokenUsageKey.OUTPUT_TOKENS),
        "cache_read_tokens": usage.get(TokenUsageKey.CACHE_READ_INPUT_TOKENS),
        "cache_write_tokens": usage.get(TokenUsageKey.CACHE_CREATION_INPUT_TOKENS),
        "cache_write_1h_tokens": usage.get("cache_creation_input_tokens_above_1hr"),
    }
    return genai_prices.Usage(**{k: v for k, v in fields.items() if isinstance(v, int) and v >= 0})


# -- spans and traces ----------------------------------------------------------------------------
def price_spans(spans: Sequence[Any]) -> tuple[dict[str, float] | None, int]:
    """Set ``mlflow.llm.cost`` (or the unpriced reason) on each priceable ended SDK span; return
    the trace's rolled-up cost and the number of unpriced spans. Called on the delivery worker."""
    unpriced = 0
    costs: dict[int, dict[str, float]] = {}
    for span in spans:
        attrs = plain_attributes(span)
        raw_cost = attrs.get(SpanAttributeKey.LLM_COST)
        if raw_cost is not None:
            existing = load_json(raw_cost)
            if isinstance(existing, dict):
                costs[span.context.span_id] = existing
            continue
        if load_json(attrs.get(SpanAttributeKey.SPAN_TYPE)) not in PRICED_SPAN_TYPES:
            continue
        usage = load_json(attrs.get(SpanAttributeKey.CHAT_USAGE))
        if not isinstance(usage, dict) or not _has_tokens(usage):
            continue
        try:
            cost = span_cost(attrs, usage, span.start_time)
        except _Unpriced as reason:
            _set_raw(span, UNPRICED_ATTRIBUTE, json.dumps(str(reason)))
            unpriced += 1
            continue
        _set_raw(span, SpanAttributeKey.LLM_COST, json.dumps(cost))
        costs[span.context.span_id] = cost
    return roll_up(spans, costs), unpriced


def span_cost(attrs: Mapping[str, Any], usage: Mapping[str, int], start_ns: int | None) -> dict[str, float]:
    model = load_json(attrs.get(SpanAttributeKey.MODEL))
    provider = load_json(attrs.get(SpanAttributeKey.MODEL_PROVIDER))
    if not isinstance(model, str) or not model:
        raise _Unpriced("no model name on the span (mlflow.llm.model)")
    provider = provider if isinstance(provider, str) and provider else None
    price = _user_price(model, provider)
    if price is not None:
        return price.cost(usage)
    when = datetime.fromtimestamp(start_ns / 1e9, tz=timezone.utc) if start_ns else None
    return catalogue_cost(model, provider, usage, when)


def roll_up(spans: Sequence[Any], costs: Mapping[int, dict[str, float]]) -> dict[str, float] | None:
    """MLflow's trace cost: the sum over priced spans that have no priced ancestor."""
    if not costs:
        return None
    parent_of = {s.context.span_id: (s.parent.span_id if s.parent else None) for s in spans}
    totals = dict.fromkeys(_COST_KEYS, 0.0)
    for span_id, cost in costs.items():
        if _has_priced_ancestor(span_id, parent_of, costs):
            continue
        for key in _COST_KEYS:
            value = cost.get(key, 0.0)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                totals[key] += float(value)
    return totals


def add_trace_cost(metadata: dict[str, str], spans: Sequence[Any]) -> None:
    """Price the spans and write the trace's ``mlflow.trace.cost`` (never raises)."""
    try:
        cost, unpriced = price_spans(spans)
    except Exception as exc:  # noqa: BLE001 - pricing runs on the delivery worker: a bug must not drop the trace
        from flowtel._errors import report_internal_error

        report_internal_error("flowtel could not price a trace's LLM spans", exc)
        return
    if cost is not None:
        metadata[TraceMetadataKey.COST] = json.dumps(cost)
    if unpriced:
        metadata[UNPRICED_SPANS_METADATA] = str(unpriced)


def _has_priced_ancestor(span_id: int, parent_of: Mapping[int, int | None],
                         costs: Mapping[int, Any]) -> bool:
    parent = parent_of.get(span_id)
    for _ in range(len(parent_of)):
        if parent is None:
            return False
        if parent in costs:
            return True
        parent = parent_of.get(parent)
    return False


def _has_tokens(usage: Mapping[str, Any]) -> bool:
    return any(
        isinstance(usage.get(k), int) and usage[k] > 0
        for k in (TokenUsageKey.INPUT_TOKENS, TokenUsageKey.OUTPUT_TOKENS)
    )


def _cost_dict(input_cost: float, output_cost: float, total: float | None = None) -> dict[str, float]:
    return {
        "input_cost": input_cost,
        "output_cost": output_cost,
        "total_cost": input_cost + output_cost if total is None else total,
    }


def _set_raw(span: Any, key: str, raw: str) -> None:
    attrs = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(attrs, dict):
        attrs[key] = raw


def cost_of(value: str | None) -> dict[str, float] | None:
    """A ``mlflow.trace.cost`` / ``mlflow.llm.cost`` value decoded, or None."""
    decoded = load_json(value) if value else None
    return decoded if isinstance(decoded, dict) else None

