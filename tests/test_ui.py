"""``flowtel ui``: a real private ``mlflow server`` on the embedded store's traces, read back
through the real ``MlflowClient`` and a real headless Chromium; stopped with Ctrl-C and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowtel.exporters.local import LocalTraceStore, experiment_registry
from tests._ui_helpers import (
    ROOT,
    URL_LINE,
    FlowtelCommand,
    child_env,
    dump_dom,
    eventually,
    fill_store,
    live_processes_in_group,
    run_python,
)

pytest.importorskip("mlflow", reason="flowtel ui needs the ui extra: pip install -e '.[ui]'")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process checks read /proc")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningUi:
    def __init__(self, store: Path, data_dir: Path) -> None:
        self.store, self.data_dir = store, data_dir
        self.command = FlowtelCommand(
            ["ui", "--no-browser", "--data-dir", str(data_dir), "--port", str(_free_port()), "--interval", "0.5"],
            store,
        )
        self.url = self.command.wait_for(URL_LINE).group(1)

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "server.json").read_text())

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url)

    def stop(self, sig: int) -> None:
        if self.command.proc.poll() is None:
            self.command.proc.send_signal(sig)
        self.command.finish(timeout=120)


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    store = tmp_path_factory.mktemp("ui-store") / "traces.db"
    return store, fill_store(store)


@pytest.fixture(scope="module")
def ui(filled_store: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUi]:
    running = RunningUi(filled_store[0], tmp_path_factory.mktemp("ui-data"))
    try:
        yield running
    finally:
        running.stop(signal.SIGINT)


def _local_traces(store: Path) -> list[Any]:
    local = LocalTraceStore(store)
    try:
        traces, _ = local.search_traces(experiment_ids=None, filter_string=None, order_by=None,
                                        max_results=500, page_token=None, include_spans=True)
        return traces
    finally:
        local.close()


def _usage(usage: dict[str, int] | None) -> dict[str, int] | None:
    keys = ("input_tokens", "output_tokens", "total_tokens")
    return None if usage is None else {k: usage[k] for k in keys if k in usage}


def _server_experiment_id(client: Any, store: Path, local_experiment_id: str) -> str:
    name = experiment_registry(str(store)).get_experiment(local_experiment_id).name
    return "0" if name == "Default" else client.get_experiment_by_name(name).experiment_id


def test_every_trace_reads_back_through_the_mlflow_client(ui: RunningUi, filled_store: tuple[Path, list[str]]) -> None:
    store, extra_ids = filled_store
    client = ui.client()
    local = _local_traces(store)
    assert len(local) >= 4
    for trace in local:
        remote = client.get_trace(trace.info.trace_id)
        assert remote is not None, trace.info.trace_id
        assert remote.info.experiment_id == _server_experiment_id(client, store, trace.info.experiment_id)
        spans = {(s.span_id, s.parent_id, s.name, s.span_type, s.start_time_ns, s.end_time_ns) for s in trace.data.spans}
        assert {(s.span_id, s.parent_id, s.name, s.span_type, s.start_time_ns, s.end_time_ns)
                for s in remote.data.spans} == spans
        for span in trace.data.spans:
            assert remote.data.spans[[s.span_id for s in remote.data.spans].index(span.span_id)].inputs == span.inputs
        assert {k: v for k, v in remote.info.tags.items() if k in trace.info.tags} == trace.info.tags
        for key in ("mlflow.trace.session", "mlflow.trace.user"):
            assert remote.info.trace_metadata.get(key) == trace.info.trace_metadata.get(key)
        # the server recomputes the usage summary from the spans (keeping the standard keys)
        assert _usage(remote.info.token_usage) == _usage(trace.info.token_usage)
        assert remote.info.state.value == trace.info.state.value
        assert sorted(a.assessment_id for a in remote.info.assessments) == sorted(
            a.assessment_id for a in trace.info.assessments)
    first = client.get_trace(extra_ids[0])
    assert first.info.tags["team"] == "search"
    assert first.info.trace_metadata["mlflow.trace.session"] == "session-42"
    [feedback] = first.info.assessments
    assert (feedback.name, feedback.value, feedback.rationale) == ("helpful", True, "right answer")
    # the session groups both turns on the server too
    experiment = client.get_experiment_by_name("ui-test-experiment").experiment_id
    in_session = client.search_traces(locations=[experiment], filter_string="metadata.`mlflow.trace.session` = 'session-42'")
    assert sorted(t.info.trace_id for t in in_session) == sorted(extra_ids)


def test_a_trace_added_while_it_runs_arrives(ui: RunningUi) -> None:
    trace_id = run_python(
        "import flowtel\n"
        "@flowtel.trace\n"
        "def added_later(x):\n    return x\n"
        "added_later(1)\nflowtel.flush()\nprint(flowtel.get_last_active_trace_id())\n",
        ui.store,
    ).strip()
    client = ui.client()
    remote = eventually(lambda: _trace_or_none(client, trace_id), "the new trace on the UI server")
    assert [s.name for s in remote.data.spans] == ["added_later"]


def _trace_or_none(client: Any, trace_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_trace(trace_id)
    except MlflowException:  # not copied yet (the client raises for an unknown trace)
        return None


def test_a_second_flowtel_ui_reuses_the_running_server(ui: RunningUi) -> None:
    second = FlowtelCommand(["ui", "--no-browser", "--data-dir", str(ui.data_dir)], ui.store)
    assert second.finish(timeout=120) == 0, second.output()
    assert f"flowtel ui: {ui.url}" in second.output()
    assert "already running" in second.output()


def test_the_browser_shows_the_demo_traces_in_the_mlflow_ui(ui: RunningUi, tmp_path: Path) -> None:
    # The traces page of the real MLflow UI, rendered by a real headless Chromium: every trace of
    # the default experiment (the demo's) is a row of its trace table.
    dom = dump_dom(f"{ui.url}/#/experiments/0/traces", tmp_path / "profile", budget_ms=60000)
    demo = [t for t in _local_traces(ui.store) if t.info.experiment_id == "0"]
    assert len(demo) >= 3
    missing = [t.info.trace_id for t in demo if f"Open trace {t.info.trace_id}" not in dom]
    assert not missing, dom[-3000:]


def test_ctrl_c_stops_the_server_and_leaves_no_process(ui: RunningUi) -> None:
    server_pid = ui.state["server_pid"]
    assert live_processes_in_group(server_pid)
    ui.stop(signal.SIGINT)
    assert ui.command.proc.returncode == 0, ui.command.output()
    assert "flowtel ui stopped" in ui.command.output()
    eventually(lambda: not live_processes_in_group(server_pid), "the server's processes to exit", timeout=30)
    assert not (ui.data_dir / "server.json").exists()


def test_sigkill_of_flowtel_ui_takes_the_server_down(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    run_python("import flowtel\nflowtel.trace(lambda: 1)()\nflowtel.flush()\n", store)
    running = RunningUi(store, tmp_path / "data")
    server_pid = running.state["server_pid"]
    assert live_processes_in_group(server_pid)
    running.command.proc.kill()
    running.command.finish(timeout=30)
    # The watchdog notices the closed pipe (and Linux sends PR_SET_PDEATHSIG); nothing survives.
    eventually(lambda: not live_processes_in_group(server_pid), "the orphaned server to exit", timeout=60)


def test_without_mlflow_it_says_what_to_install(tmp_path: Path) -> None:
    hide_mlflow = (
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mlflow', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "from flowtel.cli import main\n"
        "sys.exit(main(['ui', '--no-browser', '--data-dir', sys.argv[1]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", hide_mlflow, str(tmp_path / "data")], cwd=ROOT,
                          env=child_env(tmp_path / "traces.db"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pip install 'flowtel[ui]'" in done.stderr
    assert not (tmp_path / "data").exists()
    assert os.environ.get("FLOWTEL_STORE_PATH") != str(tmp_path / "traces.db")
