"""``flowtel traces push``: the embedded store's traces onto a real MLflow server, idempotent,
resumable after an interruption, with a clear error for a dead server."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowtel.cli import _push as push_module
from flowtel.cli import main
from flowtel.cli._push import PushJournal, push_traces
from flowtel.exporters.local import LocalTraceStore
from tests._servers.mlflow_server import MlflowServer
from tests._ui_helpers import run_python

TRACES = 7

FILL = """
import flowtel
@flowtel.trace
def step(i):
    flowtel.update_current_trace(tags={"i": str(i)}, session_id="push-session")
    return i * 2
ids = []
for i in range(TRACES):
    step(i)
    ids.append(flowtel.get_last_active_trace_id())
flowtel.flush()
flowtel.log_feedback(trace_id=ids[0], name="ok", value=True)
print(" ".join(ids))
""".replace("TRACES", str(TRACES))


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "traces.db"
    return path, run_python(FILL, path).split()


def _on_server(server: MlflowServer, experiment: str) -> list[Any]:
    client = server.client()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(client.search_traces(locations=[found.experiment_id], max_results=500))


def test_push_copies_everything_once_and_a_rerun_sends_nothing(
    mlflow_server: MlflowServer, store: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = store
    experiment = f"push-{uuid.uuid4().hex[:8]}"
    journal = tmp_path / "journal.jsonl"
    argv = ["--store", str(path), "traces", "push", "--to", mlflow_server.url, "--experiment", experiment,
            "--batch-size", "3", "--journal", str(journal)]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert f"{TRACES} sent, 0 already there, 0 failed (of {TRACES} traces)" in out.out
    assert f"pushing: {TRACES}/{TRACES}" in out.err  # the progress (plain lines when not a terminal)
    remote = _on_server(mlflow_server, experiment)
    assert sorted(t.info.trace_id for t in remote) == sorted(ids)
    first = mlflow_server.client().get_trace(ids[0])
    assert first.info.tags["i"] == "0"
    assert first.info.trace_metadata["mlflow.trace.session"] == "push-session"
    assert [a.name for a in first.info.assessments] == ["ok"]
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600

    assert main(argv) == 0
    assert f"0 sent, {TRACES} already there, 0 failed" in capsys.readouterr().out
    assert len(_on_server(mlflow_server, experiment)) == TRACES


def test_a_changed_trace_is_sent_again(mlflow_server: MlflowServer, store: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, ids = store
    experiment = f"push-{uuid.uuid4().hex[:8]}"
    journal = PushJournal(tmp_path / "journal.jsonl")
    assert push_traces(path, mlflow_server.url, experiment=experiment, journal=journal).sent == TRACES
    local = LocalTraceStore(path)
    local.set_trace_tag(ids[3], "reviewed", "yes")
    local.close()
    report = push_traces(path, mlflow_server.url, experiment=experiment, journal=PushJournal(journal.path))
    assert (report.sent, report.unchanged) == (1, TRACES - 1)
    assert mlflow_server.client().get_trace(ids[3]).info.tags["reviewed"] == "yes"


def test_interrupted_push_resumes_and_every_trace_is_on_the_server_once(
    mlflow_server: MlflowServer, store: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, ids = store
    experiment = f"push-{uuid.uuid4().hex[:8]}"
    journal_path = tmp_path / "journal.jsonl"
    sent_batches: list[list[str]] = []
    real_export = push_module._push_batch

    # The process dies after the server took the second batch but before the journal said so.
    def dying_after_second_batch(infos: Any, *args: Any) -> None:
        if len(sent_batches) == 1:
            journal = args[3]
            monkeypatch.setattr(journal, "mark_sent", _raise_interrupt)
        sent_batches.append([i.trace_id for i in infos])
        real_export(infos, *args)

    monkeypatch.setattr(push_module, "_push_batch", dying_after_second_batch)
    with pytest.raises(KeyboardInterrupt):
        push_traces(path, mlflow_server.url, experiment=experiment, journal=PushJournal(journal_path), batch_size=3)
    monkeypatch.undo()
    assert len(sent_batches) == 2
    assert len(_on_server(mlflow_server, experiment)) == 6

    exported: list[str] = []
    monkeypatch.setattr(push_module, "_push_batch", lambda infos, *a: (exported.extend(i.trace_id for i in infos),
                                                                         real_export(infos, *a)))
    report = push_traces(path, mlflow_server.url, experiment=experiment, journal=PushJournal(journal_path),
                         batch_size=3)
    assert report.ok and report.sent == 1 and report.unchanged == TRACES - 1
    sent_before = {trace_id for batch in sent_batches for trace_id in batch}
    assert exported == [t for t in ids if t not in sent_before]  # the in-flight batch was not re-sent
    remote = [t.info.trace_id for t in _on_server(mlflow_server, experiment)]
    assert sorted(remote) == sorted(ids)


def _raise_interrupt(*args: Any) -> None:
    raise KeyboardInterrupt


def test_a_wiped_server_gets_everything_again(mlflow_server: MlflowServer, store: tuple[Path, list[str]],
                                              tmp_path: Path) -> None:
    path, ids = store
    experiment = f"push-{uuid.uuid4().hex[:8]}"
    journal = tmp_path / "journal.jsonl"
    assert push_traces(path, mlflow_server.url, experiment=experiment, journal=PushJournal(journal)).sent == TRACES
    client = mlflow_server.client()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    client.delete_traces(experiment_id=experiment_id, trace_ids=ids)
    report = push_traces(path, mlflow_server.url, experiment=experiment, journal=PushJournal(journal))
    assert report.sent == TRACES
    assert sorted(t.info.trace_id for t in _on_server(mlflow_server, experiment)) == sorted(ids)


def test_a_dead_server_is_a_clear_error(store: tuple[Path, list[str]], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    url = f"http://127.0.0.1:{port}"
    code = main(["--store", str(store[0]), "traces", "push", "--to", url, "--journal", str(tmp_path / "j.jsonl")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: cannot push to the MLflow server at {url}" in err
    assert not (tmp_path / "j.jsonl").exists()


def test_bad_arguments_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", str(tmp_path / "missing.db"), "traces", "push", "--to", "http://127.0.0.1:1"]) == 1
    assert "does not exist" in capsys.readouterr().err
    path = tmp_path / "t.db"
    run_python("import flowtel\nflowtel.trace(lambda: 1)()\nflowtel.flush()\n", path)
    assert main(["--store", str(path), "traces", "push", "--to", "ftp://x"]) == 2
    assert "http(s)://" in capsys.readouterr().err
