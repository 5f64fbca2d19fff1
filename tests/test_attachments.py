"""Media in span inputs/outputs become trace attachments, as in MLflow: ``mlflow-attachment://``
references in the span, the bytes uploaded to the trace's artifact location (where the real
MLflow client and UI read them) or kept in the embedded store."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import pytest

import flowtel
import flowtel.tracing
from flowtel import _attachments
from flowtel.delivery import _spool
from flowtel.testing import TraceCapture
from flowtel.tracing import _capture
from tests._mlflow_helpers import flowtel_to, new_experiment
from tests._servers.mlflow_server import MlflowServer
from tests._servers.mlflow_versions import run_mlflow_client

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
WAV = b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(2000)


def _data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@flowtel.trace
def describe(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": [{"b64_json": base64.b64encode(PNG).decode()}]}


def _image_message() -> list[dict[str, Any]]:
    return [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": _data_uri(PNG)}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"}},
    ]}]


def _refs(value: Any) -> list[str]:
    text = json.dumps(value)
    return [part.split('"')[0] for part in text.split('"mlflow-attachment://')[1:]]


def test_media_become_attachment_references_with_the_bytes_kept(flowtel_traces: TraceCapture) -> None:
    describe(_image_message())
    trace = flowtel_traces.last
    span = trace.data.spans[0]
    content = span.inputs["messages"][0]["content"]
    image_ref = _attachments.parse_ref(content[1]["image_url"]["url"])
    audio_ref = _attachments.parse_ref(content[2]["input_audio"]["data"])
    output_ref = _attachments.parse_ref(span.outputs["data"][0]["b64_json"])
    assert image_ref is not None and audio_ref is not None and output_ref is not None
    assert (image_ref["content_type"], image_ref["trace_id"], image_ref["size"]) == (
        "image/png", trace.info.trace_id, len(PNG))
    assert audio_ref["trace_id"] == trace.info.trace_id and audio_ref["size"] == len(WAV)
    kept = _attachments.attachments_of(trace)
    assert kept[image_ref["attachment_id"]].data == PNG
    assert kept[output_ref["attachment_id"]].data == PNG
    assert kept[audio_ref["attachment_id"]].data == WAV
    assert content[0] == {"type": "text", "text": "What is in this image?"}  # the rest unchanged


def test_no_content_mode_and_redaction_win(flowtel_traces: TraceCapture) -> None:
    with flowtel.tracing.configure(capture_content=False):
        describe(_image_message())
    assert flowtel_traces.last.data.spans[0].inputs == "[content not recorded]"
    assert _attachments.attachments_of(flowtel_traces.last) == {}
    with flowtel.start_span("s") as span:
        span.set_inputs({"api_key": _data_uri(PNG)})
    assert flowtel_traces.last.data.spans[0].inputs == {"api_key": "[REDACTED]"}
    assert _attachments.attachments_of(flowtel_traces.last) == {}


def test_size_cap_and_switches(flowtel_traces: TraceCapture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACE_MAX_ATTACHMENT_SIZE", "100")
    _capture.set_policy(None)  # read the environment again
    with flowtel.start_span("s") as span:
        span.set_inputs({"image": _data_uri(PNG)})
    assert flowtel_traces.last.data.spans[0].inputs == {
        "image": f"[Attachment too large: {len(PNG)} bytes exceeds 100 bytes limit]"}
    monkeypatch.setenv("MLFLOW_TRACE_EXTRACT_ATTACHMENTS", "false")
    _capture.set_policy(None)  # read the environment again
    with flowtel.start_span("s") as span:
        span.set_inputs({"image": _data_uri(PNG)})
    assert flowtel_traces.last.data.spans[0].inputs == {"image": f"[binary image/png {len(PNG)} bytes]"}
    monkeypatch.delenv("MLFLOW_TRACE_EXTRACT_ATTACHMENTS")
    monkeypatch.delenv("MLFLOW_TRACE_MAX_ATTACHMENT_SIZE")
    _capture.set_policy(None)  # read the environment again
    with flowtel.tracing.configure(capture_binary=True), flowtel.start_span("s") as span:
        span.set_inputs({"image": _data_uri(PNG)})
    assert flowtel_traces.last.data.spans[0].inputs == {"image": _data_uri(PNG)}


def test_other_attributes_keep_the_size_marker(flowtel_traces: TraceCapture) -> None:
    with flowtel.start_span("s") as span:
        span.set_attribute("thumbnail", PNG)
    assert flowtel_traces.last.data.spans[0].get_attribute("thumbnail") == f"[binary image/png {len(PNG)} bytes]"


def test_spooled_traces_keep_their_attachments(flowtel_traces: TraceCapture) -> None:
    describe(_image_message())
    trace = flowtel_traces.last
    line = _spool._encode(trace)
    back = _spool._decode(json.loads(line), flowtel.Trace)
    assert {k: a.data for k, a in _attachments.attachments_of(back).items()} == {
        k: a.data for k, a in _attachments.attachments_of(trace).items()}


def test_embedded_store_keeps_attachments(local_store_path: str) -> None:
    with flowtel.start_span("s") as span:
        span.set_inputs({"image": _data_uri(PNG)})
    trace_id = flowtel.get_last_active_trace_id()
    flowtel.flush()
    trace = flowtel.get_trace(trace_id)
    assert trace is not None
    ref = _attachments.parse_ref(trace.data.spans[0].inputs["image"])
    assert ref is not None
    from flowtel.tracing import _runtime

    store = _runtime.get_runtime().store
    assert store.get_attachment(trace_id, ref["attachment_id"]) == ("image/png", PNG)  # type: ignore[union-attr]


_DOWNLOAD_SCRIPT = """
import base64, json, sys
import mlflow
from mlflow.tracing.attachments import Attachment
from mlflow.tracing.client import TracingClient
p = json.load(sys.stdin)
mlflow.set_tracking_uri(p["url"])
trace = mlflow.get_trace(p["trace_id"])
inputs = trace.data.spans[0].inputs
ref = Attachment.parse_ref(inputs["messages"][0]["content"][1]["image_url"]["url"])
repo = TracingClient()._get_artifact_repo_for_trace(trace.info)
data = repo.download_trace_attachment(ref["attachment_id"])
print(json.dumps({"ref": ref, "data": base64.b64encode(data).decode()}))
"""


def test_image_input_is_an_attachment_the_real_mlflow_client_downloads(mlflow_server: MlflowServer) -> None:
    experiment_id = new_experiment(mlflow_server, "attachments")
    with flowtel_to(mlflow_server.url, experiment_id):
        describe(_image_message())
        trace_id = flowtel.get_last_active_trace_id()
        flowtel.flush()
        assert flowtel.get_delivery_stats()["destinations"][0]["dropped"] == {}
    result = run_mlflow_client(mlflow_server.version or "", _DOWNLOAD_SCRIPT,
                               {"url": mlflow_server.url, "trace_id": trace_id})
    assert result["ref"]["trace_id"] == trace_id and result["ref"]["content_type"] == "image/png"
    assert base64.b64decode(result["data"]) == PNG  # byte for byte
    # What the UI fetches to render the image inline.
    query = urllib.parse.urlencode({"request_id": trace_id, "path": result["ref"]["attachment_id"]})
    response = mlflow_server.request("GET", f"/ajax-api/2.0/mlflow/get-trace-artifact?{query}")
    assert response.status == 200 and response.body == PNG


def test_deleting_a_trace_deletes_its_attachments(local_store_path: str) -> None:
    from flowtel.exporters.local._store import SqliteTraceStore

    with flowtel.start_span("s") as span:
        span.set_inputs({"image": _data_uri(PNG)})
    trace_id = flowtel.get_last_active_trace_id()
    flowtel.flush()
    ref = _attachments.parse_ref(flowtel.get_trace(trace_id).data.spans[0].inputs["image"])  # type: ignore[union-attr]
    with SqliteTraceStore(local_store_path) as db:
        assert db.get_attachment(trace_id, ref["attachment_id"]) == ("image/png", PNG)  # type: ignore[index]
        assert db.delete_traces("0", trace_ids=[trace_id]) == 1
        assert db.get_attachment(trace_id, ref["attachment_id"]) is None  # type: ignore[index]
