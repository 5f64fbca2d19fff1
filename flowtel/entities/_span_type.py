"""Span types and log levels (MLflow's ``SpanType`` values and the log-level rule for them)."""

from __future__ import annotations


class SpanType:
    """Predefined span types. Any other string is accepted as a custom type."""

    LLM = "LLM"
    CHAIN = "CHAIN"
    AGENT = "AGENT"
    TOOL = "TOOL"
    CHAT_MODEL = "CHAT_MODEL"
    RETRIEVER = "RETRIEVER"
    PARSER = "PARSER"
    EMBEDDING = "EMBEDDING"
    RERANKER = "RERANKER"
    MEMORY = "MEMORY"
    UNKNOWN = "UNKNOWN"
    WORKFLOW = "WORKFLOW"
    TASK = "TASK"
    GUARDRAIL = "GUARDRAIL"
    EVALUATOR = "EVALUATOR"


class SpanLogLevel:
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50


_INFO_LEVEL_TYPES = frozenset(
    {SpanType.LLM, SpanType.CHAT_MODEL, SpanType.TOOL, SpanType.RETRIEVER, SpanType.AGENT,
     SpanType.EMBEDDING}
)


def default_log_level(span_type: str | None) -> int:
    return SpanLogLevel.INFO if type(span_type) is str and span_type in _INFO_LEVEL_TYPES else SpanLogLevel.DEBUG

