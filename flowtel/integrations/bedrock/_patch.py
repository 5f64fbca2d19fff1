"""Patching ``boto3``'s Bedrock runtime: one wrapper on botocore's ``BaseClient._make_api_call``.

Every generated client method (``client.converse(...)``) ends in ``_make_api_call(operation, params)``,
so one wrapper there traces the clients created before ``autolog()`` as well as after; every other
service and operation goes straight through. Nothing here imports ``botocore`` until :func:`install`
runs, after the user imported ``boto3``.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping
from typing import Any

from flowtel._errors import report_internal_error
from flowtel.entities import LiveSpan, SpanType
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations._shared import _call
from flowtel.integrations._shared._call import LLMCall, SdkState
from flowtel.integrations._shared._patch import Patcher, import_attr
from flowtel.integrations._shared._stream import StreamAccumulator, TracedStream
from flowtel.integrations._shared._values import scrub_mapping
from flowtel.integrations.bedrock._parse import (
    body_usage,
    converse_tools,
    converse_usage,
    header_usage,
    json_body,
)
from flowtel.integrations.bedrock._stream import ConverseAccumulator, EventIterator, InvokeAccumulator

__all__ = ["install", "uninstall"]

_NAME = "bedrock"
_SERVICE = "bedrock-runtime"
_PROVIDER = "bedrock"
#: operation -> (method name, the result key holding its stream, or None)
_OPERATIONS: dict[str, tuple[str, str | None]] = {
    "Converse": ("converse", None),
    "ConverseStream": ("converse_stream", "stream"),
    "InvokeModel": ("invoke_model", None),
    "InvokeModelWithResponseStream": ("invoke_model_with_response_stream", "body"),
}

_patcher = Patcher(_NAME)
_state = SdkState()


def install() -> None:
    owner = import_attr("botocore.client", "BaseClient")
    if owner is None:
        raise ImportError("botocore.client.BaseClient not found")
    _patcher.wrap(owner, "_make_api_call", _wrapper)
    _state.active = True


def uninstall() -> None:
    _state.active = False
    _patcher.restore()


def _wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    operation = args[0] if args else kwargs.get("operation_name")
    if operation not in _OPERATIONS or not _state.should_trace() or not _is_bedrock(instance):
        return wrapped(*args, **kwargs)
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    try:
        call = _start(operation, params if isinstance(params, Mapping) else {})
    except Exception as exc:  # noqa: BLE001 - the user's call goes on untraced
        report_internal_error("bedrock span start", exc)
        return wrapped(*args, **kwargs)
    if not call.recording:
        return wrapped(*args, **kwargs)
    call.enter()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.exit()
        call.fail(exc)
        raise
    call.exit()
    try:
        return _finish(operation, call, result)
    except Exception as exc:  # noqa: BLE001 - the user gets their result whatever happened here
        report_internal_error("bedrock result", exc)
        call.finish(None)
        return result


def _is_bedrock(client: Any) -> bool:
    try:
        return bool(client.meta.service_model.service_name == _SERVICE)
    except AttributeError:
        return False


# -- spans ----------------------------------------------------------------------------------------
def _start(operation: str, params: Mapping[str, Any]) -> LLMCall:
    method, stream_key = _OPERATIONS[operation]
    inputs: dict[str, Any] = scrub_mapping(dict(params))
    attributes: dict[str, Any] = {}
    if operation.startswith("Converse"):
        span_type = SpanType.CHAT_MODEL
        attributes[SpanAttributeKey.MESSAGE_FORMAT] = _NAME
        tools = converse_tools(params.get("toolConfig"))
        if tools:
            attributes[SpanAttributeKey.CHAT_TOOLS] = tools
        accumulator: Callable[[], StreamAccumulator] = ConverseAccumulator
        finalize: Callable[[LiveSpan, Any], None] = _finalize_converse
    else:
        body = json_body(params.get("body"))
        inputs["body"] = body
        span_type = _invoke_span_type(params.get("modelId"), body)
        accumulator = InvokeAccumulator
        finalize = functools.partial(_finalize_invoke, {})
    if isinstance(params.get("modelId"), str):
        attributes[SpanAttributeKey.MODEL] = params["modelId"]
    attributes[SpanAttributeKey.MODEL_PROVIDER] = _PROVIDER
    span = _call.start_llm_span(f"BedrockRuntime.{method}", span_type, inputs, attributes)
    return LLMCall(span, finalize, accumulator)


def _invoke_span_type(model_id: Any, body: Any) -> str:
    if isinstance(model_id, str) and "embed" in model_id.lower():
        return SpanType.EMBEDDING
    if isinstance(body, Mapping) and isinstance(body.get("messages"), list):
        return SpanType.CHAT_MODEL
    return SpanType.LLM


def _finish(operation: str, call: LLMCall, result: Any) -> Any:
    _, stream_key = _OPERATIONS[operation]
    if not isinstance(result, dict):
        call.finish(None)
        return result
    if stream_key is not None and result.get(stream_key) is not None:
        result[stream_key] = TracedStream(EventIterator(result[stream_key]), call.recorder())
        return result
    if operation == "InvokeModel":
        return _finish_invoke(call, result)
    call.finish({k: v for k, v in result.items() if k != "ResponseMetadata"})
    return result


def _finish_invoke(call: LLMCall, result: dict[str, Any]) -> dict[str, Any]:
    """Read the response body for the span and hand the caller an unread copy of it."""
    raw = result.get("body")
    read = getattr(raw, "read", None)
    if read is None:
        call.finish(None)
        return result
    data = read()
    from botocore.response import StreamingBody

    result["body"] = StreamingBody(io.BytesIO(data), len(data))
    finalize = call.finalize
    if isinstance(finalize, functools.partial):
        finalize.args[0]["usage"] = header_usage(result)
    call.finish(json_body(data))
    return result


def _finalize_converse(span: LiveSpan, response: Any) -> None:
    usage = converse_usage(response.get("usage")) if isinstance(response, Mapping) else None
    _call.set_chat_attributes(span, usage=usage)


def _finalize_invoke(reported: dict[str, Any], span: LiveSpan, body: Any) -> None:
    _call.set_chat_attributes(span, usage=reported.get("usage") or body_usage(body))
