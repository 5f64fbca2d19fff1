"""MLflow span attributes -> OpenTelemetry GenAI semantic conventions (``gen_ai.*``).

Used by OTLP export when ``conventions`` is ``"genai"`` or ``"both"``. :func:`genai_view` reads
the MLflow attributes of one span and says which ``gen_ai.*`` (and OpenInference) attributes
describe it, which MLflow attributes they replace, and the semconv span name and kind.

Content (messages, tool arguments and results, tool definitions, retrieval query and documents,
other inputs/outputs as OpenInference's ``input.value`` / ``output.value``) is produced only when
asked (``content=True``, the ``genai`` conventions): with ``both``, the content already travels in
``mlflow.spanInputs`` / ``mlflow.spanOutputs`` / ``mlflow.chat.tools`` and is not sent twice.

Messages follow the semconv "parts" model (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``), serialised as JSON strings because OTel Python's span attributes
cannot hold structured values yet. This module knows no provider: each provider's reading of its
messages, finish reasons and tool definitions comes from the provider registry
(``flowtel.tracing._providers``), with MLflow's standard chat shape as the last resort. A span whose
content is not recognised sends it as ``input.value`` / ``output.value``, so nothing is lost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowtel.entities._constants import SpanAttributeKey
from flowtel.exporters.otlp import _openinference
from flowtel.tracing import _providers
from flowtel.tracing._providers import GenAiConventions, MessageConverter

__all__ = ["GenAiView", "genai_view"]

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_DEFINITIONS = "gen_ai.tool.definitions"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT = "gen_ai.tool.call.result"
AGENT_NAME = "gen_ai.agent.name"
RETRIEVAL_QUERY = "gen_ai.retrieval.query.text"
RETRIEVAL_DOCUMENTS = "gen_ai.retrieval.documents"
CONVERSATION_ID = "gen_ai.conversation.id"

_USAGE_KEYS = {
    "input_tokens": USAGE_INPUT_TOKENS,
    "output_tokens": USAGE_OUTPUT_TOKENS,
    "cache_read_input_tokens": "gen_ai.usage.cache_read.input_tokens",
    "cache_creation_input_tokens": "gen_ai.usage.cache_write.input_tokens",
    "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
}
_REQUEST_PARAMS = {
    "temperature": ("gen_ai.request.temperature", float),
    "top_p": ("gen_ai.request.top_p", float),
    "top_k": ("gen_ai.request.top_k", int),
    "max_tokens": ("gen_ai.request.max_tokens", int),
    "max_completion_tokens": ("gen_ai.request.max_tokens", int),
    "max_output_tokens": ("gen_ai.request.max_tokens", int),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", float),
    "presence_penalty": ("gen_ai.request.presence_penalty", float),
    "seed": ("gen_ai.request.seed", int),
}
_GENAI_REQUEST_KWARGS = (
    "model", "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "max_output_tokens",
    "frequency_penalty", "presence_penalty", "seed", "stop", "stop_sequences", "n", "stream", "tools",
    "messages", "input", "system", "instructions",
)
_INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "embeddings", "generate_content"})
_READS_INPUTS = frozenset({"LLM", "CHAT_MODEL", "EMBEDDING", "RETRIEVER"})
_TYPE_OPERATIONS = {
    "CHAT_MODEL": "chat",
    "EMBEDDING": "embeddings",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
    "RETRIEVER": "retrieval",
}


@dataclass
class GenAiView:
    """The GenAI description of one span.

    Attributes:
        attributes: ``gen_ai.*`` attributes (OTel attribute values).
        replaces: MLflow attribute keys whose information the ``gen_ai.*`` ones now carry.
        name: The semconv span name (``chat gpt-4o``), or None to keep the span's own.
        client: True for inference operations (semconv span kind CLIENT).
    """

    attributes: dict[str, Any] = field(default_factory=dict)
    replaces: set[str] = field(default_factory=set)
    name: str | None = None
    client: bool = False


def genai_view(span_name: str, raw: Mapping[str, Any], *, content: bool) -> GenAiView:
    """Describe a span (its MLflow JSON-string attributes ``raw``) in GenAI terms.

    Every span gets its OpenInference kind; spans with a GenAI operation get ``gen_ai.*`` too.
    With ``content``, the span's inputs and outputs go out once: in the semconv attribute that
    holds them (messages, tool call arguments/result, retrieval query/documents) where there is
    one, else as OpenInference's generic ``input.value`` / ``output.value``.
    """
    view = GenAiView()
    span_type = _decoded(raw, SpanAttributeKey.SPAN_TYPE)
    known = isinstance(span_type, str) and span_type in _openinference.SPAN_KINDS
    view.attributes[_openinference.SPAN_KIND] = _openinference.span_kind(span_type)
    if known:
        view.replaces.add(SpanAttributeKey.SPAN_TYPE)
    # Only model calls and retrievers read their decoded inputs (the largest value of most spans).
    inputs = _decoded(raw, SpanAttributeKey.INPUTS) if span_type in _READS_INPUTS else None
    operation = _operation(span_type, inputs)
    if operation is not None:
        view.attributes[OPERATION_NAME] = operation
        if operation in _INFERENCE_OPERATIONS:
            _describe_inference(view, raw, inputs, content=content)
            _openinference.add_model_and_usage(view.attributes)
            view.client = True
        elif operation == "execute_tool":
            _describe_tool(view, span_name, raw, inputs, content=content)
        elif operation == "invoke_agent":
            view.attributes[AGENT_NAME] = span_name
            view.name = f"invoke_agent {span_name}"
        elif operation == "retrieval" and content:
            _describe_retrieval(view, raw, inputs)
    if content:
        _openinference.add_generic_io(view.attributes, view.replaces, raw)
    return view


def _operation(span_type: Any, inputs: Any) -> str | None:
    if span_type == "LLM":
        return "chat" if isinstance(inputs, dict) and isinstance(inputs.get("messages"), list) else "text_completion"
    return _TYPE_OPERATIONS.get(span_type) if isinstance(span_type, str) else None


# -- inference ---------------------------------------------------------------------------------
def _describe_inference(view: GenAiView, raw: Mapping[str, Any], inputs: Any, *, content: bool) -> None:
    attrs = view.attributes
    outputs = _decoded(raw, SpanAttributeKey.OUTPUTS)
    llm_model = _decoded(raw, SpanAttributeKey.MODEL)
    request_model = _first_str(_get(inputs, "model"), _decoded(raw, "model"), llm_model)
    response_model = _first_str(_get(outputs, "model"), llm_model)
    if request_model:
        attrs[REQUEST_MODEL] = request_model
    if response_model:
        attrs[RESPONSE_MODEL] = response_model
    if request_model or response_model:
        view.replaces.add(SpanAttributeKey.MODEL)
    provider = _decoded(raw, SpanAttributeKey.MODEL_PROVIDER)
    if isinstance(provider, str) and provider:
        attrs[PROVIDER_NAME] = _providers.semconv_provider_name(provider)
        view.replaces.add(SpanAttributeKey.MODEL_PROVIDER)
    usage = _decoded(raw, SpanAttributeKey.CHAT_USAGE)
    if isinstance(usage, dict):
        for key, attr in _USAGE_KEYS.items():
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                attrs[attr] = value
        view.replaces.add(SpanAttributeKey.CHAT_USAGE)
    if isinstance(inputs, dict):
        _request_params(attrs, inputs)
    if isinstance(outputs, dict):
        _response_attrs(attrs, outputs)
    operation = attrs[OPERATION_NAME]
    view.name = f"{operation} {request_model}" if request_model else operation
    if content and operation != "embeddings":  # texts and vectors are no messages: input/output.value
        _inference_content(view, raw, inputs, outputs)


def _request_params(attrs: dict[str, Any], inputs: dict[str, Any]) -> None:
    for key, (attr, kind) in _REQUEST_PARAMS.items():
        value = inputs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attrs[attr] = kind(value)
    stop = inputs.get("stop", inputs.get("stop_sequences"))
    if isinstance(stop, str):
        attrs["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop and all(isinstance(s, str) for s in stop):
        attrs["gen_ai.request.stop_sequences"] = list(stop)
    count = inputs.get("n")
    if isinstance(count, int) and not isinstance(count, bool) and count != 1:
        attrs["gen_ai.request.choice.count"] = count
    if isinstance(inputs.get("stream"), bool):
        attrs["gen_ai.request.stream"] = inputs["stream"]


def _response_attrs(attrs: dict[str, Any], outputs: dict[str, Any]) -> None:
    if isinstance(outputs.get("id"), str) and outputs["id"]:
        attrs[RESPONSE_ID] = outputs["id"]
    reasons = _finish_reasons(outputs)
    if reasons:
        attrs[RESPONSE_FINISH_REASONS] = reasons


def _finish_reasons(outputs: dict[str, Any]) -> list[str]:
    for conventions in _conventions_in_order():
        reasons = conventions.finish_reasons(outputs)
        if reasons:
            return reasons
    return []


def _inference_content(view: GenAiView, raw: Mapping[str, Any], inputs: Any, outputs: Any) -> None:
    converter = _converter(_decoded(raw, SpanAttributeKey.MESSAGE_FORMAT), inputs, outputs)
    attrs = view.attributes
    if isinstance(outputs, str) and outputs:
        # A chat model returning plain text (the quickstart's shape): one assistant message.
        attrs[OUTPUT_MESSAGES] = _json([
            {"role": "assistant", "parts": [{"type": "text", "content": outputs}], "finish_reason": "stop"}
        ])
        view.replaces.add(SpanAttributeKey.OUTPUTS)
    if converter is None:
        return
    system, messages = converter.inputs(inputs) if isinstance(inputs, dict) else (None, None)
    if messages is not None:
        attrs[INPUT_MESSAGES] = _json(messages)
        if system:
            attrs[SYSTEM_INSTRUCTIONS] = _json(system)
        view.replaces.add(SpanAttributeKey.INPUTS)
        view.replaces.update(_mirrored_kwargs(raw, inputs))
    produced = converter.outputs(outputs) if isinstance(outputs, dict) else None
    if produced is not None:
        attrs[OUTPUT_MESSAGES] = _json(produced)
        view.replaces.add(SpanAttributeKey.OUTPUTS)
    if {SpanAttributeKey.INPUTS, SpanAttributeKey.OUTPUTS} <= view.replaces:
        # The format hint describes mlflow.spanInputs/Outputs: needed while one of them stays.
        view.replaces.add(SpanAttributeKey.MESSAGE_FORMAT)
    tools = _decoded(raw, SpanAttributeKey.CHAT_TOOLS)
    if not isinstance(tools, list) or not tools:
        tools = _get(inputs, "tools")
    if isinstance(tools, list) and tools:
        attrs[TOOL_DEFINITIONS] = _json([_tool_definition(t) for t in tools])
        view.replaces.add(SpanAttributeKey.CHAT_TOOLS)


def _mirrored_kwargs(raw: Mapping[str, Any], inputs: dict[str, Any]) -> list[str]:
    """Request keyword arguments that MLflow-style autologging also records as attributes of
    their own (``model``, ``temperature``, ``tools``...): ``gen_ai.*`` carries them now."""
    return [
        key for key in _GENAI_REQUEST_KWARGS
        if key in raw and key in inputs and _decoded(raw, key) == inputs[key]
    ]


def _tool_definition(tool: Any) -> Any:
    """A tool definition in the shape of the first provider that recognises it, else as it is."""
    if not isinstance(tool, dict):
        return tool
    for conventions in _conventions_in_order():
        definition = conventions.tool_definition(tool)
        if definition is not None:
            return definition
    return tool


# -- tools ---------------------------------------------------------------------------------------
def _describe_tool(view: GenAiView, span_name: str, raw: Mapping[str, Any], inputs: Any, *, content: bool) -> None:
    function_name = None if span_name else _decoded(raw, SpanAttributeKey.FUNCTION_NAME)
    name = span_name or (function_name if isinstance(function_name, str) else "")
    view.attributes[TOOL_NAME] = name
    view.name = f"execute_tool {name}" if name else "execute_tool"
    if not content:
        return
    if SpanAttributeKey.INPUTS in raw:
        view.attributes[TOOL_CALL_ARGUMENTS] = _json_text(raw[SpanAttributeKey.INPUTS])
        view.replaces.add(SpanAttributeKey.INPUTS)
    if SpanAttributeKey.OUTPUTS in raw:
        view.attributes[TOOL_CALL_RESULT] = _json_text(raw[SpanAttributeKey.OUTPUTS])
        view.replaces.add(SpanAttributeKey.OUTPUTS)


# -- retrieval -----------------------------------------------------------------------------------
_QUERY_KEYS = ("query", "question", "input", "text", "q")


def _describe_retrieval(view: GenAiView, raw: Mapping[str, Any], inputs: Any) -> None:
    """The query (when it is text) and the documents (MLflow's ``Document`` shape)."""
    query = _query_text(inputs)
    if query is not None:
        view.attributes[RETRIEVAL_QUERY] = query
        view.replaces.add(SpanAttributeKey.INPUTS)
    documents = _documents(_decoded(raw, SpanAttributeKey.OUTPUTS))
    if documents is None:
        return
    if all("score" in d for d in documents):
        view.attributes[RETRIEVAL_DOCUMENTS] = _json(documents)
    else:  # the semconv requires a score: OpenInference's document list has none to invent
        view.attributes.update(_openinference.documents(documents))
    view.replaces.add(SpanAttributeKey.OUTPUTS)


def _query_text(inputs: Any) -> str | None:
    if isinstance(inputs, str):
        return inputs
    if not isinstance(inputs, dict):
        return None
    for key in _QUERY_KEYS:
        if isinstance(inputs.get(key), str):
            return str(inputs[key])
    values = list(inputs.values())
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def _documents(outputs: Any) -> list[dict[str, Any]] | None:
    """Semconv retrieval documents (``id``, ``score``) with their ``content`` and ``metadata``,
    which Phoenix and the semconv's own examples carry too; None unless every item is a document."""
    if not isinstance(outputs, list) or not all(isinstance(d, dict) and "page_content" in d for d in outputs):
        return None
    documents = []
    for index, document in enumerate(outputs):
        metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
        score = next((metadata[k] for k in ("score", "relevance_score") if _is_number(metadata.get(k))), None)
        item: dict[str, Any] = {"id": str(document.get("id") or metadata.get("doc_uri") or index)}
        if score is not None:
            item["score"] = float(score)
        item["content"] = document["page_content"]
        if metadata:
            item["metadata"] = metadata
        documents.append(item)
    return documents


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- message converters: the provider registry ----------------------------------------------------
def _converter(message_format: Any, inputs: Any, outputs: Any) -> MessageConverter | None:
    """The span's own provider (by ``mlflow.message.format``) reads it; otherwise the first provider
    that recognises the shape, then MLflow's standard chat shape; None keeps MLflow's attributes."""
    own = _providers.conventions_for(message_format)
    if own is not None:
        converter = own.converter(inputs, outputs, True)
        if converter is not None:
            return converter
    for conventions in _conventions_in_order():
        converter = conventions.converter(inputs, outputs, False)
        if converter is not None:
            return converter
    return None


def _conventions_in_order() -> list[GenAiConventions]:
    found = _providers.all_conventions()
    generic = _providers.generic_conventions()
    return [*found, generic] if generic is not None else found


# -- helpers -------------------------------------------------------------------------------------
def _decoded(raw: Mapping[str, Any], key: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, str):
        return value
    if len(value) > 1 and value[0] == '"' and value[-1] == '"' and "\\" not in value:
        return value[1:-1]  # a JSON string without escapes (span types, names): no json.loads
    try:
        return json.loads(value)
    except ValueError:
        return value


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _first_str(*values: Any) -> str | None:
    return next((v for v in values if isinstance(v, str) and v), None)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _json_text(raw: Any) -> str:
    """A stored MLflow attribute value is already JSON text: sent as it is."""
    return raw if isinstance(raw, str) else _json(raw)
