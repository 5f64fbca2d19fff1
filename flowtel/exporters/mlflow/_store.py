"""The read side of an MLflow tracking server: traces, tags, assessments (a
:class:`~flowtel.delivery._store.TraceStore`) and experiments (the
:class:`~flowtel.delivery._store.ExperimentRegistry` behind ``set_experiment`` and every
experiment-by-name lookup, ``MlflowSpanExporter``'s included).
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowtel._exceptions import FlowtelException, InvalidParameterError, TraceNotFoundError
from flowtel.delivery._http import TransportError
from flowtel.delivery._store import TraceStore
from flowtel.entities import Assessment, Experiment, Trace, TraceData, TraceInfo, TraceLocation
from flowtel.entities._assessment import UPDATE_MASK_ORDER
from flowtel.entities._constants import TraceTagKey
from flowtel.exporters.mlflow._client import (
    ARTIFACTS,
    EXPERIMENTS,
    TRACE_DATA_FILE,
    V2_TRACES,
    V3_TRACES,
    MlflowRestClient,
    create_assessment_request_body,
    local_artifact_path,
    proxied_artifact_path,
    quote,
    quote_path,
    trace_info_from_proto_json,
    update_body_from_fields,
)
from flowtel.exporters.mlflow._encode import span_from_otlp_dict
from flowtel.tracing._experiments import UNRESOLVED_EXPERIMENT_PREFIX, resolve_experiment_name

__all__ = ["MlflowTraceStore", "read_artifact"]

_logger = logging.getLogger("flowtel")
BATCH_GET_SIZE = 10  # the server's BatchGetTraces limit
SEARCH_THREADS = 8
_SPANS_IN_STORE = ("TRACKING_STORE", "ARCHIVE_REPO")


class MlflowTraceStore(TraceStore):
    """Reads and modifies traces and experiments on an MLflow tracking server.

    Every method blocks on HTTP requests (each bounded by ``MLFLOW_HTTP_REQUEST_TIMEOUT``) and
    raises :class:`FlowtelException` (or a subclass) carrying the server's message. Thread-safe.
    """

    def __init__(self, client: MlflowRestClient) -> None:
        self.client = client
        self.registry_key = f"mlflow:{client.url}"

    # -- traces -----------------------------------------------------------------------------
    def get_trace(self, trace_id: str) -> Trace | None:
        info = self.get_trace_info(trace_id)
        if info is None:
            return None
        spans = self._load_spans(info)
        if spans is None:
            raise FlowtelException(
                f"Trace with ID {trace_id} cannot be loaded because it is missing span data.",
                "BAD_REQUEST", 400,
            )
        return Trace(info=info, data=TraceData(spans=spans))

    def get_trace_info(self, trace_id: str) -> TraceInfo | None:
        try:
            data = self.client.call("GET", f"{V3_TRACES}/{quote(trace_id)}")
        except FlowtelException as exc:
            if exc.http_status == 404 and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return trace_info_from_proto_json((data.get("trace") or {}).get("trace_info") or {})

    def search_traces(self, *, experiment_ids: list[str] | None, filter_string: str | None,
                      order_by: list[str] | None, max_results: int, page_token: str | None,
                      include_spans: bool) -> tuple[list[Trace], str | None]:
        experiments = [self._real_experiment_id(e) for e in experiment_ids or ["0"]]
        body: dict[str, Any] = {
            "locations": [TraceLocation.from_experiment_id(e).to_dict() for e in experiments],
            "max_results": max_results,
        }
        if filter_string:
            body["filter"] = filter_string
        if order_by:
            body["order_by"] = list(order_by)
        if page_token:
            body["page_token"] = page_token
        data = self.client.call("POST", f"{V3_TRACES}/search", json_body=body)
        infos = [trace_info_from_proto_json(d) for d in data.get("traces") or []]
        token = data.get("next_page_token") or None
        if not include_spans:
            return [Trace(info=i, data=TraceData(spans=[])) for i in infos], token
        return self._with_spans(infos), token

    def _real_experiment_id(self, experiment_id: str) -> str:
        """An experiment id; a placeholder for MLFLOW_EXPERIMENT_NAME is resolved (or raises)."""
        if experiment_id.startswith(UNRESOLVED_EXPERIMENT_PREFIX):
            return resolve_experiment_name(self, experiment_id[len(UNRESOLVED_EXPERIMENT_PREFIX):])
        return experiment_id

    def _with_spans(self, infos: list[TraceInfo]) -> list[Trace]:
        """Spans for each info (BatchGetTraces for DB-stored spans, traces.json otherwise);
        traces whose span data is missing are left out, as MLflow does."""
        in_store = [i.trace_id for i in infos if i.tags.get(TraceTagKey.SPANS_LOCATION) in _SPANS_IN_STORE]
        elsewhere = [i for i in infos if i.tags.get(TraceTagKey.SPANS_LOCATION) not in _SPANS_IN_STORE]
        chunks = [in_store[i:i + BATCH_GET_SIZE] for i in range(0, len(in_store), BATCH_GET_SIZE)]
        spans: dict[str, list[Any]] = {}
        with ThreadPoolExecutor(min(SEARCH_THREADS, max(1, len(chunks) + len(elsewhere)))) as pool:
            for batch in pool.map(self._batch_get_spans, chunks):
                spans.update(batch)
            for info, loaded in zip(elsewhere, pool.map(self._artifact_spans, elsewhere)):
                if loaded is not None:
                    spans[info.trace_id] = loaded
        missing = [i.trace_id for i in infos if i.trace_id not in spans]
        if missing:
            _logger.warning("Span data of %d trace(s) could not be loaded and they are left out: %s",
                            len(missing), ", ".join(missing[:10]))
        return [Trace(info=i, data=TraceData(spans=spans[i.trace_id])) for i in infos if i.trace_id in spans]

    def _batch_get_spans(self, trace_ids: list[str]) -> dict[str, list[Any]]:
        data = self.client.call("GET", f"{V3_TRACES}/batchGet", params={"trace_ids": trace_ids})
        result: dict[str, list[Any]] = {}
        for entry in data.get("traces") or []:
            trace_id = ((entry.get("trace_info") or {}).get("trace_id"))
            if trace_id:
                result[trace_id] = _spans_from_otlp(entry.get("spans") or [])
        return result

    def _load_spans(self, info: TraceInfo) -> list[Any] | None:
        if info.tags.get(TraceTagKey.SPANS_LOCATION) in _SPANS_IN_STORE:
            data = self.client.call(
                "GET", f"{V3_TRACES}/get", params={"trace_id": info.trace_id, "allow_partial": "false"}
            )
            return _spans_from_otlp((data.get("trace") or {}).get("spans") or [])
        return self._artifact_spans(info)

    def _artifact_spans(self, info: TraceInfo) -> list[Any] | None:
        location = info.tags.get(TraceTagKey.ARTIFACT_LOCATION)
        if not location:
            return None
        raw = read_artifact(self.client, location, TRACE_DATA_FILE)
        if raw is None:
            return None
        try:
            return TraceData.from_dict(json.loads(raw)).spans
        except (ValueError, TypeError) as exc:
            _logger.warning("Span data of trace %s is corrupted: %s", info.trace_id, exc)
            return None

    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        try:
            self.client.call("PATCH", f"{V2_TRACES}/{quote(trace_id)}/tags", json_body={"key": key, "value": value})
        except InvalidParameterError:
            self._raise_if_unknown(trace_id)  # the server reports a missing trace as a DB error
            raise

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        self._raise_if_unknown(trace_id)
        self.client.call("DELETE", f"{V2_TRACES}/{quote(trace_id)}/tags", json_body={"key": key})

    def _raise_if_unknown(self, trace_id: str) -> None:
        if self.get_trace_info(trace_id) is None:
            raise TraceNotFoundError(trace_id)

    def delete_traces(self, experiment_id: str, trace_ids: list[str] | None = None,
                      max_timestamp_millis: int | None = None) -> int:
        body: dict[str, Any] = {"experiment_id": experiment_id}
        if trace_ids is not None:
            body["request_ids"] = trace_ids
        if max_timestamp_millis is not None:
            body["max_timestamp_millis"] = max_timestamp_millis
        return int(self.client.call("POST", f"{V2_TRACES}/delete-traces", json_body=body).get("traces_deleted") or 0)

    # -- assessments ------------------------------------------------------------------------
    def create_assessment(self, assessment: Assessment) -> Assessment:
        trace_id = assessment.trace_id or ""
        data = self._assessment_call(
            trace_id, "POST", f"{V3_TRACES}/{quote(trace_id)}/assessments",
            create_assessment_request_body(assessment),
        )
        return Assessment.from_dictionary(data["assessment"])

    def get_assessment(self, trace_id: str, assessment_id: str) -> Assessment:
        data = self._assessment_call(trace_id, "GET", _assessment_path(trace_id, assessment_id), None)
        return Assessment.from_dictionary(data["assessment"])

    def update_assessment(self, trace_id: str, assessment_id: str, changes: dict[str, Any]) -> Assessment:
        paths = [path for path in UPDATE_MASK_ORDER if path in changes]
        body = update_body_from_fields(trace_id, assessment_id, dict(changes), paths)
        data = self._assessment_call(trace_id, "PATCH", _assessment_path(trace_id, assessment_id), body)
        return Assessment.from_dictionary(data["assessment"])

    def delete_assessment(self, trace_id: str, assessment_id: str) -> None:
        self._raise_if_unknown(trace_id)
        body = {"trace_id": trace_id, "assessment_id": assessment_id}
        self._assessment_call(trace_id, "DELETE", _assessment_path(trace_id, assessment_id), body)

    def _assessment_call(self, trace_id: str, method: str, path: str, body: Any) -> dict[str, Any]:
        try:
            return self.client.call(method, path, json_body=body)
        except FlowtelException as exc:
            if exc.http_status == 404 and exc.message.startswith("Trace with ID"):
                raise TraceNotFoundError(trace_id, exc.message) from None
            raise

    def link_traces_to_run(self, trace_ids: list[str], run_id: str) -> None:
        """Link traces to a run (MLflow's entity associations; ``search_traces(run_id=)`` finds them)."""
        self.client.call("POST", f"{V2_TRACES}/link-to-run", json_body={"trace_ids": list(trace_ids), "run_id": run_id})

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        body = {"experiment_id": experiment_id, "key": key, "value": value}
        self.client.call("POST", f"{EXPERIMENTS}/set-experiment-tag", json_body=body)

    # -- experiments (the registry behind set_experiment) -----------------------------------
    def get_experiment(self, experiment_id: str) -> Experiment | None:
        return self._experiment_or_none("get", {"experiment_id": experiment_id})

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self._experiment_or_none("get-by-name", {"experiment_name": name})

    def create_experiment(self, name: str) -> str:
        """Create the experiment; on a concurrent creation, the id of the existing one."""
        try:
            return str(self.client.call("POST", f"{EXPERIMENTS}/create", json_body={"name": name})["experiment_id"])
        except FlowtelException as exc:
            existing = self.get_experiment_by_name(name) if exc.error_code == "RESOURCE_ALREADY_EXISTS" else None
            if existing is None:
                raise
            return existing.experiment_id

    def _experiment_or_none(self, endpoint: str, params: dict[str, str]) -> Experiment | None:
        try:
            data = self.client.call("GET", f"{EXPERIMENTS}/{endpoint}", params=params)
        except FlowtelException as exc:
            if exc.http_status == 404 and exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return _experiment_from_json(data.get("experiment") or {})

    def close(self) -> None:
        self.client.close()


def read_artifact(client: MlflowRestClient, location: str, name: str) -> bytes | None:
    """Bytes of ``<location>/<name>``, or None when it does not exist.

    Raises:
        FlowtelException: unreachable server, refused download, or unsupported location.
    """
    proxied = proxied_artifact_path(location)
    if proxied is not None:
        try:
            response = client.send("GET", f"{ARTIFACTS}/{quote_path(proxied)}/{name}")
        except TransportError as exc:
            raise FlowtelException(exc.message, "TEMPORARILY_UNAVAILABLE") from None
        if response.status == 404:
            return None
        if not response.ok:
            raise client.error(response)
        return response.body
    local = local_artifact_path(location)
    if local is None:
        raise FlowtelException(f"Cannot read trace data stored at {location!r}.", "NOT_IMPLEMENTED")
    try:
        with open(os.path.join(local, name), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _experiment_from_json(d: dict[str, Any]) -> Experiment:
    tags = d.get("tags") or []
    return Experiment(
        experiment_id=str(d.get("experiment_id", "")),
        name=str(d.get("name", "")),
        artifact_location=d.get("artifact_location"),
        lifecycle_stage=str(d.get("lifecycle_stage") or "active"),
        tags={t["key"]: t.get("value", "") for t in tags if isinstance(t, dict) and "key" in t},
        creation_time=d.get("creation_time"),
        last_update_time=d.get("last_update_time"),
    )


def _spans_from_otlp(spans: list[dict[str, Any]]) -> list[Any]:
    try:
        return [span_from_otlp_dict(s) for s in spans]
    except ValueError as exc:
        raise FlowtelException(str(exc), "INTERNAL_ERROR") from None


def _assessment_path(trace_id: str, assessment_id: str) -> str:
    return f"{V3_TRACES}/{quote(trace_id)}/assessments/{quote(assessment_id)}"
