"""Reserved keys and limits of MLflow's trace data model (see mlflow/tracing/constant.py)."""

from __future__ import annotations

TRACE_ID_PREFIX = "tr-"
NO_OP_SPAN_TRACE_ID = "MLFLOW_NO_OP_SPAN_TRACE_ID"
TRACE_SCHEMA_VERSION = 3

MAX_CHARS_IN_TRACE_INFO_METADATA = 250
MAX_CHARS_IN_TRACE_INFO_TAGS_KEY = 250
MAX_CHARS_IN_TRACE_INFO_TAGS_VALUE = 4096
MAX_CHARS_IN_TRACE_IO_METADATA = 250
PREVIEW_MAX_CHARS = 1000


class SpanAttributeKey:
    """Span attribute keys MLflow reserves. Values are JSON-encoded strings."""

    REQUEST_ID = "mlflow.traceRequestId"
    INPUTS = "mlflow.spanInputs"
    OUTPUTS = "mlflow.spanOutputs"
    SPAN_TYPE = "mlflow.spanType"
    FUNCTION_NAME = "mlflow.spanFunctionName"
    LOG_LEVEL = "mlflow.spanLogLevel"
    DESCRIPTION = "mlflow.spanDescription"
    EXPERIMENT_ID = "mlflow.experimentId"
    START_TIME_NS = "mlflow.spanStartTimeNs"
    CHAT_TOOLS = "mlflow.chat.tools"
    CHAT_USAGE = "mlflow.chat.tokenUsage"
    LLM_COST = "mlflow.llm.cost"
    MODEL = "mlflow.llm.model"
    MODEL_PROVIDER = "mlflow.llm.provider"
    MESSAGE_FORMAT = "mlflow.message.format"
    INTERMEDIATE_OUTPUTS = "mlflow.trace.intermediate_outputs"
    LINKED_PROMPTS = "mlflow.linkedPrompts"


class TraceMetadataKey:
    """Trace metadata keys (immutable string values)."""

    SCHEMA_VERSION = "mlflow.trace_schema.version"
    INPUTS = "mlflow.traceInputs"
    OUTPUTS = "mlflow.traceOutputs"
    SOURCE_RUN = "mlflow.sourceRun"
    MODEL_ID = "mlflow.modelId"
    TRACE_USER = "mlflow.trace.user"
    TRACE_SESSION = "mlflow.trace.session"
    TOKEN_USAGE = "mlflow.trace.tokenUsage"
    COST = "mlflow.trace.cost"
    SIZE_STATS = "mlflow.trace.sizeStats"
    SIZE_BYTES = "mlflow.trace.sizeBytes"
    INFO_FINALIZED = "mlflow.trace.infoFinalized"
    USER = "mlflow.user"
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    GIT_COMMIT = "mlflow.source.git.commit"
    GIT_BRANCH = "mlflow.source.git.branch"
    GIT_REPO_URL = "mlflow.source.git.repoURL"


class TraceTagKey:
    """Trace tag keys (mutable string values)."""

    TRACE_NAME = "mlflow.traceName"
    ARTIFACT_LOCATION = "mlflow.artifactLocation"
    SPANS_LOCATION = "mlflow.trace.spansLocation"
    EVAL_REQUEST_ID = "mlflow.eval.requestId"
    LINKED_PROMPTS = "mlflow.linkedPrompts"


class TokenUsageKey:
    """Keys of the token usage dictionary."""

    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    TOTAL_TOKENS = "total_tokens"
    CACHE_READ_INPUT_TOKENS = "cache_read_input_tokens"
    CACHE_CREATION_INPUT_TOKENS = "cache_creation_input_tokens"
    REASONING_TOKENS = "reasoning_tokens"
