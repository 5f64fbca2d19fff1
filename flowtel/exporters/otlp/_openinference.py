"""OpenInference attributes: what Arize Phoenix, Arize and Langfuse read next to the GenAI semconv.

Used with the ``genai`` and ``both`` conventions. Content-free attributes always
(``openinference.span.kind``, ``llm.model_name``, ``llm.provider``, ``llm.token_count.*``); with
content, a span's inputs and outputs that no ``gen_ai.*`` attribute carries go out as
``input.value`` / ``output.value`` (each piece of content exactly once per span). On the root
span, the trace's user-facing tags and metadata go out as ``metadata`` (one JSON object) and
``tag.tags`` (``key=value`` strings), the forms these backends index and filter on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowtel.entities._constants import SpanAttributeKey

__all__ = [
    "SPAN_KINDS", "add_generic_io", "add_model_and_usage", "documents", "span_kind", "trace_attributes",
]

SPAN_KIND = "openinference.span.kind"
INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"
METADATA = "metadata"
TAGS = "tag.tags"
_JSON_MIME = "application/json"
_TEXT_MIME = "text/plain"

#: MLflow span type -> OpenInference span kind. Steps with no kind of their own are CHAINs
#: (OpenInference's generic step), never UNKNOWN, which backends show as an unrecognised span.
SPAN_KINDS = {
    "LLM": "LLM", "CHAT_MODEL": "LLM", "EMBEDDING": "EMBEDDING", "TOOL": "TOOL", "AGENT": "AGENT",
    "RETRIEVER": "RETRIEVER", "RERANKER": "RERANKER", "GUARDRAIL": "GUARDRAIL", "EVALUATOR": "EVALUATOR",
    "CHAIN": "CHAIN", "PARSER": "CHAIN", "MEMORY": "CHAIN", "WORKFLOW": "CHAIN", "TASK": "CHAIN",
    "UNKNOWN": "CHAIN",
}
_DEFAULT_KIND = "CHAIN"
# gen_ai.* (already computed for the span) -> the OpenInference attribute with the same meaning.
_CONTENT_FREE = (
    ("gen_ai.request.model", "llm.model_name"),
    ("gen_ai.usage.input_tokens", "llm.token_count.prompt"),
    ("gen_ai.usage.output_tokens", "llm.token_count.completion"),
    ("gen_ai.usage.cache_read.input_tokens", "llm.token_count.prompt_details.cache_read"),
)
# gen_ai.provider.name -> llm.provider (OpenInference's provider values).
_PROVIDERS = {
    "openai": "openai", "anthropic": "anthropic", "cohere": "cohere", "mistral_ai": "mistralai",
    "azure.ai.openai": "azure", "azure.ai.inference": "azure", "aws.bedrock": "aws",
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google", "x_ai": "xai",
    "deepseek": "deepseek", "groq": "groq", "perplexity": "perplexity",
}


def span_kind(span_type: Any) -> str:
    """The OpenInference kind of an MLflow span type (custom types are CHAIN steps)."""
    return SPAN_KINDS.get(span_type, _DEFAULT_KIND) if isinstance(span_type, str) else _DEFAULT_KIND


def add_model_and_usage(attributes: dict[str, Any]) -> None:
    """OpenInference's model, provider and token counts, from the span's ``gen_ai.*`` ones."""
    for genai, oi in _CONTENT_FREE:
        value = attributes.get(genai)
        if value is not None:
            attributes[oi] = value
    prompt, completion = attributes.get("llm.token_count.prompt"), attributes.get("llm.token_count.completion")
    if isinstance(prompt, int) and isinstance(completion, int):
        attributes["llm.token_count.total"] = prompt + completion
    provider = attributes.get("gen_ai.provider.name")
    if isinstance(provider, str):
        attributes["llm.provider"] = _PROVIDERS.get(provider, provider)


def add_generic_io(attributes: dict[str, Any], replaces: set[str], raw: Mapping[str, Any]) -> None:
    """Inputs/outputs no ``gen_ai.*`` attribute carries: ``input.value`` / ``output.value``
    (they replace ``mlflow.spanInputs`` / ``mlflow.spanOutputs``: sent once)."""
    for key, value_key, mime_key in (
        (SpanAttributeKey.INPUTS, INPUT_VALUE, INPUT_MIME_TYPE),
        (SpanAttributeKey.OUTPUTS, OUTPUT_VALUE, OUTPUT_MIME_TYPE),
    ):
        if key in replaces or key not in raw:
            continue
        text, mime = _value_and_mime(raw[key])
        attributes[value_key] = text
        attributes[mime_key] = mime
        replaces.add(key)


def trace_attributes(
    tags: Mapping[str, str], metadata: Mapping[str, str], client_request_id: str | None = None
) -> dict[str, Any]:
    """The trace's own tags and metadata (not MLflow's bookkeeping ``mlflow.*`` keys) as the
    ``metadata`` object (metadata, tags and the client request id) and ``tag.tags`` list."""
    user_tags = {k: v for k, v in tags.items() if not k.startswith("mlflow.")}
    merged: dict[str, Any] = {k: v for k, v in metadata.items() if v and not k.startswith("mlflow.")}
    merged.update(user_tags)
    if client_request_id:
        merged["client_request_id"] = client_request_id
    attributes: dict[str, Any] = {}
    if merged:
        attributes[METADATA] = json.dumps(merged, ensure_ascii=False, sort_keys=True)
    if user_tags:
        attributes[TAGS] = [f"{k}={v}" for k, v in sorted(user_tags.items())]
    return attributes


def documents(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Retrieved documents (``id``, ``content``, optional ``score`` / ``metadata``) as
    OpenInference's ``retrieval.documents.<i>.document.*`` attributes."""
    attributes: dict[str, Any] = {}
    for index, item in enumerate(items):
        prefix = f"retrieval.documents.{index}.document."
        attributes[prefix + "id"] = item["id"]
        attributes[prefix + "content"] = item["content"]
        if "score" in item:
            attributes[prefix + "score"] = item["score"]
        if item.get("metadata"):
            attributes[prefix + "metadata"] = json.dumps(item["metadata"], ensure_ascii=False, default=str)
    return attributes


def _value_and_mime(stored: Any) -> tuple[str, str]:
    """A stored MLflow value (JSON text): a JSON string as its plain text, the rest as JSON."""
    if not isinstance(stored, str):
        return json.dumps(stored, ensure_ascii=False, default=str), _JSON_MIME
    if stored.startswith('"'):
        try:
            text = json.loads(stored)
        except ValueError:
            return stored, _TEXT_MIME
        if isinstance(text, str):
            return text, _TEXT_MIME
    return stored, _JSON_MIME
