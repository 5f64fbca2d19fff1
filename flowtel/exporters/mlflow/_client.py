"""The MLflow tracking server's REST API: the client (on flowtel's one HTTP stack,
:mod:`flowtel.delivery._http`), its error mapping, and the request bodies flowtel sends
(StartTraceV3, CreateAssessment, UpdateAssessment) in MLflow's protobuf JSON.

Shared by the exporter (``_exporter.py``), the read side (``_store.py``) and the OTel span
exporter (``_span_exporter.py``).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from flowtel._exceptions import FlowtelException, InvalidParameterError
from flowtel.delivery._http import HttpClient, HttpResponse, TransportError
from flowtel.entities import Assessment, TraceInfo
from flowtel.entities._assessment import (
    Expectation,
    ExpectationValue,
    Feedback,
    FeedbackValue,
    assessment_update_fields,
)

__all__ = [
    "MlflowRestClient",
    "create_assessment_request_body",
    "error_details",
    "is_mlflow_error",
    "start_trace_body",
    "trace_info_from_proto_json",
    "update_assessment_request_body",
]

OTLP_PATH = "/v1/traces"
V3_TRACES = "/api/3.0/mlflow/traces"
V2_TRACES = "/api/2.0/mlflow/traces"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
EXPERIMENTS = "/api/2.0/mlflow/experiments"
JSON_HEADERS = {"Content-Type": "application/json"}
TRACE_DATA_FILE = "traces.json"
# FieldMask JSON paths (camelCase) of UpdateAssessment.
_UPDATE_MASK_JSON_PATHS = {
    "assessment_name": "assessmentName",
    "expectation": "expectation",
    "feedback": "feedback",
    "rationale": "rationale",
    "metadata": "metadata",
}


# -- client --------------------------------------------------------------------------------------
class MlflowRestClient:
    """MLflow REST calls. ``call`` turns every failure into a :class:`FlowtelException` carrying
    the server's message; ``send`` returns the raw response (raising only TransportError)."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http
        self.url = http.display_url

    def send(self, method: str, path: str, *, body: bytes | None = None,
             headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
             timeout: float | None = None) -> HttpResponse:
        """One raw request. Blocks up to ``timeout`` (default: the configured timeout).

        Raises:
            TransportError: no response (connection refused, timeout, TLS).
        """
        return self.http.request(method, path, body=body, headers=headers, params=params, timeout=timeout)

    def call(self, method: str, path: str, *, json_body: Any = None,
             params: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """A JSON request; the decoded JSON answer. Blocks up to ``timeout`` (default: the
        configured timeout).

        Raises:
            FlowtelException: unreachable server, or an error answer (message from the server).
        """
        body = json.dumps(json_body).encode("utf-8") if json_body is not None else None
        try:
            response = self.send(method, path, body=body, headers=JSON_HEADERS, params=params, timeout=timeout)
        except TransportError as exc:
            raise FlowtelException(exc.message, "TEMPORARILY_UNAVAILABLE") from None
        if not response.ok:
            raise self.error(response)
        try:
            data = response.json()
        except ValueError:
            raise FlowtelException(
                f"The MLflow server at {self.url} answered {method} {path} with a body that is "
                "not JSON; is the tracking URI pointing at an MLflow server?",
                "INTERNAL_ERROR", response.status,
            ) from None
        return data if isinstance(data, dict) else {}

    def error(self, response: HttpResponse) -> FlowtelException:
        """The exception for an error response, with the server's own message."""
        code, message = error_details(response)
        if response.status == 400 and code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            return InvalidParameterError(message)
        if response.status >= 500:
            message = f"MLflow server error (HTTP {response.status}) at {self.url}: {message}"
        elif response.status in (401, 403):
            message = (f"The MLflow server at {self.url} refused the credentials (HTTP "
                       f"{response.status}): {message}. Check MLFLOW_TRACKING_TOKEN or "
                       "MLFLOW_TRACKING_USERNAME/PASSWORD.")
        return FlowtelException(message, code, response.status)

    def close(self) -> None:
        self.http.close()


def error_details(response: HttpResponse) -> tuple[str, str]:
    """``(error_code, message)`` of an error response (MLflow JSON, FastAPI JSON, or text)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and ("error_code" in data or "message" in data):
        return str(data.get("error_code") or _code_for(response.status)), str(data.get("message") or "")
    if isinstance(data, dict) and "detail" in data:
        return _code_for(response.status), str(data["detail"])
    text = response.body[:500].decode("utf-8", errors="replace").strip()
    return _code_for(response.status), text or f"HTTP {response.status}"


def _code_for(status: int) -> str:
    return {
        400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
        404: "ENDPOINT_NOT_FOUND", 429: "REQUEST_LIMIT_EXCEEDED", 501: "NOT_IMPLEMENTED",
    }.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")


def is_mlflow_error(response: HttpResponse) -> bool:
    """Whether the body is MLflow's JSON error (not a router's 404 for an unknown path)."""
    try:
        data = response.json()
    except ValueError:
        return False
    return isinstance(data, dict) and "error_code" in data


# -- request bodies ------------------------------------------------------------------------------
def start_trace_body(info: TraceInfo) -> dict[str, Any]:
    """The StartTraceV3 request body: the TraceInfoV3 proto as JSON (snake_case)."""
    d = info.to_dict()
    millis = d.pop("execution_duration_ms", None)
    if millis is not None:
        d["execution_duration"] = _duration(int(millis))
    for assessment in d.get("assessments", ()):
        assessment["trace_id"] = info.trace_id
    return {"trace": {"trace_info": d}}


def trace_info_from_proto_json(d: dict[str, Any]) -> TraceInfo:
    """A TraceInfo from the server's TraceInfoV3 JSON (Duration ``"0.448s"``)."""
    d = dict(d)
    duration = d.pop("execution_duration", None)
    if duration is not None and "execution_duration_ms" not in d:
        d["execution_duration_ms"] = _duration_millis(str(duration))
    return TraceInfo.from_dict(d)


def _duration(millis: int) -> str:
    seconds, rest = divmod(millis, 1000)
    return f"{seconds}.{rest:03d}s" if rest else f"{seconds}s"


def _duration_millis(text: str) -> int:
    text = text.strip().removesuffix("s")
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    millis = int(whole or 0) * 1000 + int((fraction + "000")[:3])
    return -millis if negative else millis

def create_assessment_request_body(assessment: Assessment) -> dict[str, Any]:
    """JSON body of ``POST /api/3.0/mlflow/traces/{trace_id}/assessments`` (CreateAssessment):
    ``{"assessment": assessment.to_dictionary()}``."""
    return {"assessment": assessment.to_dictionary()}


def update_assessment_request_body(
    trace_id: str,
    assessment_id: str,
    name: str | None = None,
    expectation: ExpectationValue | Expectation | None = None,
    feedback: FeedbackValue | Feedback | None = None,
    rationale: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """JSON body of ``PATCH /api/3.0/mlflow/traces/{trace_id}/assessments/{assessment_id}``.

    Mirrors MLflow's ``RestStore.update_assessment``: only the given fields are sent, and
    ``update_mask`` lists them as a FieldMask JSON string (comma-joined camelCase paths, e.g.
    ``"assessmentName,feedback"``). To mirror ``mlflow.update_assessment(trace_id, id, a)`` pass
    ``name=a.name, expectation=a.expectation, feedback=a.feedback, rationale=a.rationale,
    metadata=a.metadata``.

    Returns:
        ``{"assessment": {...}, "update_mask": "..."}`` (no ``update_mask`` when nothing changes).

    Raises:
        ValueError: Both ``expectation`` and ``feedback`` were given.
        TypeError: A non-string id, name or rationale.
    """
    _require_str(assessment_id, "assessment_id")
    fields, paths = assessment_update_fields(
        name=name, expectation=expectation, feedback=feedback, rationale=rationale, metadata=metadata,
    )
    return update_body_from_fields(_require_str(trace_id, "trace_id"), assessment_id, fields, paths)


def update_body_from_fields(trace_id: str, assessment_id: str, fields: dict[str, Any],
                            paths: list[str]) -> dict[str, Any]:
    """The UpdateAssessment body for changed ``fields`` (proto JSON) and mask ``paths``."""
    assessment: dict[str, Any] = {"assessment_id": assessment_id}
    if "assessment_name" in fields:
        assessment["assessment_name"] = fields["assessment_name"]
    assessment["trace_id"] = trace_id  # proto field order: id, name, trace id, values...
    assessment.update((k, v) for k, v in fields.items() if k != "assessment_name")
    body: dict[str, Any] = {"assessment": assessment}
    if paths:
        body["update_mask"] = ",".join(_UPDATE_MASK_JSON_PATHS[path] for path in paths)
    return body


def _require_str(value: Any, field_name: str) -> str:
    """Protobuf string fields only accept ``str``; fail clearly instead of emitting junk."""
    if not isinstance(value, str):
        raise TypeError(f"`{field_name}` must be a string, got {type(value).__name__}: {value!r}")
    return str.__str__(value)


# -- paths ---------------------------------------------------------------------------------------
def quote(part: str) -> str:
    """One URL path segment."""
    return urllib.parse.quote(str(part), safe="")


def quote_path(path: str) -> str:
    return urllib.parse.quote(path, safe="/")


def proxied_artifact_path(location: str) -> str | None:
    """The artifact path behind the server's proxy for an ``mlflow-artifacts:`` location."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme != "mlflow-artifacts":
        return None
    return parts.path.strip("/")


def local_artifact_path(location: str) -> str | None:
    """The file system path of a ``file:`` or absolute-path location."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return urllib.parse.unquote(parts.path)
    if parts.scheme == "" and location.startswith("/"):
        return location
    return None
