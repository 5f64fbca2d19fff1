"""What flowtel records of the user's data: size limits, redaction, and the no-content switch.

This is the one place every recorded value passes through (span attributes, inputs and
outputs, event attributes, status messages), for spans made by decorators, context managers,
integrations and user code alike, so nothing downstream can bypass it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from flowtel import _config
from flowtel._redaction import redact_text
from flowtel.entities import _hooks
from flowtel.entities._constants import SpanAttributeKey
from flowtel.tracing._serialize import (
    REDACTED,
    CaptureLimits,
    dump_json,
    is_sensitive_key,
)

T = TypeVar("T")
_logger = logging.getLogger("flowtel")

NOT_RECORDED = "[content not recorded]"
_NOT_RECORDED_JSON = '"' + NOT_RECORDED + '"'
_REDACTED_JSON = dump_json(REDACTED)

# Attributes that describe structure, timing, model and usage, never the user's content: they
# stay when content capture is off.
CONTENT_FREE_KEYS = frozenset({
    SpanAttributeKey.REQUEST_ID, SpanAttributeKey.SPAN_TYPE, SpanAttributeKey.FUNCTION_NAME,
    SpanAttributeKey.LOG_LEVEL, SpanAttributeKey.EXPERIMENT_ID, SpanAttributeKey.START_TIME_NS,
    SpanAttributeKey.CHAT_USAGE, SpanAttributeKey.LLM_COST, SpanAttributeKey.MODEL,
    SpanAttributeKey.MODEL_PROVIDER, SpanAttributeKey.MESSAGE_FORMAT,
    "gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model", "gen_ai.provider.name",
    "gen_ai.system", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
})
_CONTENT_FREE_EVENT_KEYS = frozenset({"exception.type", "items_yielded"})
_CONTENT_KEYS = frozenset({SpanAttributeKey.INPUTS, SpanAttributeKey.OUTPUTS})  # where media become attachments


@dataclass(frozen=True)
class CapturePolicy:
    """How values are recorded.

    Args:
        limits: Size, depth and redaction limits for each recorded value.
        capture_content: False records no inputs, outputs, messages or event payloads at all
            (structure, timing, types, status, model names and token counts stay).
    """

    limits: CaptureLimits
    capture_content: bool = True
    content_limits: CaptureLimits = field(init=False, repr=False, compare=False)
    """The limits for span inputs and outputs: media become trace attachments there
    (``MLFLOW_TRACE_EXTRACT_ATTACHMENTS``, ``MLFLOW_TRACE_MAX_ATTACHMENT_SIZE``, read when the
    policy is made), unless ``capture_binary`` keeps them inline."""

    def __post_init__(self) -> None:
        content = self.limits
        if not content.capture_binary and _config.MLFLOW_TRACE_EXTRACT_ATTACHMENTS.get():
            content = replace(content, extract_attachments=True,
                              max_attachment_bytes=_config.MLFLOW_TRACE_MAX_ATTACHMENT_SIZE.get())
        object.__setattr__(self, "content_limits", content)


_lock = threading.RLock()
_policy: CapturePolicy | None = None


def policy() -> CapturePolicy:
    global _policy
    if _policy is None:
        with _lock:
            if _policy is None:
                _policy = policy_from_env()
    return _policy


def policy_from_env() -> CapturePolicy:
    """The policy of the ``FLOWTEL_*`` capture settings. Never raises: an invalid value is
    reported once, in one line, and its default applies (values are recorded, never lost)."""
    limits = CaptureLimits(
        max_attribute_bytes=_setting(_config.FLOWTEL_MAX_ATTRIBUTE_BYTES),
        max_depth=_setting(_config.FLOWTEL_MAX_DEPTH),
        max_items=_setting(_config.FLOWTEL_MAX_ITEMS),
        max_string_chars=_setting(_config.FLOWTEL_MAX_STRING_CHARS),
        redact=_setting(_config.FLOWTEL_REDACT),
        capture_binary=_setting(_config.FLOWTEL_CAPTURE_BINARY),
    )
    return CapturePolicy(limits=limits, capture_content=_setting(_config.FLOWTEL_CAPTURE_CONTENT))


_reported_settings: set[str] = set()


def _setting(var: _config.EnvVar[T]) -> T:
    try:
        return var.get()
    except _config.ConfigError as exc:
        if var.name not in _reported_settings:
            _reported_settings.add(var.name)
            _logger.error("flowtel: %s Using the default, %r, until it is fixed.", exc, var.default)
        return var.default


def after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()


def set_policy(new: CapturePolicy | None) -> CapturePolicy:
    """Install a policy (None: back to the environment's). Returns the previous one."""
    global _policy
    with _lock:
        previous = _policy if _policy is not None else policy_from_env()
        _policy = new
    return previous


def updated(**changes: Any) -> CapturePolicy:
    current = policy()
    limit_changes = {k: v for k, v in changes.items() if k in CaptureLimits.__dataclass_fields__}
    limits = replace(current.limits, **limit_changes) if limit_changes else current.limits
    content = changes.get("capture_content")
    return CapturePolicy(limits=limits, capture_content=current.capture_content if content is None else content)


# -- the encoder installed into the entities --------------------------------------------------------
_sensitive_keys: dict[str, bool] = {}


def _is_sensitive_attribute(key: str) -> bool:
    """Memoised: attribute keys repeat (inputs, outputs, ...), the key check is a regex."""
    known = _sensitive_keys.get(key)
    if known is None:
        if len(_sensitive_keys) > 10_000:
            _sensitive_keys.clear()
        known = _sensitive_keys[key] = key not in CONTENT_FREE_KEYS and is_sensitive_key(key)
    return known


def encode_attribute(key: str, value: Any) -> str:
    """JSON string recorded for span attribute ``key``. Never raises."""
    return encode_with_policy(key, value, _policy or policy())


def encode_with_policy(key: str, value: Any, current: CapturePolicy) -> str:
    """:func:`encode_attribute` under ``current``. Also what a deferred value is encoded with,
    later and off the caller's thread, under the policy in force when it was recorded."""
    if not current.capture_content and key not in CONTENT_FREE_KEYS:
        return _NOT_RECORDED_JSON
    if current.limits.redact and _is_sensitive_attribute(key):
        return _REDACTED_JSON
    return dump_json(value, current.content_limits if key in _CONTENT_KEYS else current.limits)


def event_attributes(name: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """Event attribute values as recorded (raw primitives, per OTel; others JSON-encoded)."""
    current = policy()
    clean: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        key = str(key)
        if not current.capture_content and key not in _CONTENT_FREE_EVENT_KEYS:
            clean[key] = NOT_RECORDED
        elif current.limits.redact and is_sensitive_key(key):
            clean[key] = REDACTED
        elif isinstance(value, (bool, int, float)):
            clean[key] = value
        elif isinstance(value, str):
            if current.limits.redact and key.startswith("exception."):
                value = redact_text(value)  # "api_key=sk-..." inside an exception message
            # Chunk values are JSON documents already limited by dump_json; cutting would break them.
            fits = len(value) <= current.limits.max_string_chars or key == "mlflow.chunk.value"
            clean[key] = value if fits else _cut(value, current)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
            clean[key] = list(value)
        else:
            clean[key] = dump_json(value, current.limits)
    return clean


def status_description(exc_type: str, message: str) -> str:
    current = policy()
    if not current.capture_content:
        return exc_type
    if current.limits.redact:
        message = redact_text(message)
    return f"{exc_type}: {message}"


def content_enabled() -> bool:
    return policy().capture_content


def _cut(value: str, current: CapturePolicy) -> str:
    limit = current.limits.max_string_chars
    return value[:limit] + f"...[truncated {len(value) - limit} of {len(value)} chars]"


def install() -> None:
    """Make this policy the encoder of every value the entities record."""
    _hooks.install(encode_attribute=encode_attribute, event_attributes=event_attributes,
                   status_description=status_description, encode_deferred=encode_with_policy)
